"""Audio in and out of the actions: input resolution and result storage.

Inputs are a ``media-source://`` id of the local media folder or a file path
Home Assistant is allowed to read; results are written atomically below the
media folder so every media player (and the media browser) can reach them.
All file I/O runs in the executor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
import io
import logging
import os
from pathlib import Path, PurePosixPath
import secrets
from typing import Any, BinaryIO

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.util import dt as dt_util, raise_if_invalid_path

from .api.endpoints import MEGABYTE, Endpoint
from .const import DOMAIN, RESULTS_DIR
from .files import write_atomically

_LOGGER = logging.getLogger(__name__)

MEDIA_SOURCE_PREFIX = "media-source://"
# Only the local media folder is backed by files this integration may read.
LOCAL_MEDIA_PREFIX = f"{MEDIA_SOURCE_PREFIX}media_source/"
LOCAL_MEDIA_DIR_ID = "local"


@dataclass(frozen=True, slots=True)
class InputAudio:
    """An audio file read for upload."""

    data: bytes
    filename: str


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A result written into the media folder."""

    path: Path
    media_content_id: str
    duration: float | None

    def as_response(self) -> dict[str, Any]:
        """Return the fields an action's response gives for this file."""
        return {
            "media_content_id": self.media_content_id,
            "path": str(self.path),
            "duration": None if self.duration is None else round(self.duration, 2),
        }


def _validation_error(key: str, **placeholders: str) -> ServiceValidationError:
    """Build a translated error for a refused input."""
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders,
    )


# --- Input ---------------------------------------------------------------------


async def async_local_path(hass: HomeAssistant, source: str) -> Path:
    """Return the real file behind ``source`` (media-source id or allowed path).

    Raises a translated ServiceValidationError for anything else.
    """
    source = source.strip()
    if source.startswith(MEDIA_SOURCE_PREFIX):
        return await _async_media_source_path(hass, source)
    return await hass.async_add_executor_job(_allowed_file, hass, source)


async def async_read_input(
    hass: HomeAssistant, source: str, endpoint: Endpoint
) -> InputAudio:
    """Read the audio ``source`` for an upload to ``endpoint``.

    The contract's upload limit is checked before anything is read, so an
    oversized file costs neither memory nor a request.
    """
    path = await async_local_path(hass, source)
    data = await hass.async_add_executor_job(_read_limited, path, endpoint)
    return InputAudio(data=data, filename=path.name)


async def _async_media_source_path(hass: HomeAssistant, source: str) -> Path:
    """Return the real file behind a media-source id of a local media folder.

    The id is parsed here rather than through ``media_source.async_resolve_media``:
    that resolver hands back the link, not the file it points at, and fails with
    a raw AssertionError on a folder. The real file must pass the same allowlist
    check as a path, so a link in the media folder cannot send, say,
    ``secrets.yaml`` to the cloud.
    """
    if not source.startswith(LOCAL_MEDIA_PREFIX):
        raise _validation_error("media_source_not_local", source=source)
    dir_id, _, location = source.removeprefix(LOCAL_MEDIA_PREFIX).partition("/")
    base = hass.config.media_dirs.get(dir_id)
    if base is None:
        raise _validation_error(
            "media_source_unresolvable", source=source, error="unknown media folder"
        )
    try:
        # HA's own rules for a media-source location: no "..", no absolute path.
        raise_if_invalid_path(location)
    except ValueError:
        valid = False
    else:
        valid = "\0" not in location and not PurePosixPath(location).is_absolute()
    if not valid:
        raise _validation_error(
            "media_source_unresolvable", source=source, error="invalid path"
        )
    return await hass.async_add_executor_job(
        _allowed_media_file, hass, Path(base), location, source
    )


def _allowed_media_file(
    hass: HomeAssistant, base: Path, location: str, source: str
) -> Path:
    """Return the real file at ``location`` in the media folder ``base`` (blocking)."""
    real = (base / location).resolve()
    # A media folder that is itself a link (e.g. to a USB disk) stays usable:
    # the real file may lie in the media folder's real place or in the allowlist.
    if not (
        real.is_relative_to(base.resolve()) or hass.config.is_allowed_path(str(real))
    ):
        raise _validation_error("media_source_not_allowed", source=source)
    if not real.is_file():
        raise _validation_error("audio_not_found", source=source)
    return real


def _allowed_file(hass: HomeAssistant, source: str) -> Path:
    """Return ``source`` resolved, if HA may read it (blocking)."""
    if "\0" in source or not os.path.isabs(source):  # noqa: PTH117
        raise _validation_error("path_not_allowed", path=source)
    # Resolve symlinks and ".." first: the check applies to the real file.
    real = Path(source).resolve()
    if not hass.config.is_allowed_path(str(real)):
        raise _validation_error("path_not_allowed", path=source)
    if not real.is_file():
        raise _validation_error("audio_not_found", source=source)
    return real


def _read_limited(path: Path, endpoint: Endpoint) -> bytes:
    """Read ``path`` if it fits the endpoint's upload limit (blocking)."""
    size = path.stat().st_size
    limit = endpoint.upload_limit_bytes
    if limit is not None and size > limit:
        raise _validation_error(
            "audio_too_large",
            name=path.name,
            size=f"{size / MEGABYTE:.1f}",
            limit=str(limit // MEGABYTE),
            endpoint=endpoint.path,
        )
    if size == 0:
        raise _validation_error("audio_empty", name=path.name)
    return path.read_bytes()


# --- Results -------------------------------------------------------------------


def media_dir(hass: HomeAssistant) -> Path:
    """Return the local media folder (the one ``media_source/local`` browses)."""
    return Path(
        hass.config.media_dirs.get(LOCAL_MEDIA_DIR_ID) or hass.config.path("media")
    )


def media_content_id(hass: HomeAssistant, path: Path) -> str:
    """Return the media-source id of a file below the local media folder."""
    relative = path.relative_to(media_dir(hass)).as_posix()
    return f"{LOCAL_MEDIA_PREFIX}{LOCAL_MEDIA_DIR_ID}/{relative}"


async def async_store_result(
    hass: HomeAssistant,
    action: str,
    data: bytes,
    fmt: str,
    *,
    label: str | None = None,
) -> StoredResult:
    """Write a result into ``<media>/tts_ai/<action>/`` and describe it."""
    folder = media_dir(hass) / RESULTS_DIR / action
    try:
        path = await hass.async_add_executor_job(
            _write_result, folder, data, fmt, label
        )
    except OSError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="result_write_failed",
            translation_placeholders={"path": str(folder), "error": str(err)},
        ) from err
    duration = await hass.async_add_executor_job(audio_duration, path)
    return StoredResult(path, media_content_id(hass, path), duration)


async def async_discard(hass: HomeAssistant, results: Iterable[StoredResult]) -> None:
    """Delete results of a call that failed part way (no file left behind)."""
    paths = [result.path for result in results]

    def remove() -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    await hass.async_add_executor_job(remove)


def _safe_label(label: str) -> str:
    """Keep a stem name usable in a file name."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
    return cleaned[:40] or "part"


def _write_result(folder: Path, data: bytes, fmt: str, label: str | None) -> Path:
    """Write ``data`` under a fresh name via a temp file + rename (blocking).

    A reader (a media player fetching the file) never sees half a file, and a
    crash leaves at most a hidden ``.tmp`` file, never a truncated result.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt_util.now().strftime("%Y%m%d-%H%M%S")
    suffix = f"-{_safe_label(label)}" if label else ""
    while True:
        target = folder / f"{stamp}-{secrets.token_hex(3)}{suffix}.{fmt}"
        if not target.exists():
            break
    write_atomically(target, data)
    return target


def audio_duration(source: Path | BinaryIO) -> float | None:
    """Playing time of an audio file from its headers, or None (blocking)."""
    import mutagen  # noqa: PLC0415 - HA's tts component requires it; import lazily

    try:
        info = mutagen.File(source)
    except mutagen.MutagenError, OSError:
        info = None
    if info is None or info.info is None:
        _LOGGER.debug("Cannot read the duration of %s", source)
        return None
    return float(info.info.length)


def bytes_duration(data: bytes) -> float | None:
    """Playing time of audio bytes from their headers, or None (blocking)."""
    return audio_duration(io.BytesIO(data))
