"""The satellite stage: its file mode on arm64-python3.11 against a real hass.

Home Assistant runs natively here, set up by tests/harness/assist_home.py as
for the satellite's end-to-end test (its STT and TTS are the integration's
on-device engines); only the satellite is emulated, as it would run on a Pi
with Raspberry Pi OS 12. pyaudio is not installed: file mode must not need it,
and a tripwire module records any attempt to import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .checks import Stage, describe_cpu, guest_env, run_guest
from .wheels import InstallError, file_requirements, install, installed_version

REPO_ROOT = Path(__file__).resolve().parents[2]
GUEST_PYTHON = "arm64-python3.11"
PYTHON_VERSION = "3.11"
QEMU_CPU = "cortex-a76"  # a Raspberry Pi 5's core
# Only the sound-device modes import pyaudio; it builds from source (no
# aarch64 wheel) and is left out here on purpose, see the tripwire.
LEFT_OUT = ("pyaudio",)
PYAUDIO_TRIPWIRE = '''\
"""arm-check tripwire: the satellite's file mode must not import pyaudio."""
import os, pathlib
pathlib.Path(os.environ["ARM_CHECK_PYAUDIO_MARKER"]).write_text("imported")
raise ImportError("arm-check: pyaudio was imported in file mode")
'''
CPU_PROBE = (
    "import platform, aiohttp, numpy;"
    "print(platform.machine());"
    "print(next((l.split(':')[1].strip() for l in open('/proc/cpuinfo')"
    " if l.startswith('CPU part')), '?'))"
)

# --- The satellite's entry point: its own package, as a Pi owner runs it -------
SATELLITE_PACKAGE = REPO_ROOT / "satellite"
SATELLITE_REQUIREMENTS = SATELLITE_PACKAGE / "requirements.txt"


def satellite_command(python: str, *args: str) -> tuple[list[str], list[Path]]:
    """The command running the satellite under ``python``, and its import path.

    ``python -m tts_ai_satellite`` from the package folder: what the
    ``tts-ai-satellite`` console script runs, without installing it into the
    guest (no pip runs under emulation).
    """
    return [python, "-m", "tts_ai_satellite", *args], [SATELLITE_PACKAGE]


# -------------------------------------------------------------------------------


@dataclass
class Hass:
    """The natively running Home Assistant the satellite talks to."""

    url: str
    token_file: Path
    token: str
    pipeline: str
    question_wav: Path


def run_satellite(cache_dir: Path, work: Path, home: Hass, *, timeout: float) -> Stage:
    """Install the satellite's requirements for aarch64 and run one file turn.

    ``timeout`` bounds the emulated turn (the whole check has a time budget).
    """
    from tests.harness.assist_home import (  # noqa: PLC0415 - the host venv's
        QUESTION,
        assert_speech_of,
        says_the_time,
        words,
    )

    stage = Stage("Satellite file mode (--input/--output)", GUEST_PYTHON, QEMU_CPU)
    requirements = file_requirements(SATELLITE_REQUIREMENTS, leave_out=LEFT_OUT)
    try:
        installed = install(
            cache_dir,
            PYTHON_VERSION,
            requirements,
            constraints=None,
            one_at_a_time=False,
        )
    except InstallError as err:
        stage.add("install the satellite's requirements", False, str(err))
        return stage
    stage.add(
        "install the satellite's requirements",
        True,
        f"{SATELLITE_REQUIREMENTS.name} for cp311 aarch64 without"
        f" {', '.join(LEFT_OUT)}: "
        + ", ".join(
            f"{name} {installed_version(installed.target, name)}"
            for name in ("aiohttp", "numpy")
        ),
        "pyaudio (sound devices only) has no aarch64 wheel; on a Pi it builds"
        " against portaudio19-dev",
    )
    tripwire = work / "tripwire"
    (tripwire / "pyaudio").mkdir(parents=True, exist_ok=True)
    (tripwire / "pyaudio" / "__init__.py").write_text(PYAUDIO_TRIPWIRE)
    marker = work / "pyaudio-imported"
    marker.unlink(missing_ok=True)
    command, path = satellite_command(
        GUEST_PYTHON,
        *("--url", home.url, "--token-file", str(home.token_file)),
        *("--pipeline", home.pipeline, "--input", str(home.question_wav)),
        *("--output", str(work / "reply.wav"), "--debug"),
    )
    env = guest_env(QEMU_CPU, [installed.target, *path, tripwire])
    env["ARM_CHECK_PYAUDIO_MARKER"] = str(marker)

    probe = run_guest([GUEST_PYTHON, "-c", CPU_PROBE], env, 120)
    machine, _, part = probe.stdout.strip().partition("\n")
    stage.cpu_seen = describe_cpu({"machine": machine, "CPU part": part})

    asked_at = datetime.now(UTC)
    done = run_guest(command, env, timeout)
    answered_at = datetime.now(UTC)
    lines = dict(
        line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line
    )
    heard, reply = lines.get("heard", ""), lines.get("reply", "")
    turn_ok = done.returncode == 0 and words(heard) == words(QUESTION)
    stage.add(
        "one turn: WAV in, reply WAV out",
        turn_ok,
        f"exit {done.returncode}, heard {heard!r}, reply {reply!r}"
        + ("" if turn_ok else f"\n{done.stderr.strip()[-2000:]}"),
    )
    if turn_ok:
        says_time = says_the_time(reply, asked_at, answered_at)
        try:
            assert_speech_of(work / "reply.wav", reply)
            speech = "the reply WAV is speech of the reply (Whisper hears its numbers)"
        except AssertionError as err:
            says_time, speech = False, f"reply WAV is not speech of the reply: {err}"
        stage.add("the reply tells the time and is spoken", says_time, speech)
    stage.add(
        "pyaudio not imported in file mode",
        not marker.exists(),
        "the tripwire pyaudio module was "
        + ("IMPORTED" if marker.exists() else "never imported"),
    )
    stage.add(
        "the token appears in no output",
        home.token not in done.stdout + done.stderr,
        "stdout and stderr (--debug) checked",
    )
    _check_wake_word(stage, work, env)
    return stage


# Run in the guest: how often the satellite's wake-word listener fires on a
# raw 16 kHz PCM file, fed in the microphone's 30 ms chunks, and how many of
# those its Whisper check (--wake-verify, model folder argv[2]) confirms.
WAKE_PROBE = """
import sys
from tts_ai_satellite.verify import WhisperVerifier
from tts_ai_satellite.wake import (
    DEFAULT_WAKE_THRESHOLD, MicroWakeWordModel, WakeWordListener,
)
listener = WakeWordListener(MicroWakeWordModel("okay_nabu", DEFAULT_WAKE_THRESHOLD))
verifier = WhisperVerifier("Okay Nabu", sys.argv[2])
pcm = open(sys.argv[1], "rb").read()
fired = confirmed = 0
for i in range(0, len(pcm), 960):
    if listener.feed(pcm[i : i + 960]):
        fired += 1
        confirmed += verifier.confirms(listener.clip())
print(fired, confirmed)
"""
WAKE_PHRASE = "Okay Nabu, turn on the kitchen lights."
NO_WAKE_PHRASE = "Please turn on the kitchen lights."
# Fires the model every time (espeak-ng); Whisper hears "leaving".
NEAR_MISS = ("OK, I'm leaving now.", "en-us+m3")


def _check_wake_word(stage: Stage, work: Path, env: dict[str, str]) -> None:
    """The on-device wake word (pymicro-wakeword, TFLite) and its Whisper check."""
    from scripts.benchmarks.common import whisper_dir  # noqa: PLC0415
    from tests.harness.espeak import espeak_16k  # noqa: PLC0415
    from tests.harness.standin.engines import synthesize_pcm  # noqa: PLC0415
    from tts_ai_satellite.resample import resample  # noqa: PLC0415

    def joe(text: str) -> np.ndarray:
        spoken = synthesize_pcm(text)
        samples = np.frombuffer(spoken.pcm, dtype="<i2")
        return resample(samples, spoken.sample_rate, 16000)

    near_miss, voice = NEAR_MISS
    speech = {
        WAKE_PHRASE: joe(WAKE_PHRASE),
        NO_WAKE_PHRASE: joe(NO_WAKE_PHRASE),
        near_miss: espeak_16k(near_miss, voice),
    }
    counts: dict[str, str] = {}
    for number, (phrase, samples) in enumerate(speech.items()):
        pcm = np.concatenate([np.zeros(8000), samples])
        path = work / f"wake-{number}.raw"
        path.write_bytes(np.clip(pcm, -32768, 32767).astype("<i2").tobytes())
        done = run_guest(
            [GUEST_PYTHON, "-c", WAKE_PROBE, str(path), str(whisper_dir())], env, 900
        )
        counts[phrase] = done.stdout.strip() or done.stderr.strip()[-500:]
    fired_ok = counts[WAKE_PHRASE] in ("1 1", "2 1", "2 2")
    stage.add(
        "the on-device wake word fires on 'Okay Nabu', not without it",
        fired_ok and counts[NO_WAKE_PHRASE] == "0 0",
        f"okay_nabu fired/Whisper confirmed {counts[WAKE_PHRASE]} on"
        f" {WAKE_PHRASE!r} and {counts[NO_WAKE_PHRASE]} on {NO_WAKE_PHRASE!r}"
        " (Piper's joe voice)",
    )
    stage.add(
        "--wake-verify turns down a near miss the model fires on",
        counts[near_miss] == "1 0",
        f"okay_nabu fired/Whisper confirmed {counts[near_miss]} on {near_miss!r}"
        f" (espeak-ng {voice}); faster-whisper tiny.en on the emulated CPU",
    )
