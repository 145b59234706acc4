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
_ENDS = [0, -1]


def _hypergeom_gain(theta: FloatArray) -> FloatArray:
    """The table, interpolated at half steps, over sqrt(theta); theta >= 0."""
    gain: FloatArray = np.interp(2.0 * theta, _HYPERGEOM_STEPS, _HYPERGEOM)
    gain /= np.sqrt(theta + 0.0001)
    beyond = theta >= 10.0
    if beyond.any():  # (rare in a room's noise: skipped, two numpy calls fewer)
        gain[beyond] = 1.0 + 0.1296 / theta[beyond]
    return gain


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
        self._per_band = np.zeros((BANDS, 3))
        self._frames = 0
        self._since_minimum = 0

    def process(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Clean ``samples``; the result has a whole number of 10 ms steps."""
        audio = np.concatenate([self._carry, samples], dtype=np.float64)
        steps = len(audio) // FRAME
        self._carry = audio[steps * FRAME :]
        if steps == 0:
            return np.zeros(0, dtype=np.int16)
        # Everything that does not depend on the state is done for all the
        # steps in one call each; only the recursion runs step by step.
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
        # The power per bin, then per Bark band, side by side.
        power = np.empty((steps, FRAME + BANDS))
        bins = power[:, :FRAME]
        np.square(spectra.real[:, :FRAME], out=bins)
        bins += np.square(spectra.imag[:, :FRAME])
        bins /= _FFT * _FFT
        np.matmul(bins, self._SPREAD, out=power[:, FRAME:])
        # The power smoothed over neighbouring bins (0.05, 0.1, 0.05; the two
        # end bins 0.2 of their own), for the noise's minima.
        spread = np.empty_like(bins)
        sides = 0.05 * bins
        spread[:, 1:-1] = sides[:, :-2] + 0.1 * bins[:, 1:-1] + sides[:, 2:]
        spread[:, _ENDS] = 0.2 * bins[:, _ENDS]
        gains = np.empty((steps, FRAME + 1))
        for number in range(steps):
            self._gain(power[number], spread[number], gains[number, :FRAME])
        gains[:, FRAME] = gains[:, FRAME - 1]
        spectra *= gains
        frames = np.fft.irfft(spectra, _FFT, axis=1) * self._WINDOW
        # Overlap-add: each step's first half plus the step before's second.
        tails = np.concatenate([self._overlap[np.newaxis], frames[:-1, FRAME:]])
        cleaned: FloatArray = (frames[:, :FRAME] + tails).reshape(-1)
        self._overlap = frames[-1, FRAME:].copy()
        return np.clip(np.round(cleaned), -32768, 32767).astype(np.int16)

    def _gain(self, power: FloatArray, spread: FloatArray, gain: FloatArray) -> None:
        """One 10 ms step's gain per bin, into ``gain`` (``speex_preprocess_run``).

        ``power``: the step's power spectrum, bins then Bark bands;
        ``spread``: the bins' smoothed over their neighbours. Updates the
        noise estimate and the SNR history. (Written for few numpy calls: on
        a Pi listening all the time they, not the arithmetic, are most of
        the cost.)
        """
        n = FRAME
        self._frames = min(self._frames + 1, 20000)
        self._since_minimum += 1
        first = self._frames == 1
        beta = max(0.03, 1.0 / self._frames)
        bins = power[:n]

        # Where may the noise estimate learn: bins whose smoothed power is
        # within 2.5x of its minimum over the last 0.15-3 s (Cohen's minima).
        # Smoothed over time (0.8) and over neighbouring bins (``spread``).
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
        learn = 0.4 * smoothed <= self._minimum
        learn |= bins < noise
        # (Both terms are powers, never negative: no clamp at 0 needed.)
        np.copyto(noise, (1 - beta) * noise + beta * bins, where=learn)
        np.matmul(self._WEIGHTS, noise, out=self._noise[n:])
        if first:
            self._old_power = power.copy()

        # A posteriori and (decision-directed) a priori SNR, bins and bands.
        total_noise = 1.0 + self._noise
        posterior = power / total_noise
        posterior -= 1.0
        np.minimum(posterior, 100.0, out=posterior)
        old = self._old_power
        gamma = old + total_noise
        np.divide(old, gamma, out=gamma)
        np.square(gamma, out=gamma)
        gamma *= 0.89
        gamma += 0.1
        prior = np.maximum(0.0, posterior)
        prior *= gamma
        kept = 1 - gamma
        kept *= old
        kept /= total_noise
        prior += kept
        np.minimum(prior, 100.0, out=prior)
        # Smoothed over time (0.7) and, in the bins, over neighbours (0.15,
        # 0.075 each side; the end bins and the bands 0.3 of their own).
        zeta = self._zeta
        zeta *= 0.7
        sides = 0.075 * prior[:n]
        update = 0.3 * prior
        update[1 : n - 1] = sides[:-2] + 0.15 * prior[1 : n - 1] + sides[2:]
        zeta += update
        mean_zeta = float(zeta[n:].sum()) / BANDS
        frame_presence = 0.1 + 0.899 * mean_zeta / (mean_zeta + 0.15)

        # The log-spectral amplitude gain, bins and bands in one go.
        ratio = prior + 1.0
        np.divide(prior, ratio, out=ratio)
        theta_all = 1.0 + posterior
        theta_all *= ratio
        lsa_gain = _hypergeom_gain(theta_all)
        lsa_gain *= ratio
        np.minimum(lsa_gain, 1.0, out=lsa_gain)

        # Per band: the gain, its floor and the speech-presence probability,
        # side by side (one matrix product spreads all three over the bins).
        # (No echo: the floor is the noise's own, suppress_db down.)
        per_band = self._per_band
        band_noise = self._noise[n:]
        band_floor = per_band[:, 2]
        np.divide(self._noise_floor * band_noise, 1.0 + band_noise, out=band_floor)
        np.sqrt(band_floor, out=band_floor)
        per_band[:, 1] = lsa_gain[n:]
        theta = theta_all[n:]
        absent = _presence_curve(zeta[n:])
        absent *= 0.8
        absent += 0.199
        absent *= -frame_presence
        absent += 1.0
        # (absent < 1: the frame's and the band's presence are both above 0.)
        odds = absent / (1.0 - absent)
        odds *= 1.0 + prior[n:]
        odds *= np.exp(-theta)
        odds += 1.0
        np.divide(1.0, odds, out=per_band[:, 0])
        spread_over_bins = self._SPREAD @ per_band
        presence = spread_over_bins[:, 0]
        coarse_gain = spread_over_bins[:, 1]
        floor = spread_over_bins[:, 2]

        # Per bin: the gain, kept within 3x of its band's, and floored.
        bin_gain = lsa_gain[:n]
        np.copyto(bin_gain, 3.0 * coarse_gain, where=0.333 * bin_gain > coarse_gain)
        # The next step's a priori SNR remembers this one's cleaned power,
        # bins and bands.
        old *= 0.2
        cleaned_power = np.square(lsa_gain)
        cleaned_power *= 0.8
        cleaned_power *= power
        old += cleaned_power
        np.maximum(bin_gain, floor, out=gain)
        root_floor = np.sqrt(floor)
        np.sqrt(gain, out=gain)
        gain -= root_floor
        gain *= presence
        gain += root_floor
        np.square(gain, out=gain)
