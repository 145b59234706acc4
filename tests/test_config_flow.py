"""Config flow: user set-up, reauth, reconfigure and options."""

from __future__ import annotations

from collections.abc import Generator
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, UnknownFlow
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.tts_ai.config_flow import key_fingerprint
from custom_components.tts_ai.const import CONF_BASE_URL, DOMAIN
from tests.harness.standin import DEFAULT_API_KEY, Fault, StandinServer

from .conftest import make_entry

OTHER_KEY = "sk-tts-standin-enterprise"


@pytest.fixture
def skip_entry_setup() -> Generator[AsyncMock]:
    """Stop after the flow: set-up itself is tested in test_init.py.

    A new cloud entry would otherwise start downloading on-device models.
    """
    with patch(
        "custom_components.tts_ai.async_setup_entry", return_value=True
    ) as setup:
        yield setup


async def start_cloud_flow(hass: HomeAssistant) -> dict:
    """Open the flow and pick the cloud in its menu."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["cloud", "local"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "cloud"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "cloud"
    return result


async def test_user_creates_entry(
    hass: HomeAssistant, standin: StandinServer, skip_entry_setup: AsyncMock
) -> None:
    """A valid key creates one entry, identified without the raw key."""
    result = await start_cloud_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_API_KEY: f" {DEFAULT_API_KEY} ", CONF_BASE_URL: standin.base_url},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "TTS.ai"
    assert result["data"] == {
        CONF_API_KEY: DEFAULT_API_KEY,
        CONF_BASE_URL: standin.base_url,
    }
    entry = result["result"]
    assert entry.options == {"mode": "cloud_first"}
    assert entry.unique_id == key_fingerprint(DEFAULT_API_KEY)
    assert DEFAULT_API_KEY not in entry.unique_id
    assert [r.path for r in standin.requests][:1] == ["models/"]
    assert standin.requests[0].headers["Authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert len(skip_entry_setup.mock_calls) == 1


async def test_model_mirrors_are_set_before_the_first_set_up(
    hass: HomeAssistant, standin: StandinServer, skip_entry_setup: AsyncMock
) -> None:
    """The cloud form's collapsed section says where the models come from.

    The entry starts fetching models when it is set up, right after this form:
    without the section, the default hosts are tried before any option could
    point elsewhere.
    """
    result = await start_cloud_flow(hass)
    [section_field] = [
        field
        for field in result["data_schema"].schema
        if str(field) == "model_downloads"
    ]
    assert result["data_schema"].schema[section_field].options == {"collapsed": True}
    mirror = "http://127.0.0.1:9/mirror/"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_API_KEY: DEFAULT_API_KEY,
            CONF_BASE_URL: standin.base_url,
            "model_downloads": {
                "piper_voices_url": mirror,
                "whisper_models_url": "https://huggingface.co",  # the default
                "local_voices": ["en_US-joe-medium"],
                "whisper_model": "tiny.en",
            },
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {
        CONF_API_KEY: DEFAULT_API_KEY,
        CONF_BASE_URL: standin.base_url,
    }
    # Defaults are not stored: a later default applies to this entry too.
    assert result["result"].options == {
        "mode": "cloud_first",
        "piper_voices_url": mirror,
        "local_voices": ["en_US-joe-medium"],
        "whisper_model": "tiny.en",
    }
    assert len(skip_entry_setup.mock_calls) == 1


@pytest.mark.parametrize(
    ("api_key", "fault", "error"),
    [
        ("sk-tts-wrong", None, "invalid_auth"),
        ("sk-tts-standin-free", None, "no_api_access"),
        (DEFAULT_API_KEY, Fault.REFUSE, "cannot_connect"),
        (DEFAULT_API_KEY, Fault.INTERNAL_ERROR, "unknown"),
    ],
)
async def test_user_errors_then_recovers(
    hass: HomeAssistant,
    standin: StandinServer,
    skip_entry_setup: AsyncMock,
    api_key: str,
    fault: Fault | None,
    error: str,
) -> None:
    """Each failure shows its own error, and the form still works afterwards."""
    result = await start_cloud_flow(hass)
    if fault is not None:
        standin.inject(fault)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: api_key, CONF_BASE_URL: standin.base_url}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}

    standin.clear_faults()
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_API_KEY: DEFAULT_API_KEY, CONF_BASE_URL: standin.base_url},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_same_key_twice_aborts(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """One entry per key."""
    make_entry(standin).add_to_hass(hass)
    result = await start_cloud_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_API_KEY: DEFAULT_API_KEY, CONF_BASE_URL: standin.base_url},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_reauth_replaces_key(hass: HomeAssistant, standin: StandinServer) -> None:
    """Reauth validates the new key, stores it and reloads the entry."""
    entry = make_entry(standin, api_key="sk-tts-revoked")
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress()
    assert len(flows) == 1
    assert flows[0]["context"]["source"] == "reauth"

    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {CONF_API_KEY: "sk-tts-still-wrong"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {CONF_API_KEY: OTHER_KEY}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_API_KEY] == OTHER_KEY
    assert entry.unique_id == key_fingerprint(OTHER_KEY)
    assert entry.state is ConfigEntryState.LOADED


async def test_reauth_refuses_key_of_another_entry(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """A key already used by another entry is not taken over."""
    make_entry(standin, api_key=OTHER_KEY).add_to_hass(hass)
    entry = make_entry(standin)
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: OTHER_KEY}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_API_KEY] == DEFAULT_API_KEY


async def test_reconfigure_changes_base_url(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """Reconfigure moves the entry to another endpoint after checking it."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=key_fingerprint(DEFAULT_API_KEY),
        data={CONF_API_KEY: DEFAULT_API_KEY, CONF_BASE_URL: "http://127.0.0.1:9/v1/"},
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_API_KEY: DEFAULT_API_KEY, CONF_BASE_URL: "http://127.0.0.1:9/v1/"},
    )
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_API_KEY: DEFAULT_API_KEY, CONF_BASE_URL: standin.base_url},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_BASE_URL] == standin.base_url


async def test_reconfigure_keeps_the_stored_key_when_left_empty(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """Changing only the base URL does not ask for the key again."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=key_fingerprint(DEFAULT_API_KEY),
        data={CONF_API_KEY: DEFAULT_API_KEY, CONF_BASE_URL: "http://127.0.0.1:9/v1/"},
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BASE_URL: standin.base_url}
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data == {
        CONF_API_KEY: DEFAULT_API_KEY,
        CONF_BASE_URL: standin.base_url,
    }
    assert entry.unique_id == key_fingerprint(DEFAULT_API_KEY)


async def test_options_flow_validates_combinations(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """A voice of another model or an unsupported language is refused."""
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    base = {
        "model": "kokoro",
        "voice": "af_bella",
        "language": "en",
        "format": "mp3",
        "speed": 1.0,
        "stt_model": "whisper",
    }
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**base, "voice": "en_US-joe-medium"}
    )
    assert result["errors"] == {"voice": "voice_model_mismatch"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**base, "language": "de"}
    )
    assert result["errors"] == {"language": "language_not_supported"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**base, "speed": 0.75}
    )
    assert result["step_id"] == "fallback"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"mode": "cloud_only", "local_engine": "built_in", "hedge_deadline": 1.0},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert config_entry.options["speed"] == 0.75
    assert config_entry.options["hedge_deadline"] == 1.0
    assert config_entry.state is ConfigEntryState.LOADED


async def test_abandoned_local_form_does_not_block_a_new_one(
    hass: HomeAssistant, skip_entry_setup: AsyncMock
) -> None:
    """Leaving the device-only form open (tab closed) blocks nothing."""

    async def open_local_form() -> str:
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USER}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": "local"}
        )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "local"
        return result["flow_id"]

    abandoned = await open_local_form()
    second = await open_local_form()
    result = await hass.config_entries.flow.async_configure(
        second, {"local_engine": "built_in"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY

    # The old form went with the entry: submitted late, it makes no second one.
    with pytest.raises(UnknownFlow):
        await hass.config_entries.flow.async_configure(
            abandoned, {"local_engine": "built_in"}
        )
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


async def test_local_only_entry_needs_no_key(
    hass: HomeAssistant, skip_entry_setup: AsyncMock
) -> None:
    """The device-only choice creates an entry without any account."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "local"}
    )
    assert result["step_id"] == "local"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"local_engine": "built_in"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {}
    assert result["options"]["mode"] == "local_only"
    assert result["options"]["local_engine"] == "built_in"

    # One device, one set of engines.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "local"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
