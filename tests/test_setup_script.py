"""`scripts/setup` names the missing system packages before pip starts.

Run on a copy of the checkout's set-up files, as an unprivileged user (root
would install the packages instead) with a PATH that lacks ffmpeg.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import tempfile

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# What bash and the script itself call; ffmpeg deliberately left out.
TOOLS = ("bash", "cat", "sha256sum", "cut", "id", "dirname", "gcc", "g++", "make")


@pytest.fixture
def checkout() -> Path:
    """The set-up files in a folder an unprivileged user may enter."""
    root = Path(tempfile.mkdtemp(prefix="setup-test-"))
    try:
        (root / "scripts").mkdir()
        (root / "config").mkdir()
        for name in ("scripts/setup", "requirements_test.txt"):
            shutil.copy2(REPO_ROOT / name, root / name)
        shutil.copy2(
            REPO_ROOT / "config" / "configuration.yaml",
            root / "config" / "configuration.yaml",
        )
        tools = root / "bin"
        tools.mkdir()
        for tool in TOOLS:
            if found := shutil.which(tool):
                (tools / tool).symlink_to(found)
        for path in (root, *root.rglob("*")):
            if not path.is_symlink():
                path.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root)


def test_setup_names_missing_packages_and_stops_before_pip(checkout: Path) -> None:
    """No ffmpeg on PATH, not root: it says what to install and installs nothing."""
    command = [str(checkout / "bin" / "bash"), str(checkout / "scripts" / "setup")]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv is not None  # util-linux, on every Debian
        command = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        command += [str(checkout / "bin" / "bash"), str(checkout / "scripts" / "setup")]
    result = subprocess.run(
        command,
        env={"PATH": str(checkout / "bin"), "HOME": str(checkout)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    [missing_line] = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("setup: missing system packages: ")
    ]
    assert "ffmpeg" in missing_line.split(": ")[-1].split()
    assert "sudo apt-get install" in result.stderr
    assert "installing" not in result.stdout  # pip never started
    assert not (checkout / ".venv").exists()
