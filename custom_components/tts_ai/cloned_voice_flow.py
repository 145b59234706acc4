"""Subentry flow for TTS.ai: add or change a cloned voice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import (
    SOURCE_USER,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.const import CONF_NAME
from homeassistant.helpers.selector import (
    FileSelector,
    FileSelectorConfig,
    LanguageSelector,
    LanguageSelectorConfig,
    SelectOptionDict,
    TextSelector,
)
import probatio

from . import TtsAiData
from .api.endpoints import CLONE_MODELS
from .catalogue import Catalogue
from .cloned_voices import (
    CONF_CLONE_LANGUAGE,
    CONF_CLONE_MODEL,
    CONF_RECORDING_FILE,
    DEFAULT_CLONE_MODEL,
    RecordingError,
    async_import_recording,
)
from .const import DEFAULT_LANGUAGE
from .flow_schemas import select

# The two ways to give a recording: an upload, or a file HA already has.
CONF_RECORDING_UPLOAD = "recording"
CONF_RECORDING_SOURCE = "recording_source"


class ClonedVoiceSubentryFlow(ConfigSubentryFlow):
    """Add or change a cloned voice: a name, a recording, a model, a language."""

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Add a cloned voice."""
        return await self._voice_form("user", user_input, current=None)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Rename a cloned voice, or give it another recording, model or language."""
        subentry = self._get_reconfigure_subentry()
        current = {**subentry.data, CONF_NAME: subentry.title}
        return await self._voice_form("reconfigure", user_input, current=current)

    async def _voice_form(
        self,
        step_id: str,
        user_input: dict[str, Any] | None,
        *,
        current: Mapping[str, Any] | None,
    ) -> SubentryFlowResult:
        """Show the form; validate and store the recording on submit."""
        catalogue = self._catalogue()
        errors: dict[str, str] = {}
        placeholders: dict[str, str] = {}
        if user_input is not None:
            errors = _check_voice_language(catalogue, user_input)
            recording_file = current.get(CONF_RECORDING_FILE) if current else None
            if not errors:
                upload = user_input.get(CONF_RECORDING_UPLOAD)
                source = (user_input.get(CONF_RECORDING_SOURCE) or "").strip()
                if upload and source:
                    errors["base"] = "recording_twice"
                elif upload or source:
                    try:
                        recording_file = await async_import_recording(
                            self.hass,
                            self._get_entry().entry_id,
                            upload=upload,
                            source=source or None,
                        )
                    except RecordingError as err:
                        errors["base"] = err.reason
                        placeholders = err.placeholders
                elif recording_file is None:
                    errors["base"] = "recording_required"
            if not errors:
                data = {
                    CONF_RECORDING_FILE: recording_file,
                    CONF_CLONE_MODEL: user_input[CONF_CLONE_MODEL],
                    CONF_CLONE_LANGUAGE: user_input[CONF_CLONE_LANGUAGE],
                }
                title = user_input[CONF_NAME].strip()
                if self.source == SOURCE_USER:
                    return self.async_create_entry(title=title, data=data)
                return self.async_update_and_abort(
                    self._get_entry(),
                    self._get_reconfigure_subentry(),
                    title=title,
                    data=data,
                )
        suggested = {
            k: v
            for k, v in (user_input or current or {}).items()
            if k not in (CONF_RECORDING_UPLOAD, CONF_RECORDING_SOURCE)
        }
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(
                _voice_schema(catalogue), suggested
            ),
            errors=errors,
            description_placeholders=placeholders,
        )

    def _catalogue(self) -> Catalogue | None:
        # An entry that is not loaded has no runtime data at all.
        runtime_data: TtsAiData | None = getattr(
            self._get_entry(), "runtime_data", None
        )
        if runtime_data is None or runtime_data.catalogue is None:
            return None
        return runtime_data.catalogue.data


def _voice_schema(catalogue: Catalogue | None) -> probatio.Schema:
    """Return the cloned-voice form; names and languages come from the catalogue."""
    models = [
        SelectOptionDict(
            value=m,
            label=model.name if catalogue and (model := catalogue.model(m)) else m,
        )
        for m in CLONE_MODELS
    ]
    languages = catalogue.tts_languages if catalogue else []
    return probatio.Schema(
        {
            probatio.Required(CONF_NAME): TextSelector(),
            probatio.Optional(CONF_RECORDING_UPLOAD): FileSelector(
                FileSelectorConfig(accept="audio/*")
            ),
            probatio.Optional(CONF_RECORDING_SOURCE): TextSelector(),
            probatio.Required(CONF_CLONE_MODEL, default=DEFAULT_CLONE_MODEL): select(
                models
            ),
            # Without a catalogue every language is offered; the model decides.
            probatio.Required(
                CONF_CLONE_LANGUAGE, default=DEFAULT_LANGUAGE
            ): LanguageSelector(
                LanguageSelectorConfig(languages=languages)
                if languages
                else LanguageSelectorConfig()
            ),
        }
    )


def _check_voice_language(
    catalogue: Catalogue | None, user_input: Mapping[str, Any]
) -> dict[str, str]:
    """Refuse a language the cloning model does not speak (when it is known)."""
    model = catalogue.model(user_input[CONF_CLONE_MODEL]) if catalogue else None
    if (
        model is not None
        and model.languages
        and user_input[CONF_CLONE_LANGUAGE] not in model.languages
    ):
        return {CONF_CLONE_LANGUAGE: "language_not_supported"}
    return {}
