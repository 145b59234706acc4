"""Install aarch64 wheels for the emulated Pythons, the way Home Assistant would.

The host's ``uv`` (Home Assistant's own installer, in the project's venv)
installs into a folder that the guest interpreter gets as ``PYTHONPATH``.
For the engines it is called with the arguments Home Assistant's
``homeassistant.util.package.install_package`` uses (one requirement at a
time, ``--upgrade``, ``--index-strategy unsafe-first-match``, HA's
``package_constraints.txt``), plus the target platform. Folders are cached
under the cache directory, keyed by everything that decides their content.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
import hashlib
import os
from pathlib import Path
import shutil
import subprocess
import sys

from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINE_REQUIREMENTS_SOURCE = (
    REPO_ROOT / "custom_components" / "tts_ai" / "local" / "__init__.py"
)
ENGINE_REQUIREMENT_NAMES = ("PIPER_REQUIREMENTS", "WHISPER_REQUIREMENTS")
# The one package the engines' code needs that Home Assistant itself ships
# (the model manager downloads with it); installed at HA's pinned version.
HA_PROVIDED = ("aiohttp",)
# A Raspberry Pi OS 12 / Debian 12 glibc is 2.36: any manylinux wheel up to
# 2_36 runs there (pymicro-wakeword publishes manylinux_2_35 only).
PLATFORM = "aarch64-manylinux_2_36"
_INSTALL_TIMEOUT = 900.0


class InstallError(Exception):
    """A requirement has no installable aarch64 build."""


@dataclass(frozen=True)
class Installed:
    """A folder of aarch64 packages for one guest Python."""

    target: Path
    requirements: tuple[str, ...]
    cached: bool


def ha_constraints() -> Path:
    """Home Assistant's ``package_constraints.txt`` (the installed HA's own)."""
    import homeassistant  # noqa: PLC0415 - only its location is needed

    return Path(homeassistant.__file__).parent / "package_constraints.txt"


def engine_requirements() -> list[str]:
    """The requirement strings the integration hands to HA's installer.

    Read from the source (not imported): the integration's package imports
    Home Assistant, and the strings are plain list literals there.
    """
    tree = ast.parse(ENGINE_REQUIREMENTS_SOURCE.read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ENGINE_REQUIREMENT_NAMES:
                found[target.id] = list(ast.literal_eval(node.value))
    missing = [name for name in ENGINE_REQUIREMENT_NAMES if name not in found]
    if missing:
        raise InstallError(f"{ENGINE_REQUIREMENTS_SOURCE} has no {missing}")
    return [req for name in ENGINE_REQUIREMENT_NAMES for req in found[name]]


def file_requirements(path: Path, *, leave_out: tuple[str, ...]) -> list[str]:
    """The requirements of a requirements file, minus the named packages."""
    wanted = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and Requirement(line).name.lower() not in leave_out:
            wanted.append(line)
    return wanted


def _uv(*args: str) -> list[str]:
    return [sys.executable, "-m", "uv", *args]


def _key(python: str, requirements: list[str], constraints: Path | None) -> str:
    digest = hashlib.sha256()
    for part in (PLATFORM, python, *requirements):
        digest.update(part.encode() + b"\0")
    if constraints is not None:
        digest.update(constraints.read_bytes())
    return digest.hexdigest()[:16]


def install(
    cache_dir: Path,
    python: str,
    requirements: list[str],
    *,
    constraints: Path | None,
    one_at_a_time: bool,
) -> Installed:
    """Install ``requirements`` as aarch64 wheels for CPython ``python`` (3.14).

    ``one_at_a_time`` calls the installer once per requirement, as Home
    Assistant does. Wheels only: the emulated guests have no compiler, and a
    requirement without an aarch64 wheel is exactly what this check must find.
    """
    key = _key(python, requirements, constraints)
    target = cache_dir / f"site-cp{python.replace('.', '')}-aarch64-{key}"
    stamp = target / ".complete"
    if stamp.is_file():
        return Installed(target, tuple(requirements), cached=True)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    common = [
        *("--quiet", "--index-strategy", "unsafe-first-match", "--upgrade"),
        *(("--constraint", str(constraints)) if constraints else ()),
        *("--target", str(target)),
        *("--python-platform", PLATFORM, "--python-version", python),
        *("--only-binary", ":all:"),
    ]
    batches = [[req] for req in requirements] if one_at_a_time else [requirements]
    env = {**os.environ, "UV_CACHE_DIR": str(cache_dir / "uv")}
    for batch in batches:
        result = subprocess.run(
            _uv("pip", "install", *batch, *common),
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=_INSTALL_TIMEOUT,
        )
        if result.returncode != 0:
            raise InstallError(
                f"{' '.join(batch)} for cp{python} {PLATFORM}: "
                + (result.stderr.strip() or result.stdout.strip())[-1500:]
            )
    stamp.write_text("\n".join(requirements) + "\n", encoding="utf-8")
    return Installed(target, tuple(requirements), cached=False)


def installed_version(target: Path, name: str) -> str | None:
    """The version of ``name`` in a target folder (from its dist-info)."""
    prefix = name.lower().replace("-", "_") + "-"
    for info in target.glob("*.dist-info"):
        if info.name.lower().startswith(prefix):
            return info.name[len(prefix) : -len(".dist-info")]
    return None
