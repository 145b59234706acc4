"""Config flow: user set-up, reauth, reconfigure and options."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
import json
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, UnknownFlow
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.tts_ai.catalogue import Catalogue
from custom_components.tts_ai.config_flow import key_fingerprint
from custom_components.tts_ai.const import CONF_BASE_URL, DOMAIN
from tests.harness.standin import DEFAULT_API_KEY, Fault, StandinServer

from .conftest import make_entry

OTHER_KEY = "sk-tts-standin-enterprise"
UNREACHABLE_URL = "http://127.0.0.1:9/v1/"  # discard: nothing answers
# Cloud settings that fit the stand-in's catalogue (Kokoro and one of its voices).
OPTIONS = {
    "model": "kokoro",
    "voice": "af_bella",
    "language": "en",
    "format": "mp3",
    "speed": 1.0,
    "stt_model": "whisper",
}


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
    assert form_field(result, "model_downloads").options == {"collapsed": True}
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


def add_entry_on_an_unreachable_url(hass: HomeAssistant) -> MockConfigEntry:
    """Add an entry whose base URL nothing answers on (not set up)."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=key_fingerprint(DEFAULT_API_KEY),
        data={CONF_API_KEY: DEFAULT_API_KEY, CONF_BASE_URL: UNREACHABLE_URL},
    )
    entry.add_to_hass(hass)
    return entry


async def test_reconfigure_changes_base_url(
    hass: HomeAssistant, standin: StandinServer
) -> None:
    """Reconfigure moves the entry to another endpoint after checking it."""
    entry = add_entry_on_an_unreachable_url(hass)
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_API_KEY: DEFAULT_API_KEY, CONF_BASE_URL: UNREACHABLE_URL},
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
    entry = add_entry_on_an_unreachable_url(hass)
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


def form_field(result: dict, name: str) -> Any:
    """The validator of a form field (a selector, or a section)."""
    for key, value in result["data_schema"].schema.items():
        if str(key) == name:
            return value
    raise AssertionError(f"{name} is not in the form")


def field_selector(result: dict, name: str) -> dict:
    """The serialised selector of a form field, as the frontend receives it."""
    return form_field(result, name).serialize()["selector"]


def suggested_values(result: dict) -> dict[str, object]:
    """The values the form suggests (pre-filled, not yet chosen)."""
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


def field_names(result: dict) -> list[str]:
    """The form's fields in the order the frontend shows them."""
    return [str(key) for key in result["data_schema"].schema]


async def test_options_show_the_chosen_models_voices_by_name(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Voices are the chosen model's, by display name; languages by code for names."""
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    voices = field_selector(result, "voice")["select"]["options"]
    # Only Kokoro's voices (the entry's model), no model ids in the labels.
    assert {"value": "af_bella", "label": "Bella (en)"} in voices
    assert not any(v["value"] == "en_US-joe-medium" for v in voices)
    assert not any("kokoro" in v["label"] for v in voices)
    # The frontend names languages itself (HA's language picker); only the
    # model's languages are offered.
    language = field_selector(result, "language")["language"]
    assert language["languages"] == sorted(["en", "ja", "ko", "zh", "fr", "es"])
    # Formats are labelled through the translations, not shown as raw values.
    assert field_selector(result, "format")["select"]["translation_key"] == "format"


async def test_options_flow_validates_combinations(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """After another model is chosen, the form comes back with its voices."""
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**OPTIONS, "model": "piper", "language": "ja"}
    )
    assert result["step_id"] == "init"
    assert result["errors"] == {"voice": "voice_model_mismatch"}
    voices = field_selector(result, "voice")["select"]["options"]
    assert {v["value"] for v in voices} == {
        "en_US-joe-medium",
        "en_US-lessac-medium",
        "en_GB-alan-medium",
        "de_DE-thorsten-medium",
        "es_ES-davefx-medium",
        "fr_FR-siwis-medium",
    }
    assert field_selector(result, "language")["language"]["languages"] == sorted(
        ["en", "de", "es", "fr"]
    )
    # A voice and a language of the new model are suggested, not forced.
    suggested = suggested_values(result)
    assert suggested["language"] == "en"
    assert suggested["voice"] == "en_GB-alan-medium"
    chosen = {**OPTIONS, "model": "piper", "voice": "en_US-joe-medium", "speed": 0.75}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], chosen
    )
    assert result["step_id"] == "fallback"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"mode": "cloud_only", "local_engine": "built_in", "hedge_deadline": 1.0},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert config_entry.options["speed"] == 0.75
    assert config_entry.options["voice"] == "en_US-joe-medium"
    assert config_entry.options["hedge_deadline"] == 1.0
    assert config_entry.state is ConfigEntryState.LOADED


def _without(catalogue: Catalogue, vanished: str) -> Catalogue:
    """The catalogue after a refresh that took one thing away."""
    if vanished == "voice":
        return replace(
            catalogue, voices=tuple(v for v in catalogue.voices if v.id != "af_bella")
        )
    if vanished == "model":
        return replace(
            catalogue, models=tuple(m for m in catalogue.models if m.id != "kokoro")
        )
    return replace(
        catalogue,
        models=tuple(
            replace(m, languages=[lang for lang in m.languages if lang != "en"])
            if m.id == "kokoro"
            else m
            for m in catalogue.models
        ),
    )


@pytest.mark.parametrize(
    ("vanished", "errors"),
    [
        ("voice", {"voice": "unknown_voice"}),
        ("model", {"model": "unknown_model"}),
        ("language", {"language": "language_not_supported"}),
    ],
)
async def test_options_after_the_catalogue_changed_under_the_open_form(
    hass: HomeAssistant,
    config_entry: MockConfigEntry,
    vanished: str,
    errors: dict[str, str],
) -> None:
    """A refresh while the form is open: what was offered may be gone; say what."""
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    coordinator = config_entry.runtime_data.catalogue
    coordinator.async_set_updated_data(_without(coordinator.data, vanished))

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], OPTIONS
    )

    assert result["step_id"] == "init"
    assert result["errors"] == errors
    suggested = suggested_values(result)
    if vanished == "voice":
        # Another of the model's voices is suggested in its place.
        assert suggested["voice"] != "af_bella"
        assert coordinator.data.voice(suggested["voice"]).model == "kokoro"
    elif vanished == "model":
        # Nothing of a model that is gone to suggest: the entries stay.
        assert suggested["voice"] == "af_bella"
    else:
        assert suggested["language"] == "ja"
    assert config_entry.options.get("voice") is None


async def test_options_take_any_language_for_a_model_that_lists_none(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """A model without a language list is offered every language, and takes one."""
    coordinator = config_entry.runtime_data.catalogue
    catalogue = coordinator.data
    coordinator.async_set_updated_data(
        replace(
            catalogue,
            models=tuple(
                replace(m, languages=[]) if m.id == "kokoro" else m
                for m in catalogue.models
            ),
        )
    )
    result = await hass.config_entries.options.async_init(config_entry.entry_id)

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**OPTIONS, "language": "de"}
    )

    assert result["step_id"] == "fallback"


async def test_fallback_step_puts_the_mode_first_and_mirrors_away(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Mode, hedge deadline, engine; download settings in a collapsed section."""
    result = await hass.config_entries.options.async_init(config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], OPTIONS
    )
    assert result["step_id"] == "fallback"
    assert field_names(result) == [
        "mode",
        "hedge_deadline",
        "local_engine",
        "model_downloads",
    ]
    downloads = form_field(result, "model_downloads")
    assert downloads.options == {"collapsed": True}
    assert [str(key) for key in downloads.schema.schema] == [
        "piper_voices_url",
        "whisper_models_url",
        "local_voices",
        "whisper_model",
        "keep_engines_loaded",
    ]
    mirror = "http://127.0.0.1:9/mirror/"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            "mode": "cloud_first",
            "hedge_deadline": 1.0,
            "local_engine": "entity",
            "model_downloads": {
                "piper_voices_url": mirror,
                "whisper_models_url": "https://huggingface.co",  # the default
            },
        },
    )
    # The entity pickers come only with "another engine", on their own step.
    assert result["step_id"] == "local_entities"
    assert field_names(result) == ["local_tts_entity", "local_stt_entity"]
    result = await hass.config_entries.options.async_configure(result["flow_id"], {})
    assert result["errors"] == {"base": "entity_required"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"local_tts_entity": "tts.other_engine"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert config_entry.options["local_engine"] == "entity"
    assert config_entry.options["local_tts_entity"] == "tts.other_engine"
    assert config_entry.options["piper_voices_url"] == mirror
    assert "whisper_models_url" not in config_entry.options  # the default


async def test_keep_engines_loaded_is_stored_only_when_on(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """The built-in engine's "keep loaded" switch starts off, is stored when
    turned on, shows as on when the options open again, and is gone again
    (the default) when turned off."""

    async def open_fallback_step() -> dict[str, Any]:
        result = await hass.config_entries.options.async_init(config_entry.entry_id)
        return await hass.config_entries.options.async_configure(
            result["flow_id"], OPTIONS
        )

    async def submit(result: dict[str, Any], keep_loaded: bool) -> None:
        result = await hass.config_entries.options.async_configure(
            result["flow_id"],
            {
                "mode": "cloud_first",
                "hedge_deadline": 1.0,
                "local_engine": "built_in",
                "model_downloads": {"keep_engines_loaded": keep_loaded},
            },
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        await hass.async_block_till_done()

    def switch(result: dict[str, Any]) -> Any:
        downloads = form_field(result, "model_downloads")
        return next(k for k in downloads.schema.schema if k == "keep_engines_loaded")

    def shown_value(result: dict[str, Any]) -> Any:
        return (switch(result).description or {}).get("suggested_value")

    result = await open_fallback_step()
    assert switch(result).default() is False
    assert shown_value(result) is None  # nothing stored: the default, off
    await submit(result, keep_loaded=True)
    assert config_entry.options["keep_engines_loaded"] is True

    result = await open_fallback_step()
    assert shown_value(result) is True
    await submit(result, keep_loaded=False)
    assert "keep_engines_loaded" not in config_entry.options


async def test_device_only_set_up_can_keep_the_engines_loaded(
    hass: HomeAssistant, skip_entry_setup: AsyncMock
) -> None:
    """The device-only form's section has the switch too: a voice-satellite
    set-up keeps its engines loaded from the very first start."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "local"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"local_engine": "built_in", "model_downloads": {"keep_engines_loaded": True}},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["options"] == {
        "mode": "local_only",
        "local_engine": "built_in",
        "keep_engines_loaded": True,
    }


async def test_every_form_field_is_described() -> None:
    """Every field of every form has a description under it in the UI."""
    strings = json.loads(
        (
            Path(__file__).parent.parent / "custom_components/tts_ai/strings.json"
        ).read_text(encoding="utf-8")
    )
    steps = [
        *strings["config"]["step"].items(),
        *strings["options"]["step"].items(),
        *strings["config_subentries"]["cloned_voice"]["step"].items(),
    ]
    undescribed = []
    for step_id, step in steps:
        parts = [step, *step.get("sections", {}).values()]
        for part in parts:
            for field in part.get("data", {}):
                if field not in part.get("data_description", {}):
                    undescribed.append(f"{step_id}.{field}")
    assert undescribed == []


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
    assert "keep_engines_loaded" not in result["options"]  # off unless asked

    # One device, one set of engines.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "local"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_local_entry_with_another_engine_asks_for_its_entities(
    hass: HomeAssistant, skip_entry_setup: AsyncMock
) -> None:
    """Device only with another engine: the entity pickers are a step of their own."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "local"}
    )
    assert field_names(result) == ["local_engine", "model_downloads"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"local_engine": "entity"}
    )
    assert result["step_id"] == "local_entities"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["errors"] == {"base": "entity_required"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"local_stt_entity": "stt.other_engine"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["options"] == {
        "mode": "local_only",
        "local_engine": "entity",
        "local_stt_entity": "stt.other_engine",
    }
