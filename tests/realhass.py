"""Helpers for tests that run a real `hass` process (scripts/devenv.py's code)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
import socket
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent


def _load_devenv() -> ModuleType:
    """Import scripts/devenv.py, which is a script and not a package module."""
    spec = importlib.util.spec_from_file_location(
        "devenv", REPO_ROOT / "scripts" / "devenv.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


devenv = _load_devenv()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
