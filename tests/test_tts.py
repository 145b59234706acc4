"""The TTS entity, through HA's real tts.speak, media source and HTTP views."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from http import HTTPStatus

from homeassistant.components import media_source, tts
from homeassistant.components.media_player import (
    ATTR_MEDIA_CONTENT_ID,
    DOMAIN as MP_DOMAIN,
    SERVICE_PLAY_MEDIA,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_mock_service,
)

from tests.audio import decode_pcm, probe
from tests.harness.standin import Fault, StandinServer, transcribe_pcm

from .conftest import make_entry

TTS_ENTITY = "tts.tts_ai_text_to_speech"
ANNOUNCEMENT = "The washing machine has finished. Please empty it soon."


@pytest.fixture
async def media_ready(hass: HomeAssistant) -> None:
    """Set up HA's media source, as a real installation has."""
    assert await async_setup_component(hass, "media_source", {})


async def speak(hass: HomeAssistant, hass_client, message: str, **extra) -> bytes:
    """Call tts.speak on a mocked player, then fetch the audio it was given."""
    calls = async_mock_service(hass, MP_DOMAIN, SERVICE_PLAY_MEDIA)
    await hass.services.async_call(
        tts.DOMAIN,
        "speak",
        {
            "entity_id": TTS_ENTITY,
            "media_player_entity_id": "media_player.kitchen",
            "message": message,
            **extra,
        },
        blocking=True,
    )
    assert len(calls) == 1
    media = await media_source.async_resolve_media(
        hass, calls[0].data[ATTR_MEDIA_CONTENT_ID], None
    )
    client = await hass_client()
    response = await client.get(media.url)
    assert response.status == HTTPStatus.OK
    return await response.read()


async def test_speak_plays_real_speech(
    hass: HomeAssistant,
    hass_client,
    media_ready: None,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """tts.speak gives the player an MP3 that says the announcement."""
    audio = await speak(hass, hass_client, ANNOUNCEMENT)

    info = await probe(audio)
    assert info.codec == "mp3"
    assert 2.0 < info.duration < 12.0
    words = (await transcribe_pcm(await decode_pcm(audio))).lower()
    assert "washing machine" in words
    tts_requests = [r for r in standin.requests if r.path == "tts/"]
    assert tts_requests[-1].json["voice"] == "af_bella"
    assert tts_requests[-1].json["model"] == "kokoro"
    assert hass.states.get(TTS_ENTITY) is not None


async def test_voice_option_brings_its_model(
    hass: HomeAssistant,
    hass_client,
    media_ready: None,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A voice picked by id is spoken with the model it belongs to, as WAV."""
    audio = await speak(
        hass,
        hass_client,
        "Good morning.",
        options={"voice": "en_US-joe-medium", "format": "wav", "speed": 1.5},
    )
    sent = [r for r in standin.requests if r.path == "tts/"][-1].json
    assert sent["voice"] == "en_US-joe-medium"
    assert sent["model"] == "piper"
    assert sent["speed"] == 1.5
    assert (await probe(audio)).duration > 0.3


async def test_voices_listed_per_language(
    hass: HomeAssistant, config_entry: MockConfigEntry, hass_ws_client
) -> None:
    """HA's voice picker lists the catalogue's voices for the language."""
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {"type": "tts/engine/voices", "engine_id": TTS_ENTITY, "language": "en-US"}
    )
    msg = await client.receive_json()
    assert msg["success"], msg
    voice_ids = [v["voice_id"] for v in msg["result"]["voices"]]
    assert voice_ids[0] == "af_bella"  # the configured voice first
    assert "en_US-joe-medium" in voice_ids
    assert "de_DE-thorsten-medium" not in voice_ids


@pytest.mark.parametrize(
    ("options", "translation_key"),
    [
        ({"voice": "no_such_voice"}, "unknown_voice"),
        ({"speed": 3.0}, "invalid_option"),
        ({"format": "aiff"}, "invalid_option"),
        ({"model": "no_such_model"}, "invalid_option"),
    ],
)
async def test_bad_options_are_refused(
    hass: HomeAssistant,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    options: dict,
    translation_key: str,
) -> None:
    """Bad options give a translated validation error and reach no server."""
    stream = tts.async_create_stream(hass, TTS_ENTITY, "en", options)
    stream.async_set_message("Hello there.")
    before = len(standin.requests)
    with pytest.raises(ServiceValidationError) as err:
        b"".join([c async for c in stream.async_stream_result()])
    assert err.value.translation_key == translation_key
    assert len(standin.requests) == before


@pytest.mark.parametrize(
    ("options", "translation_key"),
    [
        ({"voice": "no_such_voice"}, "unknown_voice"),
        ({"voice": "clone:no_such_clone"}, "unknown_voice"),
        ({"speed": 3.0}, "invalid_option"),
        ({"speed": "fast"}, "invalid_option"),
        ({"format": "aiff"}, "invalid_option"),
        ({"model": "no_such_model"}, "invalid_option"),
    ],
)
async def test_speak_with_bad_options_fails_the_action(
    hass: HomeAssistant,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    options: dict,
    translation_key: str,
) -> None:
    """tts.speak itself fails on a bad option: no player is handed broken audio."""
    calls = async_mock_service(hass, MP_DOMAIN, SERVICE_PLAY_MEDIA)
    before = len(standin.requests)
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            tts.DOMAIN,
            "speak",
            {
                "entity_id": TTS_ENTITY,
                "media_player_entity_id": "media_player.kitchen",
                "message": "Hello there.",
                "options": options,
            },
            blocking=True,
        )
    assert err.value.translation_key == translation_key
    assert calls == []
    assert len(standin.requests) == before


async def test_bad_option_in_a_media_url_is_logged_when_fetched(
    hass: HomeAssistant,
    hass_client,
    media_ready: None,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past tts.speak, HA makes the audio when it is fetched: the error is logged."""
    media_id = tts.generate_media_source_id(
        hass, "Hello there.", TTS_ENTITY, "en", {"voice": "no_such_voice"}
    )
    media = await media_source.async_resolve_media(hass, media_id, None)
    client = await hass_client()

    response = await client.get(media.url)

    assert response.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert 'The voice "no_such_voice" is not in the TTS.ai catalogue' in caplog.text


@pytest.mark.parametrize(
    ("fault", "translation_key", "words"),
    [
        (Fault.INSUFFICIENT_CREDITS, "insufficient_credits", "credits are used up"),
        (Fault.RATE_LIMITED, "rate_limited", "accepted again at"),
        (Fault.INTERNAL_ERROR, "server_error", "server error"),
        (Fault.MODEL_LOADING, "model_loading", "warming up"),
    ],
)
async def test_api_errors_name_their_cause(
    hass: HomeAssistant,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    fault: Fault,
    translation_key: str,
    words: str,
) -> None:
    """Each API error reaches the user as a translated message naming the cause."""
    standin.inject(fault, path="tts/")
    stream = tts.async_create_stream(hass, TTS_ENTITY, "en", {})
    stream.async_set_message("Is anybody home?")
    with pytest.raises(HomeAssistantError) as err:
        b"".join([c async for c in stream.async_stream_result()])
    assert err.value.translation_key == translation_key
    assert words in str(err.value)


async def test_model_loading_is_retried(
    hass: HomeAssistant,
    hass_client,
    media_ready: None,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A model that is still warming up is asked again, and then speaks."""
    standin.inject(Fault.MODEL_LOADING, path="tts/", times=1)
    audio = await speak(hass, hass_client, "The door is open.")
    assert (await probe(audio)).duration > 0.5
    assert [r.status for r in standin.requests if r.path == "tts/"] == [503, 200]


async def test_unauthorized_starts_reauth(
    hass: HomeAssistant, config_entry: MockConfigEntry, standin: StandinServer
) -> None:
    """A key revoked after set-up makes the next request start reauth."""
    standin.accounts.pop(config_entry.data["api_key"])
    stream = tts.async_create_stream(hass, TTS_ENTITY, "en", {})
    stream.async_set_message("Hello.")
    with pytest.raises(HomeAssistantError) as err:
        b"".join([c async for c in stream.async_stream_result()])
    assert err.value.translation_key == "invalid_auth"
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress()
    assert [f["context"]["source"] for f in flows] == ["reauth"]


async def test_stream_starts_before_text_ends(
    hass: HomeAssistant, config_entry: MockConfigEntry, standin: StandinServer
) -> None:
    """The first sentence's audio reaches HA while later text is still coming."""
    first_audio = asyncio.Event()

    async def llm_reply() -> AsyncGenerator[str]:
        yield "The living room lights "
        yield "are now off. "
        # A sentence is known to be complete when the next one starts.
        yield "The front door "
        # Hold the rest back until audio of the first sentence has arrived:
        # an entity that waited for the whole text would never get here.
        await asyncio.wait_for(first_audio.wait(), timeout=30)
        yield "is locked. Good night."

    stream = tts.async_create_stream(hass, TTS_ENTITY, "en", {})
    stream.async_set_message_stream(llm_reply())
    chunks = []
    async for chunk in stream.async_stream_result():
        chunks.append(chunk)
        first_audio.set()
    audio = b"".join(chunks)
    words = (await transcribe_pcm(await decode_pcm(audio))).lower()
    assert "lights" in words
    assert "locked" in words
    sent = [r.json["text"] for r in standin.requests if r.path == "tts/"]
    assert sent[0] == "The living room lights are now off."
    assert all(
        r.json.get("stream") is True for r in standin.requests if r.path == "tts/"
    )


async def test_options_reach_the_entity_without_restart(
    hass: HomeAssistant, standin: StandinServer, hass_client, media_ready: None
) -> None:
    """Options saved in the UI are used by the next announcement."""
    entry = make_entry(standin)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    flow = await hass.config_entries.options.async_init(entry.entry_id)
    chosen = {
        "model": "piper",
        "voice": "af_bella",
        "language": "en",
        "format": "wav",
        "speed": 1.25,
        "stt_model": "whisper",
    }
    # Another model: the form comes back with its voices; then one is chosen.
    result = await hass.config_entries.options.async_configure(flow["flow_id"], chosen)
    assert result["step_id"] == "init"
    result = await hass.config_entries.options.async_configure(
        flow["flow_id"], {**chosen, "voice": "en_US-joe-medium"}
    )
    result = await hass.config_entries.options.async_configure(
        flow["flow_id"], {"mode": "cloud_only", "local_engine": "built_in"}
    )
    assert result["type"] == "create_entry"
    await hass.async_block_till_done()

    audio = await speak(hass, hass_client, "Options applied.")
    sent = [r for r in standin.requests if r.path == "tts/"][-1].json
    assert (sent["model"], sent["voice"], sent["speed"]) == (
        "piper",
        "en_US-joe-medium",
        1.25,
    )
    assert sent["format"] == "wav"
    assert (await probe(audio)).duration > 0.3
