"""Sample-rate conversion in NumPy: whole buffers and a live stream.

Microphones on a Pi often only open at 44.1 or 48 kHz while Assist takes
16 kHz, and a USB speaker may refuse the rate a reply comes in. Going down, a
windowed-sinc low-pass first removes what the lower rate cannot carry (else a
whistle at 10 kHz would come back as a 6 kHz one); linear interpolation then
reads the filtered signal at the new rate. That is plenty for speech and cheap
enough for a Pi Zero.
"""

from __future__ import annotations

import math

import numpy as np

FILTER_TAPS = 101
"""Odd, so the filter has a whole-sample delay of ``(FILTER_TAPS - 1) / 2``."""
_PASSBAND = 0.9
"""Keep up to 90 % of the new Nyquist frequency; the rest is transition."""


def lowpass_taps(from_rate: int, to_rate: int) -> np.ndarray | None:
    """The anti-alias filter for going from one rate to another (None: not needed)."""
    if to_rate >= from_rate:
        return None
    cutoff = _PASSBAND * to_rate / from_rate  # relative to the input's Nyquist
    offsets = np.arange(FILTER_TAPS) - (FILTER_TAPS - 1) / 2
    taps: np.ndarray = cutoff * np.sinc(cutoff * offsets) * np.blackman(FILTER_TAPS)
    unity: np.ndarray = taps / taps.sum()  # unity gain at 0 Hz
    return unity


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Convert a whole buffer of 16-bit samples to another rate."""
    if from_rate == to_rate or len(samples) == 0:
        return samples.astype(np.int16, copy=False)
    signal = samples.astype(np.float64)
    if (taps := lowpass_taps(from_rate, to_rate)) is not None:
        signal = np.convolve(signal, taps, mode="same")  # centred: no delay
    count = math.floor(len(samples) * to_rate / from_rate)
    positions = np.arange(count) * (from_rate / to_rate)
    return _to_int16(np.interp(positions, np.arange(len(signal)), signal))


class StreamResampler:
    """Converts audio that arrives in chunks, with no seams between them.

    The filter's memory and the position of the next output sample carry over
    from one chunk to the next, so chunked output equals the output for the
    whole signal (delayed by the filter's ``(FILTER_TAPS - 1) / 2`` input
    samples, under 2 ms at 48 kHz).
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        """Prepare a converter from ``from_rate`` to ``to_rate`` Hz."""
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._step = from_rate / to_rate  # input samples per output sample
        self._taps = lowpass_taps(from_rate, to_rate)
        history = 0 if self._taps is None else FILTER_TAPS - 1
        self._history = np.zeros(history)
        self._consumed = 0  # input samples filtered so far
        self._last = 0.0  # the last filtered sample (index self._consumed - 1)
        self._next_output = 0.0  # input position of the next output sample

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Convert the next chunk; returns the output samples it completes."""
        if self.from_rate == self.to_rate:
            return samples.astype(np.int16, copy=False)
        if len(samples) == 0:
            return np.zeros(0, dtype=np.int16)
        signal = samples.astype(np.float64)
        if self._taps is not None:
            joined = np.concatenate([self._history, signal])
            self._history = joined[len(joined) - len(self._history) :]
            signal = np.convolve(joined, self._taps, mode="valid")
        # Interpolate between the previous chunk's last sample and this chunk.
        first_index = self._consumed - 1
        last_index = self._consumed + len(signal) - 1
        count = max(0, math.floor((last_index - self._next_output) / self._step) + 1)
        positions = self._next_output + self._step * np.arange(count)
        known = np.concatenate([[self._last], signal])
        output = np.interp(positions - first_index, np.arange(len(known)), known)
        self._next_output += self._step * count
        self._consumed += len(signal)
        self._last = float(signal[-1])
        return _to_int16(output)


def _to_int16(signal: np.ndarray) -> np.ndarray:
    """Round filtered values back to 16-bit samples (a filter can overshoot)."""
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)
