"""Download Piper voices and Whisper models ahead of time, verified and resumable.

The on-device engines only help when the cloud is unreachable, which is
exactly when the model hosts are unreachable too; so models are fetched at
setup and kept under ``<config>/tts_ai/models/``::

    piper/voices.json                    the catalogue, cached for offline use
    piper/<voice key>/<file>             e.g. en_US-joe-medium.onnx(.json)
    whisper/<model name>/<file>          config.json, model.bin, tokenizer.json, ...
    <kind>/<model>/manifest.json         written last, once every file verified

A model counts as installed only when its manifest exists and every file it
lists is present at the listed size: an interrupted download never looks
complete. Each file is streamed to ``<name>.part``, fsynced, checked against
the host's size and digest (md5 for Piper voices, sha256 or git blob sha1 for
Hugging Face files) and only then renamed into place, so a corrupt or partial
file never sits under its final name. A ``.part`` left by an interrupted
download is resumed with an HTTP ``Range`` request.

Plain Python (no Home Assistant import). Every file operation runs in the
event loop's default executor; only network I/O runs in the loop itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
import contextlib
from dataclasses import dataclass, field
import functools
import hashlib
import json
import logging
import os
from pathlib import Path
import re
import shutil
import time
from typing import Any, BinaryIO, Final
from urllib.parse import quote

import aiohttp

from ..files import write_atomically

_LOGGER = logging.getLogger(__name__)

PIPER_VOICES_URL: Final = "https://huggingface.co/rhasspy/piper-voices/resolve/main/"
HF_URL: Final = "https://huggingface.co"
# faster-whisper's own download helper uses these CTranslate2 conversions.
WHISPER_REPO_OWNER: Final = "Systran"

PIPER_DIR: Final = "piper"
WHISPER_DIR: Final = "whisper"
MANIFEST_NAME: Final = "manifest.json"
CATALOGUE_NAME: Final = "voices.json"
PART_SUFFIX: Final = ".part"
MANIFEST_FORMAT: Final = 1

# Lowest to highest; a missing quality falls back to the nearest lower one.
PIPER_QUALITIES: Final = ("x_low", "low", "medium", "high")
_PIPER_MODEL_SUFFIX = ".onnx"
_PIPER_CONFIG_SUFFIX = ".onnx.json"

# What faster-whisper's WhisperModel reads from a model directory.
_WHISPER_REQUIRED = ("config.json", "model.bin", "tokenizer.json")
_WHISPER_VOCABULARIES = ("vocabulary.txt", "vocabulary.json")
# large-v3 and its kin need it for their 128 mel bins; older models lack it.
_WHISPER_OPTIONAL = ("preprocessor_config.json",)

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


class _TransientError(Exception):
    """A failure worth retrying: connection trouble, 5xx, a truncated body."""


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """How far the download of one model has come, over all of its files."""

    item: str
    """The model: a Piper voice key or a Whisper model name."""
    downloaded_bytes: int
    total_bytes: int


ProgressCallback = Callable[[DownloadProgress], None]


@dataclass(frozen=True, slots=True)
class PiperFile:
    """One file of a Piper voice as ``voices.json`` lists it."""

    path: str
    """Path relative to the catalogue's base URL."""
    size_bytes: int
    md5_digest: str


@dataclass(frozen=True, slots=True)
class PiperVoiceInfo:
    """A Piper voice from the rhasspy ``voices.json`` catalogue."""

    key: str
    """e.g. ``en_US-joe-medium``."""
    name: str
    language: str
    """Language code with region, e.g. ``en_US``."""
    family: str
    """Language without region, e.g. ``en``."""
    quality: str
    num_speakers: int
    files: tuple[PiperFile, ...]


@dataclass(frozen=True, slots=True)
class LocalVoiceFiles:
    """An installed Piper voice: what ``PiperVoice.load`` needs."""

    key: str
    model_path: Path
    config_path: Path


@dataclass(frozen=True, slots=True)
class _RemoteFile:
    """One file to fetch, with what it must hash to."""

    name: str
    """Local file name inside the model directory."""
    url: str
    size: int
    algorithm: str
    digest: str


@dataclass(frozen=True, slots=True)
class _ModelSpec:
    """Everything needed to install one model."""

    kind: str
    model_id: str
    directory: Path
    source: str
    files: tuple[_RemoteFile, ...]

    @property
    def label(self) -> str:
        """How the model is named in messages."""
        kind = "Piper voice" if self.kind == PIPER_DIR else "Whisper model"
        return f"{kind} {self.model_id}"


@dataclass
class _DownloadJob:
    """One model download, shared by every caller that asked for the model."""

    item: str
    listeners: list[ProgressCallback] = field(default_factory=list)
    waiters: int = 0
    last_reported: int = -1
    task: asyncio.Task[None] | None = None

    def report(self, downloaded: int, total: int) -> None:
        """Tell the listeners, never reporting fewer bytes than before.

        A restarted file would otherwise make the count jump backwards.
        """
        if downloaded <= self.last_reported:
            return
        self.last_reported = downloaded
        progress = DownloadProgress(self.item, downloaded, total)
        for listener in list(self.listeners):
            try:
                listener(progress)
            except Exception:
                # A broken progress display must not abort the download.
                _LOGGER.exception("Progress callback for %s failed", self.item)


class ModelManager:
    """Fetch, verify and locate the models of the on-device engines.

    ``root`` is the models directory (``<config>/tts_ai/models``). The base
    URLs are settings so tests (and mirrors) can serve the files elsewhere.
    Concurrent requests for the same model share one download.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        root: Path,
        *,
        piper_base_url: str = PIPER_VOICES_URL,
        hf_base_url: str = HF_URL,
        retries: int = 3,
        retry_backoff: float = 1.0,
        chunk_size: int = 1 << 16,
        read_timeout: float = 60.0,
    ) -> None:
        """Set up the manager; nothing touches the disk or network yet.

        ``retries`` is how many times one request is repeated after a
        connection error, a 5xx answer or a truncated body; the pauses start
        at ``retry_backoff`` seconds and double. ``read_timeout`` bounds a
        stalled transfer, which is then resumed like a dropped one.
        """
        self._session = session
        self._root = Path(root)
        self._piper_base = piper_base_url.rstrip("/") + "/"
        self._hf_base = hf_base_url.rstrip("/")
        self._retries = max(0, retries)
        self._retry_backoff = max(0.0, retry_backoff)
        self._chunk_size = max(1024, chunk_size)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=30.0, sock_read=read_timeout
        )
        self._catalogue: dict[str, PiperVoiceInfo] | None = None
        self._catalogue_lock = asyncio.Lock()
        self._jobs: dict[tuple[str, str], _DownloadJob] = {}
        # Cancelled downloads that may still be closing their files.
        self._stopping: dict[tuple[str, str], asyncio.Task[None]] = {}

    @property
    def root(self) -> Path:
        """The models directory."""
        return self._root

    # --- Piper ------------------------------------------------------------

    async def piper_catalogue(
        self, *, refresh: bool = False
    ) -> dict[str, PiperVoiceInfo]:
        """Return the Piper voice catalogue: voice key -> voice.

        The catalogue is cached on disk, so it is available offline later.
        Without ``refresh`` the cached copy is used when there is one; with
        ``refresh`` it is fetched again, and the cache is still used (with a
        warning) if the host cannot be reached.
        """
        async with self._catalogue_lock:
            if self._catalogue is not None and not refresh:
                return self._catalogue
            cache = self._root / PIPER_DIR / CATALOGUE_NAME
            if not refresh:
                cached = await _run(_read_catalogue_file, cache)
                if cached is not None:
                    self._catalogue = cached
                    return cached
            url = self._piper_base + CATALOGUE_NAME
            try:
                raw = await self._retrying(
                    "Piper voice catalogue", lambda: self._get_index(url)
                )
            except ModelDownloadError as err:
                cached = await _run(_read_catalogue_file, cache)
                if cached is None:
                    raise
                _LOGGER.warning("Using the cached Piper voice catalogue: %s", err)
                self._catalogue = cached
                return cached
            try:
                catalogue = await _run(_parse_catalogue, raw)
            except ValueError as err:
                raise ModelDownloadError(
                    f"The Piper voice catalogue at {url} is not valid: {err}"
                ) from err
            await self._storage_call(
                "the Piper voice catalogue", _write_atomically, cache, raw
            )
            self._catalogue = catalogue
            return catalogue

    def best_piper_voice(
        self, catalogue: dict[str, PiperVoiceInfo], language: str, quality: str
    ) -> str | None:
        """Pick the voice key that suits ``language`` and ``quality`` best.

        ``language`` is ``en-US``, ``en_US`` or ``en``. Voices of exactly that
        language win; without one, any voice of the language family does
        (an English voice with another accent beats silence), preferring the
        family's home region (``de`` -> ``de_DE``). Within those, the exact
        quality wins, then the nearest lower one (cheaper to run), then the
        nearest higher one. Ties go to the alphabetically first key, so the
        choice is stable.
        """
        wanted_code, wanted_family = _split_language(language)
        exact = [v for v in catalogue.values() if v.language.lower() == wanted_code]
        candidates = exact or [
            v for v in catalogue.values() if v.family.lower() == wanted_family
        ]
        if not candidates:
            return None
        home_region = f"{wanted_family}_{wanted_family}"
        wanted_rank = _quality_rank(quality)

        def preference(voice: PiperVoiceInfo) -> tuple[int, int, int, str]:
            rank = _quality_rank(voice.quality)
            if rank == wanted_rank:
                distance = 0
            elif rank < wanted_rank:
                distance = wanted_rank - rank  # lower: 1, 2, ...
            else:
                distance = len(PIPER_QUALITIES) + rank - wanted_rank
            not_home = int(voice.language.lower() != home_region)
            return (not_home, distance, voice.num_speakers > 1, voice.key)

        return min(candidates, key=preference).key

    async def ensure_piper_voice(
        self, key: str, *, progress: ProgressCallback | None = None
    ) -> LocalVoiceFiles:
        """Return the installed voice ``key``, downloading what is missing.

        An installed voice is returned without any network access. Raises
        :class:`ModelNotFoundError` if the catalogue has no such voice and
        another :class:`ModelDownloadError` if the download fails.
        """
        _check_name(key, "Piper voice")
        installed = await _run(self.installed_piper_voice, key)
        if installed is not None:
            return installed
        await self._shared_download(
            (PIPER_DIR, key), key, lambda job: self._download_piper(key, job), progress
        )
        installed = await _run(self.installed_piper_voice, key)
        if installed is None:
            raise ModelDownloadError(f"Piper voice {key} vanished after its download")
        return installed

    def installed_piper_voice(self, key: str) -> LocalVoiceFiles | None:
        """Return the voice ``key`` if it is completely installed, else None.

        No network; reads the small manifest and stats the files, so call it
        from an executor when in the event loop.
        """
        _check_name(key, "Piper voice")
        directory = self._root / PIPER_DIR / key
        names = _installed_files(directory, PIPER_DIR, key)
        if names is None:
            return None
        model = key + _PIPER_MODEL_SUFFIX
        config = key + _PIPER_CONFIG_SUFFIX
        if model not in names or config not in names:
            return None
        return LocalVoiceFiles(key, directory / model, directory / config)

    async def _download_piper(self, key: str, job: _DownloadJob) -> None:
        voice = (await self.piper_catalogue()).get(key)
        if voice is None:
            # The cached catalogue may predate the voice: look again once.
            voice = (await self.piper_catalogue(refresh=True)).get(key)
        if voice is None:
            raise ModelNotFoundError(
                f"Piper voice {key} is not in the catalogue at {self._piper_base}"
            )
        files = tuple(
            _RemoteFile(
                name=_safe_file_name(file.path, key),
                url=self._piper_base + quote(file.path),
                size=file.size_bytes,
                algorithm=MD5,
                digest=file.md5_digest.lower(),
            )
            for file in voice.files
            # The MODEL_CARD (licence text) is not needed to speak.
            if file.path.endswith((_PIPER_MODEL_SUFFIX, _PIPER_CONFIG_SUFFIX))
        )
        names = {file.name for file in files}
        for needed in (key + _PIPER_MODEL_SUFFIX, key + _PIPER_CONFIG_SUFFIX):
            if needed not in names:
                raise ModelNotFoundError(
                    f"The catalogue lists no {needed} for Piper voice {key}"
                )
        spec = _ModelSpec(
            kind=PIPER_DIR,
            model_id=key,
            directory=self._root / PIPER_DIR / key,
            source=self._piper_base,
            files=files,
        )
        await self._install(spec, job)

    # --- Whisper ----------------------------------------------------------

    async def ensure_whisper_model(
        self, name: str, *, progress: ProgressCallback | None = None
    ) -> Path:
        """Return the directory of Whisper model ``name``, downloading it if needed.

        ``name`` is a faster-whisper size (``tiny.en``, ``base``, ...), fetched
        from ``Systran/faster-whisper-<name>``, or a full Hugging Face repo id
        (``owner/repo``) of a CTranslate2 conversion. The directory can be
        handed to ``faster_whisper.WhisperModel`` as is.
        """
        repo, dir_name = _whisper_repo(name)
        installed = await _run(self.installed_whisper_model, name)
        if installed is not None:
            return installed
        await self._shared_download(
            (WHISPER_DIR, dir_name),
            name,
            lambda job: self._download_whisper(name, repo, dir_name, job),
            progress,
        )
        installed = await _run(self.installed_whisper_model, name)
        if installed is None:
            raise ModelDownloadError(
                f"Whisper model {name} vanished after its download"
            )
        return installed

    def installed_whisper_model(self, name: str) -> Path | None:
        """Return the directory of Whisper model ``name`` if complete, else None.

        No network; blocking file access as for :meth:`installed_piper_voice`.
        """
        _repo, dir_name = _whisper_repo(name)
        directory = self._root / WHISPER_DIR / dir_name
        names = _installed_files(directory, WHISPER_DIR, name)
        if names is None or not set(_WHISPER_REQUIRED) <= names:
            return None
        return directory

    async def _download_whisper(
        self, name: str, repo: str, dir_name: str, job: _DownloadJob
    ) -> None:
        tree_url = f"{self._hf_base}/api/models/{repo}/tree/main"
        raw = await self._retrying(
            f"file list of Whisper model {name}", lambda: self._get_index(tree_url)
        )
        try:
            listing = await _run(_parse_hf_tree, raw)
        except ValueError as err:
            raise ModelDownloadError(
                f"The file list of Whisper model {name} at {tree_url} is not valid: "
                f"{err}"
            ) from err
        wanted = [*_WHISPER_REQUIRED, *_WHISPER_OPTIONAL]
        vocabulary = next((v for v in _WHISPER_VOCABULARIES if v in listing), None)
        if vocabulary is not None:
            wanted.append(vocabulary)
        missing = [n for n in _WHISPER_REQUIRED if n not in listing]
        if vocabulary is None:
            missing.append(" or ".join(_WHISPER_VOCABULARIES))
        if missing:
            raise ModelNotFoundError(
                f"Whisper model {name} ({repo}) lacks {', '.join(missing)}"
            )
        files = tuple(
            _RemoteFile(
                name=path,
                url=f"{self._hf_base}/{repo}/resolve/main/{quote(path)}",
                size=listing[path][0],
                algorithm=listing[path][1],
                digest=listing[path][2],
            )
            for path in wanted
            if path in listing
        )
        spec = _ModelSpec(
            kind=WHISPER_DIR,
            model_id=name,
            directory=self._root / WHISPER_DIR / dir_name,
            source=f"{self._hf_base}/{repo}",
            files=files,
        )
        await self._install(spec, job)

    # --- removal ----------------------------------------------------------

    async def remove_piper_voice(self, key: str) -> None:
        """Delete an installed (or partly downloaded) Piper voice."""
        _check_name(key, "Piper voice")
        await self._remove((PIPER_DIR, key), self._root / PIPER_DIR / key)

    async def remove_whisper_model(self, name: str) -> None:
        """Delete an installed (or partly downloaded) Whisper model."""
        _repo, dir_name = _whisper_repo(name)
        await self._remove((WHISPER_DIR, dir_name), self._root / WHISPER_DIR / dir_name)

    async def _remove(self, job_key: tuple[str, str], directory: Path) -> None:
        if job_key in self._jobs or job_key in self._stopping:
            raise ModelDownloadError(
                f"{job_key[1]} is being downloaded; it cannot be removed now"
            )
        await self._storage_call(job_key[1], _remove_model_dir, directory)

    # --- shared downloads ---------------------------------------------------

    async def _shared_download(
        self,
        job_key: tuple[str, str],
        item: str,
        start: Callable[[_DownloadJob], Coroutine[Any, Any, None]],
        progress: ProgressCallback | None,
    ) -> None:
        """Run ``start`` once per model, however many callers wait for it.

        The download runs as its own task: a caller that is cancelled stops
        waiting without aborting it for the others, and the last waiter to go
        cancels it (its ``.part`` files stay for a later resume).
        """
        job = self._jobs.get(job_key)
        if job is None:
            job = _DownloadJob(item)
            job.task = asyncio.create_task(
                self._run_job(job_key, job, start), name=f"tts_ai download {item}"
            )
            self._jobs[job_key] = job
            job.task.add_done_callback(
                functools.partial(_forget, self._jobs, job_key, job)
            )
        task = job.task
        assert task is not None
        if progress is not None:
            job.listeners.append(progress)
        job.waiters += 1
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if job.waiters == 1 and not task.done():
                self._abandon(job_key, job, task)
            raise
        finally:
            job.waiters -= 1
            if progress is not None:
                job.listeners.remove(progress)

    def _abandon(
        self, job_key: tuple[str, str], job: _DownloadJob, task: asyncio.Task[None]
    ) -> None:
        """Cancel a download nobody waits for any more.

        It is forgotten at once, so a later request starts afresh instead of
        joining a download that is ending; that new one waits for this task
        to finish closing its ``.part`` files before it touches them.
        """
        task.cancel()
        _forget(self._jobs, job_key, job)
        self._stopping[job_key] = task
        task.add_done_callback(
            functools.partial(_forget, self._stopping, job_key, task)
        )

    async def _run_job(
        self,
        job_key: tuple[str, str],
        job: _DownloadJob,
        start: Callable[[_DownloadJob], Coroutine[Any, Any, None]],
    ) -> None:
        """Run one download, after a cancelled one of the same model ended."""
        stopping = self._stopping.get(job_key)
        if stopping is not None:
            await asyncio.wait([stopping])
        await start(job)

    # --- installing ---------------------------------------------------------

    async def _install(self, spec: _ModelSpec, job: _DownloadJob) -> None:
        """Fetch every file of ``spec``, verified, then write its manifest."""
        await self._storage_call(spec.label, _prepare_model_dir, spec.directory)
        total = sum(file.size for file in spec.files)
        job.report(0, total)
        done = 0
        for file in spec.files:
            await self._fetch_file(spec, file, job, done, total)
            done += file.size
            job.report(done, total)
        manifest = _manifest_bytes(spec)
        await self._storage_call(
            f"the manifest of {spec.label}",
            _write_atomically,
            spec.directory / MANIFEST_NAME,
            manifest,
        )
        _LOGGER.info("Installed %s (%d bytes) from %s", spec.label, total, spec.source)

    async def _fetch_file(
        self,
        spec: _ModelSpec,
        file: _RemoteFile,
        job: _DownloadJob,
        done_before: int,
        total: int,
    ) -> None:
        """Put a verified copy of ``file`` under its final name."""
        final = spec.directory / file.name
        part = spec.directory / (file.name + PART_SUFFIX)
        # A file left by an install that stopped before its manifest is
        # reused if it verifies; one that does not is removed right away.
        if await _run(_verify_file, final, file) is None:
            _LOGGER.debug("%s of %s is already in place", file.name, spec.label)
            return
        await self._storage_call(spec.label, _unlink_quietly, final)
        await self._check_free_space(spec, file, part)

        def on_bytes(file_bytes: int) -> None:
            job.report(done_before + file_bytes, total)

        async def attempt() -> None:
            resumed = await self._download_part(spec, file, part, on_bytes)
            problem = await _run(_verify_file, part, file)
            if problem is not None:
                await self._storage_call(spec.label, _unlink_quietly, part)
                message = f"{file.name} of {spec.label} is corrupt: {problem}"
                if resumed:
                    # The resumed head may come from an older copy of the
                    # file; one more try from scratch settles it.
                    raise _TransientError(message)
                raise ModelIntegrityError(message)
            await self._storage_call(spec.label, _commit_part, part, final)

        try:
            await self._retrying(f"{file.name} of {spec.label}", attempt)
        except ModelStorageError, ModelIntegrityError, ModelNotFoundError:
            # Nothing worth resuming. After other failures (the host stayed
            # unreachable) the .part is kept for the next attempt to resume.
            await _run(_unlink_quietly, part)
            raise

    async def _download_part(
        self,
        spec: _ModelSpec,
        file: _RemoteFile,
        part: Path,
        on_bytes: Callable[[int], None],
    ) -> bool:
        """Bring ``part`` up to ``file.size`` bytes; return whether it resumed."""
        offset = await _run(_part_size, part)
        if offset > file.size:
            await self._storage_call(spec.label, _unlink_quietly, part)
            offset = 0
        if offset == file.size:
            return True  # complete but never verified: verify it now
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        what = f"{file.name} of {spec.label}"
        try:
            async with self._session.get(
                file.url, headers=headers, timeout=self._timeout
            ) as response:
                if response.status == 416:
                    # The host will not serve that range: start over.
                    await self._storage_call(spec.label, _unlink_quietly, part)
                    raise _TransientError(f"HTTP 416 for the rest of {what}")
                _raise_for_status(response, what)
                if response.status == 206:
                    start, full_size = _content_range(response)
                    if start != offset:
                        await self._storage_call(spec.label, _unlink_quietly, part)
                        raise _TransientError(
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
            raise _TransientError(f"{what}: {type(err).__name__}: {err}") from err
        return offset > 0

    async def _stream_to_part(
        self,
        what: str,
        file: _RemoteFile,
        part: Path,
        response: aiohttp.ClientResponse,
        *,
        offset: int,
        on_bytes: Callable[[int], None],
    ) -> None:
        """Write the response body into ``part`` from ``offset``, and fsync it."""
        handle = await self._storage_call(what, _open_part, part, offset)
        try:
            received = await self._write_body(
                what, file, handle, response, offset=offset, on_bytes=on_bytes
            )
        except BaseException:
            # Also on errors and cancellation: what arrived is kept for a
            # resume. A close failure must not hide the original error.
            with contextlib.suppress(ModelStorageError):
                await self._storage_call(what, _close_part, handle)
            raise
        await self._storage_call(what, _close_part, handle)
        if received < file.size:
            raise _TransientError(f"{what} ended after {received} of {file.size} bytes")

    async def _write_body(
        self,
        what: str,
        file: _RemoteFile,
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
                    await self._storage_call(what, _write_all, handle, data)
                on_bytes(received)
        finally:
            # Also when the connection drops: the bytes that did arrive
            # are good and spare the resume from fetching them again.
            if batch:
                await self._storage_call(what, _write_all, handle, batch)
        return received

    async def _check_free_space(
        self, spec: _ModelSpec, file: _RemoteFile, part: Path
    ) -> None:
        """Fail early, with a clear message, when the file cannot fit."""
        needed = file.size - await _run(_part_size, part)
        try:
            free = (await _run(shutil.disk_usage, spec.directory)).free
        except OSError:
            return  # unknown: let the writes find out
        if free < needed:
            raise ModelStorageError(
                f"Not enough disk space for {file.name} of {spec.label}: "
                f"{needed} bytes needed, {free} free in {spec.directory}"
            )

    # --- network helpers ----------------------------------------------------

    async def _get_index(self, url: str) -> bytes:
        """GET a small JSON document (a catalogue or a file list)."""
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
                    raise _TransientError(
                        f"{url} ended after {len(body)} of {length} bytes"
                    )
                return bytes(body)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise _TransientError(f"{url}: {type(err).__name__}: {err}") from err

    async def _retrying[T](self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt``, repeating it after transient failures."""
        failures = 0
        while True:
            try:
                return await attempt()
            except _TransientError as err:
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

    @staticmethod
    async def _storage_call[T](what: str, func: Callable[..., T], *args: Any) -> T:
        """Run a file operation in the executor; OSError -> ModelStorageError."""
        try:
            return await _run(func, *args)
        except OSError as err:
            raise ModelStorageError(
                f"Could not write {what}: {err.strerror or err}"
                + (f" ({err.filename})" if err.filename else "")
            ) from err


# --- helpers that run in the event loop -------------------------------------


def _forget(registry: dict[Any, Any], key: Any, value: Any, *_: Any) -> None:
    """Remove ``registry[key]`` if it still is ``value`` (a newer one stays)."""
    if registry.get(key) is value:
        del registry[key]


async def _run[T](func: Callable[..., T], *args: Any) -> T:
    """Run blocking ``func(*args)`` in the loop's default executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args))


def _raise_for_status(response: aiohttp.ClientResponse, what: str) -> None:
    """Map an HTTP status to the right exception (or nothing for success)."""
    status = response.status
    if status in (200, 206):
        return
    if status in (404, 410):
        raise ModelNotFoundError(f"{what} is not on the server (HTTP {status})")
    if status in (408, 429) or status >= 500:
        raise _TransientError(f"HTTP {status} for {what}")
    raise ModelDownloadError(f"HTTP {status} for {what}")


def _content_range(response: aiohttp.ClientResponse) -> tuple[int, int | None]:
    """(first byte, full size or None) from a 206 answer's Content-Range."""
    value = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value)
    if match is None:
        raise _TransientError(f"unreadable Content-Range {value!r}")
    full = match.group(2)
    return int(match.group(1)), None if full == "*" else int(full)


def _check_name(name: str, what: str) -> None:
    """Refuse names that would escape the models directory."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ModelNotFoundError(f"{what} name {name!r} is not valid")


def _whisper_repo(name: str) -> tuple[str, str]:
    """(Hugging Face repo id, local directory name) of Whisper model ``name``."""
    if "/" in name:
        owner, _, repo = name.partition("/")
        _check_name(owner, "Whisper model")
        _check_name(repo, "Whisper model")
        return name, f"{owner}--{repo}"
    _check_name(name, "Whisper model")
    return f"{WHISPER_REPO_OWNER}/faster-whisper-{name}", name


def _safe_file_name(path: str, model_id: str) -> str:
    """Return the local name of a remote file: its last path part, checked."""
    name = path.rsplit("/", 1)[-1]
    _check_name(name, f"A file of {model_id}:")
    return name


def _split_language(language: str) -> tuple[str, str]:
    """``en-US`` -> (``en_us``, ``en``); ``de`` -> (``de``, ``de``)."""
    code = language.strip().replace("-", "_").lower()
    return code, code.split("_", 1)[0]


def _quality_rank(quality: str) -> int:
    """Position in PIPER_QUALITIES; unknown qualities count as medium."""
    normalised = quality.strip().lower().replace("-", "_")
    if normalised in PIPER_QUALITIES:
        return PIPER_QUALITIES.index(normalised)
    return PIPER_QUALITIES.index("medium")


def _manifest_bytes(spec: _ModelSpec) -> bytes:
    """Describe what was installed, from where, with which digests."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": spec.kind,
        "id": spec.model_id,
        "source": spec.source,
        "installed_at": int(time.time()),
        "files": {
            file.name: {"size": file.size, file.algorithm: file.digest}
            for file in spec.files
        },
    }
    return json.dumps(manifest, indent=2, sort_keys=True).encode()


# --- blocking helpers (executor only) ----------------------------------------


def _parse_catalogue(raw: bytes) -> dict[str, PiperVoiceInfo]:
    """Parse rhasspy's voices.json; malformed entries are skipped."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("voices.json is not a JSON object")  # noqa: TRY004
    catalogue: dict[str, PiperVoiceInfo] = {}
    for key, entry in data.items():
        try:
            catalogue[key] = _parse_voice(key, entry)
        except (KeyError, TypeError, ValueError) as err:
            _LOGGER.debug("Skipping catalogue entry %s: %s", key, err)
    return catalogue


def _parse_voice(key: str, entry: dict[str, Any]) -> PiperVoiceInfo:
    language = entry["language"]
    files = tuple(
        PiperFile(path, int(info["size_bytes"]), str(info["md5_digest"]))
        for path, info in entry["files"].items()
    )
    return PiperVoiceInfo(
        key=key,
        name=str(entry.get("name", key)),
        language=str(language["code"]),
        family=str(language.get("family") or language["code"].split("_")[0]),
        quality=str(entry.get("quality", "medium")),
        num_speakers=int(entry.get("num_speakers", 1)),
        files=files,
    )


def _read_catalogue_file(path: Path) -> dict[str, PiperVoiceInfo] | None:
    """Load the cached catalogue; None if there is none or it is unreadable."""
    try:
        return _parse_catalogue(path.read_bytes())
    except (OSError, ValueError) as err:
        if path.exists():
            _LOGGER.warning(
                "Ignoring the unreadable cached catalogue %s: %s", path, err
            )
        return None


def _parse_hf_tree(raw: bytes) -> dict[str, tuple[int, str, str]]:
    r"""Hugging Face tree listing -> file path -> (size, algorithm, digest).

    LFS files carry the sha256 of their content; small files the git blob
    sha1, which covers a ``blob <size>\0`` header plus the content.
    """
    data = json.loads(raw)
    if not isinstance(data, list):
        raise ValueError("the file list is not a JSON array")  # noqa: TRY004
    files: dict[str, tuple[int, str, str]] = {}
    for entry in data:
        if not isinstance(entry, dict) or entry.get("type") != "file":
            continue
        path = str(entry["path"])
        lfs = entry.get("lfs")
        if isinstance(lfs, dict) and lfs.get("oid"):
            files[path] = (
                int(lfs.get("size", entry["size"])),
                SHA256,
                str(lfs["oid"]).removeprefix("sha256:").lower(),
            )
        elif entry.get("oid"):
            files[path] = (int(entry["size"]), GIT_BLOB_SHA1, str(entry["oid"]).lower())
    return files


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


def _verify_file(path: Path, file: _RemoteFile) -> str | None:
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


def _installed_files(directory: Path, kind: str, model_id: str) -> set[str] | None:
    """Names of the manifest's files if all are in place at their size."""
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_bytes())
        if manifest.get("kind") != kind or manifest.get("id") != model_id:
            return None
        files: dict[str, Any] = manifest["files"]
        for name, info in files.items():
            if (directory / name).stat().st_size != int(info["size"]):
                return None
    except OSError, ValueError, KeyError, TypeError, AttributeError:
        return None
    return set(files)


def _prepare_model_dir(directory: Path) -> None:
    """Create the directory and drop a stale manifest before files change."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST_NAME).unlink(missing_ok=True)


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


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, and make the rename durable."""
    write_atomically(path, data)
    _fsync_dir(path.parent)


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


def _remove_model_dir(directory: Path) -> None:
    """Delete a model: the manifest first, so it is never half-installed."""
    (directory / MANIFEST_NAME).unlink(missing_ok=True)
    if directory.exists():
        shutil.rmtree(directory)
