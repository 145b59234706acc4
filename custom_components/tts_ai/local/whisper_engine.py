"""Whisper speech-to-text on the device, with faster-whisper (CTranslate2).

Audio goes in as raw PCM and reaches the model as a NumPy array: never as a
file path or file object, because faster-whisper decodes files with PyAV,
whose version Home Assistant pins differently.

A voice command is short, and Whisper's encoder costs the same for one second
as for thirty when the audio is padded to its 30-second window (as
faster-whisper does). Audio that fits in one window is therefore encoded at
its own length, at least 10 s (see :func:`_decode_window`): measured on the
2-core x86_64 development machine, tiny.en int8 encodes 30 s in ~1.6 s and
10 s in ~0.06 s.

:meth:`WhisperEngine.stream` goes further for Assist: it decodes while the
user speaks, so when the audio ends only its tail is left (see
:class:`WhisperStream`).
"""

# The engines' packages are optional: import them lazily (see __init__.py).
# ruff: noqa: PLC0415

from __future__ import annotations

from array import array
import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass
from functools import partial
import logging
import math
from pathlib import Path
import sys
import threading
from typing import Any

from .device import DeviceProfile, detect_device_profile
from .idle import IdleReleaser, free_objects
from .pcm import WHISPER_SAMPLE_RATE, pcm16_to_float32, resample_linear

_LOGGER = logging.getLogger(__name__)

# Silence put before the speech, for Whisper's sake (see _run).
LEAD_IN_SECONDS = 0.3
# Padding after the speech in a window sized to the audio: without it the
# last word, cut at the window's edge, is often dropped. It is padded as
# faster-whisper pads a 30-second window, with zero features, not with
# silent audio: measured over the 36 sentences of tests/data/announcements.txt,
# one second of silent audio after the speech made tiny.en repeat nearly every
# sentence until its token budget ran out; zero features, one in 36.
TAIL_PADDING_SECONDS = 1.0
# No window is shorter than this. Measured over the 36 announcements: in
# windows of the speech's own length (1-4 s) tiny.en misheard first words
# ("Turn on" as "Pern on") and repeated a sentence; in 10-second windows it
# made 4 word errors in 221 (a 30-second window: 2), none of those, and the
# encoder took ~0.06 s instead of ~1.6 s.
MIN_WINDOW_SECONDS = 10.0
# Audio up to this long (lead-in and tail included) is decoded in one window
# sized to it; longer audio goes through faster-whisper's 30-second windows.
SHORT_WINDOW_MAX_SECONDS = 29.0
# Whisper's frame rate (10 ms hops) and the most frames one window holds.
_FRAMES_PER_SECOND = 100
_MAX_FRAMES = 3000
# Earlier text given to the decoder as context, at most this many tokens
# (Whisper's own limit for a prompt is 223).
MAX_PROMPT_TOKENS = 100
# Tokens one window may produce: speech runs at ~3-4 tokens a second, so
# this leaves room for numbers and names while a hallucinated repetition
# stops early instead of running on to Whisper's 448.
_TOKENS_BASE = 16
_TOKENS_PER_SECOND = 10
_MAX_NEW_TOKENS = 220

# Streaming (WhisperStream): a pause is this long (in 20 ms frames)...
PAUSE_SECONDS = 0.25
_PAUSE_FRAME_SECONDS = 0.02
# ... below this fraction of the loudest frame's level so far (-26 dB), and
# below _SILENCE_LEVEL (of full scale 32768: about -44 dBFS) never counts as
# speech: a satellite's AGC lifts background noise well above digital silence.
QUIET_FRACTION = 0.05
_SILENCE_LEVEL = 200.0
# Audio quieter than this peak level (of full scale: about -44 dBFS) holds
# no speech: it is not decoded, as Whisper makes words up from silence.
_SILENCE_PEAK = 0.006


@dataclass(frozen=True)
class Transcript:
    """What was said."""

    text: str
    language: str | None
    """Language code Whisper used (given or detected); None for silence."""
    duration: float
    """Length of the audio in seconds."""


class WhisperEngine:
    """Transcribe speech with a local faster-whisper model.

    The model loads on first use (or :meth:`load`) and is dropped after
    ``idle_unload_after`` seconds without use. Calls are serialised: on a
    2-4 core board one CTranslate2 transcription already uses every core,
    so running two at once only makes both slower (and doubles the working
    memory); queuing keeps the first one fast.
    """

    def __init__(
        self,
        model_dir: Path | str,
        profile: DeviceProfile | None = None,
        *,
        compute_type: str = "int8",
        beam_size: int | None = None,
        idle_unload_after: float | None = 600.0,
    ) -> None:
        """Set up the engine for the CTranslate2 model in ``model_dir``.

        ``profile`` defaults to the detected hardware (read in an executor
        on first load); ``beam_size`` defaults to the profile's choice.
        """
        self._model_dir = Path(model_dir)
        self._profile = profile
        self._compute_type = compute_type
        self._beam_size = beam_size
        self._model: Any = None  # faster_whisper.WhisperModel, imported lazily
        self._lock = asyncio.Lock()
        self._idle = IdleReleaser(idle_unload_after, self.unload)

    @property
    def is_loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    async def load(self) -> None:
        """Load the model now rather than on the first transcription."""
        with self._idle.in_use():
            async with self._lock:
                await self._ensure_loaded()

    async def transcribe(
        self,
        pcm16: bytes,
        *,
        sample_rate: int = WHISPER_SAMPLE_RATE,
        language: str | None = None,
    ) -> Transcript:
        """Transcribe 16-bit little-endian mono PCM.

        Audio at another rate than 16 kHz is resampled (linear
        interpolation, see :func:`~.pcm.resample_linear`). ``language``
        None lets Whisper detect it (English-only models always say "en").
        Empty audio gives an empty transcript without touching the model.
        """
        check_sample_rate(sample_rate)
        if len(pcm16) < 2:
            return Transcript(text="", language=language, duration=0.0)
        return await self._job(self._run, pcm16, sample_rate, language)

    def stream(
        self, *, sample_rate: int = WHISPER_SAMPLE_RATE, language: str | None = None
    ) -> WhisperStream:
        """Start transcribing an utterance that arrives in pieces.

        Feed the audio with :meth:`WhisperStream.feed` as it comes and call
        :meth:`WhisperStream.finish` at its end: decoding happens while the
        audio arrives, so little is left to do then.
        """
        check_sample_rate(sample_rate)
        return WhisperStream(self, sample_rate, language)

    async def unload(self) -> None:
        """Drop the model from memory; the next transcription reloads it."""
        async with self._lock:  # never under a running transcription
            model, self._model = self._model, None
            if model is not None:
                _LOGGER.debug("Unloading Whisper model %s", self._model_dir)
                await asyncio.get_running_loop().run_in_executor(
                    None, free_objects, [model]
                )

    async def close(self) -> None:
        """Stop the idle countdown and free the model."""
        await self._idle.close()
        await self.unload()

    async def _job[T](self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(model, *args, stop)`` in the executor, one at a time."""
        loop = asyncio.get_running_loop()
        with self._idle.in_use():
            await self._lock.acquire()
            try:
                model = await self._ensure_loaded()
            except BaseException:
                self._lock.release()
                raise
            stop = threading.Event()
            job = loop.run_in_executor(None, partial(function, model, *args, stop))
            # The lock is given back when the job has ended, not when this
            # call does: a cancelled caller (the cloud won a hedge) must not
            # let a second transcription start beside the one still decoding.
            job.add_done_callback(lambda _: self._lock.release())
            try:
                return await asyncio.shield(job)
            except asyncio.CancelledError:
                # Ask the job to stop at the next 30-second window.
                stop.set()
                raise

    async def _ensure_loaded(self) -> Any:
        """Return the model, loading it first if needed. Hold ``_lock``."""
        if self._model is None:
            loop = asyncio.get_running_loop()
            if self._profile is None:
                self._profile = await loop.run_in_executor(None, detect_device_profile)
            self._model = await loop.run_in_executor(
                None, self._load_model, self._profile
            )
        return self._model

    def _beam(self) -> int:
        """Return the beam size: the one given, or the profile's."""
        if self._beam_size is not None:
            return self._beam_size
        return self._profile.whisper_beam_size if self._profile else 1

    # --- executor side: the methods below block ----------------------------

    def _load_model(self, profile: DeviceProfile) -> Any:
        """Load the CTranslate2 Whisper model from disk."""
        from faster_whisper import WhisperModel
        import tqdm

        # faster-whisper makes a (disabled) tqdm progress bar per call, and
        # tqdm starts a monitor thread for it on first use that then wakes
        # every 10 s for the life of the process. Home Assistant shows no
        # terminal progress bars, so the monitor has nothing to do: turn it
        # off (this only stops tqdm's forced refresh of stalled bars).
        tqdm.tqdm.monitor_interval = 0
        _LOGGER.debug("Loading Whisper model %s", self._model_dir)
        return WhisperModel(
            str(self._model_dir),
            device="cpu",
            compute_type=self._compute_type,
            cpu_threads=profile.intra_op_threads,
            num_workers=1,  # calls are serialised anyway
        )

    def _run(
        self,
        model: Any,
        pcm16: bytes,
        sample_rate: int,
        language: str | None,
        stop: threading.Event,
    ) -> Transcript:
        """Convert the audio and transcribe it; the segments are consumed here.

        Audio that fits one window is decoded in a window of its own length.
        Longer audio goes through faster-whisper's 30-second windows; once
        ``stop`` is set, decoding ends after the current one (the caller has
        gone; what was heard so far is returned to nobody).
        """
        import numpy as np

        speech = resample_linear(
            pcm16_to_float32(pcm16), sample_rate, WHISPER_SAMPLE_RATE
        )
        duration = speech.size / WHISPER_SAMPLE_RATE
        if _fits_one_window(duration) and _knows_language(model, language):
            text = _decode_window(
                model, speech, language=language, beam_size=self._beam()
            ).text
            return Transcript(text=text, language=language or "en", duration=duration)
        # Whisper tends to drop a first word that starts at the very first
        # sample (seen here: "Turn on the lights" heard as "On the lights");
        # audio cut tight by a satellite's VAD or a TTS round trip does that.
        padding = np.zeros(int(LEAD_IN_SECONDS * WHISPER_SAMPLE_RATE), np.float32)
        samples = np.concatenate([padding, speech])
        segments, info = model.transcribe(
            samples,
            beam_size=self._beam(),
            language=language,
            vad_filter=False,
            # Voice commands are short; carrying text over between 30 s
            # windows only invites repeated hallucinations.
            condition_on_previous_text=False,
        )
        # ``segments`` is a lazy generator: decoding happens while we iterate,
        # so it must be consumed here, in the executor.
        texts: list[str] = []
        for segment in segments:
            if stop.is_set():
                break
            texts.append(segment.text.strip())
        text = " ".join(texts).strip()
        return Transcript(text=text, language=info.language, duration=duration)

    def _run_window(self, model: Any, window: _Window, stop: threading.Event) -> str:
        """Decode one piece of a stream in a window of its own length."""
        speech = resample_linear(
            pcm16_to_float32(window.pcm16), window.sample_rate, WHISPER_SAMPLE_RATE
        )
        return _decode_window(
            model,
            speech,
            language=window.language,
            beam_size=self._beam(),
            context=window.context,
        ).text


@dataclass(frozen=True)
class _Window:
    """A piece of a stream to decode, with what is known about its text."""

    pcm16: bytes
    sample_rate: int
    language: str | None
    context: str
    """The text before this piece."""


class WhisperStream:
    """One utterance, transcribed while it arrives (:meth:`WhisperEngine.stream`).

    The audio is cut at pauses in the speech (:data:`PAUSE_SECONDS` below
    :data:`QUIET_FRACTION` of the loudest level so far, found 20 ms at a time
    as the audio arrives). Each piece a pause ends is decoded at once, while
    the user goes on speaking, with the text before it as Whisper's context;
    at the end (:meth:`finish`) only the audio after the last pause is left.

    Only real pauses are cut at: measured on Piper's speech, cutting at
    100 ms quiet spells (or at Whisper's own word alignment) cut inside words
    whose weak fricatives and stop closures are as quiet as a pause ("fifty"
    heard as "10", "turn off" as "turn"). Decodes go through the engine one
    at a time, like any transcription.
    """

    def __init__(
        self, engine: WhisperEngine, sample_rate: int, language: str | None
    ) -> None:
        """Prepare an empty stream (see :meth:`WhisperEngine.stream`)."""
        self._engine = engine
        self._rate = sample_rate
        self._language = language
        self._pcm = bytearray()
        self._start = 0  # byte offset of the audio not yet decoded for good
        self._cuts: list[int] = []  # pauses found, not yet decoded up to
        self._texts: list[str] = []  # the pieces' text, in order
        self._job: asyncio.Task[None] | None = None
        self._finished = False
        self._pauses = _PauseFinder(sample_rate)
        self.decodes_before_end = 0
        """Pieces decoded while the audio was still arriving."""
        self.on_text: Callable[[str], None] | None = None
        """Called with :attr:`text_so_far` each time a piece has been decoded."""

    @property
    def text_so_far(self) -> str:
        """The words of the pieces decoded so far."""
        return " ".join(self._texts).strip()

    def feed(self, pcm16: bytes) -> None:
        """Add audio (16-bit mono PCM at the stream's rate); never blocks."""
        if self._finished or not pcm16:
            return
        self._pcm += pcm16
        self._cuts.extend(self._pauses.feed(pcm16))
        self._schedule()

    async def finish(self) -> Transcript:
        """Return the transcript of everything fed; the stream ends here."""
        self._finished = True
        if self._job is not None:
            await asyncio.shield(self._job)
        pcm = bytes(self._pcm)
        duration = len(pcm) / 2 / self._rate
        if len(pcm) < 2:
            return Transcript(text="", language=self._language, duration=0.0)
        if not self._can_stream():
            # Too long for one window, or a language to detect: all at once.
            return await self._engine.transcribe(
                pcm, sample_rate=self._rate, language=self._language
            )
        if self._pauses.speech_after(self._start):
            self._texts.append(await self._decode(pcm[self._start :]))
        text = " ".join(t for t in self._texts if t).strip()
        return Transcript(text=text, language=self._language or "en", duration=duration)

    async def aclose(self) -> None:
        """Stop the work for a stream nobody will finish (the cloud answered)."""
        self._finished = True
        if (job := self._job) is not None:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job

    def _can_stream(self) -> bool:
        """Whether the audio left can be decoded in one window, language known."""
        model = self._engine._model
        seconds = (len(self._pcm) - self._start) / 2 / self._rate
        return _fits_one_window(seconds) and (
            self._language is not None or model is None or not _multilingual(model)
        )

    def _schedule(self) -> None:
        """Decode the next piece a pause has ended, if no decode is running."""
        if self._finished or self._job is not None or not self._cuts:
            return
        if not self._can_stream():
            return
        self._job = asyncio.get_running_loop().create_task(
            self._piece(self._cuts.pop(0))
        )
        self._job.add_done_callback(self._job_done)

    def _job_done(self, job: asyncio.Task[None]) -> None:
        self._job = None
        if not job.cancelled() and (error := job.exception()) is not None:
            # The piece stays undecoded: the final decode takes it along.
            _LOGGER.warning("Decoding speech as it arrived failed: %s", error)
            return
        self._schedule()

    async def _piece(self, cut: int) -> None:
        """Decode the audio up to a pause, for good."""
        if cut <= self._start:
            return
        if self._pauses.speech_between(self._start, cut):
            piece = bytes(self._pcm[self._start : cut])
            self._texts.append(await self._decode(piece))
            self.decodes_before_end += 1
            if self.on_text is not None:
                self.on_text(self.text_so_far)
        self._start = cut

    async def _decode(self, pcm16: bytes) -> str:
        """Decode audio with the text before it as context."""
        window = _Window(pcm16, self._rate, self._language, " ".join(self._texts))
        return await self._engine._job(self._engine._run_window, window)


@dataclass(frozen=True)
class _Decoded:
    """A window's text."""

    text: str


class _PauseFinder:
    """Finds pauses after speech in 16-bit PCM, 20 ms at a time, by level.

    Pure Python on purpose: it runs in the event loop as the audio arrives,
    ~50 small frames a second, and must not import numpy there.
    """

    def __init__(self, sample_rate: int) -> None:
        self._frame_bytes = max(int(sample_rate * _PAUSE_FRAME_SECONDS), 1) * 2
        self._pause_frames = math.ceil(PAUSE_SECONDS / _PAUSE_FRAME_SECONDS)
        self._pending = b""
        self._offset = 0  # bytes already judged, in whole frames
        self._peak = 0.0
        self._quiet_run = 0
        self._speech_since_cut = False
        # [start, end) byte offsets of the runs of speech frames.
        self._speech: list[list[int]] = []

    def feed(self, pcm16: bytes) -> list[int]:
        """Take more audio; return where pauses ended pieces (byte offsets)."""
        data = self._pending + pcm16
        whole = len(data) - len(data) % self._frame_bytes
        self._pending = data[whole:]
        cuts: list[int] = []
        for start in range(0, whole, self._frame_bytes):
            frame = array("h", data[start : start + self._frame_bytes])
            if sys.byteorder == "big":
                frame.byteswap()
            level = math.sqrt(sum(s * s for s in frame) / len(frame))
            self._peak = max(self._peak, level)
            position = self._offset + start
            if level > max(_SILENCE_LEVEL, QUIET_FRACTION * self._peak):
                if self._speech and self._speech[-1][1] == position:
                    self._speech[-1][1] = position + self._frame_bytes
                else:
                    self._speech.append([position, position + self._frame_bytes])
                self._quiet_run = 0
                self._speech_since_cut = True
                continue
            self._quiet_run += 1
            if self._speech_since_cut and self._quiet_run == self._pause_frames:
                # The middle of the pause: both pieces keep some of it.
                half = self._pause_frames // 2 * self._frame_bytes
                cuts.append(position + self._frame_bytes - half)
                self._speech_since_cut = False
        self._offset += whole
        return cuts

    def speech_between(self, start: int, end: int) -> bool:
        """Whether any speech frame lies between two byte offsets."""
        return any(s < end and e > start for s, e in self._speech)

    def speech_after(self, start: int) -> bool:
        """Whether any speech frame lies after ``start``.

        Less than a frame left unjudged at the end is not speech enough to
        decode: Whisper makes words up from silence ("I'll", "you").
        """
        return any(e > start for _, e in self._speech)


def check_sample_rate(sample_rate: int) -> None:
    """Refuse a rate no audio can have, before any work is queued."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, not {sample_rate}")


def _bare(word: str) -> str:
    return "".join(c for c in word.casefold() if c.isalnum())


def _fits_one_window(seconds: float) -> bool:
    """Whether speech of this length (with lead-in and tail) fits one window."""
    return seconds + LEAD_IN_SECONDS + TAIL_PADDING_SECONDS <= SHORT_WINDOW_MAX_SECONDS


def _multilingual(model: Any) -> bool:
    return bool(model.model.is_multilingual)


def _knows_language(model: Any, language: str | None) -> bool:
    """Whether no language has to be detected (given, or an English-only model)."""
    return language is not None or not _multilingual(model)


# --- executor side: everything below blocks -------------------------------


def _decode_window(
    model: Any,
    speech: Any,
    *,
    language: str | None,
    beam_size: int,
    context: str = "",
) -> _Decoded:
    """Decode 16 kHz float speech in one Whisper window of its own length.

    faster-whisper pads every window to 30 seconds, and the encoder's cost
    follows the window, not the speech. CTranslate2 takes a shorter window;
    the speech gets the lead-in silence before it (Whisper tends to drop a
    first word that starts at the very first sample) and zero features after
    it (see :data:`TAIL_PADDING_SECONDS`). ``context`` is earlier text
    (Whisper's "previous text" prompt, read in one step). Audio without a
    sample above :data:`_SILENCE_PEAK` is not decoded.
    """
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens
    import numpy as np

    if speech.size == 0 or float(np.max(np.abs(speech))) < _SILENCE_PEAK:
        return _Decoded("")
    rate = WHISPER_SAMPLE_RATE
    audio = np.concatenate(
        [
            np.zeros(int(LEAD_IN_SECONDS * rate), np.float32),
            speech.astype(np.float32, copy=False),
        ]
    )
    spoken = model.feature_extractor(audio)[:, :_MAX_FRAMES]
    frames = min(
        max(
            spoken.shape[-1] + int(TAIL_PADDING_SECONDS * _FRAMES_PER_SECOND),
            int(MIN_WINDOW_SECONDS * _FRAMES_PER_SECOND),
        ),
        _MAX_FRAMES,
    )
    features = np.zeros((1, spoken.shape[0], frames), np.float32)
    features[0, :, : spoken.shape[-1]] = spoken
    encoded = model.model.encode(
        ctranslate2.StorageView.from_array(features), to_cpu=False
    )
    tokenizer = Tokenizer(
        model.hf_tokenizer,
        model.model.is_multilingual,
        task="transcribe",
        language=language or "en",
    )
    previous = tokenizer.encode(" " + context.strip()) if context.strip() else []
    prompt = model.get_prompt(
        tokenizer, previous[-MAX_PROMPT_TOKENS:], without_timestamps=True
    )
    seconds = speech.size / rate
    new_tokens = min(_TOKENS_BASE + int(_TOKENS_PER_SECOND * seconds), _MAX_NEW_TOKENS)
    result = model.model.generate(
        encoded,
        [prompt],
        beam_size=beam_size,
        max_length=len(prompt) + new_tokens,
        suppress_blank=True,
        suppress_tokens=list(get_suppressed_tokens(tokenizer, (-1,))),
    )[0]
    tokens = [token for token in result.sequences_ids[0] if token < tokenizer.eot]
    return _Decoded(without_repeats(str(tokenizer.decode(tokens)).strip()))


def without_repeats(text: str) -> str:
    """Drop a run of exact repeats of the text's start from its end.

    A window shorter than Whisper's 30 seconds sometimes makes it say the
    whole utterance again, and again ("Welcome home. Welcome home. Welcome
    home.") until the token budget ends: once in 36 announcements measured.
    A command never consists of itself said twice, so the repeats go; a text
    that merely repeats a word or a phrase inside it is left alone.
    """
    words = text.split()
    for period in range(1, len(words) // 2 + 1):
        head = [_bare(word) for word in words[:period]]
        rest = [_bare(word) for word in words[period:]]
        if all(word == head[i % period] for i, word in enumerate(rest)):
            return " ".join(words[:period])
    return text
