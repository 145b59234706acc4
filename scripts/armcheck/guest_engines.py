"""The on-device engines on aarch64: run by the emulated Python, not the host.

``arm64-python3.14 scripts/armcheck/guest_engines.py --job JOB.json``

Only the standard library, the packages Home Assistant would install for the
integration (``PYTHONPATH``) and the integration's HA-free ``local`` package
are used. The job file says what to do; the results go to ``--out`` as JSON
for the host to judge (the host computes word error rates, decodes the MP3
and prints the report): this side does the work, the host decides pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
from pathlib import Path
import platform
import sys
import time
import traceback
import types
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "custom_components.tts_ai"


def integration_module(name: str) -> types.ModuleType:
    """Import ``custom_components.tts_ai.<name>`` without the integration's init.

    The package's ``__init__`` imports Home Assistant, which the HA-free
    engines do not need and which is not installed for the guest.
    """
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # for the top-level custom_components
    if PACKAGE not in sys.modules:
        stub = types.ModuleType(PACKAGE)
        stub.__path__ = [str(REPO_ROOT / "custom_components" / "tts_ai")]
        sys.modules[PACKAGE] = stub
    return importlib.import_module(f"{PACKAGE}.{name}")


def cpu_facts() -> dict[str, Any]:
    """What the (emulated) CPU says about itself in /proc/cpuinfo."""
    facts: dict[str, Any] = {"machine": platform.machine(), "python": sys.version}
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        for line in cpuinfo.splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in {"CPU part", "Features"} and key not in facts:
                facts[key] = value
    return facts


def fake_board(root: Path, model: str | None, cores: int, memory_mb: int) -> Path:
    """A /proc tree of a board, as its kernel shows it (no model: not a Pi)."""
    (root / "proc" / "device-tree").mkdir(parents=True, exist_ok=True)
    if model is not None:
        # The kernel NUL-terminates the model string.
        (root / "proc" / "device-tree" / "model").write_bytes(model.encode() + b"\0")
    # An ARM kernel lists processors without "core id" lines.
    blocks = [
        f"processor\t: {index}\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n"
        for index in range(cores)
    ]
    (root / "proc" / "cpuinfo").write_text("\n".join(blocks) + "\n")
    (root / "proc" / "meminfo").write_text(f"MemTotal:       {memory_mb * 1024} kB\n")
    return root


def profile_facts(profile: Any) -> dict[str, Any]:
    """The engine settings a device profile picks."""
    return {
        "model_name": profile.model_name,
        "physical_cores": profile.physical_cores,
        "machine": profile.machine,
        "total_memory_mb": profile.total_memory_mb,
        "pi_generation": profile.pi_generation,
        "piper_quality": profile.piper_quality,
        "whisper_model": profile.whisper_model,
        "whisper_beam_size": profile.whisper_beam_size,
        "intra_op_threads": profile.intra_op_threads,
    }


async def device_profiles(job: dict[str, Any], work: Path) -> dict[str, Any]:
    """The profile of this (emulated) machine and of each board in the job."""
    device = integration_module("local.device")
    boards = {}
    for name, board in job["boards"].items():
        root = fake_board(
            work / "boards" / name, board["model"], board["cores"], board["memory_mb"]
        )
        profile = device.detect_device_profile(root, machine=board["machine"])
        boards[name] = profile_facts(profile)
    return {"this machine": profile_facts(device.detect_device_profile()), **boards}


async def engines(job: dict[str, Any], work: Path) -> dict[str, Any]:
    """Download the models, speak the sentences, hear them back, encode MP3."""
    import aiohttp  # noqa: PLC0415 - Home Assistant's own; installed for the guest

    local = integration_module("local")
    model_manager = integration_module("local.model_manager")
    encoder = integration_module("local.encoder")
    result: dict[str, Any] = {}
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        manager = model_manager.ModelManager(
            session,
            work / "models",
            piper_base_url=job["piper_base_url"],
            hf_base_url=job["hf_base_url"],
            retries=1,
        )
        voice_files = await manager.ensure_piper_voice(job["voice"])
        whisper_dir = await manager.ensure_whisper_model(job["whisper_model"])
    result["models"] = {
        "voice": voice_files.key,
        "voice_bytes": voice_files.model_path.stat().st_size,
        "whisper_dir": str(whisper_dir),
        "whisper_files": sorted(p.name for p in whisper_dir.iterdir()),
        "emulated_seconds": round(time.monotonic() - started, 1),
    }
    profile = local.detect_device_profile()
    voice = local.LocalVoice(
        voice_files.key, voice_files.model_path, voice_files.config_path
    )
    # As the integration runs them: in their own process (local/engine_host.py),
    # an aarch64 Python started through the command the host side names.
    host = local.EngineHost(
        profile, idle_exit_after=None, interpreter=job.get("child_interpreter")
    )
    piper = local.HostedPiper(host)
    whisper = local.HostedWhisper(host, whisper_dir)
    spoken: list[dict[str, Any]] = []
    speech: list[bytes] = []
    rate = 0
    try:
        for index, sentence in enumerate(job["sentences"]):
            started = time.monotonic()
            pcm: list[bytes] = []

            async def tee(text: str = sentence, pcm: list[bytes] = pcm) -> Any:
                nonlocal rate
                async for chunk in piper.synthesize(text, voice):
                    pcm.append(chunk.audio)
                    rate = chunk.sample_rate
                    yield chunk

            # The integration's MP3 path: Piper's chunks straight into ffmpeg
            # (a subprocess: it runs natively on the host, not emulated).
            mp3 = b"".join([data async for data in encoder.encode_mp3(tee())])
            mp3_path = work / f"sentence-{index}.mp3"
            mp3_path.write_bytes(mp3)
            audio = b"".join(pcm)
            speech.append(audio)
            spoken.append(
                {
                    "text": sentence,
                    "sample_rate": rate,
                    "audio_seconds": round(len(audio) / 2 / rate, 2),
                    "mp3": str(mp3_path),
                    "emulated_seconds": round(time.monotonic() - started, 1),
                }
            )
        # One transcription of both sentences with a pause between them:
        # Whisper works on 30-second windows whatever the length, so one call
        # costs half of two under emulation.
        pause = bytes(2 * int(rate * job["pause_seconds"]))
        started = time.monotonic()
        transcript = await whisper.transcribe(pause.join(speech), sample_rate=rate)
        result["heard"] = {
            "text": transcript.text,
            "language": transcript.language,
            "emulated_seconds": round(time.monotonic() - started, 1),
        }
        result["engine_process"] = {
            "pid": host.pid,
            "guest_pid": os.getpid(),
            "starts": host.starts,
        }
    finally:
        await piper.close()
        await whisper.close()
        await host.close()
    result["spoken"] = spoken
    result["profile"] = profile_facts(profile)
    return result


STEPS = {"profiles": device_profiles, "engines": engines}


async def run(job: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run the job's steps; a failing step is recorded, the next still runs."""
    results: dict[str, Any] = {"cpu": cpu_facts()}
    for step in job["steps"]:
        try:
            results[step] = await STEPS[step](job, work)
        except Exception as err:
            results[step] = {
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(),
            }
    return results


def main() -> None:
    """Read the job, run it, write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    job = json.loads(args.job.read_text(encoding="utf-8"))
    work = Path(job["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run(job, work))
    args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
