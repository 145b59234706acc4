"""Atomic file writes under real thread concurrency, and after failures."""

from __future__ import annotations

from pathlib import Path
import threading
from typing import Any, cast

import pytest

from custom_components.tts_ai.files import write_atomically

WRITERS = 48


def _write_all_at_once(path: Path, payloads: list[bytes]) -> list[BaseException]:
    """Let every thread write its payload to ``path`` at the same moment."""
    start = threading.Barrier(len(payloads))
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(data: bytes) -> None:
        start.wait()
        try:
            write_atomically(path, data)
        except BaseException as err:  # collected for the assertion
            with lock:
                errors.append(err)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_writers_of_one_path_all_succeed(tmp_path: Path) -> None:
    """Many threads writing one file: none fails, the file is one whole version."""
    path = tmp_path / "chimes" / "two_tone.wav"
    payloads = [bytes([n]) * (64 * 1024 + n) for n in range(WRITERS)]

    errors = _write_all_at_once(path, payloads)

    assert errors == []
    assert path.read_bytes() in payloads
    assert [p.name for p in path.parent.iterdir()] == ["two_tone.wav"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    """A write that fails part way leaves the previous file whole, nothing else."""
    folder = tmp_path / "results"
    path = folder / "result.wav"
    write_atomically(path, b"old version")

    with pytest.raises(TypeError):
        write_atomically(path, cast(Any, "not bytes"))

    assert path.read_bytes() == b"old version"
    assert [p.name for p in folder.iterdir()] == ["result.wav"]


def test_failed_rename_leaves_no_temporary(tmp_path: Path) -> None:
    """When the rename fails (a folder is in the way), no temporary file stays."""
    path = tmp_path / "results" / "taken"
    path.mkdir(parents=True)

    with pytest.raises(OSError):
        write_atomically(path, b"data")

    assert [p.name for p in path.parent.iterdir()] == ["taken"]
    assert path.is_dir()


def test_a_leftover_temporary_of_the_same_name_is_stepped_around(
    tmp_path: Path,
) -> None:
    """A stale temporary (say, from a crash) never blocks nor corrupts a write."""
    from unittest.mock import patch

    folder = tmp_path / "voices"
    folder.mkdir()
    target = folder / "voice.wav"
    stale = folder / ".voice.wav.aaaaaaaaaaaa.tmp"
    stale.write_bytes(b"stale")
    names = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])

    with patch(
        "custom_components.tts_ai.files.secrets.token_hex", lambda _n: next(names)
    ):
        write_atomically(target, b"new")

    assert target.read_bytes() == b"new"
    assert stale.read_bytes() == b"stale"  # someone else's file, left alone
    assert sorted(p.name for p in folder.iterdir()) == [stale.name, target.name]
