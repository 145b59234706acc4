"""Account sensors from response headers, and repair issues that clear themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components import tts
from homeassistant.core import HomeAssistant, State
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    mock_restore_cache_with_extra_data,
)

from custom_components.tts_ai.api import InsufficientCreditsError, TtsAiClient
from tests.harness.standin import DEFAULT_API_KEY, Fault, StandinServer

from .conftest import make_entry

TTS_ENTITY = "tts.tts_ai_text_to_speech"


def sensor_state(hass: HomeAssistant, entry: MockConfigEntry, key: str) -> str:
    """The state of one of the entry's sensors, found by its unique id."""
    entity_id = er.async_get(hass).async_get_entity_id(
        "sensor", "tts_ai", f"{entry.entry_id}_{key}"
    )
    assert entity_id is not None, key
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.state


async def say(hass: HomeAssistant, text: str = "Dinner is ready.") -> bytes:
    """Synthesize through the TTS entity, as an announcement would."""
    stream = tts.async_create_stream(hass, TTS_ENTITY, "en", {})
    stream.async_set_message(text)
    return b"".join([chunk async for chunk in stream.async_stream_result()])


def account_issues(hass: HomeAssistant) -> set[str]:
    """The ids of this integration's account issues that are open."""
    return {
        issue_id
        for (domain, issue_id) in ir.async_get(hass).issues
        if domain == "tts_ai" and not issue_id.startswith("local_packages")
    }


NOISY_SENSORS = ("credits_used", "rate_limit_remaining", "rate_limit_reset")


@pytest.fixture
async def all_sensors_entry(
    hass: HomeAssistant, standin: StandinServer
) -> MockConfigEntry:
    """A loaded entry with the sensors that are off by default turned on."""
    entry = make_entry(standin)
    entry.add_to_hass(hass)
    registry = er.async_get(hass)
    for key in NOISY_SENSORS:
        registry.async_get_or_create(
            "sensor",
            "tts_ai",
            f"{entry.entry_id}_{key}",
            config_entry=entry,
            suggested_object_id=f"tts_ai_{key}",
        )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def test_noisy_sensors_are_off_until_enabled(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Per-request figures are not recorded unless the user turns them on."""
    registry = er.async_get(hass)
    for key in NOISY_SENSORS:
        entity_id = registry.async_get_entity_id(
            "sensor", "tts_ai", f"{config_entry.entry_id}_{key}"
        )
        assert entity_id is not None
        entry = registry.async_get(entity_id)
        assert entry is not None
        assert entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION, key
        assert hass.states.get(entity_id) is None
    assert sensor_state(hass, config_entry, "credits_remaining") == "unknown"


async def test_rate_limit_reset_shows_no_past_time(
    hass: HomeAssistant,
    all_sensors_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> None:
    """When the window ends, the reset time goes and every request is left again."""
    await say(hass)
    entry = all_sensors_entry
    reset = datetime.fromisoformat(sensor_state(hass, entry, "rate_limit_reset"))
    remaining = int(sensor_state(hass, entry, "rate_limit_remaining"))
    limit = entry.runtime_data.client.rate_limit.limit
    assert remaining < limit

    freezer.move_to(reset + timedelta(seconds=1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()

    assert sensor_state(hass, entry, "rate_limit_reset") == "unknown"
    assert int(sensor_state(hass, entry, "rate_limit_remaining")) == limit


async def test_sensors_follow_the_response_headers(
    hass: HomeAssistant, all_sensors_entry: MockConfigEntry, standin: StandinServer
) -> None:
    """After a request the sensors show what its headers said; no polling."""
    config_entry = all_sensors_entry
    assert sensor_state(hass, config_entry, "credits_remaining") == "unknown"
    before = len(standin.requests)

    await say(hass)

    account = standin.accounts[DEFAULT_API_KEY]
    [request] = standin.requests[before:]  # the sensors asked for nothing
    assert request.path == "tts/"
    assert float(sensor_state(hass, config_entry, "credits_remaining")) == (
        account.credits
    )
    used = float(sensor_state(hass, config_entry, "credits_used"))
    assert used == 10_000 - account.credits > 0
    # Every request so far (catalogue at set-up, then tts) counts in this minute.
    remaining = int(sensor_state(hass, config_entry, "rate_limit_remaining"))
    assert remaining == account.plan_limits.requests_per_minute - len(standin.requests)
    reset = datetime.fromisoformat(sensor_state(hass, config_entry, "rate_limit_reset"))
    assert datetime.now(UTC) < reset <= datetime.now(UTC) + timedelta(seconds=61)


async def test_out_of_credits_raises_an_issue_that_clears(
    hass: HomeAssistant, config_entry: MockConfigEntry, standin: StandinServer
) -> None:
    """A 402 opens a repair issue; the next successful request closes it."""
    standin.inject(Fault.INSUFFICIENT_CREDITS, path="tts/", times=1)
    with pytest.raises(HomeAssistantError):
        await say(hass)
    assert account_issues(hass) == {f"insufficient_credits_{config_entry.entry_id}"}
    issue = ir.async_get(hass).async_get_issue(
        "tts_ai", f"insufficient_credits_{config_entry.entry_id}"
    )
    assert issue is not None
    assert issue.translation_key == "insufficient_credits"
    assert issue.severity is ir.IssueSeverity.ERROR

    await say(hass)  # credits bought: the request succeeds
    assert account_issues(hass) == set()


async def test_lost_api_access_raises_an_issue_that_clears(
    hass: HomeAssistant, config_entry: MockConfigEntry, standin: StandinServer
) -> None:
    """A 403 (plan without API access) opens an issue until access returns."""
    account = standin.accounts[DEFAULT_API_KEY]
    account.plan = "free"
    with pytest.raises(HomeAssistantError):
        await say(hass)
    assert account_issues(hass) == {f"forbidden_{config_entry.entry_id}"}

    account.plan = "pro"
    await say(hass, "Upgraded.")
    assert account_issues(hass) == set()


async def test_issues_go_with_the_entry(
    hass: HomeAssistant, config_entry: MockConfigEntry, standin: StandinServer
) -> None:
    """Removing the entry removes its open issues."""
    standin.inject(Fault.INSUFFICIENT_CREDITS, path="tts/")
    with pytest.raises(HomeAssistantError):
        await say(hass)
    assert account_issues(hass)
    assert await hass.config_entries.async_remove(config_entry.entry_id)
    await hass.async_block_till_done()
    assert account_issues(hass) == set()


async def test_client_tells_success_from_failure(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """The client's last_ok follows each response, and listeners hear of it."""
    client = TtsAiClient(
        async_get_clientsession(hass), DEFAULT_API_KEY, base_url=standin.base_url
    )
    seen: list[bool | None] = []
    client.add_listener(lambda: seen.append(client.last_ok))
    assert client.last_ok is None

    await client.list_models()
    assert client.last_ok is True
    standin.inject(Fault.INSUFFICIENT_CREDITS, path="tts/", times=1)
    with pytest.raises(InsufficientCreditsError):
        await client.tts("Hi.", model="kokoro", voice="af_bella")
    assert client.last_ok is False
    assert isinstance(client.last_error, InsufficientCreditsError)
    await client.tts("Hi.", model="kokoro", voice="af_bella")
    assert client.last_ok is True
    assert seen[0] is True
    assert False in seen
    assert seen[-1] is True


async def test_last_credits_survive_a_restart(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """Before the first request after a restart, the last known credits show."""
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State("sensor.tts_ai_credits_remaining", "42.0"),
                {"native_value": 42.0, "native_unit_of_measurement": "credits"},
            )
        ],
    )
    entry = make_entry(standin)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert float(sensor_state(hass, entry, "credits_remaining")) == 42.0

    await say(hass)
    assert float(sensor_state(hass, entry, "credits_remaining")) == (
        standin.accounts[DEFAULT_API_KEY].credits
    )
