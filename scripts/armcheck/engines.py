"""The engines stage: the integration's HA-free engines on arm64-python3.14."""

from __future__ import annotations

import json
from pathlib import Path
import shutil
import subprocess
from typing import Any

from scripts.benchmarks.wer import word_errors

from .checks import Stage, describe_cpu, guest_env, run_guest, stopwatch
from .wheels import (
    HA_PROVIDED,
    PLATFORM,
    InstallError,
    engine_requirements,
    ha_constraints,
    install,
    installed_version,
)

GUEST_PYTHON = "arm64-python3.14"
PYTHON_VERSION = "3.14"
QEMU_CPU = "cortex-a72"  # a Raspberry Pi 4's core
GUEST_SCRIPT = Path(__file__).with_name("guest_engines.py")
VOICE = "en_US-joe-medium"
WHISPER_MODEL = "tiny.en"
# Held out: no test or benchmark speaks these. Short, because every word
# costs seconds under emulation, and heard right by tiny.en in 12 of 12 native
# round trips each ("Dinner is ready." was 8 of 12, "porch light" once came
# back as "pork slide": Piper's noise makes every rendering differ).
SENTENCES = ("The back door is locked now.", "Turn the bedroom heater off.")
PAUSE_SECONDS = 0.5
MAX_WER_PERCENT = 10.0
# The boards whose device-tree model string (and core count, memory) the
# device profile is asked about. "expect" is what the README promises.
BOARDS: dict[str, dict[str, Any]] = {
    "Pi Zero 2 W": {
        "model": "Raspberry Pi Zero 2 W Rev 1.0",
        "cores": 4,
        "memory_mb": 427,
        "machine": "aarch64",
    },
    "Pi 3 B+": {
        "model": "Raspberry Pi 3 Model B Plus Rev 1.3",
        "cores": 4,
        "memory_mb": 906,
        "machine": "aarch64",
    },
    "Pi 4 B (4 GB)": {
        "model": "Raspberry Pi 4 Model B Rev 1.4",
        "cores": 4,
        "memory_mb": 3797,
        "machine": "aarch64",
        "expect": {"pi_generation": 4, "piper_quality": "medium"}
        | {"whisper_model": "tiny", "intra_op_threads": 4, "whisper_beam_size": 1},
    },
    "Pi 5 (8 GB)": {
        "model": "Raspberry Pi 5 Model B Rev 1.0",
        "cores": 4,
        "memory_mb": 8052,
        "machine": "aarch64",
        "expect": {"pi_generation": 5, "piper_quality": "medium"}
        | {"whisper_model": "tiny", "intra_op_threads": 4, "whisper_beam_size": 1},
    },
    "x86-64 mini PC (16 GB)": {
        "model": None,
        "cores": 4,
        "memory_mb": 15890,
        "machine": "x86_64",
    },
}


def run_engines(
    cache_dir: Path,
    work: Path,
    piper_base_url: str,
    hf_base_url: str,
    *,
    timeout: float,
) -> Stage:
    """Install the engines for aarch64, then run them in the emulated guest.

    ``timeout`` bounds the emulated run (the whole check has a time budget).
    """
    stage = Stage(
        "On-device engines (custom_components/tts_ai/local)",
        GUEST_PYTHON,
        QEMU_CPU,
    )
    requirements = engine_requirements()
    try:
        with stopwatch() as took:
            installed = install(
                cache_dir,
                PYTHON_VERSION,
                [*HA_PROVIDED, *requirements],
                constraints=ha_constraints(),
                one_at_a_time=True,
            )
    except InstallError as err:
        stage.add("install the engine requirements", False, str(err))
        return stage
    versions = ", ".join(
        f"{name} {installed_version(installed.target, name)}"
        for name in ("onnxruntime", "ctranslate2", "numpy", "av", "aiohttp")
    )
    stage.add(
        "install the engine requirements",
        True,
        f"{' '.join(requirements)} for cp{PYTHON_VERSION.replace('.', '')}"
        f" {PLATFORM}, one by one with HA's installer arguments and"
        " package_constraints.txt, plus the platform and wheels only"
        f" ({'cached' if installed.cached else 'installed'} in {took[0]:.0f} s)",
        f"wheels: {versions}",
    )

    job = {
        "work_dir": str(work),
        "steps": ["profiles", "engines"],
        "boards": {
            name: {k: v for k, v in board.items() if k != "expect"}
            for name, board in BOARDS.items()
        },
        "piper_base_url": piper_base_url,
        "hf_base_url": hf_base_url,
        "voice": VOICE,
        "whisper_model": WHISPER_MODEL,
        "sentences": list(SENTENCES),
        "pause_seconds": PAUSE_SECONDS,
        # The engine process's Python: the guest cannot start an aarch64
        # program itself (qemu-user without binfmt_misc), the wrapper can.
        "child_interpreter": [shutil.which(GUEST_PYTHON) or GUEST_PYTHON],
    }
    job_file = work / "job.json"
    out_file = work / "result.json"
    work.mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(job), encoding="utf-8")
    with stopwatch() as took:
        done = run_guest(
            [
                GUEST_PYTHON,
                str(GUEST_SCRIPT),
                "--job",
                str(job_file),
                "--out",
                str(out_file),
            ],
            guest_env(QEMU_CPU, [installed.target]),
            timeout,
        )
    if done.returncode != 0 or not out_file.is_file():
        stage.add(
            "run the engines on aarch64",
            False,
            f"the guest exited with {done.returncode}: {done.stderr.strip()[-2000:]}",
        )
        return stage
    result = json.loads(out_file.read_text(encoding="utf-8"))
    stage.cpu_seen = describe_cpu(result["cpu"])
    _judge_profiles(stage, result["profiles"])
    _judge_engines(stage, result["engines"], took[0])
    return stage


def _judge_profiles(stage: Stage, profiles: dict[str, Any]) -> None:
    if "error" in profiles:
        stage.add("device profiles", False, profiles["traceback"][-2000:])
        return
    for name, board in BOARDS.items():
        facts = profiles[name]
        chosen = (
            f"Piper {facts['piper_quality']}, Whisper {facts['whisper_model']},"
            f" {facts['intra_op_threads']} threads, beam {facts['whisper_beam_size']}"
        )
        expect = board.get("expect")
        if expect is None:
            stage.add(f"device profile: {name}", True, f"{chosen} (informational)")
            continue
        wrong = {k: facts[k] for k, v in expect.items() if facts[k] != v}
        stage.add(
            f"device profile: {name}",
            not wrong,
            f"{board['model']!r}, {board['cores']} cores: {chosen}"
            + (f"; expected {expect}, got {wrong}" if wrong else ""),
        )


def _judge_engines(stage: Stage, engines: dict[str, Any], seconds: float) -> None:
    if "error" in engines:
        stage.add("engines", False, engines["traceback"][-3000:])
        return
    models = engines["models"]
    stage.add(
        "model manager: fetch voice and Whisper model from the model server",
        models["voice"] == VOICE and "model.bin" in models["whisper_files"],
        f"{models['voice']} ({models['voice_bytes'] / 1e6:.0f} MB),"
        f" {WHISPER_MODEL}: {', '.join(models['whisper_files'])}",
    )
    spoken = engines["spoken"]
    heard = engines["heard"]
    errors = word_errors([(" ".join(SENTENCES), heard["text"])])
    process = engines["engine_process"]
    stage.add(
        "in the engine process, as the integration runs them:"
        " Piper speaks, Whisper hears",
        errors.rate_percent <= MAX_WER_PERCENT
        and process["pid"] not in (None, process["guest_pid"])
        and process["starts"] == 1,
        f"said {' '.join(SENTENCES)!r}, heard {heard['text']!r}:"
        f" WER {errors.rate_percent:.0f} % (limit {MAX_WER_PERCENT:.0f} %);"
        f" engine process pid {process['pid']} (the guest is"
        f" {process['guest_pid']}), started {process['starts']} time(s)",
        f"profile used: {engines['profile']['intra_op_threads']} threads"
        f" (this emulated machine), {spoken[0]['sample_rate']} Hz",
    )
    mp3_words = []
    problems = []
    for item in spoken:
        codec, duration = _probe(Path(item["mp3"]))
        if codec != "mp3" or abs(duration - item["audio_seconds"]) > 0.3:
            problems.append(f"{item['mp3']}: {codec}, {duration:.2f} s")
        mp3_words.append((item["text"], _host_transcribe(Path(item["mp3"]))))
    mp3_errors = word_errors(mp3_words)
    stage.add(
        "MP3 path (local/encoder.py)",
        not problems and mp3_errors.rate_percent <= MAX_WER_PERCENT,
        "Piper's chunks streamed into ffmpeg; the MP3s hold"
        f" {' / '.join(repr(h) for _, h in mp3_words)}"
        f" (WER {mp3_errors.rate_percent:.0f} %){'; ' if problems else ''}"
        + "; ".join(problems),
        "ffmpeg is a subprocess of the guest: it runs as the host's native"
        " x86-64 binary (qemu-user does not emulate a guest's children), so"
        " this proves the aarch64 Python side of the pipe, not an arm ffmpeg",
    )
    stage.add(
        "emulated wall time (NOT Raspberry Pi time)",
        True,
        f"whole guest run {seconds:.0f} s; per sentence synthesis"
        f" {', '.join(str(item['emulated_seconds']) for item in spoken)} s"
        " (the first includes loading);"
        f" one transcription {heard['emulated_seconds']} s",
    )


def _probe(path: Path) -> tuple[str, float]:
    """(codec, duration) of an audio file, by the host's ffprobe."""
    result = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-print_format", "json"),
            *("-show_format", "-show_streams", str(path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return f"unreadable ({result.stderr.strip()[:200]})", 0.0
    probe = json.loads(result.stdout)
    streams = probe.get("streams") or [{}]
    return streams[0].get("codec_name", "?"), float(probe["format"]["duration"])


def _host_transcribe(path: Path) -> str:
    """What the host's Whisper hears in an audio file (checks the MP3's words)."""
    import numpy as np  # noqa: PLC0415 - the host venv's

    from tests.harness.standin.engines import transcribe_samples  # noqa: PLC0415

    pcm = subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-i", str(path)),
            *("-ac", "1", "-ar", "16000", "-f", "f32le", "-"),
        ],
        capture_output=True,
        check=True,
    ).stdout
    samples = np.frombuffer(pcm, dtype=np.float32)
    return " ".join(segment.text.strip() for segment in transcribe_samples(samples))
