"""Verified, resumable, atomic file downloads for the model store.

Each file is streamed to ``<name>.part``, fsynced, checked against the host's
size and digest (md5 for Piper voices, sha256 or git blob sha1 for Hugging
Face files) and only then renamed into place, so a corrupt or partial file
never sits under its final name. A ``.part`` left by an interrupted download
is resumed with an HTTP ``Range`` request. Connection trouble, 5xx answers
and truncated bodies are retried with a doubling pause; every other failure
is one of the typed :class:`ModelDownloadError` subclasses.

Plain Python (no Home Assistant import). Every file operation runs in the
event loop's default executor; only network I/O runs in the loop itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import contextlib
from dataclasses import dataclass
import functools
import hashlib
import logging
import os
from pathlib import Path
import re
import shutil
from typing import Any, BinaryIO, Final

import aiohttp

from ..files import write_atomically

_LOGGER = logging.getLogger(__name__)

PART_SUFFIX: Final = ".part"

MD5: Final = "md5"
SHA256: Final = "sha256"
GIT_BLOB_SHA1: Final = "git-blob-sha1"

# Chunks are gathered to this size before one executor write: a hop to the
# executor per 64 KiB network chunk would cost more than the write itself.
_WRITE_BATCH_BYTES = 1 << 20
_HASH_BLOCK_BYTES = 1 << 20
# voices.json is ~0.5 MB today; refuse anything absurd rather than buffer it.
_MAX_INDEX_BYTES = 32 << 20
_MAX_BACKOFF_SECONDS = 30.0
# Keys and names become directory names: no separators, no leading dot.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


class ModelDownloadError(Exception):
    """A model could not be downloaded or installed."""


class ModelNotFoundError(ModelDownloadError):
    """The host does not have the model (or one of its files)."""


class ModelIntegrityError(ModelDownloadError):
    """A downloaded file does not match the size or digest the host lists."""


class ModelStorageError(ModelDownloadError):
    """A model file could not be written (disk full, no permission, ...)."""


class TransientDownloadError(Exception):
    """A failure worth retrying: connection trouble, 5xx, a truncated body."""


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One file to fetch, with what it must hash to."""

    name: str
    """Local file name inside the model directory."""
    url: str
    size: int
    algorithm: str
    digest: str


class Downloader:
    """Fetch index documents and verified files over one aiohttp session.

    ``retries`` is how many times one request is repeated after a connection
    error, a 5xx answer or a truncated body; the pauses start at
    ``retry_backoff`` seconds and double. ``read_timeout`` bounds a stalled
    transfer, which is then resumed like a dropped one.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        retries: int,
        retry_backoff: float,
        chunk_size: int,
        read_timeout: float,
    ) -> None:
        """Keep the settings; nothing touches the network yet."""
        self._session = session
        self._retries = max(0, retries)
        self._retry_backoff = max(0.0, retry_backoff)
        self._chunk_size = max(1024, chunk_size)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=30.0, sock_read=read_timeout
        )

    async def fetch_index(self, what: str, url: str) -> bytes:
        """GET a small JSON document (a catalogue or a file list), with retries."""
        return await self.retrying(what, lambda: self._get_index(url))

    async def fetch_file(
        self,
        directory: Path,
        label: str,
        file: RemoteFile,
        on_bytes: Callable[[int], None],
    ) -> None:
        """Put a verified copy of ``file`` under its final name in ``directory``.

        ``label`` names the model in messages; ``on_bytes`` hears how many
        bytes of this file are in place so far.
        """
        final = directory / file.name
        part = directory / (file.name + PART_SUFFIX)
        # A file left by an install that stopped before its manifest is
        # reused if it verifies; one that does not is removed right away.
        if await run_blocking(_verify_file, final, file) is None:
            _LOGGER.debug("%s of %s is already in place", file.name, label)
            return
        await storage_call(label, _unlink_quietly, final)
        await _check_free_space(directory, label, file, part)

        async def attempt() -> None:
            resumed = await self._download_part(label, file, part, on_bytes)
            problem = await run_blocking(_verify_file, part, file)
            if problem is not None:
                await storage_call(label, _unlink_quietly, part)
                message = f"{file.name} of {label} is corrupt: {problem}"
                if resumed:
                    # The resumed head may come from an older copy of the
                    # file; one more try from scratch settles it.
                    raise TransientDownloadError(message)
                raise ModelIntegrityError(message)
            await storage_call(label, _commit_part, part, final)

        try:
            await self.retrying(f"{file.name} of {label}", attempt)
        except ModelStorageError, ModelIntegrityError, ModelNotFoundError:
            # Nothing worth resuming. After other failures (the host stayed
            # unreachable) the .part is kept for the next attempt to resume.
            await run_blocking(_unlink_quietly, part)
            raise

    async def retrying[T](self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt``, repeating it after transient failures."""
        failures = 0
        while True:
            try:
                return await attempt()
            except TransientDownloadError as err:
                failures += 1
                if failures > self._retries:
                    raise ModelDownloadError(
                        f"Could not download {what} after {failures} attempts: {err}"
                    ) from err
                delay = min(
                    self._retry_backoff * 2 ** (failures - 1), _MAX_BACKOFF_SECONDS
                )
                _LOGGER.warning(
                    "Download of %s failed (%s); retry %d of %d in %.1f s",
                    what,
                    err,
                    failures,
                    self._retries,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _get_index(self, url: str) -> bytes:
        """GET a small JSON document once, bounded in size."""
        try:
            async with self._session.get(url, timeout=self._timeout) as response:
                _raise_for_status(response, url)
                length = response.content_length
                if length is not None and length > _MAX_INDEX_BYTES:
                    raise ModelDownloadError(f"{url} is too large ({length} bytes)")
                body = bytearray()
                async for chunk in response.content.iter_chunked(self._chunk_size):
                    body += chunk
                    if len(body) > _MAX_INDEX_BYTES:
                        raise ModelDownloadError(f"{url} is too large")
                if length is not None and len(body) != length:
                    raise TransientDownloadError(
                        f"{url} ended after {len(body)} of {length} bytes"
                    )
                return bytes(body)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise TransientDownloadError(f"{url}: {type(err).__name__}: {err}") from err

    async def _download_part(
        self,
        label: str,
        file: RemoteFile,
        part: Path,
        on_bytes: Callable[[int], None],
    ) -> bool:
        """Bring ``part`` up to ``file.size`` bytes; return whether it resumed."""
        offset = await run_blocking(_part_size, part)
        if offset > file.size:
            await storage_call(label, _unlink_quietly, part)
            offset = 0
        if offset == file.size:
            return True  # complete but never verified: verify it now
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        what = f"{file.name} of {label}"
        try:
            async with self._session.get(
                file.url, headers=headers, timeout=self._timeout
            ) as response:
                if response.status == 416:
                    # The host will not serve that range: start over.
                    await storage_call(label, _unlink_quietly, part)
                    raise TransientDownloadError(f"HTTP 416 for the rest of {what}")
                _raise_for_status(response, what)
                if response.status == 206:
                    start, full_size = _content_range(response)
                    if start != offset:
                        await storage_call(label, _unlink_quietly, part)
                        raise TransientDownloadError(
                            f"asked for {what} from byte {offset}, got byte {start}"
                        )
                    announced = full_size
                else:
                    offset = 0  # a 200 answer is the whole file: start over
                    announced = response.content_length
                if announced is not None and announced != file.size:
                    raise ModelIntegrityError(
                        f"{what} is {announced} bytes on the server, but "
                        f"{file.size} bytes are expected"
                    )
                on_bytes(offset)
                await self._stream_to_part(
                    what, file, part, response, offset=offset, on_bytes=on_bytes
                )
        except (aiohttp.ClientError, TimeoutError) as err:
            raise TransientDownloadError(
                f"{what}: {type(err).__name__}: {err}"
            ) from err
        return offset > 0

    async def _stream_to_part(
        self,
        what: str,
        file: RemoteFile,
        part: Path,
        response: aiohttp.ClientResponse,
        *,
        offset: int,
        on_bytes: Callable[[int], None],
    ) -> None:
        """Write the response body into ``part`` from ``offset``, and fsync it."""
        handle = await storage_call(what, _open_part, part, offset)
        try:
            received = await self._write_body(
                what, file, handle, response, offset=offset, on_bytes=on_bytes
            )
        except BaseException:
            # Also on errors and cancellation: what arrived is kept for a
            # resume. A close failure must not hide the original error.
            with contextlib.suppress(ModelStorageError):
                await storage_call(what, _close_part, handle)
            raise
        await storage_call(what, _close_part, handle)
        if received < file.size:
            raise TransientDownloadError(
                f"{what} ended after {received} of {file.size} bytes"
            )

    async def _write_body(
        self,
        what: str,
        file: RemoteFile,
        handle: BinaryIO,
        response: aiohttp.ClientResponse,
        *,
        offset: int,
        on_bytes: Callable[[int], None],
    ) -> int:
        """Copy the body to ``handle`` in batches; return the file's new size."""
        received = offset
        batch = bytearray()
        try:
            async for chunk in response.content.iter_chunked(self._chunk_size):
                if received + len(chunk) > file.size:
                    raise ModelIntegrityError(
                        f"{what} is longer than the expected {file.size} bytes"
                    )
                received += len(chunk)
                batch += chunk
                if len(batch) >= _WRITE_BATCH_BYTES:
                    data, batch = batch, bytearray()
                    await storage_call(what, _write_all, handle, data)
                on_bytes(received)
        finally:
            # Also when the connection drops: the bytes that did arrive
            # are good and spare the resume from fetching them again.
            if batch:
                await storage_call(what, _write_all, handle, batch)
        return received


# --- helpers that run in the event loop -------------------------------------


async def run_blocking[T](func: Callable[..., T], *args: Any) -> T:
    """Run blocking ``func(*args)`` in the loop's default executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args))


async def storage_call[T](what: str, func: Callable[..., T], *args: Any) -> T:
    """Run a file operation in the executor; OSError -> ModelStorageError."""
    try:
        return await run_blocking(func, *args)
    except OSError as err:
        raise ModelStorageError(
            f"Could not write {what}: {err.strerror or err}"
            + (f" ({err.filename})" if err.filename else "")
        ) from err


def check_name(name: str, what: str) -> None:
    """Refuse names that would escape the models directory."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ModelNotFoundError(f"{what} name {name!r} is not valid")


async def _check_free_space(
    directory: Path, label: str, file: RemoteFile, part: Path
) -> None:
    """Fail early, with a clear message, when the file cannot fit."""
    needed = file.size - await run_blocking(_part_size, part)
    try:
        free = (await run_blocking(shutil.disk_usage, directory)).free
    except OSError:
        return  # unknown: let the writes find out
    if free < needed:
        raise ModelStorageError(
            f"Not enough disk space for {file.name} of {label}: "
            f"{needed} bytes needed, {free} free in {directory}"
        )


def _raise_for_status(response: aiohttp.ClientResponse, what: str) -> None:
    """Map an HTTP status to the right exception (or nothing for success)."""
    status = response.status
    if status in (200, 206):
        return
    if status in (404, 410):
        raise ModelNotFoundError(f"{what} is not on the server (HTTP {status})")
    if status in (408, 429) or status >= 500:
        raise TransientDownloadError(f"HTTP {status} for {what}")
    raise ModelDownloadError(f"HTTP {status} for {what}")


def _content_range(response: aiohttp.ClientResponse) -> tuple[int, int | None]:
    """(first byte, full size or None) from a 206 answer's Content-Range."""
    value = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value)
    if match is None:
        raise TransientDownloadError(f"unreadable Content-Range {value!r}")
    full = match.group(2)
    return int(match.group(1)), None if full == "*" else int(full)


# --- blocking helpers (executor only) ----------------------------------------


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, and make the rename durable."""
    write_atomically(path, data)
    _fsync_dir(path.parent)


def _new_hasher(algorithm: str, size: int) -> Any:
    if algorithm == MD5:
        return hashlib.md5(usedforsecurity=False)
    if algorithm == SHA256:
        return hashlib.sha256()
    if algorithm == GIT_BLOB_SHA1:
        hasher = hashlib.sha1(usedforsecurity=False)
        hasher.update(b"blob %d\0" % size)
        return hasher
    raise ValueError(f"unknown digest algorithm {algorithm}")


def _verify_file(path: Path, file: RemoteFile) -> str | None:
    """None if ``path`` has the expected size and digest, else what is wrong."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size != file.size:
        return f"{size} bytes instead of {file.size}"
    hasher = _new_hasher(file.algorithm, file.size)
    with path.open("rb") as stream:
        while block := stream.read(_HASH_BLOCK_BYTES):
            hasher.update(block)
    digest = hasher.hexdigest()
    if digest != file.digest:
        return f"{file.algorithm} {digest} instead of {file.digest}"
    return None


def _part_size(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _open_part(part: Path, offset: int) -> BinaryIO:
    """Open ``part`` for writing at ``offset``, dropping anything after it."""
    if offset == 0:
        return part.open("wb")
    handle = part.open("r+b")
    handle.truncate(offset)
    handle.seek(offset)
    return handle


def _write_all(handle: BinaryIO, data: bytes | bytearray) -> None:
    """Write one batch of downloaded bytes."""
    handle.write(data)


def _close_part(handle: BinaryIO) -> None:
    """Flush, fsync and close: the bytes must be on disk before verification."""
    try:
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()


def _commit_part(part: Path, final: Path) -> None:
    """Move a verified ``.part`` under its final name, durably."""
    part.replace(final)
    _fsync_dir(final.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; not every platform can open a directory."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _unlink_quietly(path: Path) -> None:
    path.unlink(missing_ok=True)
