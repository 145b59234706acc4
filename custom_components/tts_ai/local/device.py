"""What the board can do, and the engine settings that suit it.

The choices are aimed at Raspberry Pis: a Pi Zero cannot run a medium Piper
voice in real time, a Pi 3 barely can, a Pi 4 or 5 runs it easily. Whisper
"base" is several times slower than "tiny" and does not fit a Pi's budget
for a voice command, so only a roomy x86 machine gets it.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import platform
import re

# Where the board's model string lives; the first one that exists wins.
_MODEL_FILES = ("proc/device-tree/model", "sys/firmware/devicetree/base/model")
# "Raspberry Pi 4 Model B Rev 1.4", "Raspberry Pi 400 Rev 1.0",
# "Raspberry Pi Compute Module 4 Rev 1.0", "Raspberry Pi Zero 2 W Rev 1.0".
_PI_MODEL = re.compile(r"Raspberry Pi (?:Compute Module )?(?:(Zero)|(\d))?")
# ONNX Runtime and CTranslate2 gain little past four threads for models this
# small, and the rest of Home Assistant still needs a core.
_MAX_THREADS = 4
# Whisper "base" needs about 1 GB while decoding; ask for 4 GB of RAM so the
# rest of the system keeps its memory.
_BASE_WHISPER_MIN_MEMORY_MB = 4096


@dataclass(frozen=True)
class DeviceProfile:
    """The hardware facts that decide the engine settings."""

    physical_cores: int
    machine: str
    """CPU architecture as ``uname -m`` reports it: aarch64, armv7l, x86_64."""
    model_name: str | None = None
    """Board model from the device tree, e.g. "Raspberry Pi 4 Model B Rev 1.4"."""
    total_memory_mb: int | None = None

    @property
    def is_arm(self) -> bool:
        """Whether the CPU is an ARM one (every Raspberry Pi)."""
        return self.machine.lower().startswith(("arm", "aarch64"))

    @property
    def pi_generation(self) -> int | None:
        """0 for a Pi Zero, else the Pi's number (1-5); None if not a Pi."""
        if not self.model_name:
            return None
        match = _PI_MODEL.search(self.model_name)
        if match is None:
            return None
        if match.group(1):
            return 0
        if match.group(2):
            return int(match.group(2))  # "400" and "500" keyboards: first digit
        return 1  # the original "Raspberry Pi Model B" has no number

    @property
    def piper_quality(self) -> str:
        """The Piper voice quality this board synthesises faster than real time."""
        generation = self.pi_generation
        if generation is None or generation >= 4:
            return "medium"
        if generation >= 2:
            return "low"
        return "x_low"  # Pi Zero and Pi 1: one slow ARMv6 core

    @property
    def whisper_model(self) -> str:
        """The Whisper model size worth running here."""
        roomy = (self.total_memory_mb or 0) >= _BASE_WHISPER_MIN_MEMORY_MB
        return "base" if not self.is_arm and roomy else "tiny"

    @property
    def whisper_beam_size(self) -> int:
        """Beam size for Whisper decoding.

        Greedy decoding (1) everywhere: a wider beam multiplies decoding time
        and, on short voice commands, has not been measured to help here.
        """
        return 1

    @property
    def intra_op_threads(self) -> int:
        """Threads for one inference: the physical cores, at most four."""
        return max(1, min(self.physical_cores, _MAX_THREADS))


def detect_device_profile(
    root: Path = Path("/"), *, machine: str | None = None
) -> DeviceProfile:
    """Read the device profile from ``/proc`` and ``/sys`` under ``root``.

    ``root`` lets tests supply a fake file system; ``machine`` defaults to
    this interpreter's ``platform.machine()``. Blocking file I/O: call it
    in an executor from async code.
    """
    cpuinfo = _read_text(root / "proc/cpuinfo") or ""
    cores = _physical_cores(cpuinfo)
    if root == Path("/"):
        # A container or a pinned process may use fewer CPUs than the board has:
        # more inference threads than usable CPUs only fight over them.
        cores = min(cores, len(os.sched_getaffinity(0)))
    return DeviceProfile(
        physical_cores=cores,
        machine=machine or platform.machine(),
        model_name=_board_model(root),
        total_memory_mb=_total_memory_mb(_read_text(root / "proc/meminfo") or ""),
    )


def _physical_cores(cpuinfo: str) -> int:
    """Count physical cores: hyper-threads of one core share a core."""
    cores: set[tuple[str, str]] = set()
    processors = 0
    physical_id = core_id = None
    for line in [*cpuinfo.splitlines(), ""]:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            processors += 1
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
        elif not key:  # a blank line ends one processor's block
            if core_id is not None:
                cores.add((physical_id or "0", core_id))
            physical_id = core_id = None
    if cores:
        return len(cores)
    # ARM kernels list no core ids; there every "processor" is a real core.
    return processors or os.cpu_count() or 1


def _board_model(root: Path) -> str | None:
    """Return the device-tree model string, if the board has one."""
    for relative in _MODEL_FILES:
        text = _read_text(root / relative)
        if text:
            return text.strip("\x00 \n") or None  # the kernel NUL-terminates it
    return None


def _total_memory_mb(meminfo: str) -> int | None:
    """Parse ``MemTotal`` (in kB) from /proc/meminfo."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) // 1024
    return None


def _read_text(path: Path) -> str | None:
    """Return a file's text, or None when it is missing or unreadable."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
