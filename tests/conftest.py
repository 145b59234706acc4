"""Shared fixtures: the TTS.ai stand-in on loopback and a configured entry."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from datetime import UTC, datetime
import json
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock, patch

from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import (
    HomeAssistantSnapshotExtension,
)
from syrupy.assertion import SnapshotAssertion

# Import the package before HA puts the plugin's testing_config on sys.path,
# so HA finds this repo's custom_components (see notes/ha-testing.md).
import custom_components.tts_ai  # noqa: F401
from custom_components.tts_ai.api import Credits, Model, RateLimit, Voice, VoiceList
from custom_components.tts_ai.api.endpoints import DEFAULT_PLAN
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


def make_local_only_entry(**options: Any) -> MockConfigEntry:
    """Return a key-less, device-only TTS.ai entry with these options."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="TTS.ai (on device)",
        unique_id="local_only",
        data={},
        options={CONF_MODE: "local_only", **options},
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


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshots as HA core keeps them: HA's serializer, in tests/snapshots/.

    The plugin defines the same fixture, but syrupy's own one wins over a
    plugin's; a conftest fixture wins over both.
    """
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


def load_fixture(name: str) -> Any:
    """Return a JSON fixture as the API sends it (tests/fixtures/)."""
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def mock_client() -> Generator[MagicMock]:
    """An autospec TtsAiClient wherever the integration creates one.

    ``create_client`` in the integration's ``__init__`` is the one place a
    client is built (setup and the config flow both use it), so patching the
    name there replaces every client. The catalogue comes from the JSON
    fixtures; the account state is fixed. Behaviour against the real
    contract is tested with the loopback stand-in (``standin``) instead.
    """
    with patch("custom_components.tts_ai.TtsAiClient", autospec=True) as client_class:
        client = client_class.return_value
        models = [Model.from_dict(m) for m in load_fixture("models.json")["models"]]
        listed = load_fixture("voices.json")
        voices = VoiceList(
            voices=tuple(Voice.from_dict(v) for v in listed["voices"]),
            total=listed.get("total"),
        )
        client.validate.return_value = models
        client.list_models.return_value = models
        client.list_voices.return_value = voices
        client.base_url = "https://api.tts.ai/v1/"
        client.plan_limits = DEFAULT_PLAN
        client.rate_limit = RateLimit(
            limit=60, remaining=57, reset_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        )
        client.credits = Credits(used=1.5, remaining=998.5)
        client.last_error = None
        client.last_ok = True
        yield client


@pytest.fixture(autouse=True)
def tts_cache_dir(tmp_path: Any) -> Any:
    """Keep HA's TTS file cache in the test's own folder."""
    cache = tmp_path / "tts_cache"
    cache.mkdir()
    with patch(
        "homeassistant.components.tts._init_tts_cache_dir", return_value=str(cache)
    ):
        yield cache
