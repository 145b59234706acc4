"""The Piper voice catalogue (rhasspy's ``voices.json``) and the choice of a voice.

The catalogue lists every voice with its language, quality and files (path,
size, md5). It is cached on disk, so a voice can be chosen offline later;
:func:`best_piper_voice` picks the voice for a language and quality, and
:func:`piper_remote_files` says what to download for one.

Plain Python (no Home Assistant import); file access runs in the executor.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import json
import logging
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from .downloads import (
    MD5,
    Downloader,
    ModelDownloadError,
    ModelNotFoundError,
    RemoteFile,
    check_name,
    run_blocking,
    storage_call,
    write_durably,
)

_LOGGER = logging.getLogger(__name__)

PIPER_VOICES_URL: Final = "https://huggingface.co/rhasspy/piper-voices/resolve/main/"
CATALOGUE_NAME: Final = "voices.json"

# Lowest to highest; a missing quality falls back to the nearest lower one.
PIPER_QUALITIES: Final = ("x_low", "low", "medium", "high")
PIPER_MODEL_SUFFIX: Final = ".onnx"
PIPER_CONFIG_SUFFIX: Final = ".onnx.json"


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


class PiperCatalogue:
    """The voice catalogue at ``base_url``, cached in memory and at ``cache``."""

    def __init__(self, downloader: Downloader, base_url: str, cache: Path) -> None:
        """Nothing is fetched or read until :meth:`voices` is called."""
        self._downloader = downloader
        self._base_url = base_url
        self._cache = cache
        self._voices: dict[str, PiperVoiceInfo] | None = None
        self._lock = asyncio.Lock()

    async def voices(self, *, refresh: bool = False) -> dict[str, PiperVoiceInfo]:
        """Return the catalogue: voice key -> voice.

        Without ``refresh`` the cached copy is used when there is one; with
        ``refresh`` it is fetched again, and the cache is still used (with a
        warning) if the host cannot be reached.
        """
        async with self._lock:
            if self._voices is not None and not refresh:
                return self._voices
            if not refresh:
                cached = await run_blocking(_read_catalogue_file, self._cache)
                if cached is not None:
                    self._voices = cached
                    return cached
            url = self._base_url + CATALOGUE_NAME
            try:
                raw = await self._downloader.fetch_index("Piper voice catalogue", url)
            except ModelDownloadError as err:
                cached = await run_blocking(_read_catalogue_file, self._cache)
                if cached is None:
                    raise
                _LOGGER.warning("Using the cached Piper voice catalogue: %s", err)
                self._voices = cached
                return cached
            try:
                voices = await run_blocking(_parse_catalogue, raw)
            except ValueError as err:
                raise ModelDownloadError(
                    f"The Piper voice catalogue at {url} is not valid: {err}"
                ) from err
            await storage_call(
                "the Piper voice catalogue", write_durably, self._cache, raw
            )
            self._voices = voices
            return voices


def best_piper_voice(
    catalogue: dict[str, PiperVoiceInfo], language: str, quality: str
) -> str | None:
    """Pick the voice key that suits ``language`` and ``quality`` best.

    ``language`` is ``en-US``, ``en_US`` or ``en``. Voices of exactly that
    language win; without one, any voice of the language family does (an
    English voice with another accent beats silence), preferring the family's
    home region (``de`` -> ``de_DE``). Within those, the exact quality wins,
    then the nearest lower one (cheaper to run), then the nearest higher one.
    Ties go to the alphabetically first key, so the choice is stable.
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


def piper_remote_files(voice: PiperVoiceInfo, base_url: str) -> tuple[RemoteFile, ...]:
    """Return the files to download for ``voice``: its model and its config.

    Raises :class:`ModelNotFoundError` when the catalogue lists either
    without the other.
    """
    key = voice.key
    files = tuple(
        RemoteFile(
            name=_safe_file_name(file.path, key),
            url=base_url + quote(file.path),
            size=file.size_bytes,
            algorithm=MD5,
            digest=file.md5_digest.lower(),
        )
        for file in voice.files
        # The MODEL_CARD (licence text) is not needed to speak.
        if file.path.endswith((PIPER_MODEL_SUFFIX, PIPER_CONFIG_SUFFIX))
    )
    names = {file.name for file in files}
    for needed in (key + PIPER_MODEL_SUFFIX, key + PIPER_CONFIG_SUFFIX):
        if needed not in names:
            raise ModelNotFoundError(
                f"The catalogue lists no {needed} for Piper voice {key}"
            )
    return files


def local_voice_files(
    directory: Path, key: str, installed: set[str]
) -> LocalVoiceFiles | None:
    """Return the voice in ``directory`` if ``installed`` has both its files."""
    model = key + PIPER_MODEL_SUFFIX
    config = key + PIPER_CONFIG_SUFFIX
    if model not in installed or config not in installed:
        return None
    return LocalVoiceFiles(key, directory / model, directory / config)


def _safe_file_name(path: str, model_id: str) -> str:
    """Return the local name of a remote file: its last path part, checked."""
    name = path.rsplit("/", 1)[-1]
    check_name(name, f"A file of {model_id}:")
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
        # AttributeError too: a field of the wrong shape (files as a list).
        except (AttributeError, KeyError, TypeError, ValueError) as err:
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
