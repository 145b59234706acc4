"""What users see, as snapshots (tests/snapshots/), with an autospec client.

In the style of Home Assistant core: the client is mocked (``mock_client``,
with the catalogue of tests/fixtures/ and a fixed account state), so each
snapshot shows this integration's own output: diagnostics, every entity's
registry entry and state per platform, and config-flow results. Behaviour
against the API contract is tested end to end with the loopback stand-in
elsewhere. After an intended change: ``scripts/test tests/test_snapshots.py
--snapshot-update``, and review the diff.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any
from unittest.mock import MagicMock, PropertyMock, patch

from homeassistant import config_entries
from homeassistant.const import CONF_API_KEY, Platform
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    snapshot_platform,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props

from custom_components.tts_ai.api import (
    AuthenticationError,
    ForbiddenError,
    TtsAiConnectionError,
    TtsAiError,
)
from custom_components.tts_ai.config_flow import key_fingerprint
from custom_components.tts_ai.const import CONF_BASE_URL, CONF_MODE, DOMAIN

API_KEY = "sk-tts-snapshot-key"
BASE_URL = "https://api.tts.ai/v1/"
# Fields that differ on every run (ids and times HA gives out).
VOLATILE = props("entry_id", "flow_id", "created_at", "modified_at", "id")


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Create entities that are disabled by default too (as HA core's fixture)."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


@pytest.fixture
def entry() -> MockConfigEntry:
    """A cloud entry with fixed ids, so snapshots are stable."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="TTS.ai",
        entry_id="01SNAPSHOTENTRY",
        unique_id=key_fingerprint(API_KEY),
        data={CONF_API_KEY: API_KEY, CONF_BASE_URL: BASE_URL},
        options={CONF_MODE: "cloud_only"},
    )


async def _set_up(
    hass: HomeAssistant, entry: MockConfigEntry, platforms: list[Platform]
) -> None:
    assert await async_setup_component(hass, "homeassistant", {})
    entry.add_to_hass(hass)
    with patch("custom_components.tts_ai.PLATFORMS", platforms):
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()


async def test_diagnostics(
    hass: HomeAssistant,
    hass_client: Any,
    mock_client: MagicMock,
    entry: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    """Settings, catalogue summary, limits and account; the key redacted."""
    assert await async_setup_component(hass, "diagnostics", {})
    await _set_up(hass, entry, [])
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert API_KEY not in str(diagnostics)
    assert diagnostics == snapshot(exclude=props("created_at", "modified_at"))


@pytest.mark.parametrize(
    "platform",
    [
        Platform.BINARY_SENSOR,
        Platform.CONVERSATION,
        Platform.SENSOR,
        Platform.STT,
        Platform.TTS,
    ],
)
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities(
    hass: HomeAssistant,
    entity_registry: er.EntityRegistry,
    mock_client: MagicMock,
    entry: MockConfigEntry,
    snapshot: SnapshotAssertion,
    platform: Platform,
) -> None:
    """Every entity of the platform: its registry entry and its state."""
    await _set_up(hass, entry, [platform])
    await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


async def _cloud_step(hass: HomeAssistant) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    return await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "cloud"}
    )


async def test_config_flow_creates_cloud_entry(
    hass: HomeAssistant, mock_client: MagicMock, snapshot: SnapshotAssertion
) -> None:
    """The key form, then the entry: title, data, options, unique id."""
    form = await _cloud_step(hass)
    fields = [str(key) for key in form["data_schema"].schema]
    assert {**form, "data_schema": fields} == snapshot(name="form", exclude=VOLATILE)
    result = await hass.config_entries.flow.async_configure(
        form["flow_id"], {CONF_API_KEY: f"  {API_KEY} ", CONF_BASE_URL: BASE_URL}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result == snapshot(name="entry", exclude=VOLATILE)
    mock_client.validate.assert_awaited_once()


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("bad key", status=401),
        ForbiddenError("no API access", status=403),
        TtsAiConnectionError("refused"),
        TtsAiError("odd answer", status=418),
        RuntimeError("bug"),
    ],
    ids=["auth", "forbidden", "connection", "api", "unexpected"],
)
async def test_config_flow_errors(
    hass: HomeAssistant,
    mock_client: MagicMock,
    snapshot: SnapshotAssertion,
    error: Exception,
) -> None:
    """Each way the key check fails is a form error; nothing is created."""
    form = await _cloud_step(hass)
    mock_client.validate.side_effect = error
    result = await hass.config_entries.flow.async_configure(
        form["flow_id"], {CONF_API_KEY: API_KEY, CONF_BASE_URL: BASE_URL}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == snapshot
    assert not hass.config_entries.async_entries(DOMAIN)
