"""The machine and software the figures were measured on."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
import os
from pathlib import Path
import platform
from typing import Any

from .common import integration_module

_PACKAGES = (
    "onnxruntime",
    "piper-tts",
    "ctranslate2",
    "faster-whisper",
    "numpy",
    "wyoming-piper",
    "wyoming-faster-whisper",
    "wyoming",
)


def _cpu_model() -> str:
    """The first "model name" in /proc/cpuinfo (ARM kernels may have none)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"model name", "Model", "Hardware"} and value.strip():
            return value.strip()
    return platform.processor() or "unknown"


def _package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python and the inference packages' versions."""
    profile = integration_module("local").detect_device_profile()
    return {
        "cpu_model": _cpu_model(),
        "architecture": profile.machine,
        "logical_cores": os.cpu_count(),
        "physical_cores": profile.physical_cores,
        "ram_mb": profile.total_memory_mb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: _package_version(name) for name in _PACKAGES},
    }


def machine_summary(info: dict[str, Any]) -> str:
    """One line for the report, e.g. "AMD EPYC, 2 cores (2 logical), 24105 MB"."""
    packages = ", ".join(
        f"{name} {ver}" for name, ver in info["packages"].items() if ver is not None
    )
    return (
        f"{info['cpu_model']} ({info['architecture']}), "
        f"{info['physical_cores']} physical / {info['logical_cores']} logical cores, "
        f"{info['ram_mb']} MB RAM, Python {info['python']}; {packages}"
    )
