"""Cloned voices: reference recordings kept on disk, one per config subentry.

The service keeps no voice (the reference goes with every clone request), so
each "Cloned voice" subentry stores its recording under
``<config>/tts_ai/voices/<entry_id>/``. The file is named by a key made in
the flow, because a subentry's id only exists once the flow has finished.
Files of removed or re-recorded voices are deleted when the entry changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import hashlib
import logging
from pathlib import Path
import secrets
import shutil
import time
from typing import TYPE_CHECKING

from homeassistant.components import media_source
from homeassistant.components.file_upload import process_uploaded_file
from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigSubentry,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.dispatcher import async_dispatcher_connect

from .api.endpoints import CLONE, CLONE_MODELS
from .files import copy_atomically

if TYPE_CHECKING:
    from . import TtsAiConfigEntry

_LOGGER = logging.getLogger(__name__)

SUBENTRY_TYPE = "cloned_voice"
# The TTS voice id of a cloned voice: the prefix, then the subentry id.
VOICE_ID_PREFIX = "clone:"
VOICES_DIR = "tts_ai/voices"
# Subentry data.
CONF_RECORDING_FILE = "recording_file"
CONF_CLONE_MODEL = "model"
CONF_CLONE_LANGUAGE = "language"
DEFAULT_CLONE_MODEL = CLONE_MODELS[0]
# What the service recommends for a reference; outside it cloning sounds poor.
DURATION_RANGE = (10.0, 30.0)
MAX_RECORDING_BYTES = CLONE.upload_limit_bytes or 20 * 1024 * 1024
# An orphaned file younger than this may belong to a flow that is finishing.
ORPHAN_GRACE_SECONDS = 600
# mutagen's class name -> the extension the stored file gets.
_EXTENSIONS = {
    "MP3": "mp3",
    "EasyMP3": "mp3",
    "WAVE": "wav",
    "FLAC": "flac",
    "OggVorbis": "ogg",
    "OggOpus": "ogg",
    "OggFLAC": "ogg",
    "MP4": "m4a",
    "EasyMP4": "m4a",
}


class RecordingError(Exception):
    """A reference recording that cannot be used; ``reason`` is a form error key."""

    def __init__(self, reason: str, **placeholders: str) -> None:
        """Keep the form error key and its placeholders."""
        super().__init__(reason)
        self.reason = reason
        self.placeholders = placeholders


@dataclass(frozen=True, slots=True)
class ClonedVoice:
    """A cloned voice as the TTS entity sees it."""

    subentry_id: str
    name: str
    model: str
    language: str
    recording: Path

    @property
    def voice_id(self) -> str:
        """The id that selects this voice in tts.speak and Assist."""
        return f"{VOICE_ID_PREFIX}{self.subentry_id}"


def voices_dir(hass: HomeAssistant, entry_id: str) -> Path:
    """Return the folder of an entry's recordings."""
    return Path(hass.config.path(VOICES_DIR, entry_id))


def cloned_voices(hass: HomeAssistant, entry: ConfigEntry) -> list[ClonedVoice]:
    """Return the entry's cloned voices, read from its subentries."""
    folder = voices_dir(hass, entry.entry_id)
    return [
        ClonedVoice(
            subentry_id=subentry.subentry_id,
            name=subentry.title,
            model=subentry.data.get(CONF_CLONE_MODEL, DEFAULT_CLONE_MODEL),
            language=subentry.data[CONF_CLONE_LANGUAGE],
            recording=folder / subentry.data[CONF_RECORDING_FILE],
        )
        for subentry in _voice_subentries(entry)
    ]


def clones_fingerprint(voices: list[ClonedVoice]) -> str:
    """Return a short digest that changes when any cloned voice is changed."""
    digest = hashlib.sha256()
    for voice in sorted(voices, key=lambda v: v.subentry_id):
        parts = (voice.subentry_id, voice.recording.name, voice.model, voice.language)
        digest.update("\0".join(parts).encode())
    return digest.hexdigest()[:12]


def _voice_subentries(entry: ConfigEntry) -> list[ConfigSubentry]:
    return [s for s in entry.subentries.values() if s.subentry_type == SUBENTRY_TYPE]


def check_recording(path: Path) -> tuple[str, float]:
    """Return a recording's extension and duration; raise RecordingError.

    Blocking (reads the file): run it in the executor.
    """
    size = path.stat().st_size
    if size > MAX_RECORDING_BYTES:
        raise RecordingError(
            "recording_too_large",
            size=f"{size / 1024 / 1024:.1f}",
            limit=str(MAX_RECORDING_BYTES // 1024 // 1024),
        )
    # HA's tts component brings mutagen; it may not be installed yet when
    # this module is imported, so import it where it is used.
    import mutagen  # noqa: PLC0415

    try:
        audio = mutagen.File(path)
    except mutagen.MutagenError, OSError:
        audio = None
    extension = _EXTENSIONS.get(type(audio).__name__) if audio is not None else None
    duration = getattr(getattr(audio, "info", None), "length", 0.0) or 0.0
    if extension is None or duration <= 0:
        raise RecordingError("recording_unreadable")
    low, high = DURATION_RANGE
    if not low <= duration <= high:
        raise RecordingError(
            "recording_duration",
            duration=f"{duration:.1f}",
            low=f"{low:g}",
            high=f"{high:g}",
        )
    return extension, duration


def store_recording(source: Path, folder: Path, extension: str) -> str:
    """Copy a checked recording into ``folder`` atomically; return its file name.

    Blocking: run it in the executor. The copy is written under a temporary
    name and renamed, so a crash never leaves half a recording behind.
    """
    name = f"{secrets.token_hex(8)}.{extension}"
    copy_atomically(source, folder / name)
    return name


async def async_import_recording(
    hass: HomeAssistant,
    entry_id: str,
    *,
    upload: str | None = None,
    source: str | None = None,
) -> str:
    """Check a recording and store it for an entry; return the stored file name.

    ``upload`` is a file id from HA's file-upload selector; ``source`` a
    media-source id (``media-source://media_source/local/...``) or a path HA
    allows. Raise RecordingError with a form error key.
    """
    folder = voices_dir(hass, entry_id)
    if upload is not None:
        return await hass.async_add_executor_job(_import_upload, hass, upload, folder)
    assert source is not None
    path = await _async_source_path(hass, source)
    return await hass.async_add_executor_job(_import_file, path, folder)


def _import_upload(hass: HomeAssistant, file_id: str, folder: Path) -> str:
    """Check and store an uploaded file (HA deletes the upload afterwards)."""
    try:
        with process_uploaded_file(hass, file_id) as path:
            return _import_file(path, folder)
    except ValueError as err:  # unknown or expired file id
        raise RecordingError("recording_not_found") from err


def _import_file(path: Path, folder: Path) -> str:
    if not path.is_file():
        raise RecordingError("recording_not_found")
    extension, _duration = check_recording(path)
    return store_recording(path, folder, extension)


async def _async_source_path(hass: HomeAssistant, source: str) -> Path:
    """Turn a media-source id or a path into a local path HA may read."""
    if media_source.is_media_source_id(source):
        try:
            media = await media_source.async_resolve_media(hass, source, None)
        except HomeAssistantError as err:
            raise RecordingError("recording_not_found") from err
        if media.path is None:
            # Only files on this machine (the media folders) can be read.
            raise RecordingError("recording_not_local")
        return media.path
    path = Path(source)
    if not path.is_absolute() or not await hass.async_add_executor_job(
        hass.config.is_allowed_path, source
    ):
        raise RecordingError("recording_not_allowed")
    return path


def _delete_files(folder: Path, names: set[str]) -> None:
    for name in names:
        (folder / name).unlink(missing_ok=True)
        _LOGGER.debug("Deleted the recording %s", name)


def _prune_orphans(folder: Path, keep: set[str]) -> None:
    """Delete recordings no subentry uses (removed while the entry was unloaded)."""
    if not folder.is_dir():
        return
    cutoff = time.time() - ORPHAN_GRACE_SECONDS
    for path in folder.iterdir():
        if path.name not in keep and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            _LOGGER.debug("Deleted the unused recording %s", path.name)


def _recording_files(entry: ConfigEntry) -> dict[str, str]:
    return {
        subentry.subentry_id: subentry.data[CONF_RECORDING_FILE]
        for subentry in _voice_subentries(entry)
    }


async def async_track_recordings(
    hass: HomeAssistant, entry: TtsAiConfigEntry
) -> Callable[[], None]:
    """Delete the recordings of voices that are removed or re-recorded.

    Returns the function that stops tracking. Listens to entry changes rather
    than registering an update listener, which the reloading options flow
    does not allow.
    """
    folder = voices_dir(hass, entry.entry_id)
    known = _recording_files(entry)
    await hass.async_add_executor_job(_prune_orphans, folder, set(known.values()))

    @callback
    def entry_changed(change: ConfigEntryChange, changed: ConfigEntry) -> None:
        nonlocal known
        if change is not ConfigEntryChange.UPDATED or changed is not entry:
            return
        current = _recording_files(entry)
        unused = set(known.values()) - set(current.values())
        known = current
        if unused:
            # A task wants a coroutine (an executor future is refused); a
            # tracked one, so Home Assistant waits for it like any short job.
            hass.async_create_task(
                _async_delete_files(hass, folder, unused),
                f"tts_ai delete recordings of {entry.entry_id}",
            )

    return async_dispatcher_connect(hass, SIGNAL_CONFIG_ENTRY_CHANGED, entry_changed)


async def _async_delete_files(
    hass: HomeAssistant, folder: Path, names: set[str]
) -> None:
    """Delete recordings no subentry uses any more, off the event loop."""
    await hass.async_add_executor_job(_delete_files, folder, names)


async def async_remove_recordings(hass: HomeAssistant, entry_id: str) -> None:
    """Delete every recording of a removed entry."""
    folder = voices_dir(hass, entry_id)
    await hass.async_add_executor_job(shutil.rmtree, folder, True)
