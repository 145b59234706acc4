"""Options flow for TTS.ai: the cloud voice settings, then the on-device fallback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import ConfigFlowResult, OptionsFlowWithReload
from homeassistant.const import CONF_API_KEY
from homeassistant.helpers.selector import (
    LanguageSelector,
    LanguageSelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    TextSelector,
    TextSelectorConfig,
)
import probatio

from . import TtsAiConfigEntry
from .api import SPEED_RANGE, TTS_FORMATS
from .catalogue import Catalogue
from .const import (
    CONF_FORMAT,
    CONF_HEDGE_DEADLINE,
    CONF_LANGUAGE,
    CONF_LOCAL_ENGINE,
    CONF_LOCAL_STT_ENTITY,
    CONF_LOCAL_TTS_ENTITY,
    CONF_MODE,
    CONF_MODEL,
    CONF_SPEED,
    CONF_STT_MODEL,
    CONF_SYSTEM_PROMPT,
    CONF_VOICE,
    DEFAULT_FORMAT,
    DEFAULT_LANGUAGE,
    DEFAULT_MODEL,
    DEFAULT_SPEED,
    DEFAULT_STT_MODEL,
    DEFAULT_VOICE,
    HEDGE_DEADLINE_RANGE,
    LOCAL_ENGINE_ENTITY,
)
from .fallback import DEFAULT_HEDGE_DEADLINE, Mode
from .flow_schemas import (
    MODEL_DOWNLOADS_SECTION,
    STEP_LOCAL_ENTITIES,
    local_engine_schema,
    local_entities_schema,
    model_download_fields,
    model_download_options,
    select,
)


class TtsAiOptionsFlow(OptionsFlowWithReload):
    """Cloud voice settings, then the on-device fallback."""

    def __init__(self) -> None:
        """Start with no changes."""
        self._options: dict[str, Any] = {}

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show the cloud settings (local-only entries go straight on)."""
        entry: TtsAiConfigEntry = self.config_entry
        runtime_data = getattr(entry, "runtime_data", None)
        if runtime_data is None or runtime_data.catalogue is None:
            # No catalogue (device only, or the cloud never answered): the
            # voice settings need one; the fallback settings do not.
            return await self.async_step_fallback()
        catalogue = runtime_data.catalogue.data
        errors: dict[str, str] = {}
        suggested: Mapping[str, Any] = entry.options
        if user_input is not None:
            errors = _check_options(catalogue, user_input)
            if not errors:
                # An emptied optional field is left out of user_input: clear it.
                self._options.update({CONF_SYSTEM_PROMPT: "", **user_input})
                return await self.async_step_fallback()
            suggested = _refit_to_model(catalogue, user_input)
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                _options_schema(catalogue, suggested.get(CONF_MODEL, DEFAULT_MODEL)),
                suggested,
            ),
            errors=errors,
        )

    async def async_step_fallback(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Choose the mode and the on-device engine."""
        entry = self.config_entry
        cloud = bool(entry.data.get(CONF_API_KEY))
        if user_input is not None:
            options = {**entry.options, **self._options}
            options.update(
                {k: v for k, v in user_input.items() if k != MODEL_DOWNLOADS_SECTION}
            )
            if MODEL_DOWNLOADS_SECTION in user_input:
                # Defaults and emptied fields are not stored: the default (or
                # the automatic choice) applies, even a later one.
                for field in model_download_fields():
                    options.pop(field, None)
                options.update(model_download_options(user_input))
            if not cloud:
                options[CONF_MODE] = Mode.LOCAL_ONLY
            self._options = options
            if options.get(CONF_LOCAL_ENGINE) == LOCAL_ENGINE_ENTITY:
                return await self.async_step_local_entities()
            for field in (CONF_LOCAL_TTS_ENTITY, CONF_LOCAL_STT_ENTITY):
                options.pop(field, None)  # the built-in engine uses none
            return self.async_create_entry(data=options)
        fields: dict[Any, Any] = {}
        if cloud:
            fields[
                probatio.Required(
                    CONF_MODE, default=entry.options.get(CONF_MODE, Mode.CLOUD_FIRST)
                )
            ] = select(
                [SelectOptionDict(value=m, label=m) for m in Mode],
                translation_key=CONF_MODE,
            )
            fields[
                probatio.Required(
                    CONF_HEDGE_DEADLINE,
                    default=entry.options.get(
                        CONF_HEDGE_DEADLINE, DEFAULT_HEDGE_DEADLINE
                    ),
                )
            ] = NumberSelector(
                NumberSelectorConfig(
                    min=HEDGE_DEADLINE_RANGE[0],
                    max=HEDGE_DEADLINE_RANGE[1],
                    step=0.1,
                    unit_of_measurement="s",
                    mode=NumberSelectorMode.SLIDER,
                )
            )
        schema = probatio.Schema(fields).extend(
            local_engine_schema(entry.options).schema
        )
        return self.async_show_form(
            step_id="fallback",
            data_schema=self.add_suggested_values_to_schema(
                schema,
                {
                    **entry.options,
                    MODEL_DOWNLOADS_SECTION: {
                        k: v
                        for k, v in entry.options.items()
                        if k in model_download_fields()
                    },
                },
            ),
        )

    async def async_step_local_entities(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask which entities "another engine" is (shown only for that engine)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if user_input.get(CONF_LOCAL_TTS_ENTITY) or user_input.get(
                CONF_LOCAL_STT_ENTITY
            ):
                for field in (CONF_LOCAL_TTS_ENTITY, CONF_LOCAL_STT_ENTITY):
                    self._options.pop(field, None)  # an emptied picker clears
                return self.async_create_entry(data={**self._options, **user_input})
            errors["base"] = "entity_required"
        return self.async_show_form(
            step_id=STEP_LOCAL_ENTITIES,
            data_schema=self.add_suggested_values_to_schema(
                local_entities_schema(self.hass), user_input or self._options
            ),
            errors=errors,
        )


def _options_schema(catalogue: Catalogue, model_id: str) -> probatio.Schema:
    """Return the cloud settings; voices and languages are the model's own.

    A form cannot change as a field is edited: after another model is chosen,
    the form comes back once with that model's voices and languages.
    """
    low, high = SPEED_RANGE
    tts_models = [
        SelectOptionDict(value=m.id, label=m.name) for m in catalogue.tts_models
    ]
    model = catalogue.model(model_id)
    stt_models = [
        SelectOptionDict(value=m.id, label=m.name) for m in catalogue.stt_models
    ] or [SelectOptionDict(value=DEFAULT_STT_MODEL, label=DEFAULT_STT_MODEL)]
    languages = (model.languages if model else None) or catalogue.tts_languages
    return probatio.Schema(
        {
            probatio.Required(CONF_MODEL, default=DEFAULT_MODEL): select(tts_models),
            probatio.Required(CONF_VOICE, default=DEFAULT_VOICE): select(
                _voice_options(catalogue, model_id)
            ),
            probatio.Required(
                CONF_LANGUAGE, default=DEFAULT_LANGUAGE
            ): LanguageSelector(LanguageSelectorConfig(languages=sorted(languages))),
            probatio.Required(CONF_FORMAT, default=DEFAULT_FORMAT): select(
                [SelectOptionDict(value=f, label=f) for f in TTS_FORMATS],
                translation_key=CONF_FORMAT,
            ),
            probatio.Required(CONF_SPEED, default=DEFAULT_SPEED): NumberSelector(
                NumberSelectorConfig(
                    min=low, max=high, step=0.05, mode=NumberSelectorMode.SLIDER
                )
            ),
            probatio.Required(CONF_STT_MODEL, default=DEFAULT_STT_MODEL): select(
                stt_models
            ),
            # For the voice-chat agent; it answers with the voice and model above.
            probatio.Optional(CONF_SYSTEM_PROMPT): TextSelector(
                TextSelectorConfig(multiline=True)
            ),
        }
    )


def _voice_options(catalogue: Catalogue, model_id: str) -> list[SelectOptionDict]:
    """Return the model's voices by display name, grouped by language.

    The language is named only when the model's voices speak several.
    """
    voices = sorted(
        (v for v in catalogue.voices if v.model == model_id),
        key=lambda v: (v.language or "", v.name.casefold()),
    )
    several = len({v.language for v in voices}) > 1
    return [
        SelectOptionDict(
            value=v.id,
            label=f"{v.name} ({v.language})" if several and v.language else v.name,
        )
        for v in voices
    ]


def _check_options(catalogue: Catalogue, options: Mapping[str, Any]) -> dict[str, str]:
    """Return form errors for options that do not fit together."""
    # The form offered only what the catalogue had when it was shown; a
    # refresh since then may have taken the model or voice away.
    model = catalogue.model(options[CONF_MODEL])
    if model is None:
        return {CONF_MODEL: "unknown_model"}
    voice = catalogue.voice(options[CONF_VOICE])
    if voice is None:
        return {CONF_VOICE: "unknown_voice"}
    if voice.model != options[CONF_MODEL]:
        return {CONF_VOICE: "voice_model_mismatch"}
    # A model that lists no languages is offered every language, so any fits.
    if model.languages and options[CONF_LANGUAGE] not in model.languages:
        return {CONF_LANGUAGE: "language_not_supported"}
    return {}


def _refit_to_model(
    catalogue: Catalogue, user_input: Mapping[str, Any]
) -> dict[str, Any]:
    """Suggest a voice and language of the chosen model after a model change.

    The voice suggested is the model's first voice in the chosen language
    (any of its voices when none speaks it); the user still confirms.
    """
    suggested = dict(user_input)
    model_id = user_input[CONF_MODEL]
    if (model := catalogue.model(model_id)) is None:
        return suggested
    if model.languages and suggested.get(CONF_LANGUAGE) not in model.languages:
        suggested[CONF_LANGUAGE] = model.languages[0]
    voice = catalogue.voice(suggested.get(CONF_VOICE, ""))
    if voice is None or voice.model != model_id:
        own = [v for v in catalogue.voices if v.model == model_id]
        speaking = [v for v in own if v.language == suggested.get(CONF_LANGUAGE)] or own
        if speaking:
            suggested[CONF_VOICE] = sorted(speaking, key=lambda v: v.name)[0].id
    return suggested
