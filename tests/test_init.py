"""Set-up, unload and set-up failures."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from tests.harness.standin import Fault, StandinServer

from .conftest import make_entry

TTS_ENTITY = "tts.tts_ai_text_to_speech"
STT_ENTITY = "stt.tts_ai_speech_to_text"


async def test_setup_and_unload(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Set-up adds a TTS and an STT entity; unloading removes them cleanly."""
    assert config_entry.state is ConfigEntryState.LOADED
    assert hass.states.get(TTS_ENTITY) is not None
    assert hass.states.get(STT_ENTITY) is not None
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.NOT_LOADED


async def test_unreachable_cloud_retries_setup(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """No network and nothing stored: HA retries later, nothing half set up."""
    standin.inject(Fault.REFUSE)
    entry = make_entry(standin)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert hass.states.get(TTS_ENTITY) is None


async def test_revoked_key_asks_for_reauth(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """A 401 at start-up fails set-up and starts the reauth flow."""
    entry = make_entry(standin, api_key="sk-tts-revoked")
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress()
    assert [f["context"]["source"] for f in flows] == ["reauth"]


async def test_stored_catalogue_used_when_cloud_is_down(
    hass: HomeAssistant, standin: StandinServer, hass_ws_client
) -> None:
    """After one good start, a start without the cloud still lists voices."""
    entry = make_entry(standin)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)

    standin.inject(Fault.REFUSE)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {"type": "tts/engine/voices", "engine_id": TTS_ENTITY, "language": "en"}
    )
    msg = await client.receive_json()
    assert "af_bella" in [v["voice_id"] for v in msg["result"]["voices"]]


async def test_removing_entry_forgets_catalogue(
    hass: HomeAssistant, config_entry: MockConfigEntry, hass_storage: dict
) -> None:
    """Removing the entry deletes its stored catalogue."""
    key = f"tts_ai.catalogue.{config_entry.entry_id}"
    assert key in hass_storage
    await hass.config_entries.async_remove(config_entry.entry_id)
    await hass.async_block_till_done()
    assert key not in hass_storage


async def test_older_entry_is_migrated_to_the_current_version(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """A 1.1 entry (no mode, cleared fields as "") loads and is brought to 1.2."""
    entry = make_entry(standin, hedge_deadline=1.0, piper_voices_url="")
    entry.add_to_hass(hass)
    options = dict(entry.options)
    del options["mode"]
    hass.config_entries.async_update_entry(entry, options=options)
    assert (entry.version, entry.minor_version) == (1, 1)

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.LOADED
    assert (entry.version, entry.minor_version) == (1, 2)
    assert entry.options == {"mode": "cloud_first", "hedge_deadline": 1.0}


async def test_entry_from_a_newer_release_is_not_loaded(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """After a downgrade, an entry this release cannot read is left alone."""
    entry = make_entry(standin)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, version=2)

    assert not await hass.config_entries.async_setup(entry.entry_id)

    assert entry.state is ConfigEntryState.MIGRATION_ERROR
    assert entry.options == {"mode": "cloud_only"}  # untouched
    assert hass.states.get(TTS_ENTITY) is None
