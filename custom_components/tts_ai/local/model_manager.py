"""The model store: download Piper voices and Whisper models ahead of time.

The on-device engines only help when the cloud is unreachable, which is
exactly when the model hosts are unreachable too; so models are fetched at
setup and kept under ``<config>/tts_ai/models/``::

    piper/voices.json                    the catalogue, cached for offline use
    piper/<voice key>/<file>             e.g. en_US-joe-medium.onnx(.json)
    whisper/<model name>/<file>          config.json, model.bin, tokenizer.json, ...
    <kind>/<model>/manifest.json         written last, once every file verified

A model counts as installed only when its manifest exists and every file it
lists is present at the listed size: an interrupted download never looks
complete. This module runs the jobs (one download per model, however many
callers wait) and keeps the manifests; the parts it drives are

- :mod:`.downloads`: verified, resumable, atomic file downloads;
- :mod:`.piper_voices`: the Piper voice catalogue and the choice of a voice;
- :mod:`.whisper_models`: which files make a Whisper model, and where.

Plain Python (no Home Assistant import). Every file operation runs in the
event loop's default executor; only network I/O runs in the loop itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
import functools
import json
import logging
from pathlib import Path
import shutil
import time
from typing import Any, Final

import aiohttp

from .downloads import (
    PART_SUFFIX,
    Downloader,
    ModelDownloadError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelStorageError,
    RemoteFile,
    check_name,
    run_blocking,
    storage_call,
    write_durably,
)
from .piper_voices import (
    CATALOGUE_NAME,
    PIPER_VOICES_URL,
    LocalVoiceFiles,
    PiperCatalogue,
    PiperVoiceInfo,
    best_piper_voice,
    local_voice_files,
    piper_remote_files,
)
from .whisper_models import (
    HF_URL,
    has_whisper_files,
    whisper_remote_files,
    whisper_repo,
)

_LOGGER = logging.getLogger(__name__)

PIPER_DIR: Final = "piper"
WHISPER_DIR: Final = "whisper"
MANIFEST_NAME: Final = "manifest.json"
MANIFEST_FORMAT: Final = 1


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """How far the download of one model has come, over all of its files."""

    item: str
    """The model: a Piper voice key or a Whisper model name."""
    downloaded_bytes: int
    total_bytes: int


ProgressCallback = Callable[[DownloadProgress], None]


@dataclass(frozen=True, slots=True)
class _ModelSpec:
    """Everything needed to install one model."""

    kind: str
    model_id: str
    directory: Path
    source: str
    files: tuple[RemoteFile, ...]

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


@dataclass
class ModelFolder:
    """What every manager of one models folder shares.

    Two config entries on one folder (a cloud entry and a device-only one,
    say) must not download the same model side by side: the second writer's
    ``.part`` files clash with the first's and its download fails. Managers
    made with the same :class:`ModelFolder` run one download per model and
    read one voice catalogue per base URL between them.
    """

    jobs: dict[tuple[str, str], _DownloadJob] = field(default_factory=dict)
    stopping: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    catalogues: dict[str, PiperCatalogue] = field(default_factory=dict)


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
        folder: ModelFolder | None = None,
    ) -> None:
        """Set up the manager; nothing touches the disk or network yet.

        ``retries`` is how many times one request is repeated after a
        connection error, a 5xx answer or a truncated body; the pauses start
        at ``retry_backoff`` seconds and double. ``read_timeout`` bounds a
        stalled transfer, which is then resumed like a dropped one. Managers
        of one ``root`` should share one ``folder`` (see :class:`ModelFolder`).
        """
        self._root = Path(root)
        self._piper_base = piper_base_url.rstrip("/") + "/"
        self._hf_base = hf_base_url.rstrip("/")
        self._downloader = Downloader(
            session,
            retries=retries,
            retry_backoff=retry_backoff,
            chunk_size=chunk_size,
            read_timeout=read_timeout,
        )
        folder = folder or ModelFolder()
        catalogue = folder.catalogues.get(self._piper_base)
        if catalogue is None:
            catalogue = PiperCatalogue(
                self._downloader,
                self._piper_base,
                self._root / PIPER_DIR / CATALOGUE_NAME,
            )
            folder.catalogues[self._piper_base] = catalogue
        self._catalogue = catalogue
        self._jobs = folder.jobs
        # Cancelled downloads that may still be closing their files.
        self._stopping = folder.stopping

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
        return await self._catalogue.voices(refresh=refresh)

    best_piper_voice = staticmethod(best_piper_voice)

    async def ensure_piper_voice(
        self, key: str, *, progress: ProgressCallback | None = None
    ) -> LocalVoiceFiles:
        """Return the installed voice ``key``, downloading what is missing.

        An installed voice is returned without any network access. Raises
        :class:`ModelNotFoundError` if the catalogue has no such voice and
        another :class:`ModelDownloadError` if the download fails.
        """
        check_name(key, "Piper voice")
        installed = await run_blocking(self.installed_piper_voice, key)
        if installed is not None:
            return installed
        await self._shared_download(
            (PIPER_DIR, key), key, lambda job: self._download_piper(key, job), progress
        )
        installed = await run_blocking(self.installed_piper_voice, key)
        if installed is None:
            raise ModelDownloadError(f"Piper voice {key} vanished after its download")
        return installed

    def installed_piper_voice(self, key: str) -> LocalVoiceFiles | None:
        """Return the voice ``key`` if it is completely installed, else None.

        No network; reads the small manifest and stats the files, so call it
        from an executor when in the event loop.
        """
        check_name(key, "Piper voice")
        directory = self._root / PIPER_DIR / key
        names = _installed_files(directory, PIPER_DIR, key)
        if names is None:
            return None
        return local_voice_files(directory, key, names)

    async def _download_piper(self, key: str, job: _DownloadJob) -> None:
        voice = (await self.piper_catalogue()).get(key)
        if voice is None:
            # The cached catalogue may predate the voice: look again once.
            voice = (await self.piper_catalogue(refresh=True)).get(key)
        if voice is None:
            raise ModelNotFoundError(
                f"Piper voice {key} is not in the catalogue at {self._piper_base}"
            )
        spec = _ModelSpec(
            kind=PIPER_DIR,
            model_id=key,
            directory=self._root / PIPER_DIR / key,
            source=self._piper_base,
            files=piper_remote_files(voice, self._piper_base),
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
        repo, dir_name = whisper_repo(name)
        installed = await run_blocking(self.installed_whisper_model, name)
        if installed is not None:
            return installed
        await self._shared_download(
            (WHISPER_DIR, dir_name),
            name,
            lambda job: self._download_whisper(name, repo, dir_name, job),
            progress,
        )
        installed = await run_blocking(self.installed_whisper_model, name)
        if installed is None:
            raise ModelDownloadError(
                f"Whisper model {name} vanished after its download"
            )
        return installed

    def installed_whisper_model(self, name: str) -> Path | None:
        """Return the directory of Whisper model ``name`` if complete, else None.

        No network; blocking file access as for :meth:`installed_piper_voice`.
        """
        _repo, dir_name = whisper_repo(name)
        directory = self._root / WHISPER_DIR / dir_name
        names = _installed_files(directory, WHISPER_DIR, name)
        if names is None or not has_whisper_files(names):
            return None
        return directory

    async def _download_whisper(
        self, name: str, repo: str, dir_name: str, job: _DownloadJob
    ) -> None:
        files = await whisper_remote_files(self._downloader, self._hf_base, name, repo)
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
        check_name(key, "Piper voice")
        await self._remove((PIPER_DIR, key), self._root / PIPER_DIR / key)

    async def remove_whisper_model(self, name: str) -> None:
        """Delete an installed (or partly downloaded) Whisper model."""
        _repo, dir_name = whisper_repo(name)
        await self._remove((WHISPER_DIR, dir_name), self._root / WHISPER_DIR / dir_name)

    async def _remove(self, job_key: tuple[str, str], directory: Path) -> None:
        if job_key in self._jobs or job_key in self._stopping:
            raise ModelDownloadError(
                f"{job_key[1]} is being downloaded; it cannot be removed now"
            )
        await storage_call(job_key[1], _remove_model_dir, directory)

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
        await storage_call(spec.label, _prepare_model_dir, spec.directory)
        total = sum(file.size for file in spec.files)
        job.report(0, total)
        done = 0
        for file in spec.files:
            await self._downloader.fetch_file(
                spec.directory,
                spec.label,
                file,
                functools.partial(_report_file_bytes, job, done, total),
            )
            done += file.size
            job.report(done, total)
        manifest = _manifest_bytes(spec)
        await storage_call(
            f"the manifest of {spec.label}",
            write_durably,
            spec.directory / MANIFEST_NAME,
            manifest,
        )
        _LOGGER.info("Installed %s (%d bytes) from %s", spec.label, total, spec.source)


def _report_file_bytes(
    job: _DownloadJob, done_before: int, total: int, file_bytes: int
) -> None:
    """Progress of the whole model while one of its files arrives."""
    job.report(done_before + file_bytes, total)


def _forget(registry: dict[Any, Any], key: Any, value: Any, *_: Any) -> None:
    """Remove ``registry[key]`` if it still is ``value`` (a newer one stays)."""
    if registry.get(key) is value:
        del registry[key]


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


def _remove_model_dir(directory: Path) -> None:
    """Delete a model: the manifest first, so it is never half-installed."""
    (directory / MANIFEST_NAME).unlink(missing_ok=True)
    if directory.exists():
        shutil.rmtree(directory)


__all__ = [
    "HF_URL",
    "MANIFEST_NAME",
    "PART_SUFFIX",
    "PIPER_VOICES_URL",
    "DownloadProgress",
    "LocalVoiceFiles",
    "ModelDownloadError",
    "ModelIntegrityError",
    "ModelManager",
    "ModelNotFoundError",
    "ModelStorageError",
    "PiperVoiceInfo",
    "ProgressCallback",
]
