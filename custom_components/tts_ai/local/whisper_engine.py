"""Whisper speech-to-text on the device, with faster-whisper (CTranslate2).

Audio goes in as raw PCM and reaches the model as a NumPy array: never as a
file path or file object, because faster-whisper decodes files with PyAV,
whose version Home Assistant pins differently.
"""

# The engines' packages are optional: import them lazily (see __init__.py).
# ruff: noqa: PLC0415

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import logging
from pathlib import Path
import threading
from typing import Any

from .device import DeviceProfile, detect_device_profile
from .idle import IdleReleaser, free_objects
from .pcm import WHISPER_SAMPLE_RATE, pcm16_to_float32, resample_linear

_LOGGER = logging.getLogger(__name__)

# Silence put before the speech, for Whisper's sake (see _run).
LEAD_IN_SECONDS = 0.3


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
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {sample_rate}")
        if len(pcm16) < 2:
            return Transcript(text="", language=language, duration=0.0)
        loop = asyncio.get_running_loop()
        with self._idle.in_use():
            await self._lock.acquire()
            try:
                model = await self._ensure_loaded()
            except BaseException:
                self._lock.release()
                raise
            stop = threading.Event()
            job = loop.run_in_executor(
                None, self._run, model, pcm16, sample_rate, language, stop
            )
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

        Once ``stop`` is set, decoding ends after the current 30-second window
        (the caller has gone; what was heard so far is returned to nobody).
        """
        import numpy as np

        speech = resample_linear(
            pcm16_to_float32(pcm16), sample_rate, WHISPER_SAMPLE_RATE
        )
        # Whisper tends to drop a first word that starts at the very first
        # sample (seen here: "Turn on the lights" heard as "On the lights");
        # audio cut tight by a satellite's VAD or a TTS round trip does that.
        padding = np.zeros(int(LEAD_IN_SECONDS * WHISPER_SAMPLE_RATE), np.float32)
        samples = np.concatenate([padding, speech])
        beam_size = self._beam_size
        if beam_size is None:
            beam_size = self._profile.whisper_beam_size if self._profile else 1
        segments, info = model.transcribe(
            samples,
            beam_size=beam_size,
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
        return Transcript(
            text=text,
            language=info.language,
            duration=speech.size / WHISPER_SAMPLE_RATE,
        )
