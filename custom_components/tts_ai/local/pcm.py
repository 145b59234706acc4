"""Raw PCM audio: the chunk type the engines stream, and sample conversions.

numpy is imported inside the functions that need it (see the package
docstring); these run in an executor, next to the model inference.
"""

# The engines' packages are optional: import them lazily (see __init__.py).
# ruff: noqa: PLC0415

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Whisper models are trained on 16 kHz audio.
WHISPER_SAMPLE_RATE = 16000
_INT16_SCALE = 32768.0


@dataclass(frozen=True)
class PcmChunk:
    """A piece of synthesised speech: 16-bit signed little-endian mono PCM."""

    audio: bytes
    sample_rate: int
    text: str
    """The text this audio speaks."""

    @property
    def duration(self) -> float:
        """Playing time in seconds."""
        return len(self.audio) / 2 / self.sample_rate


def pcm16_to_float32(pcm16: bytes) -> np.ndarray:
    """Convert int16 mono PCM bytes to float32 samples in [-1, 1).

    A trailing odd byte (half a sample) is dropped.
    """
    import numpy as np

    usable = len(pcm16) - len(pcm16) % 2
    samples = np.frombuffer(pcm16[:usable], dtype="<i2")
    return samples.astype(np.float32) / _INT16_SCALE


def resample_linear(
    samples: np.ndarray, source_rate: int, target_rate: int
) -> np.ndarray:
    """Resample mono float samples by linear interpolation.

    Good enough for speech recognition, not for listening: there is no
    anti-alias filter, so when downsampling (say 22050 -> 16000 Hz) the band
    between the new and old Nyquist frequencies (8-11 kHz) folds into 5-8 kHz.
    Speech carries little energy up there and Whisper's mel filters weight
    that band lightly, so recognition is not hurt measurably; a proper
    polyphase filter would need scipy, which is not worth installing on a Pi.
    """
    import numpy as np

    if source_rate <= 0 or target_rate <= 0:
        raise ValueError("sample rates must be positive")
    if source_rate == target_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    target_length = round(samples.size * target_rate / source_rate)
    # Positions of the new samples, measured in old-sample indices.
    positions = np.arange(target_length, dtype=np.float64) * (source_rate / target_rate)
    indices = np.arange(samples.size, dtype=np.float64)
    resampled: np.ndarray = np.interp(positions, indices, samples)
    return resampled.astype(np.float32)
