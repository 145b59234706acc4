"""``python -m scripts.armcheck``: run the aarch64 check and print the report.

Normally started by ``scripts/arm-check``, which first makes sure the
emulated interpreters exist. Exit status 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
import platform
import shutil
import sys
import tempfile
import time

from . import engines, satellite
from .checks import Stage

DEFAULT_CACHE = Path(
    os.environ.get("TTS_AI_ARM_CHECK_CACHE", "~/.cache/tts-ai-arm-check")
).expanduser()
BUDGET_MINUTES = 15.0
# Kept for the satellite stage (native hass start-up and one emulated turn)
# when the engines stage gets its timeout, and the least any stage is given.
SATELLITE_RESERVE_SECONDS = 240.0
MIN_STAGE_SECONDS = 60.0


def main(argv: list[str] | None = None) -> int:
    """Run the stages, print the report; non-zero on any failure."""
    parser = argparse.ArgumentParser(prog="scripts/arm-check", description=__doc__)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--only", choices=("engines", "satellite"), help="run one stage only"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (audio, logs)"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    missing = [
        python
        for python in (engines.GUEST_PYTHON, satellite.GUEST_PYTHON)
        if shutil.which(python) is None
    ]
    if missing:
        print(f"arm-check: {', '.join(missing)} not found: run scripts/arm-check")
        return 2
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="arm-check-"))
    stages: list[Stage] = []
    deadline = started + BUDGET_MINUTES * 60
    try:
        stages = run_stages(args, work, deadline)
    finally:
        if args.keep:
            print(f"arm-check: work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    minutes = (time.monotonic() - started) / 60
    return report(stages, minutes)


def remaining(deadline: float, reserve: float = 0.0) -> float:
    """Seconds a stage may take so the whole check stays within its budget."""
    return max(MIN_STAGE_SECONDS, deadline - time.monotonic() - reserve)


def run_stages(args: argparse.Namespace, work: Path, deadline: float) -> list[Stage]:
    """The engines stage, then the satellite stage, sharing one model server."""
    from tests.harness import realhass as devenv  # noqa: PLC0415
    from tests.harness.assist_home import (  # noqa: PLC0415
        start_assist_home,
        start_model_server,
    )

    stages: list[Stage] = []
    log_path = work / "servers.log"
    with log_path.open("w") as log, contextlib.ExitStack() as cleanup:
        print("arm-check: starting the loopback model server", flush=True)
        server, piper_url, hf_url = start_model_server(log)
        cleanup.callback(devenv.stop_process, server)
        if args.only in {None, "engines"}:
            print(
                f"arm-check: engines on {engines.GUEST_PYTHON}"
                f" (QEMU_CPU={engines.QEMU_CPU}); emulated, this takes minutes",
                flush=True,
            )
            stages.append(
                engines.run_engines(
                    args.cache_dir,
                    work / "engines",
                    piper_url,
                    hf_url,
                    timeout=remaining(
                        deadline,
                        SATELLITE_RESERVE_SECONDS if args.only is None else 0.0,
                    ),
                )
            )
        if args.only in {None, "satellite"}:
            print("arm-check: starting Home Assistant (native)", flush=True)
            tmp = work / "hass"
            tmp.mkdir()
            try:
                home = start_assist_home(tmp, log, piper_url, hf_url)
            except Exception as err:
                stage = Stage(
                    "Satellite file mode (--input/--output)",
                    satellite.GUEST_PYTHON,
                    satellite.QEMU_CPU,
                )
                stage.add("start Home Assistant", False, f"{err!r}")
                log.flush()
                print(log_path.read_text(errors="replace")[-3000:])
                stages.append(stage)
                return stages
            cleanup.callback(devenv.stop_process, home.hass)
            print(
                f"arm-check: satellite on {satellite.GUEST_PYTHON}"
                f" (QEMU_CPU={satellite.QEMU_CPU})",
                flush=True,
            )
            stages.append(
                satellite.run_satellite(
                    args.cache_dir,
                    work / "satellite",
                    satellite.Hass(
                        url=home.url,
                        token_file=home.token_file,
                        token=home.token,
                        pipeline=satellite_pipeline(),
                        question_wav=home.question_wav,
                    ),
                    timeout=remaining(deadline),
                )
            )
    return stages


def satellite_pipeline() -> str:
    """The Assist pipeline the shared Home Assistant set-up creates."""
    from tests.harness.assist_home import PIPELINE_NAME  # noqa: PLC0415

    return PIPELINE_NAME


def report(stages: list[Stage], minutes: float) -> int:
    """Print what ran where and whether it passed; return the exit status."""
    print()
    print("=" * 78)
    print(f"arm-check report (host {platform.machine()}, {os.cpu_count()} cores)")
    print("=" * 78)
    for stage in stages:
        print(f"\n{'PASS' if stage.ok else 'FAIL'}  {stage.title}")
        print(
            f"      {stage.python}, QEMU_CPU={stage.qemu_cpu};"
            f" the guest saw {stage.cpu_seen}"
        )
        for check in stage.checks:
            print(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
            for note in check.notes:
                print(f"         note: {note}")
    within = minutes <= BUDGET_MINUTES
    print(
        f"\nwhole check: {minutes:.1f} min (limit {BUDGET_MINUTES:.0f} min"
        f"{'' if within else ', EXCEEDED'}); emulated times are not Pi times."
    )
    ok = bool(stages) and all(stage.ok for stage in stages)
    print(f"arm-check: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
