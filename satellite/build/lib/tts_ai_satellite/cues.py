"""Short audible cues, generated: nothing to download, any sample rate.

Each cue is a few sine tones with soft edges (a hard start or stop clicks).
Rising means "I'm listening", falling means "done", two low buzzes mean
something went wrong.
"""

from __future__ import annotations

import enum

import numpy as np

from .wav import Pcm, float_to_int16

_LEVEL = 0.3  # about -10 dBFS: audible, not startling
_FADE_SECONDS = 0.008
_GAP_SECONDS = 0.03


class Cue(enum.Enum):
    """What a cue tells the user; the value is its (frequency Hz, seconds) notes."""

    LISTENING = ((660.0, 0.09), (880.0, 0.12))
    DONE = ((880.0, 0.09), (660.0, 0.12))
    ERROR = ((330.0, 0.15), (330.0, 0.15))


def cue_audio(cue: Cue, sample_rate: int) -> Pcm:
    """The cue as mono 16-bit audio at ``sample_rate`` Hz."""
    gap = np.zeros(round(_GAP_SECONDS * sample_rate))
    parts: list[np.ndarray] = []
    for frequency, seconds in cue.value:
        if parts:
            parts.append(gap)
        parts.append(_tone(frequency, seconds, sample_rate))
    return Pcm(float_to_int16(np.concatenate(parts)), sample_rate)


def _tone(frequency: float, seconds: float, sample_rate: int) -> np.ndarray:
    times = np.arange(round(seconds * sample_rate)) / sample_rate
    tone = _LEVEL * np.sin(2 * np.pi * frequency * times)
    fade = min(len(tone) // 2, round(_FADE_SECONDS * sample_rate))
    ramp = np.linspace(0.0, 1.0, fade)
    tone[:fade] *= ramp
    tone[len(tone) - fade :] *= ramp[::-1]
    return tone
