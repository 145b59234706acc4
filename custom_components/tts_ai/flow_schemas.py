"""Form fields the config flow and the options flow share.

The device-only set-up and the options ask the same questions about the
on-device engine (which engine, its entities, where its models come from);
the cloned-voice form picks from lists the same way. One builder each, so
the two flows cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import section
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import probatio

from .const import (
    CONF_KEEP_ENGINES_LOADED,
    CONF_LOCAL_ENGINE,
    CONF_LOCAL_STT_ENTITY,
    CONF_LOCAL_TTS_ENTITY,
    CONF_LOCAL_VOICES,
    CONF_PIPER_VOICES_URL,
    CONF_WHISPER_MODEL,
    CONF_WHISPER_MODELS_URL,
    DOMAIN,
    LOCAL_ENGINE_BUILT_IN,
    LOCAL_ENGINES,
)
from .local.model_manager import HF_URL, PIPER_VOICES_URL

# CTranslate2 Whisper models offered in the options (any other name works too).
WHISPER_MODELS = ("tiny", "tiny.en", "base", "base.en", "small", "small.en")
# The collapsed section with the built-in engine's settings: where its models
# come from, which ones, and whether they stay loaded (a form name, not an
# option: its fields are stored flat in the options).
MODEL_DOWNLOADS_SECTION = "model_downloads"
MODEL_DOWNLOAD_DEFAULTS: dict[str, Any] = {
    CONF_PIPER_VOICES_URL: PIPER_VOICES_URL,
    CONF_WHISPER_MODELS_URL: HF_URL,
    CONF_KEEP_ENGINES_LOADED: False,
}
# The step that asks for "another engine"'s entities, in both flows.
STEP_LOCAL_ENTITIES = "local_entities"

URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))


def select(
    options: list[SelectOptionDict],
    *,
    custom: bool = False,
    translation_key: str | None = None,
) -> SelectSelector:
    """Return a drop-down of ``options`` (``custom``: other values allowed)."""
    config = SelectSelectorConfig(
        options=options, mode=SelectSelectorMode.DROPDOWN, custom_value=custom
    )
    if translation_key is not None:
        config["translation_key"] = translation_key
    return SelectSelector(config)


def model_download_fields() -> dict[str, Any]:
    """Return the fields of the collapsed section: the built-in engine's settings."""
    return {
        CONF_PIPER_VOICES_URL: URL_SELECTOR,
        CONF_WHISPER_MODELS_URL: URL_SELECTOR,
        CONF_LOCAL_VOICES: TextSelector(TextSelectorConfig(multiple=True)),
        CONF_WHISPER_MODEL: select(
            [SelectOptionDict(value=m, label=m) for m in WHISPER_MODELS], custom=True
        ),
        CONF_KEEP_ENGINES_LOADED: BooleanSelector(),
    }


def model_downloads_section() -> section:
    """Return the collapsed section with the built-in engine's settings."""
    return section(
        probatio.Schema(
            {
                probatio.Optional(
                    field,
                    default=MODEL_DOWNLOAD_DEFAULTS.get(field, probatio.UNDEFINED),
                ): selector
                for field, selector in model_download_fields().items()
            }
        ),
        {"collapsed": True},
    )


def model_download_options(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return the section's answers that differ from the defaults (which may change)."""
    given = user_input.get(MODEL_DOWNLOADS_SECTION) or {}
    return {
        field: value
        for field, value in given.items()
        if value and value != MODEL_DOWNLOAD_DEFAULTS.get(field)
    }


def local_engine_schema(options: Mapping[str, Any]) -> probatio.Schema:
    """Return the engine choice and, collapsed, where its models come from."""
    return probatio.Schema(
        {
            probatio.Required(
                CONF_LOCAL_ENGINE,
                default=options.get(CONF_LOCAL_ENGINE, LOCAL_ENGINE_BUILT_IN),
            ): select(
                [SelectOptionDict(value=e, label=e) for e in LOCAL_ENGINES],
                translation_key=CONF_LOCAL_ENGINE,
            ),
            probatio.Optional(MODEL_DOWNLOADS_SECTION): model_downloads_section(),
        }
    )


def local_entities_schema(hass: HomeAssistant) -> probatio.Schema:
    """Return the pickers of "another engine": any TTS or STT entity but ours."""
    own_entities = sorted(
        entity.entity_id
        for entity in er.async_get(hass).entities.values()
        if entity.platform == DOMAIN
    )
    return probatio.Schema(
        {
            probatio.Optional(CONF_LOCAL_TTS_ENTITY): EntitySelector(
                EntitySelectorConfig(domain="tts", exclude_entities=own_entities)
            ),
            probatio.Optional(CONF_LOCAL_STT_ENTITY): EntitySelector(
                EntitySelectorConfig(domain="stt", exclude_entities=own_entities)
            ),
        }
    )
