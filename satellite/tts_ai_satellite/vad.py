"""Energy-based end of speech: the fallback when Home Assistant does not say.

Home Assistant's own voice-activity detection normally ends the recording
(``stt-vad-end``). This detector is the satellite's safety net, for an STT
engine or a noisy room where that never comes: it learns the room's noise
floor from the quietest frames, calls frames well above it speech, and ends
the turn after enough quiet following speech, or when there was no speech at
all, or at a hard limit.
"""

from __future__ import annotations

from dataclasses import dataclass
import enum
import math

import numpy as np

_FULL_SCALE = 32768.0
_SILENCE_DBFS = -96.0  # what digital silence measures as (log of zero otherwise)


class EndReason(enum.StrEnum):
    """Why the detector ended the recording."""

    SILENCE = "silence after speech"
    NO_SPEECH = "no speech"
    MAX_LENGTH = "maximum length"


@dataclass(frozen=True)
class EndOfSpeechSettings:
    """How the detector decides; the defaults suit a command said to a Pi."""

    frame_seconds: float = 0.03
    speech_above_noise_db: float = 12.0
    """A frame this much louder than the noise floor is speech..."""
    min_speech_dbfs: float = -50.0
    """...and never quieter than this (a floor learned in dead silence)."""
    speech_start_seconds: float = 0.09
    """Speech begins after this much speech in a row (a click is not speech)."""
    silence_seconds: float = 0.8
    """Quiet after speech that ends it; longer than a pause between words."""
    no_speech_seconds: float = 8.0
    max_seconds: float = 20.0


class EndOfSpeechDetector:
    """Feed 16-bit mono audio as it comes; :attr:`ended` says when to stop."""

    def __init__(
        self, sample_rate: int, settings: EndOfSpeechSettings | None = None
    ) -> None:
        """Start listening to a stream at ``sample_rate`` Hz."""
        self.settings = settings or EndOfSpeechSettings()
        self._frame_length = max(1, round(sample_rate * self.settings.frame_seconds))
        self._frame_seconds = self._frame_length / sample_rate
        self._pending = np.zeros(0, dtype=np.int16)
        self._noise_floor_db: float | None = None
        self._speech_run = 0.0
        self._quiet_run = 0.0
        self.elapsed = 0.0
        """Seconds of audio examined so far."""
        self.speech_start: float | None = None
        """When speech began (seconds into the stream), once it has."""
        self.speech_end: float | None = None
        """End of the last speech frame (seconds into the stream)."""
        self.end_reason: EndReason | None = None

    @property
    def ended(self) -> bool:
        """Whether the recording should stop."""
        return self.end_reason is not None

    def feed(self, samples: np.ndarray) -> bool:
        """Examine the next samples; returns :attr:`ended`."""
        if self.ended:
            return True
        joined = np.concatenate([self._pending, samples.astype(np.int16, copy=False)])
        whole = len(joined) - len(joined) % self._frame_length
        for start in range(0, whole, self._frame_length):
            self._frame(joined[start : start + self._frame_length])
            if self.end_reason is not None:  # (mypy takes `ended` as still False)
                break
        self._pending = joined[whole:]
        return self.ended

    def _frame(self, frame: np.ndarray) -> None:
        level = frame_dbfs(frame)
        self.elapsed += self._frame_seconds
        settings = self.settings
        floor = self._noise_floor_db
        # The floor drops at once to a quieter frame and creeps up slowly, so
        # a long word does not become the new "silence".
        floor = level if floor is None else min(level, floor + 0.05)
        self._noise_floor_db = floor
        threshold = max(
            floor + settings.speech_above_noise_db, settings.min_speech_dbfs
        )
        if level >= threshold:
            self._speech_run += self._frame_seconds
            self._quiet_run = 0.0
            if self.speech_start is None and (
                self._speech_run >= settings.speech_start_seconds - 1e-9
            ):
                self.speech_start = self.elapsed - self._speech_run
            if self.speech_start is not None:
                self.speech_end = self.elapsed
        else:
            self._speech_run = 0.0
            self._quiet_run += self._frame_seconds
        if self.speech_start is not None:
            if self._quiet_run >= settings.silence_seconds - 1e-9:
                self.end_reason = EndReason.SILENCE
        elif self.elapsed >= settings.no_speech_seconds - 1e-9:
            self.end_reason = EndReason.NO_SPEECH
        if self.end_reason is None and self.elapsed >= settings.max_seconds - 1e-9:
            self.end_reason = EndReason.MAX_LENGTH


def frame_dbfs(frame: np.ndarray) -> float:
    """Loudness of a frame: its RMS in dB relative to full scale."""
    if len(frame) == 0:
        return _SILENCE_DBFS
    rms = math.sqrt(float(np.mean(np.square(frame.astype(np.float64)))))
    if rms <= 0:
        return _SILENCE_DBFS
    return max(_SILENCE_DBFS, 20 * math.log10(rms / _FULL_SCALE))
