"""A cheap, deterministic key and tempo estimate for ``POST audio/analyze/``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .engines import WHISPER_SAMPLE_RATE

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# Krumhansl-Schmuckler key profiles (C major / C minor).
_MAJOR_PROFILE = np.array(
    [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]
)
_MINOR_PROFILE = np.array(
    [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]
)

# Camelot wheel numbers per pitch class: major keys are "B", minor keys "A".
_CAMELOT_MAJOR = {"B": 1, "F#": 2, "C#": 3, "G#": 4, "D#": 5, "A#": 6, "F": 7,
                  "C": 8, "G": 9, "D": 10, "A": 11, "E": 12}  # fmt: skip
_CAMELOT_MINOR = {"G#": 1, "D#": 2, "A#": 3, "F": 4, "C": 5, "G": 6, "D": 7,
                  "A": 8, "E": 9, "B": 10, "F#": 11, "C#": 12}  # fmt: skip

_MIN_BPM, _MAX_BPM = 60.0, 180.0
_HOP = 256  # samples per onset frame at 16 kHz: 62.5 frames per second


def camelot(key: str, scale: str) -> str:
    """Camelot code of a key, e.g. C Major -> ``8B``."""
    if scale == "Major":
        return f"{_CAMELOT_MAJOR[key]}B"
    return f"{_CAMELOT_MINOR[key]}A"


def _key_at(number: int, letter: str) -> str:
    number = (number - 1) % 12 + 1
    table, scale = (
        (_CAMELOT_MAJOR, "Major") if letter == "B" else (_CAMELOT_MINOR, "Minor")
    )
    key = next(name for name, value in table.items() if value == number)
    return f"{key} {scale}"


def compatible_keys(key: str, scale: str) -> list[str]:
    """The key itself, its Camelot neighbours (+1, -1) and its relative key."""
    code = camelot(key, scale)
    number, letter = int(code[:-1]), code[-1]
    other = "A" if letter == "B" else "B"
    return [
        f"{key} {scale}",
        _key_at(number + 1, letter),
        _key_at(number - 1, letter),
        _key_at(number, other),
    ]


def estimate_key(samples: np.ndarray) -> tuple[str, str]:
    """Best-matching key and scale from the spectrum's pitch-class profile."""
    spectrum = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(len(samples), 1 / WHISPER_SAMPLE_RATE)
    audible = (freqs >= 55) & (freqs <= 4000)
    midi = 69 + 12 * np.log2(freqs[audible] / 440.0)
    pitch_class = np.round(midi).astype(int) % 12
    chroma = np.bincount(pitch_class, weights=spectrum[audible] ** 2, minlength=12)
    best: tuple[float, str, str] = (-np.inf, "C", "Major")
    for tonic in range(12):
        for profile, scale in ((_MAJOR_PROFILE, "Major"), (_MINOR_PROFILE, "Minor")):
            score = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            if np.isfinite(score) and score > best[0]:
                best = (score, PITCH_CLASSES[tonic], scale)
    return best[1], best[2]


def estimate_bpm(samples: np.ndarray) -> float:
    """Tempo from the autocorrelation of the onset (energy rise) envelope."""
    frames = len(samples) // _HOP
    frame_rate = WHISPER_SAMPLE_RATE / _HOP
    if frames < 8:
        return 120.0
    energy = np.square(samples[: frames * _HOP].reshape(frames, _HOP)).sum(axis=1)
    onset = np.maximum(np.diff(np.log1p(1000 * energy)), 0)
    onset -= onset.mean()
    correlation = np.correlate(onset, onset, mode="full")[len(onset) - 1 :]
    low_lag = int(frame_rate * 60 / _MAX_BPM)
    high_lag = min(int(frame_rate * 60 / _MIN_BPM) + 1, len(correlation) - 2)
    if high_lag <= low_lag:
        return 120.0
    lag = low_lag + int(np.argmax(correlation[low_lag:high_lag]))
    # Parabolic interpolation refines the peak between whole frames.
    left, centre, right = correlation[lag - 1 : lag + 2]
    denominator = left - 2 * centre + right
    offset = 0.5 * (left - right) / denominator if denominator else 0.0
    return round(float(60 * frame_rate / (lag + offset)), 1)


def analyze(samples: np.ndarray) -> dict[str, Any]:
    """The ``audio/analyze/`` answer for 16 kHz mono float32 samples (blocking)."""
    key, scale = estimate_key(samples)
    return {
        "key": key,
        "scale": scale,
        "bpm": estimate_bpm(samples),
        "time_signature": "4/4",
        "camelot": camelot(key, scale),
        "compatible_keys": compatible_keys(key, scale),
    }
