"""On-device wake word: microWakeWord models, heard on the Pi itself.

The satellite listens all the time, but nothing leaves the Pi until the wake
word fires: the microphone's audio goes only through :class:`WakeWordListener`
(a microWakeWord model from ``pymicro-wakeword``, TensorFlow Lite, a few
percent of one core). When it fires, the audio right after the word, plus a
short pre-roll, becomes the command for Home Assistant's pipeline (from the
speech-to-text stage).

``pymicro_wakeword`` is imported only when a wake word is asked for, so the
satellite without the ``wake`` extra (file mode, push-to-talk) runs without it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import logging
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .denoise import NoiseSuppressor

_LOGGER = logging.getLogger(__name__)

WAKE_WORDS: dict[str, str] = {
    "okay_nabu": "Okay Nabu",
    "hey_jarvis": "Hey Jarvis",
    "hey_mycroft": "Hey Mycroft",
    "alexa": "Alexa",
}
"""The models ``pymicro-wakeword`` 2.5 ships, and the phrase each listens for."""
DEFAULT_WAKE_WORD = "okay_nabu"

SAMPLE_RATE = 16000
_BYTES_PER_SAMPLE = 2


class WakeWordUnavailableError(Exception):
    """The wake-word package is missing, or the model name is unknown."""


@dataclass(frozen=True)
class WakeSettings:
    """How the listener behaves around a detection."""

    pre_roll_seconds: float = 0.15
    """Audio from before the detection that goes with the command.

    The model fires at the end of the word, or a little into what follows
    when it is said in one breath ("okay nabu turn on..." fired inside
    "turn"). Measured with Piper's joe voice and Whisper: 0.15 s keeps the
    command's first word whole; 0.3 s already brings back the end of "Nabu",
    which Whisper then hears as a word ("turbo. Turn on ...").
    """
    clip_seconds: float = 1.6
    """Audio from before the detection kept for a second opinion
    (:mod:`.verify`): "Okay Nabu" said slowly (Piper's joe at 0.85 of his
    speed), the model firing at its end."""
    refractory_seconds: float = 1.0
    """After a detection and after every turn (its reply included), this much
    audio is not listened to: no double trigger on one utterance, and the
    tail of the reply still in the room (speaker buffers, echo) cannot wake
    the satellite."""
    block_seconds: float = 0.12
    """The model hears the microphone this much at a time.

    Listening costs less in longer blocks: numpy's and TensorFlow Lite's many
    small calls are cheap in a run and dear when the process wakes for each.
    The satellite's CPU while listening, in figure 10c's setting
    (``scripts/bench``), three interleaved rounds: 4.2-4.8 % of one core in
    30 ms blocks, 3.6-3.8 % in 60 ms, 3.1-4.4 % in 90 ms, 3.0 % in 120 ms.
    The word is then noticed up to 90 ms later than in 30 ms blocks, and only
    the listening cue waits for that: the command is not cut (the pre-roll
    reaches back from where the word fired) and what was kept is sent at once.
    """


class WakeWordModel(Protocol):
    """A streaming detector: feed 16 kHz mono 16-bit audio, learn when it fires."""

    phrase: str

    def process(self, audio: bytes) -> int | None:
        """Take the next audio; None unless the wake word was heard in it.

        When it was: how many bytes of ``audio`` came after that moment.
        """
        ...

    def reset(self) -> None:
        """Forget everything heard so far."""


# What the model hears is raised by DEFAULT_WAKE_GAIN_DB into a soft limiter
# (soft_limit), then cleaned (:mod:`.denoise`, speex's algorithm) with noise
# held down to DEFAULT_NOISE_SUPPRESSION_DB below itself, and the model fires
# at DEFAULT_WAKE_THRESHOLD instead of its own 0.85.
#
# Why the gain: the model hears loud speech best. Piper's joe 40 dB quieter
# than it speaks (a microphone set low) peaked at 0.19 without it and 0.94
# with it; an espeak-ng voice 34 dB quieter, 0.17 and 0.70. Where the
# microphone is already loud the limiter squeezes the peaks instead (tanh: no
# hard clipping), and that helped the model in noise too (below).
#
# All three were read off development data only (`python -m
# scripts.benchmarks.wake --tune`: other commands than the held-out ones,
# another noise seed, five streams of 30 minutes of other speech without the
# wake word, three of them with people saying "Okay, ..."). The rule: no more
# false wake-ups there than the setting this replaces, then the fewest misses.
# In one run (misses of 224 / false wake-ups): no gain, -60 dB at 0.6 (the
# previous default) 13/7; +15.6 dB, -60 dB at 0.55 6/7; +12 dB at 0.6 10/8;
# +21 dB at 0.55 10/6. The held-out figures are scripts/benchmarks/README.md's
# figure 10.
DEFAULT_WAKE_GAIN_DB = 15.6
DEFAULT_NOISE_SUPPRESSION_DB = -60.0
DEFAULT_WAKE_THRESHOLD = 0.55
_FULL_SCALE = 32767.0


def soft_limit(samples: npt.NDArray[np.int16], gain: float) -> npt.NDArray[np.int16]:
    """``samples`` times ``gain`` (linear), squeezed below full scale by tanh."""
    raised: npt.NDArray[np.float64] = _FULL_SCALE * np.tanh(
        samples * (gain / _FULL_SCALE)
    )
    return np.round(raised).astype(np.int16)


class MicroWakeWordModel:
    """One of ``pymicro-wakeword``'s built-in models (see :data:`WAKE_WORDS`)."""

    def __init__(
        self,
        name: str,
        threshold: float | None = None,
        noise_suppression_db: float | None = DEFAULT_NOISE_SUPPRESSION_DB,
        gain_db: float | None = DEFAULT_WAKE_GAIN_DB,
    ) -> None:
        """Load the model called ``name`` (blocking: a few ms).

        ``threshold``: the probability above which it fires; None keeps the
        model's own (0.85 for okay_nabu). Lower hears more in noise and risks
        more false wake-ups (``scripts/bench`` measures both).
        ``noise_suppression_db``: how far below itself the room's noise is
        pushed before the model hears it (negative dB); None: not at all.
        ``gain_db``: how much the microphone is raised (into a soft limiter)
        before that (positive dB); None: not at all.
        """
        if gain_db is not None and gain_db <= 0:
            raise WakeWordUnavailableError(
                f"the gain must be above 0 dB, not {gain_db}"
            )
        if noise_suppression_db is not None and noise_suppression_db >= 0:
            raise WakeWordUnavailableError(
                f"the noise suppression must be below 0 dB, not {noise_suppression_db}"
            )
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise WakeWordUnavailableError(
                f"the threshold must be between 0 and 1, not {threshold}"
            )
        if name not in WAKE_WORDS:
            raise WakeWordUnavailableError(
                f"no wake word {name!r}; choose one of {', '.join(WAKE_WORDS)}"
            )
        try:
            import pymicro_wakeword  # noqa: PLC0415 - only wake-word mode needs it
        except ImportError as err:
            raise WakeWordUnavailableError(
                "the wake word needs pymicro-wakeword:"
                " `pip install 'tts-ai-satellite[wake]'`"
            ) from err
        self.name = name
        self.phrase = WAKE_WORDS[name]
        self._model: Any = pymicro_wakeword.MicroWakeWord.from_builtin(
            pymicro_wakeword.Model(name)
        )
        self._features: Any = pymicro_wakeword.MicroWakeWordFeatures()
        if threshold is not None:
            self._model.probability_cutoff = threshold
        self.threshold: float = self._model.probability_cutoff
        self.gain = None if gain_db is None else 10 ** (gain_db / 20)
        self.noise_suppressor = (
            None
            if noise_suppression_db is None
            else NoiseSuppressor(noise_suppression_db)
        )

    def process(self, audio: bytes) -> int | None:
        """Run the model over ``audio``; None unless the word fired in it.

        When it did: the bytes of ``audio`` after the feature window it fired
        in (one window per 10 ms).
        """
        audio = self.front_end(audio)
        windows = 0
        fired_after: int | None = None
        # Every feature window is consumed (the generator trims its buffer at
        # the end only), even after the word fired in an earlier one.
        for features in self._features.process_streaming(audio):
            windows += 1
            if self._model.process_streaming(features) and fired_after is None:
                fired_after = windows
        if fired_after is None:
            return None
        return (windows - fired_after) * _STEP_BYTES

    def front_end(self, audio: bytes) -> bytes:
        """What the model hears of the microphone's ``audio``: raised, cleaned."""
        if self.gain is None and self.noise_suppressor is None:
            return audio
        samples = np.frombuffer(audio, dtype="<i2")
        if self.gain is not None:
            samples = soft_limit(samples, self.gain)
        if self.noise_suppressor is not None:
            samples = self.noise_suppressor.process(samples)
        return samples.astype("<i2").tobytes()

    def reset(self) -> None:
        """Clear the model's state (it reloads its interpreter: about 1 ms).

        The noise suppressor keeps what it learnt of the room's noise: the
        room is the same after a turn, and relearning takes a second.
        """
        self._model.reset()
        self._features.reset()


class WakeWordListener:
    """Feeds the microphone's stream to a model, keeping the pre-roll.

    Time is counted in audio, not on the clock, so the same stream gives the
    same result on a busy Pi, in a test and in the benchmark.
    """

    def __init__(
        self,
        model: WakeWordModel,
        settings: WakeSettings | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        """Listen with ``model`` to a ``sample_rate`` stream."""
        self.model = model
        self.settings = settings or WakeSettings()
        self._bytes_per_second = sample_rate * _BYTES_PER_SAMPLE
        self._pre_roll_bytes = _even(
            self.settings.pre_roll_seconds * self._bytes_per_second
        )
        self._clip_bytes = _even(self.settings.clip_seconds * self._bytes_per_second)
        self._block_bytes = _even(self.settings.block_seconds * self._bytes_per_second)
        self._kept_bytes = (
            max(self._pre_roll_bytes, self._clip_bytes) + self._block_bytes
        )
        self._refractory_bytes = _even(
            self.settings.refractory_seconds * self._bytes_per_second
        )
        self._recent: deque[bytes] = deque()
        self._recent_bytes = 0
        self._unheard: list[bytes] = []
        self._unheard_bytes = 0
        self._after_bytes = 0
        self._deaf_bytes = 0
        self.detections = 0

    def feed(self, chunk: bytes) -> bool:
        """Take the next chunk; True when the wake word fires in it.

        (The model hears a :attr:`WakeSettings.block_seconds` block at a
        time: the word fires in the chunk that completes one.)
        """
        if self._deaf_bytes > 0:
            self._deaf_bytes -= len(chunk)
            if self._deaf_bytes <= 0:
                self.model.reset()  # start afresh: nothing of the deaf time
            return False
        self._remember(chunk)
        self._unheard.append(chunk)
        self._unheard_bytes += len(chunk)
        if self._unheard_bytes < self._block_bytes:
            return False
        block = b"".join(self._unheard)
        self._forget_unheard()
        after = self.model.process(block)
        if after is None:
            return False
        self._after_bytes = after
        self.detections += 1
        _LOGGER.info("Wake word %r heard", self.model.phrase)
        # The model stays above its threshold for a few chunks: one utterance,
        # one detection. (The pre-roll and clip are kept until :meth:`rearm`.)
        self._deaf_bytes = self._refractory_bytes
        return True

    def pre_roll(self) -> bytes:
        """:attr:`WakeSettings.pre_roll_seconds` before the word fired, and all since.

        It starts at the pause after the wake word when it holds one: the
        model may fire before the word has quite ended, and the word's last
        syllable sent with the command becomes words of its own in Home
        Assistant's speech-to-text (the end of "Nabu" heard as "I'm going to
        do it. Turn on the kitchen lights."), which no intent matches.
        """
        audio = self._last(self._pre_roll_bytes + self._after_bytes)
        # The pause is looked for up to a 30 ms chunk past where the word
        # fired (as when the model heard every chunk), no further into the
        # command: a quiet moment inside its first word is no pause.
        searched = len(audio) - max(0, self._after_bytes - _PAUSE_PAST_FIRING)
        return audio[_pause_start(audio[:searched]) :]

    def clip(self) -> bytes:
        """The :attr:`WakeSettings.clip_seconds` of audio up to the detection.

        With what came after it in the block: the wake word, whole.
        """
        return self._last(self._clip_bytes + self._after_bytes)

    def _last(self, count: int) -> bytes:
        """The last ``count`` bytes of audio heard (fewer if less was)."""
        audio = b"".join(self._recent)
        return audio[max(0, len(audio) - count) :]

    def rearm(self) -> None:
        """Listen again after the refractory period (after a detection or turn).

        What was heard before is dropped, so a new command's pre-roll is never
        an old one's.
        """
        self._recent.clear()
        self._recent_bytes = 0
        self._forget_unheard()
        self._after_bytes = 0
        self._deaf_bytes = self._refractory_bytes
        if self._deaf_bytes <= 0:
            self.model.reset()

    def _forget_unheard(self) -> None:
        self._unheard.clear()
        self._unheard_bytes = 0

    def _remember(self, chunk: bytes) -> None:
        self._recent.append(chunk)
        self._recent_bytes += len(chunk)
        while self._recent and (
            self._recent_bytes - len(self._recent[0]) >= self._kept_bytes
        ):
            self._recent_bytes -= len(self._recent.popleft())


_STEP_BYTES = SAMPLE_RATE // 100 * _BYTES_PER_SAMPLE
"""10 ms of audio."""
_PAUSE_PAST_FIRING = 3 * _STEP_BYTES
_PAUSE_BELOW_LOUDEST = 0.01
"""A pause: a 10 ms step with at most this much of the loudest step's energy
(20 dB below it; speech's quietest sounds stay within that of its loudest)."""


def _pause_start(audio: bytes) -> int:
    """Where the quietest 10 ms of ``audio`` begins, if that is a pause; else 0."""
    steps = len(audio) // _STEP_BYTES
    if steps < 2:
        return 0
    samples = np.frombuffer(audio[: steps * _STEP_BYTES], dtype="<i2")
    energy = np.mean(np.square(samples.reshape(steps, -1).astype(np.float64)), axis=1)
    quietest = int(np.argmin(energy))
    if energy[quietest] > _PAUSE_BELOW_LOUDEST * float(np.max(energy)):
        return 0
    return quietest * _STEP_BYTES


def _even(count: float) -> int:
    """A byte count on a 16-bit sample boundary."""
    return int(count) // _BYTES_PER_SAMPLE * _BYTES_PER_SAMPLE
