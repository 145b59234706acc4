"""Shared fixtures: the TTS.ai stand-in on loopback and a configured entry."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

# Import the package before HA puts the plugin's testing_config on sys.path,
# so HA finds this repo's custom_components (see notes/ha-testing.md).
import custom_components.tts_ai  # noqa: F401
from custom_components.tts_ai.config_flow import key_fingerprint
from custom_components.tts_ai.const import CONF_BASE_URL, CONF_MODE, DOMAIN
from tests.harness.standin import DEFAULT_API_KEY, StandinServer


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let HA load this repo's integration in every test."""


@pytest.fixture
async def standin(socket_enabled: None) -> AsyncGenerator[StandinServer]:
    """A running TTS.ai stand-in server on 127.0.0.1."""
    server = StandinServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def make_entry(
    standin: StandinServer, api_key: str = DEFAULT_API_KEY, **options: Any
) -> MockConfigEntry:
    """Return a TTS.ai config entry pointing at the stand-in.

    Cloud only unless told otherwise: the fallback tests bring their own
    model server for the on-device engines.
    """
    options.setdefault(CONF_MODE, "cloud_only")
    return MockConfigEntry(
        domain=DOMAIN,
        title="TTS.ai",
        unique_id=key_fingerprint(api_key),
        data={CONF_API_KEY: api_key, CONF_BASE_URL: standin.base_url},
        options=options,
    )


@pytest.fixture
async def config_entry(hass: HomeAssistant, standin: StandinServer) -> MockConfigEntry:
    """A loaded TTS.ai entry using the stand-in."""
    # Always there in a real HA; the conversation agent needs its exposed entities.
    assert await async_setup_component(hass, "homeassistant", {})
    entry = make_entry(standin)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


@pytest.fixture(autouse=True)
def tts_cache_dir(tmp_path: Any) -> Any:
    """Keep HA's TTS file cache in the test's own folder."""
    from unittest.mock import patch

    cache = tmp_path / "tts_cache"
    cache.mkdir()
    with patch(
        "homeassistant.components.tts._init_tts_cache_dir", return_value=str(cache)
    ):
        yield cache
