"""The ``tts_ai.announce`` action: speak on media players, chime and volume.

Speech comes from the entry's own TTS entity through HA's TTS manager, so an
announcement sounds exactly like ``tts.speak`` with the same options (cloned
voices included: they are voices of that entity). A chime is joined in front
of the speech into one file, because a second ``play_media`` would cut the
first on most players.
"""

from __future__ import annotations

import array
import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
import io
import logging
import math
from pathlib import Path
from typing import Any
import wave

from homeassistant.components import tts
from homeassistant.components.ffmpeg import get_ffmpeg_manager
from homeassistant.components.media_player import (
    ATTR_MEDIA_ANNOUNCE,
    ATTR_MEDIA_CONTENT_ID,
    ATTR_MEDIA_CONTENT_TYPE,
    ATTR_MEDIA_VOLUME_LEVEL,
    DOMAIN as MEDIA_PLAYER_DOMAIN,
    SERVICE_PLAY_MEDIA,
    MediaType,
)
from homeassistant.const import ATTR_ENTITY_ID, SERVICE_VOLUME_SET
from homeassistant.core import Context, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_call_later

from .const import DOMAIN, RESULTS_DIR, SERVICE_ANNOUNCE
from .files import write_atomically
from .media_io import (
    async_local_path,
    async_store_result,
    bytes_duration,
    media_dir,
)

_LOGGER = logging.getLogger(__name__)

# The value of ``chime`` that picks the generated two-tone chime.
BUILT_IN_CHIME = "built_in"
CHIME_SAMPLE_RATE = 44_100
# Players start late and buffer: restore the volume a little after the end.
VOLUME_RESTORE_MARGIN = 2.0
# When the duration is unknown, restore after this long.
FALLBACK_DURATION = 10.0


@dataclass(frozen=True, slots=True)
class Announcement:
    """What to say, where and how."""

    message: str
    players: list[str]
    chime: str | None = None
    volume: float | None = None
    language: str | None = None
    tts_options: Mapping[str, Any] | None = None


def tts_entity_id(hass: HomeAssistant, entry_id: str) -> str:
    """Return the TTS entity of a config entry."""
    registry = er.async_get(hass)
    for entity in er.async_entries_for_config_entry(registry, entry_id):
        if entity.domain == tts.DOMAIN:
            return entity.entity_id
    raise HomeAssistantError(translation_domain=DOMAIN, translation_key="no_tts_entity")


async def async_announce(
    hass: HomeAssistant, entry_id: str, announcement: Announcement, context: Context
) -> dict[str, Any]:
    """Speak ``announcement``; return the played media id and its duration."""
    stream = tts.async_create_stream(
        hass,
        tts_entity_id(hass, entry_id),
        announcement.language,
        dict(announcement.tts_options or {}),
    )
    stream.async_set_message(announcement.message)
    speech = b"".join([chunk async for chunk in stream.async_stream_result()])

    if announcement.chime:
        chime_path = await _async_chime_path(hass, announcement.chime)
        joined = await _async_join(hass, chime_path, speech)
        stored = await async_store_result(hass, SERVICE_ANNOUNCE, joined, "mp3")
        media_id, duration = stored.media_content_id, stored.duration
    else:
        media_id = stream.media_source_id
        duration = await hass.async_add_executor_job(bytes_duration, speech)

    previous = _volumes(hass, announcement.players)
    if announcement.volume is not None:
        await _async_set_volume(
            hass,
            dict.fromkeys(announcement.players, announcement.volume),
            context,
        )
    await hass.services.async_call(
        MEDIA_PLAYER_DOMAIN,
        SERVICE_PLAY_MEDIA,
        {
            ATTR_ENTITY_ID: announcement.players,
            ATTR_MEDIA_CONTENT_ID: media_id,
            ATTR_MEDIA_CONTENT_TYPE: MediaType.MUSIC,
            ATTR_MEDIA_ANNOUNCE: True,
        },
        blocking=True,
        context=context,
    )
    if announcement.volume is not None and previous:
        _schedule_restore(hass, previous, duration, context)
    return {
        "media_content_id": media_id,
        "duration": None if duration is None else round(duration, 2),
        "media_player_entity_id": announcement.players,
    }


def _volumes(hass: HomeAssistant, players: list[str]) -> dict[str, float]:
    """Return the current volume of each player that reports one."""
    volumes: dict[str, float] = {}
    for player in players:
        state = hass.states.get(player)
        level = state.attributes.get(ATTR_MEDIA_VOLUME_LEVEL) if state else None
        if isinstance(level, (int, float)):
            volumes[player] = float(level)
    return volumes


async def _async_set_volume(
    hass: HomeAssistant, levels: Mapping[str, float], context: Context
) -> None:
    """Set each player's volume (players with equal levels in one call)."""
    by_level: dict[float, list[str]] = {}
    for player, level in levels.items():
        by_level.setdefault(level, []).append(player)
    for level, players in by_level.items():
        await hass.services.async_call(
            MEDIA_PLAYER_DOMAIN,
            SERVICE_VOLUME_SET,
            {ATTR_ENTITY_ID: players, ATTR_MEDIA_VOLUME_LEVEL: level},
            blocking=True,
            context=context,
        )


def _schedule_restore(
    hass: HomeAssistant,
    previous: dict[str, float],
    duration: float | None,
    context: Context,
) -> None:
    """Put the volumes back once the announcement has played."""
    delay = (duration if duration is not None else FALLBACK_DURATION) + (
        VOLUME_RESTORE_MARGIN
    )

    @callback
    def restore(_now: Any) -> None:
        hass.async_create_task(
            _async_set_volume(hass, previous, context), "tts_ai restore volume"
        )

    async_call_later(hass, delay, restore)


async def _async_chime_path(hass: HomeAssistant, chime: str) -> Path:
    """Return the chime's file: the generated one, a media-source id or a path."""
    if chime != BUILT_IN_CHIME:
        return await async_local_path(hass, chime)
    path = media_dir(hass) / RESULTS_DIR / "chimes" / "two_tone.wav"

    def ensure() -> Path:
        if not path.exists():
            write_atomically(path, two_tone_chime())
        return path

    return await hass.async_add_executor_job(ensure)


def two_tone_chime() -> bytes:
    """Return a short, soft "ding-dong" as WAV bytes (blocking, but tiny)."""
    samples = array.array("h")
    for frequency, seconds in ((880.0, 0.28), (660.0, 0.42)):
        count = int(CHIME_SAMPLE_RATE * seconds)
        for n in range(count):
            t = n / CHIME_SAMPLE_RATE
            # Fast attack, exponential decay: a bell rather than a beep.
            envelope = min(1.0, t / 0.01) * math.exp(-4.0 * t / seconds)
            value = 0.5 * envelope * math.sin(2 * math.pi * frequency * t)
            samples.append(int(value * 32767))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(CHIME_SAMPLE_RATE)
        wav.writeframes(samples.tobytes())
    return buffer.getvalue()


async def _async_join(hass: HomeAssistant, chime: Path, speech: bytes) -> bytes:
    """Chime followed by speech, as one MP3 (ffmpeg in a subprocess)."""
    try:
        binary = get_ffmpeg_manager(hass).binary
    except ValueError:
        binary = "ffmpeg"  # the ffmpeg integration is not loaded
    graph = (
        "[0:a]aformat=sample_rates=44100:channel_layouts=mono[c];"
        "[1:a]aformat=sample_rates=44100:channel_layouts=mono[s];"
        "[c][s]concat=n=2:v=0:a=1[out]"
    )
    proc = await asyncio.create_subprocess_exec(
        binary, "-v", "error", "-i", str(chime), "-i", "pipe:0",
        "-filter_complex", graph, "-map", "[out]", "-f", "mp3", "-b:a", "128k",
        "pipe:1",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate(speech)
    if proc.returncode != 0 or not out:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="chime_failed",
            translation_placeholders={"error": err.decode(errors="replace")[-300:]},
        )
    return out
