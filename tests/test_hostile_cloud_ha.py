"""A hostile or broken cloud, seen from Home Assistant.

The main cases of tests/test_hostile_cloud.py again, end to end: setup does
not stay in retry, /api/stt gives a result or a clean error (never a 500),
tts.speak in cloud_first comes from the device, and actions raise translated
errors. The cloud is the stand-in behind the tampering proxy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
import time
from typing import Any

import aiohttp
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.tts_ai.const import DOMAIN
from tests.audio import decode_pcm
from tests.harness.hostile_cloud import (
    MB,
    HostileCloud,
    gzip_bomb,
    headers,
    raw_body,
    result_url,
)
from tests.harness.model_server import ModelServer
from tests.harness.standin import StandinServer, synthesize_wav

from .conftest import make_entry
from .test_account import NOISY_SENSORS, sensor_state
from .test_fallback import (
    ACTIVE_ENGINE,
    heard,
    model_server,  # noqa: F401 (a fixture)
    setup_fallback_entry,
    shared_config_dir,  # noqa: F401 (a fixture)
)
from .test_services import call, folders, speech_file  # noqa: F401 (fixtures)
from .test_stt import HEADERS, STT_ENTITY
from .test_tts import speak

ANNOUNCEMENT = "The garage door is open. Please close it."


@pytest.fixture
async def cloud(standin: StandinServer) -> AsyncIterator[HostileCloud]:
    """The stand-in behind a tampering proxy."""
    async with HostileCloud(standin.base_url) as hostile:
        yield hostile


async def setup_cloud_entry(
    hass: HomeAssistant, cloud: HostileCloud
) -> MockConfigEntry:
    """A cloud-only entry on the hostile cloud, every sensor turned on."""
    assert await async_setup_component(hass, "homeassistant", {})
    entry = make_entry(cloud)  # type: ignore[arg-type]
    entry.add_to_hass(hass)
    registry = er.async_get(hass)
    for key in NOISY_SENSORS:  # off by default; these tests read them
        registry.async_get_or_create(
            "sensor",
            "tts_ai",
            f"{entry.entry_id}_{key}",
            config_entry=entry,
            suggested_object_id=f"tts_ai_{key}",
        )
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


@pytest.fixture
async def fallback_on_hostile(
    hass: HomeAssistant,
    cloud: HostileCloud,
    model_server: ModelServer,  # noqa: F811
    shared_config_dir: Path,  # noqa: F811
) -> MockConfigEntry:
    """A cloud-first entry on the hostile cloud, its device models ready."""
    assert await async_setup_component(hass, "media_source", {})
    return await setup_fallback_entry(
        hass,
        cloud,  # type: ignore[arg-type]
        model_server,
        shared_config_dir,
    )


async def spoken_pcm(text: str) -> bytes:
    """Real speech as Assist sends it: 16 kHz 16-bit mono PCM."""
    return await decode_pcm(await synthesize_wav(text), rate=16000)


# --- Setup ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "header_values",
    [
        {"X-RateLimit-Reset": str(int(time.time() * 1000) + 30_000)},
        {"X-RateLimit-Limit": "inf"},
        {"X-RateLimit-Limit": "nan", "X-RateLimit-Reset": "nan"},
        {"X-RateLimit-Remaining": "1e400", "X-RateLimit-Reset": "-1e400"},
        {"X-Credits-Remaining": "inf", "X-Credits-Used": "nan"},
    ],
)
async def test_bad_headers_never_block_setup(
    hass: HomeAssistant, cloud: HostileCloud, header_values: dict[str, str]
) -> None:
    """Whatever the rate-limit headers say, the entry loads and shows sane state."""
    cloud.tamper("*", headers(**header_values))
    entry = await setup_cloud_entry(hass, cloud)

    assert entry.state is ConfigEntryState.LOADED
    remaining = sensor_state(hass, entry, "rate_limit_remaining")
    assert remaining in ("unknown", "unavailable") or 0 <= float(remaining) < 1e10
    reset = sensor_state(hass, entry, "rate_limit_reset")
    if reset not in ("unknown", "unavailable"):
        reset_at = datetime.fromisoformat(reset)
        assert reset_at <= datetime.now(UTC) + timedelta(hours=1, seconds=5)


# --- Speech to text ---------------------------------------------------------------

BROKEN_TRANSCRIPTS = [
    b'{"text": "hi", "segments": [{"start": "soon"}]}',
    b'{"text": "hi", "duration": NaN}',
    b"[" * 100_000,
    b"<html>oops</html>",
]


@pytest.mark.parametrize("body", BROKEN_TRANSCRIPTS, ids=lambda body: repr(body[:24]))
async def test_stt_broken_answer_is_a_clean_error_not_a_500(
    hass: HomeAssistant, hass_client, cloud: HostileCloud, body: bytes, caplog
) -> None:
    """Cloud only: an unreadable transcript is an STT error result, HTTP 200."""
    await setup_cloud_entry(hass, cloud)
    cloud.tamper("stt/", raw_body(body))
    client = await hass_client()
    response = await client.post(
        f"/api/stt/{STT_ENTITY}", data=await spoken_pcm("Hello."), headers=HEADERS
    )
    assert response.status == HTTPStatus.OK
    assert await response.json() == {"text": None, "result": "error"}
    assert "could not transcribe" in caplog.text


async def test_stt_gzip_bomb_is_a_clean_error(
    hass: HomeAssistant, hass_client, cloud: HostileCloud
) -> None:
    """A transcript that inflates to 512 MB is refused; the pipeline gets an error."""
    await setup_cloud_entry(hass, cloud)
    cloud.tamper("stt/", gzip_bomb(512 * MB, content_type="application/json"))
    client = await hass_client()
    response = await client.post(
        f"/api/stt/{STT_ENTITY}", data=await spoken_pcm("Hello."), headers=HEADERS
    )
    assert response.status == HTTPStatus.OK
    assert (await response.json())["result"] == "error"


async def test_stt_runaway_upload_is_refused_while_reading(
    hass: HomeAssistant, hass_client, cloud: HostileCloud
) -> None:
    """Audio over the upload limit is refused while it arrives, and sent nowhere."""
    await setup_cloud_entry(hass, cloud)
    client = await hass_client()
    pulled = 0

    async def runaway() -> AsyncIterator[bytes]:
        nonlocal pulled
        chunk = bytes(MB)
        for _ in range(300):
            pulled += 1
            yield chunk

    try:
        response = await client.post(
            f"/api/stt/{STT_ENTITY}", data=runaway(), headers=HEADERS
        )
    except aiohttp.ClientError:
        pass  # HA answered and closed before the sender finished: also fine
    else:
        assert response.status == HTTPStatus.OK
        assert (await response.json())["result"] == "error"
    assert "stt/" not in cloud.requests
    # Reading stopped near the limit: the rest of the stream was never taken.
    assert pulled < 200


async def test_stt_broken_answer_falls_back_to_the_device(
    hass: HomeAssistant,
    hass_client,
    fallback_on_hostile: MockConfigEntry,
    cloud: HostileCloud,
) -> None:
    """Cloud first: an unreadable transcript is redone on the device."""
    cloud.tamper("stt/", raw_body(b'{"text": "x", "segments": [{"end": [1]}]}'))
    client = await hass_client()
    response = await client.post(
        f"/api/stt/{STT_ENTITY}",
        data=await spoken_pcm("Turn off the bedroom lights."),
        headers=HEADERS,
    )
    assert response.status == HTTPStatus.OK
    body = await response.json()
    assert body["result"] == "success"
    assert "bedroom lights" in body["text"].lower()


# --- Text to speech -------------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        raw_body(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        gzip_bomb(512 * MB, content_type="audio/mpeg"),
    ],
    ids=["not_audio", "gzip_bomb"],
)
async def test_speech_comes_from_the_device_when_the_answer_is_unusable(
    hass: HomeAssistant,
    hass_client,
    fallback_on_hostile: MockConfigEntry,
    cloud: HostileCloud,
    tamper: Any,
) -> None:
    """Cloud first: an answer that is not usable audio is spoken on the device."""
    cloud.tamper("tts/", tamper)
    audio = await speak(hass, hass_client, ANNOUNCEMENT)
    words = await heard(audio)
    assert "garage door is open" in words
    assert "close it" in words
    assert hass.states.get(ACTIVE_ENGINE).state == "local"


async def test_whole_file_speech_falls_back_on_an_unusable_answer(
    hass: HomeAssistant,
    hass_client,
    fallback_on_hostile: MockConfigEntry,
    cloud: HostileCloud,
) -> None:
    """A WAV request (one whole file) whose answer is HTML is spoken on the device."""
    cloud.tamper("tts/", raw_body(b"<html>gateway</html>", "text/html"))
    audio = await speak(hass, hass_client, ANNOUNCEMENT, options={"format": "wav"})
    assert "garage door is open" in await heard(audio)
    assert hass.states.get(ACTIVE_ENGINE).state == "local"


# --- Actions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["https://evil.example/v1/results/x.mp3", "http://[::1", "/v1/a\x00.mp3"]
)
async def test_translate_with_a_bad_result_url_is_a_translated_error(
    hass: HomeAssistant,
    cloud: HostileCloud,
    speech_file: Path,  # noqa: F811
    url: str,
) -> None:
    """A foreign or malformed audio_url is refused with a translated error."""
    await setup_cloud_entry(hass, cloud)
    cloud.tamper("translate/", result_url(url))
    with pytest.raises(HomeAssistantError) as caught:
        await call(
            hass, "translate_speech", audio=str(speech_file), target_language="es"
        )
    assert caught.value.translation_domain == DOMAIN
    assert caught.value.translation_key == "invalid_response"
    assert not any(path.startswith("results/") for path in cloud.requests)


async def test_free_call_reports_no_stale_credits(
    hass: HomeAssistant,
    cloud: HostileCloud,
    speech_file: Path,  # noqa: F811
) -> None:
    """convert_audio is free: it must not report the previous call's cost."""
    await setup_cloud_entry(hass, cloud)
    paid = await call(hass, "enhance_audio", audio=str(speech_file))
    assert paid["credits_used"]
    free = await call(hass, "convert_audio", audio=str(speech_file), format="mp3")
    assert free["credits_used"] is None
