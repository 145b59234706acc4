"""Figures 4 and 5: WhisperEngine against faster-whisper, and the TTS→STT round trip."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .common import (
    BenchConfig,
    Figure,
    announcements,
    elapsed_since,
    median_of,
    run_blocking,
    time_pair,
)
from .wer import word_errors

if TYPE_CHECKING:
    from pathlib import Path

    from faster_whisper import WhisperModel
    import numpy as np
    from piper import PiperVoice

    from custom_components.tts_ai.local import (
        DeviceProfile,
        LocalVoice,
        PiperEngine,
        WhisperEngine,
    )

WHISPER_RATE = 16000
LANGUAGE = "en"


def load_raw_whisper(model_dir: Path, profile: DeviceProfile) -> WhisperModel:
    """faster-whisper with the engine's settings: int8 on the CPU, same threads."""
    from faster_whisper import WhisperModel  # noqa: PLC0415 - heavy

    return WhisperModel(
        str(model_dir),
        device="cpu",
        compute_type="int8",
        cpu_threads=profile.intra_op_threads,
        num_workers=1,
    )


def raw_transcribe(model: WhisperModel, samples: np.ndarray) -> str:
    """Transcribe with faster-whisper directly, decoding settings as the engine's."""
    segments, _info = model.transcribe(
        samples,
        beam_size=1,
        language=LANGUAGE,
        vad_filter=False,
        condition_on_previous_text=False,
    )
    return " ".join(segment.text.strip() for segment in segments).strip()


async def resample_to_16k(pcm16: bytes, source_rate: int) -> bytes:
    """Resample 16-bit mono PCM to 16 kHz with ffmpeg (a proper filter)."""
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error",
        "-f", "s16le", "-ar", str(source_rate), "-ac", "1", "-i", "pipe:0",
        "-f", "s16le", "-ar", str(WHISPER_RATE), "-ac", "1", "pipe:1",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate(pcm16)
    if process.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {err.decode(errors='replace')}")
    return out


def pcm16_to_float(pcm16: bytes) -> np.ndarray:
    """int16 PCM to the float32 array faster-whisper takes."""
    import numpy as np  # noqa: PLC0415 - heavy

    return np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0


async def engine_pcm(engine: PiperEngine, voice: LocalVoice, text: str) -> bytes:
    """The engine's whole speech for ``text`` as PCM at the voice's rate."""
    return b"".join([chunk.audio async for chunk in engine.synthesize(text, voice)])


async def stt_time_figure(
    whisper: WhisperEngine,
    raw_model: WhisperModel,
    piper: PiperEngine,
    voice: LocalVoice,
    config: BenchConfig,
) -> Figure:
    """Figure 4: transcription time, WhisperEngine ÷ faster-whisper direct."""
    text = " ".join(announcements(config.stt_sentences))
    pcm16 = await resample_to_16k(
        await engine_pcm(piper, voice, text), piper.sample_rate(voice)
    )
    samples = pcm16_to_float(pcm16)
    transcripts: dict[str, str] = {}

    async def engine_side() -> float:
        start = time.perf_counter()
        result = await whisper.transcribe(
            pcm16, sample_rate=WHISPER_RATE, language=LANGUAGE
        )
        elapsed = elapsed_since(start)
        transcripts["engine"] = result.text
        return elapsed

    async def raw_side() -> float:
        start = time.perf_counter()
        transcripts["raw"] = await run_blocking(raw_transcribe, raw_model, samples)
        return elapsed_since(start)

    timing = await time_pair(engine_side, raw_side, config)
    engine_s = timing.first_median
    audio_s = len(pcm16) / 2 / WHISPER_RATE
    return Figure(
        key="stt_time",
        title="Local STT time vs raw faster-whisper",
        unit="s",
        value=engine_s,
        value_label="WhisperEngine.transcribe",
        anchor=timing.second_median,
        anchor_label="WhisperModel.transcribe, same settings",
        goal=1.05,
        goal_on="ratio",
        notes=f"{audio_s:.1f} s of speech at 16 kHz, tiny.en int8; {median_of(config)}",
        extras={
            "audio_seconds": round(audio_s, 2),
            "real_time_factor": round(engine_s / audio_s, 4),
            "reference_text": text,
            "engine_transcript": transcripts.get("engine", ""),
            "raw_transcript": transcripts.get("raw", ""),
            **timing.extras("engine", "raw"),
        },
    )


async def round_trip_figure(
    *,
    piper: PiperEngine,
    whisper: WhisperEngine,
    raw_piper: PiperVoice,
    raw_model: WhisperModel,
    voice: LocalVoice,
    config: BenchConfig,
) -> Figure:
    """Figure 5: word error rate of speaking then transcribing each announcement.

    The value goes through the engines (including the engine's linear
    resampling to 16 kHz); the anchor goes through Piper and faster-whisper
    directly, resampled by ffmpeg: it shows what the models themselves get.
    """
    sentences = announcements(config.wer_sentences)
    rate = piper.sample_rate(voice)
    engine_pairs: list[tuple[str, str]] = []
    raw_pairs: list[tuple[str, str]] = []
    misheard: list[dict[str, Any]] = []
    for sentence in sentences:
        engine_text = (
            await whisper.transcribe(
                await engine_pcm(piper, voice, sentence),
                sample_rate=rate,
                language=LANGUAGE,
            )
        ).text
        raw_pcm = await run_blocking(_raw_pcm, raw_piper, sentence)
        raw_samples = pcm16_to_float(await resample_to_16k(raw_pcm, rate))
        raw_text = await run_blocking(raw_transcribe, raw_model, raw_samples)
        engine_pairs.append((sentence, engine_text))
        raw_pairs.append((sentence, raw_text))
        if word_errors([(sentence, engine_text)]).errors:
            misheard.append({"text": sentence, "engine_transcript": engine_text})
    engine_errors = word_errors(engine_pairs)
    raw_errors = word_errors(raw_pairs)
    half_word_percent = 50.0 / max(engine_errors.reference_words, 1)
    return Figure(
        key="round_trip_wer",
        title="TTS→STT round-trip word error rate",
        unit="%",
        value=engine_errors.rate_percent,
        value_label="PiperEngine → WhisperEngine",
        anchor=raw_errors.rate_percent,
        anchor_label="PiperVoice → ffmpeg resample → WhisperModel",
        goal=5.0,
        goal_on="value",
        anchor_floor=half_word_percent,
        notes=(
            f"{len(sentences)} announcements, {engine_errors.reference_words} words; "
            "ratio counts a zero anchor as half a word error"
        ),
        extras={
            "sentences": len(sentences),
            "reference_words": engine_errors.reference_words,
            "engine_word_errors": engine_errors.errors,
            "raw_word_errors": raw_errors.errors,
            "misheard_by_engine": misheard,
        },
    )


def _raw_pcm(raw_piper: PiperVoice, text: str) -> bytes:
    """Piper's own speech for ``text`` as int16 PCM."""
    return b"".join(chunk.audio_int16_bytes for chunk in raw_piper.synthesize(text))
