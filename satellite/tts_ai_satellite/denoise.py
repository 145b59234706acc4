"""Noise suppression for what the wake-word model hears (numpy only).

A kitchen's fan, fridge and clatter hide the wake word from the model: at
10 dB SNR it missed one noisy phrase in five. Speex's preprocessor in front of
it (denoise on, nothing else) cut that to one in twenty on the development
phrases (``scripts/bench``, figure 10), but its Python binding
(``pyspeex-noise``) has no aarch64 wheel, so a Pi would have to compile it.
This is the same algorithm written with numpy, which the satellite already
needs: its output matches ``pyspeex-noise`` 1.0.2 to a correlation of
0.99999 on the benchmark's noisy phrases, at about 1 % of one core here.

The algorithm is Jean-Marc Valin's in speexdsp's ``preprocess.c`` (BSD
licence): 10 ms frames with 50 % overlap; the noise spectrum tracked in the
bins where the smoothed power stays near its recent minimum (Cohen and
Berdugo); the Ephraim-Malah log-spectral amplitude gain, computed also on 24
Bark bands, with a speech-presence probability per band and per frame; and a
gain floor ``suppress_db`` below the noise. Echo cancellation, automatic gain
and dereverberation are left out (the satellite uses none).

Only the model hears the cleaned audio; the command sent to Home Assistant
is the microphone's own.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

SAMPLE_RATE = 16000
FRAME = 160
"""Samples per step (10 ms); each FFT spans two steps."""
BANDS = 24
"""Bark bands on which the speech-presence probability is judged."""
_FFT = 2 * FRAME
# The log-spectral amplitude gain's confluent hypergeometric term, tabulated
# at half steps of theta (speexdsp's table).
_HYPERGEOM = np.array(
    [
        *(0.82157, 1.02017, 1.20461, 1.37534, 1.53363, 1.68092, 1.81865),
        *(1.94811, 2.07038, 2.18638, 2.29688, 2.40255, 2.50391, 2.60144),
        *(2.69551, 2.78647, 2.87458, 2.96015, 3.04333, 3.12431, 3.20326),
    ]
)


def _bark(hertz: FloatArray | float) -> FloatArray:
    return np.asarray(
        13.1 * np.arctan(0.00074 * np.asarray(hertz))
        + 2.24 * np.arctan(np.square(hertz) * 1.85e-8)
        + 1e-4 * np.asarray(hertz)
    )


def _bark_bank() -> FloatArray:
    """Triangular Bark-band weights, bands x bins: bands = W @ bins."""
    bark = _bark(np.arange(FRAME) * SAMPLE_RATE / _FFT)
    interval = float(_bark(SAMPLE_RATE / 2)) / (BANDS - 1)
    left = np.floor(bark / interval).astype(int)
    right_weight = bark / interval - left
    top = left > BANDS - 2
    left[top] = BANDS - 2
    right_weight[top] = 1.0
    bins = np.arange(FRAME)
    weights = np.zeros((BANDS, FRAME))
    weights[left, bins] += 1.0 - right_weight
    weights[left + 1, bins] += right_weight
    return weights


def _power_complementary_window() -> FloatArray:
    """Analysis = synthesis window whose squares overlap-add to one."""
    x = 4.0 * np.arange(_FFT) / _FFT
    inverted = (x >= 1) & (x < 3)
    x = np.select([x < 1, x < 2, x < 3], [x, 2 - x, x - 2], 4 - x)
    rise = np.square(0.5 - 0.5 * np.cos(0.5 * np.pi * 1.271903 * x))
    return np.asarray(np.sqrt(np.where(inverted, 1.0 - rise, rise)))


_HYPERGEOM_STEPS = np.arange(len(_HYPERGEOM), dtype=np.float64)
_NEIGHBOURS = np.array([0.05, 0.1, 0.05])
_PRIOR_NEIGHBOURS = np.array([0.075, 0.15, 0.075])


def _hypergeom_gain(theta: FloatArray) -> FloatArray:
    """The table, interpolated at half steps, over sqrt(theta); theta >= 0."""
    inside = np.interp(2.0 * theta, _HYPERGEOM_STEPS, _HYPERGEOM) / np.sqrt(
        theta + 0.0001
    )
    beyond = 1.0 + 0.1296 / np.maximum(theta, 1e-9)
    return np.asarray(np.where(theta < 10.0, inside, beyond))


def _presence_curve(snr: FloatArray) -> FloatArray:
    """1 / (1 + 0.15 / snr), written so that snr = 0 needs no division by 0."""
    return np.asarray(snr / (snr + 0.15))


class NoiseSuppressor:
    """Streaming speex-style denoiser for 16 kHz mono 16-bit audio.

    Feed it any number of samples; it returns the cleaned samples of every
    whole 10 ms step so far, 10 ms late (the overlap).
    """

    _WEIGHTS = _bark_bank()
    _SPREAD = np.ascontiguousarray(_WEIGHTS.T)
    _WINDOW = _power_complementary_window()

    def __init__(self, suppress_db: float) -> None:
        """Attenuate noise by up to ``suppress_db`` (negative, e.g. -60)."""
        if suppress_db >= 0:
            raise ValueError(f"suppress_db must be below 0 dB, not {suppress_db}")
        self.suppress_db = suppress_db
        self._noise_floor = 10.0 ** (suppress_db / 10)
        self.reset()

    def reset(self) -> None:
        """Forget the noise learnt and the audio in flight."""
        size = FRAME + BANDS
        self._carry = np.zeros(0)
        self._previous = np.zeros(FRAME)
        self._overlap = np.zeros(FRAME)
        self._noise = np.ones(size)
        self._old_power = np.ones(size)
        self._zeta = np.zeros(size)
        self._smoothed = np.zeros(FRAME)
        self._minimum = np.zeros(FRAME)
        self._running_minimum = np.zeros(FRAME)
        self._frames = 0
        self._since_minimum = 0

    def process(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Clean ``samples``; the result has a whole number of 10 ms steps."""
        audio = np.concatenate([self._carry, samples.astype(np.float64)])
        steps = len(audio) // FRAME
        self._carry = audio[steps * FRAME :]
        if steps == 0:
            return np.zeros(0, dtype=np.int16)
        # The spectra do not depend on the state: all steps' in one call.
        history = np.concatenate([self._previous, audio[: steps * FRAME]])
        self._previous = history[-FRAME:]
        # Each FFT spans a step and the one before it.
        frames = np.concatenate(
            [
                history[:-FRAME].reshape(steps, FRAME),
                history[FRAME:].reshape(steps, FRAME),
            ],
            axis=1,
        )
        spectra = np.fft.rfft(frames * self._WINDOW, axis=1)
        bins = (
            np.square(spectra.real[:, :FRAME]) + np.square(spectra.imag[:, :FRAME])
        ) / (_FFT * _FFT)
        bands = bins @ self._SPREAD
        for step in range(steps):
            gain = self._gain(bins[step], bands[step])
            spectra[step, :FRAME] *= gain
            spectra[step, FRAME] *= gain[-1]
        frames = np.fft.irfft(spectra, _FFT, axis=1) * self._WINDOW
        # Overlap-add: each step's first half plus the step before's second.
        tails = np.concatenate([self._overlap[np.newaxis], frames[:-1, FRAME:]])
        cleaned: FloatArray = (frames[:, :FRAME] + tails).reshape(-1)
        self._overlap = frames[-1, FRAME:].copy()
        return np.clip(np.round(cleaned), -32768, 32767).astype(np.int16)

    def _gain(self, bins: FloatArray, bands: FloatArray) -> FloatArray:
        """One 10 ms step's gain per bin (speexdsp's ``speex_preprocess_run``).

        ``bins``: the step's power spectrum; ``bands``: the same on the Bark
        bands. Updates the noise estimate and the SNR history. (Written for
        few numpy calls: on a Pi listening all the time they, not the
        arithmetic, are most of the cost.)
        """
        n = FRAME
        self._frames = min(self._frames + 1, 20000)
        self._since_minimum += 1
        first = self._frames == 1
        beta = max(0.03, 1.0 / self._frames)
        power = np.concatenate([bins, bands])

        # Where may the noise estimate learn: bins whose smoothed power is
        # within 2.5x of its minimum over the last 0.15-3 s (Cohen's minima).
        # Smoothed over time (0.8) and over neighbouring bins (0.05, 0.1,
        # 0.05; the two end bins 0.2 of their own).
        spread = np.convolve(bins, _NEIGHBOURS, "same")
        spread[0] = 0.2 * bins[0]
        spread[-1] = 0.2 * bins[-1]
        smoothed = self._smoothed
        smoothed *= 0.8
        smoothed += spread
        if first:
            self._minimum[:] = 0.0
            self._running_minimum[:] = 0.0
        span = (
            15
            if self._frames < 100
            else 50
            if self._frames < 1000
            else 150
            if self._frames < 10000
            else 300
        )
        if self._since_minimum > span:
            self._since_minimum = 0
            self._minimum = np.minimum(self._running_minimum, smoothed)
            self._running_minimum = smoothed.copy()
        else:
            np.minimum(self._minimum, smoothed, out=self._minimum)
            np.minimum(self._running_minimum, smoothed, out=self._running_minimum)
        noise = self._noise[:n]
        learn = (0.4 * smoothed <= self._minimum) | (bins < noise)
        # (Both terms are powers, never negative: no clamp at 0 needed.)
        np.copyto(noise, (1 - beta) * noise + beta * bins, where=learn)
        self._noise[n:] = self._WEIGHTS @ noise
        if first:
            self._old_power = power.copy()

        # A posteriori and (decision-directed) a priori SNR, bins and bands.
        total_noise = 1.0 + self._noise
        posterior = np.minimum(power / total_noise - 1.0, 100.0)
        old = self._old_power
        gamma = 0.1 + 0.89 * np.square(old / (old + total_noise))
        prior = np.minimum(
            gamma * np.maximum(0.0, posterior) + (1 - gamma) * old / total_noise, 100.0
        )
        # Smoothed over time (0.7) and, in the bins, over neighbours (0.15,
        # 0.075 each side; the end bins and the bands 0.3 of their own).
        update = 0.3 * prior
        update[1 : n - 1] = np.convolve(prior[:n], _PRIOR_NEIGHBOURS, "valid")
        zeta = self._zeta
        zeta *= 0.7
        zeta += update
        mean_zeta = float(np.sum(zeta[n:])) / BANDS
        frame_presence = 0.1 + 0.899 * mean_zeta / (mean_zeta + 0.15)

        # The log-spectral amplitude gain, bins and bands in one go.
        ratio = prior / (prior + 1.0)
        theta_all = ratio * (1.0 + posterior)
        lsa_gain = np.minimum(1.0, ratio * _hypergeom_gain(theta_all))

        # Per band: the gain, its floor and the speech-presence probability.
        # (No echo: the floor is the noise's own, suppress_db down.)
        band_noise = self._noise[n:]
        band_floor = np.sqrt(self._noise_floor * band_noise / (1.0 + band_noise))
        theta = theta_all[n:]
        absent = 1.0 - frame_presence * (0.199 + 0.8 * _presence_curve(zeta[n:]))
        # (absent < 1: the frame's and the band's presence are both above 0.)
        band_presence = 1.0 / (
            1.0 + absent / (1.0 - absent) * (1.0 + prior[n:]) * np.exp(-theta)
        )
        presence, coarse_gain, floor = (
            self._SPREAD @ np.stack([band_presence, lsa_gain[n:], band_floor], axis=1)
        ).T

        # Per bin: the gain, kept within 3x of its band's, and floored.
        gain = lsa_gain[:n]
        np.copyto(gain, 3.0 * coarse_gain, where=0.333 * gain > coarse_gain)
        # The next step's a priori SNR remembers this one's cleaned power,
        # bins and bands.
        old *= 0.2
        old += 0.8 * np.square(lsa_gain) * power
        gain = np.maximum(gain, floor)
        root_floor = np.sqrt(floor)
        gain = np.square(presence * (np.sqrt(gain) - root_floor) + root_floor)

        return np.asarray(gain)
