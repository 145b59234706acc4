"""A second synthetic voice for the wake-word tests and benchmark: espeak-ng.

Unlike Piper, espeak-ng says a text the same way every time, so a phrase that
fires (or does not fire) a wake-word model does so in every run.
"""

from __future__ import annotations

import io
import subprocess
import wave

import numpy as np

from tts_ai_satellite.resample import resample

RATE = 16000
WORDS_PER_MINUTE = 160


def espeak_16k(text: str, voice: str) -> np.ndarray:
    """``text`` spoken by espeak-ng's ``voice`` (e.g. ``en-us+m3``), 16 kHz float."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(WORDS_PER_MINUTE), "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    return resample(samples, rate, RATE).astype(np.float64)
