"""Diagnostics never contain the API key."""

from __future__ import annotations

import json

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)

from tests.harness.standin import DEFAULT_API_KEY


async def test_diagnostics_redact_key(
    hass: HomeAssistant, hass_client, config_entry: MockConfigEntry
) -> None:
    """Diagnostics show the catalogue and limits, and no key."""
    assert await async_setup_component(hass, "diagnostics", {})
    diagnostics = await get_diagnostics_for_config_entry(
        hass, hass_client, config_entry
    )
    assert DEFAULT_API_KEY not in json.dumps(diagnostics)
    assert diagnostics["entry"]["data"]["api_key"] == "**REDACTED**"
    assert "kokoro" in diagnostics["catalogue"]["tts_models"]
    assert diagnostics["catalogue"]["voices"] > 3
    assert diagnostics["rate_limit"]["limit"] == 60
