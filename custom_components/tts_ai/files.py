"""Writing files so that nobody ever reads half of one (no Home Assistant import)."""

from __future__ import annotations

from collections.abc import Callable
import os
from pathlib import Path
import secrets
import shutil
from typing import BinaryIO

# Hidden, and recognisably ours: ".<name>.<random>.tmp" next to the target.
_TEMPORARY_SUFFIX = ".tmp"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file (blocking).

    A reader (a media player, a model loader) sees the old file or the whole
    new one; a crash or a full disk leaves no truncated file under ``path``.
    Each call writes its own temporary file, so concurrent writers of one path
    (two announcements making the chime at once) all succeed: the last rename
    wins, and every version is whole.
    """
    _write_through_temporary(path, lambda handle: handle.write(data))


def copy_atomically(source: Path, path: Path) -> None:
    """Copy the file ``source`` to ``path`` the same way (blocking), streamed."""
    with source.open("rb") as origin:
        _write_through_temporary(
            path, lambda handle: shutil.copyfileobj(origin, handle)
        )


def _write_through_temporary(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Let ``write`` fill a fresh temporary file, fsync it and rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary, descriptor = _create_temporary(path)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[Path, int]:
    """Create a new, empty temporary file beside ``path``; return it and its fd.

    ``O_EXCL`` with a random name rather than ``tempfile.mkstemp``: mkstemp
    makes the file 0600, and the renamed result would then lose the permissions
    the umask gives every other file (a media server running as another user
    could no longer read it).
    """
    while True:
        temporary = path.with_name(
            f".{path.name}.{secrets.token_hex(6)}{_TEMPORARY_SUFFIX}"
        )
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return temporary, os.open(temporary, flags, 0o666)
        except FileExistsError:
            continue
