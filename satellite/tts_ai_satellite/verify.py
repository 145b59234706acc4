"""A second opinion on the wake word: Whisper hears the moment it fired.

The microWakeWord model is small enough to run all the time, and now and then
another phrase comes close enough to fire it: Piper's joe saying "What time is
it?" scored up to 0.87 with ``okay_nabu``, above even the model's own 0.85, and
people saying "Okay, I'm leaving now" fire it too. Whisper (faster-whisper,
``tiny.en``) is some 500 times larger and runs only when the model fires, on
the listener's :meth:`~.wake.WakeWordListener.clip`: the wake word is confirmed when
Whisper, told which phrase to expect, writes it (:func:`says_phrase`).

The check runs beside the command, not before it: the command's audio goes to
Home Assistant from the moment the model fires (no latency added there), its
speech-to-text runs meanwhile, and only the intent waits for the verdict. A
rejected wake-up ends the run before the intent: nothing happens in the home
and nothing is said.

``faster_whisper`` is imported only when the check is asked for (the
``verify`` extra).
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from typing import Any, Protocol

import numpy as np

from .wake import WakeWordUnavailableError

_LOGGER = logging.getLogger(__name__)

DEFAULT_VERIFY_MODEL = "tiny.en"
"""faster-whisper's name for Whisper tiny.en (int8): downloaded once from
Hugging Face, or a directory holding a converted model."""
_FULL_SCALE = 32768.0


class WakeWordVerifier(Protocol):
    """Confirms or rejects a detection, from the audio that fired it."""

    def confirms(self, clip: bytes) -> bool:
        """Whether ``clip`` (16 kHz mono 16-bit) holds the wake word (blocking)."""
        ...


_SPELLINGS = {"okay": ("okay", "ok")}
"""How Whisper writes a wake phrase's first word."""


def says_phrase(heard: str, phrase: str) -> bool:
    """Whether Whisper's ``heard`` is ``phrase`` ("Okay Nabu", "Hey Jarvis"...).

    Yes when it holds the phrase's name (its last word: "Nabu"), or the
    phrase's first word followed at once by a word that starts as the name
    does. The second form is how tiny.en writes "Nabu" when the audio is
    unclear: on development data (scripts/benchmarks/wake.py's commands, not
    the held-out ones) 78 of 80 detections came back "Okay Nabu" and 2 "Okay,
    not move"; unprompted it wrote "Okay, now boo" and "Okay, now I move".
    The model's false wake-ups there came back "Okay, I'm leaving now",
    "Okay, let's eat": the first word, then another.
    """
    words = [word for word in map(_letters, heard.split()) if word]
    *opening, last = phrase.split()
    name = _letters(last)
    if name in "".join(words):
        return True
    if not opening:
        return False  # a one-word phrase ("Alexa"): its name or nothing
    first = _letters(opening[0])
    openers = _SPELLINGS.get(first, (first,))
    return any(
        word in openers and following.startswith(name[0])
        for word, following in itertools.pairwise(words)
    )


def _letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


class WhisperVerifier:
    """Whisper, prompted with the phrase, must write it (:func:`says_phrase`).

    The prompt matters: unprompted, tiny.en writes "Okay Nabu" as "Okay, now,
    boo." or "Okay, don't move."; told to expect it, it writes "Okay Nabu"
    for the phrase and still "Okay, I'm leaving now" for the phrase that is
    not (measured on development data, scripts/benchmarks/wake.py).
    """

    def __init__(self, phrase: str, model: str = DEFAULT_VERIFY_MODEL) -> None:
        """Load ``model`` (a faster-whisper name or directory; blocking, ~1 s).

        A name is downloaded from Hugging Face the first time (about 40 MB
        for tiny.en) and kept in its cache.
        """
        try:
            from faster_whisper import WhisperModel  # noqa: PLC0415 - the extra
        except ImportError as err:
            raise WakeWordUnavailableError(
                "checking the wake word needs faster-whisper:"
                " `pip install 'tts-ai-satellite[verify]'`"
            ) from err
        self.phrase = phrase
        try:
            # Two threads: the command's audio keeps flowing on the Pi's
            # other cores while Whisper listens.
            self._model: Any = WhisperModel(
                model, device="cpu", compute_type="int8", cpu_threads=2
            )
        except (OSError, RuntimeError, ValueError) as err:
            # huggingface_hub's errors are OSErrors; CTranslate2 raises
            # RuntimeError for a directory that holds no model.
            raise WakeWordUnavailableError(
                f"cannot load the Whisper model {model!r}: {err}"
            ) from err
        self.last_heard = ""
        self.last_seconds = 0.0

    def heard(self, clip: bytes) -> str:
        """What Whisper writes for ``clip``, told to expect the phrase."""
        samples = np.frombuffer(clip, dtype="<i2").astype(np.float32) / _FULL_SCALE
        segments, _info = self._model.transcribe(
            samples,
            language="en",
            beam_size=1,
            initial_prompt=self.phrase,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(segment.text.strip() for segment in segments)

    def confirms(self, clip: bytes) -> bool:
        """Whether Whisper heard the phrase in ``clip`` (:func:`says_phrase`)."""
        started = time.perf_counter()
        self.last_heard = self.heard(clip)
        self.last_seconds = time.perf_counter() - started
        confirmed = says_phrase(self.last_heard, self.phrase)
        _LOGGER.info(
            "Wake word %s by Whisper in %.0f ms",
            "confirmed" if confirmed else "rejected",
            self.last_seconds * 1000,
        )
        # What was said in the room stays out of the usual log.
        _LOGGER.debug("Whisper heard %r", self.last_heard)
        return confirmed
