"""One result line of the report, and the checks' shared plumbing."""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from dataclasses import dataclass, field
import os
from pathlib import Path
import subprocess
import time

# What qemu-user shows as "CPU part" in the guest's /proc/cpuinfo.
CPU_PARTS = {"0xd08": "Cortex-A72 (Raspberry Pi 4)", "0xd0b": "Cortex-A76 (Pi 5)"}


@dataclass
class Check:
    """One thing checked: what, on what, and whether it passed."""

    name: str
    ok: bool
    detail: str
    notes: list[str] = field(default_factory=list)


@dataclass
class Stage:
    """A group of checks run on one emulated interpreter and CPU."""

    title: str
    python: str
    qemu_cpu: str
    checks: list[Check] = field(default_factory=list)
    cpu_seen: str = "not reached"

    def add(self, name: str, ok: bool, detail: str, *notes: str) -> Check:
        """Record a result."""
        check = Check(name, ok, detail, list(notes))
        self.checks.append(check)
        return check

    @property
    def ok(self) -> bool:
        """Whether every check passed (and there was one)."""
        return bool(self.checks) and all(check.ok for check in self.checks)


def describe_cpu(cpu: dict[str, str]) -> str:
    """The emulated CPU as the guest sees it."""
    part = cpu.get("CPU part", "?")
    return (
        f"{cpu.get('machine', '?')}, CPU part {part}"
        f" = {CPU_PARTS.get(part, 'unknown core')}"
    )


def guest_env(qemu_cpu: str, pythonpath: list[Path]) -> dict[str, str]:
    """Environment of a guest interpreter: its CPU model and its packages."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV"))
    }
    env["QEMU_CPU"] = qemu_cpu
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in pythonpath)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the checkout clean
    return env


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Measure a block's wall time (emulated time: reported as such only)."""
    elapsed = [0.0]
    started = time.monotonic()
    try:
        yield elapsed
    finally:
        elapsed[0] = time.monotonic() - started


def run_guest(
    command: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run an emulated program; a timeout becomes a failed result, not a hang."""
    try:
        return subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as err:
        stderr = err.stderr.decode(errors="replace") if err.stderr else ""
        return subprocess.CompletedProcess(
            command, -9, "", f"timed out after {timeout:.0f} s\n{stderr}"
        )
