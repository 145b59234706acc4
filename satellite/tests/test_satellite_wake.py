"""The on-device wake word: the real microWakeWord models on real (Piper) speech.

The listener is fed as the microphone feeds it (30 ms chunks of 16 kHz audio);
whether it fires, where, what the command's pre-roll holds, and that it stays
deaf after a detection and after a turn are what a user would notice.
"""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from tests.harness.standin.engines import synthesize_pcm, transcribe_samples
from tts_ai_satellite.resample import resample
from tts_ai_satellite.wake import (
    MicroWakeWordModel,
    WakeSettings,
    WakeWordListener,
    WakeWordUnavailableError,
)

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
CHUNK = 480 * 2  # 30 ms, in bytes


def _speech(text: str) -> np.ndarray:
    spoken = synthesize_pcm(text)
    samples = np.frombuffer(spoken.pcm, dtype="<i2")
    return resample(samples, spoken.sample_rate, RATE).astype(np.int16)


def _noise(seconds: float, level: float = 300.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * RATE)) * level).astype(np.int16)


def _stream(*parts: np.ndarray) -> bytes:
    return np.concatenate(parts).astype("<i2").tobytes()


def _detections(listener: WakeWordListener, audio: bytes) -> list[float]:
    """Seconds into ``audio`` at which the listener fired (end of the chunk)."""
    fired = []
    for start in range(0, len(audio), CHUNK):
        if listener.feed(audio[start : start + CHUNK]):
            fired.append((start + CHUNK) / 2 / RATE)
    return fired


def _words(text: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


def test_okay_nabu_fires_once_and_the_command_survives_whole() -> None:
    command = _speech("Okay Nabu, turn on the kitchen lights.")
    audio = _stream(_noise(1.0), command, _noise(1.0))
    listener = WakeWordListener(MicroWakeWordModel("okay_nabu"))
    fired = False
    after: list[bytes] = []
    for start in range(0, len(audio), CHUNK):
        chunk = audio[start : start + CHUNK]
        if fired:
            after.append(chunk)
        elif listener.feed(chunk):
            fired = True
            heard_at = (start + CHUNK) / 2 / RATE
            pre_roll = listener.pre_roll()
    assert fired
    # Within the phrase, not before the speech began.
    assert 1.0 < heard_at < 1.0 + len(command) / RATE
    assert len(pre_roll) == round(WakeSettings().pre_roll_seconds * RATE) * 2
    # What goes to Home Assistant: the pre-roll, then what followed the word.
    sent = np.frombuffer(pre_roll + b"".join(after), dtype="<i2")
    heard = " ".join(
        s.text for s in transcribe_samples(sent.astype(np.float32) / 32768)
    )
    assert _words(heard) == ["turn", "on", "the", "kitchen", "lights"], heard


def test_other_words_and_other_models_do_not_fire() -> None:
    without = _stream(_noise(0.5), _speech("Turn on the kitchen lights."), _noise(0.5))
    with_word = _stream(
        _noise(0.5), _speech("Okay Nabu, turn on the kitchen lights."), _noise(0.5)
    )
    assert _detections(WakeWordListener(MicroWakeWordModel("okay_nabu")), without) == []
    assert (
        _detections(WakeWordListener(MicroWakeWordModel("hey_jarvis")), with_word) == []
    )
    assert _detections(
        WakeWordListener(MicroWakeWordModel("hey_jarvis")),
        _stream(_noise(0.5), _speech("Hey Jarvis, what time is it?"), _noise(0.5)),
    )


def test_deaf_for_the_refractory_period_after_a_turn() -> None:
    """The reply's tail (or a second "okay nabu" at once) does not wake it."""
    phrase = _speech("Okay Nabu.")
    listener = WakeWordListener(
        MicroWakeWordModel("okay_nabu"), WakeSettings(refractory_seconds=2.0)
    )
    assert _detections(listener, _stream(_noise(0.5), phrase, _noise(0.3)))
    listener.rearm()  # the turn is over, its reply played
    # Said again within the refractory period: ignored...
    assert _detections(listener, _stream(_noise(0.2), phrase, _noise(0.1))) == []
    assert listener.pre_roll() == b""  # nothing of the deaf time is kept
    # ...and heard again once it is over.
    assert _detections(listener, _stream(_noise(1.0), phrase, _noise(0.5)))
    assert listener.detections == 2


def test_without_refractory_the_same_phrase_would_wake_it_again() -> None:
    """The counterpart of the test above: the deafness is what stops it."""
    phrase = _speech("Okay Nabu.")
    listener = WakeWordListener(
        MicroWakeWordModel("okay_nabu"), WakeSettings(refractory_seconds=0.0)
    )
    assert _detections(listener, _stream(_noise(0.5), phrase, _noise(0.3)))
    listener.rearm()
    assert _detections(listener, _stream(_noise(0.2), phrase, _noise(0.1)))


def test_unknown_wake_word_is_named_with_the_choices() -> None:
    with pytest.raises(WakeWordUnavailableError, match="okay_nabu, hey_jarvis"):
        MicroWakeWordModel("hey_computer")


def test_satellite_imports_and_file_mode_run_without_the_wake_package() -> None:
    """pymicro-wakeword is optional: file mode and --help work without it."""
    blocked = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'pymicro_wakeword', 'pyaudio'}:\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tts_ai_satellite.__main__ as m\n"
        "from tts_ai_satellite.wake import MicroWakeWordModel\n"
        "try:\n"
        "    MicroWakeWordModel('okay_nabu')\n"
        "except Exception as err:\n"
        "    print(type(err).__name__, err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocked],
        cwd=PACKAGE_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "WakeWordUnavailableError" in result.stdout
    assert "pip install 'tts-ai-satellite[wake]'" in result.stdout
