"""Config flow for TTS.ai: API key, reauth, reconfigure and options."""

from __future__ import annotations

from collections.abc import Mapping
import hashlib
import logging
from typing import Any

from homeassistant.config_entries import (
    SOURCE_USER,
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
    OptionsFlowWithReload,
    SubentryFlowResult,
)
from homeassistant.const import CONF_API_KEY, CONF_NAME
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.selector import (
    EntitySelector,
    EntitySelectorConfig,
    FileSelector,
    FileSelectorConfig,
    LanguageSelector,
    LanguageSelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import probatio

from . import TtsAiConfigEntry, TtsAiData, create_client
from .api import (
    DEFAULT_BASE_URL,
    SPEED_RANGE,
    TTS_FORMATS,
    AuthenticationError,
    ForbiddenError,
    TtsAiConnectionError,
    TtsAiError,
)
from .api.endpoints import CLONE_MODELS
from .catalogue import Catalogue
from .cloned_voices import (
    CONF_CLONE_LANGUAGE,
    CONF_CLONE_MODEL,
    CONF_RECORDING_FILE,
    DEFAULT_CLONE_MODEL,
    SUBENTRY_TYPE as CLONED_VOICE,
    RecordingError,
    async_import_recording,
)
from .const import (
    CONF_BASE_URL,
    CONF_FORMAT,
    CONF_HEDGE_DEADLINE,
    CONF_LANGUAGE,
    CONF_LOCAL_ENGINE,
    CONF_LOCAL_STT_ENTITY,
    CONF_LOCAL_TTS_ENTITY,
    CONF_LOCAL_VOICES,
    CONF_MODE,
    CONF_MODEL,
    CONF_PIPER_VOICES_URL,
    CONF_SPEED,
    CONF_STT_MODEL,
    CONF_SYSTEM_PROMPT,
    CONF_VOICE,
    CONF_WHISPER_MODEL,
    CONF_WHISPER_MODELS_URL,
    DEFAULT_FORMAT,
    DEFAULT_LANGUAGE,
    DEFAULT_MODEL,
    DEFAULT_SPEED,
    DEFAULT_STT_MODEL,
    DEFAULT_VOICE,
    DOMAIN,
    ENTRY_MINOR_VERSION,
    ENTRY_VERSION,
    HEDGE_DEADLINE_RANGE,
    LOCAL_ENGINE_BUILT_IN,
    LOCAL_ENGINE_ENTITY,
    LOCAL_ENGINES,
)
from .fallback import DEFAULT_HEDGE_DEADLINE, Mode
from .local.model_manager import HF_URL, PIPER_VOICES_URL

_LOGGER = logging.getLogger(__name__)

# Only one local-only entry: the device has one set of engines.
LOCAL_ONLY_UNIQUE_ID = "local_only"
# CTranslate2 Whisper models offered in the options (any other name works too).
WHISPER_MODELS = ("tiny", "tiny.en", "base", "base.en", "small", "small.en")
# The collapsed section with where the on-device models come from (a form
# name, not an option: its fields are stored flat in the options).
MODEL_DOWNLOADS_SECTION = "model_downloads"
MODEL_DOWNLOAD_DEFAULTS: dict[str, Any] = {
    CONF_PIPER_VOICES_URL: PIPER_VOICES_URL,
    CONF_WHISPER_MODELS_URL: HF_URL,
}
# The step that asks for "another engine"'s entities, in both flows.
STEP_LOCAL_ENTITIES = "local_entities"

_KEY_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
_URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))


def key_fingerprint(api_key: str) -> str:
    """Return the entry's unique id: one entry per key, never the key itself."""
    return hashlib.sha256(api_key.strip().encode()).hexdigest()[:16]


def _credentials_schema(
    defaults: Mapping[str, Any], *, key_required: bool = True
) -> probatio.Schema:
    key_field = probatio.Required if key_required else probatio.Optional
    return probatio.Schema(
        {
            key_field(CONF_API_KEY): _KEY_SELECTOR,
            probatio.Optional(
                CONF_BASE_URL,
                default=defaults.get(CONF_BASE_URL, DEFAULT_BASE_URL),
            ): _URL_SELECTOR,
        }
    )


def _cloud_schema() -> probatio.Schema:
    """Return the key and URL fields, and (collapsed) where models come from.

    The models are fetched as soon as the entry is set up, i.e. right after
    this form: a mirror given only later in the options would come too late.
    """
    return _credentials_schema({}).extend(
        {probatio.Optional(MODEL_DOWNLOADS_SECTION): _model_downloads_section()}
    )


class TtsAiConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a TTS.ai account."""

    # Bump MINOR_VERSION for changes old code can still read, VERSION for the
    # rest; __init__.async_migrate_entry brings older entries up to date.
    VERSION = ENTRY_VERSION
    MINOR_VERSION = ENTRY_MINOR_VERSION

    def __init__(self) -> None:
        """Start with no answers."""
        self._local_options: dict[str, Any] = {}

    async def _validate(self, api_key: str, base_url: str) -> dict[str, str]:
        """Try the key against the catalogue endpoint; return form errors."""
        client = create_client(self.hass, api_key, base_url)
        try:
            await client.validate()
        except AuthenticationError:
            return {"base": "invalid_auth"}
        except ForbiddenError:
            return {"base": "no_api_access"}
        except TtsAiConnectionError:
            return {"base": "cannot_connect"}
        except TtsAiError:
            _LOGGER.exception("Unexpected answer from TTS.ai")
            return {"base": "unknown"}
        except Exception:
            _LOGGER.exception("Unexpected error validating the TTS.ai key")
            return {"base": "unknown"}
        return {}

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Choose between the cloud (with the device as fallback) and device only."""
        return self.async_show_menu(step_id="user", menu_options=["cloud", "local"])

    async def async_step_cloud(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the API key (and, for self-hosted services, the base URL)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            api_key = user_input[CONF_API_KEY].strip()
            await self.async_set_unique_id(key_fingerprint(api_key))
            self._abort_if_unique_id_configured()
            base_url = user_input.get(CONF_BASE_URL) or DEFAULT_BASE_URL
            if not (errors := await self._validate(api_key, base_url)):
                return self.async_create_entry(
                    title="TTS.ai",
                    data={CONF_API_KEY: api_key, CONF_BASE_URL: base_url},
                    options={
                        CONF_MODE: Mode.CLOUD_FIRST,
                        **_model_download_options(user_input),
                    },
                )
        return self.async_show_form(
            step_id="cloud",
            data_schema=self.add_suggested_values_to_schema(
                _cloud_schema(), user_input
            ),
            errors=errors,
        )

    async def async_step_local(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Speak and listen on this device only: no account, no internet."""
        # A form left open (tab closed, page reloaded) must not block a new
        # attempt until HA restarts: another flow in progress is no reason to
        # abort; only an entry that exists is.
        await self.async_set_unique_id(LOCAL_ONLY_UNIQUE_ID, raise_on_progress=False)
        self._abort_if_unique_id_configured()
        if user_input is not None:
            self._local_options = {
                CONF_MODE: Mode.LOCAL_ONLY,
                CONF_LOCAL_ENGINE: user_input[CONF_LOCAL_ENGINE],
                **_model_download_options(user_input),
            }
            if user_input[CONF_LOCAL_ENGINE] == LOCAL_ENGINE_ENTITY:
                return await self.async_step_local_entities()
            return self._create_local_entry()
        return self.async_show_form(
            step_id="local", data_schema=_local_engine_schema({})
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
                self._local_options.update(user_input)
                return self._create_local_entry()
            errors["base"] = "entity_required"
        return self.async_show_form(
            step_id=STEP_LOCAL_ENTITIES,
            data_schema=self.add_suggested_values_to_schema(
                _local_entities_schema(self.hass), user_input
            ),
            errors=errors,
        )

    def _create_local_entry(self) -> ConfigFlowResult:
        return self.async_create_entry(
            title="TTS.ai (on device)", data={}, options=self._local_options
        )

    async def async_step_reauth(
        self, entry_data: Mapping[str, Any]
    ) -> ConfigFlowResult:
        """Start reauthentication after the service refused the key."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for a new API key."""
        return await self._update_credentials(
            "reauth_confirm", self._get_reauth_entry(), user_input, with_url=False
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the API key or the base URL."""
        return await self._update_credentials(
            "reconfigure", self._get_reconfigure_entry(), user_input, with_url=True
        )

    async def _update_credentials(
        self,
        step_id: str,
        entry: TtsAiConfigEntry,
        user_input: dict[str, Any] | None,
        *,
        with_url: bool,
    ) -> ConfigFlowResult:
        """Validate new credentials for an existing entry and reload it."""
        errors: dict[str, str] = {}
        if user_input is not None:
            # Reconfigure may leave the key empty to keep the stored one.
            api_key = (user_input.get(CONF_API_KEY) or "").strip() or (
                entry.data[CONF_API_KEY] if with_url else ""
            )
            base_url = (
                user_input.get(CONF_BASE_URL) if with_url else None
            ) or entry.data.get(CONF_BASE_URL, DEFAULT_BASE_URL)
            unique_id = key_fingerprint(api_key)
            if any(
                other.unique_id == unique_id and other.entry_id != entry.entry_id
                for other in self._async_current_entries(include_ignore=False)
            ):
                return self.async_abort(reason="already_configured")
            if not (errors := await self._validate(api_key, base_url)):
                return self.async_update_reload_and_abort(
                    entry,
                    unique_id=unique_id,
                    data_updates={CONF_API_KEY: api_key, CONF_BASE_URL: base_url},
                )
        schema = (
            _credentials_schema(entry.data, key_required=False)
            if with_url
            else probatio.Schema({probatio.Required(CONF_API_KEY): _KEY_SELECTOR})
        )
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(
                schema,
                user_input
                or {CONF_BASE_URL: entry.data.get(CONF_BASE_URL, DEFAULT_BASE_URL)},
            ),
            errors=errors,
            description_placeholders={"title": entry.title},
        )

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: TtsAiConfigEntry) -> TtsAiOptionsFlow:
        """Return the options flow."""
        return TtsAiOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Offer cloned voices to cloud entries (cloning is a cloud feature)."""
        if not config_entry.data.get(CONF_API_KEY):
            return {}
        return {CLONED_VOICE: ClonedVoiceSubentryFlow}


def _select(
    options: list[SelectOptionDict],
    *,
    custom: bool = False,
    translation_key: str | None = None,
) -> SelectSelector:
    config = SelectSelectorConfig(
        options=options, mode=SelectSelectorMode.DROPDOWN, custom_value=custom
    )
    if translation_key is not None:
        config["translation_key"] = translation_key
    return SelectSelector(config)


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
            probatio.Required(CONF_MODEL, default=DEFAULT_MODEL): _select(tts_models),
            probatio.Required(CONF_VOICE, default=DEFAULT_VOICE): _select(
                _voice_options(catalogue, model_id)
            ),
            probatio.Required(
                CONF_LANGUAGE, default=DEFAULT_LANGUAGE
            ): LanguageSelector(LanguageSelectorConfig(languages=sorted(languages))),
            probatio.Required(CONF_FORMAT, default=DEFAULT_FORMAT): _select(
                [SelectOptionDict(value=f, label=f) for f in TTS_FORMATS],
                translation_key=CONF_FORMAT,
            ),
            probatio.Required(CONF_SPEED, default=DEFAULT_SPEED): NumberSelector(
                NumberSelectorConfig(
                    min=low, max=high, step=0.05, mode=NumberSelectorMode.SLIDER
                )
            ),
            probatio.Required(CONF_STT_MODEL, default=DEFAULT_STT_MODEL): _select(
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
                for field in _model_download_fields():
                    options.pop(field, None)
                options.update(_model_download_options(user_input))
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
            ] = _select(
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
            _local_engine_schema(entry.options).schema
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
                        if k in _model_download_fields()
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
                _local_entities_schema(self.hass), user_input or self._options
            ),
            errors=errors,
        )


def _model_download_fields() -> dict[str, Any]:
    """Return the fields of the collapsed section: where models come from."""
    return {
        CONF_PIPER_VOICES_URL: _URL_SELECTOR,
        CONF_WHISPER_MODELS_URL: _URL_SELECTOR,
        CONF_LOCAL_VOICES: TextSelector(TextSelectorConfig(multiple=True)),
        CONF_WHISPER_MODEL: _select(
            [SelectOptionDict(value=m, label=m) for m in WHISPER_MODELS], custom=True
        ),
    }


def _model_downloads_section() -> section:
    """Return the collapsed section with where the models come from."""
    return section(
        probatio.Schema(
            {
                probatio.Optional(
                    field,
                    default=MODEL_DOWNLOAD_DEFAULTS.get(field, probatio.UNDEFINED),
                ): selector
                for field, selector in _model_download_fields().items()
            }
        ),
        {"collapsed": True},
    )


def _model_download_options(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return the section's answers that differ from the defaults (which may change)."""
    given = user_input.get(MODEL_DOWNLOADS_SECTION) or {}
    return {
        field: value
        for field, value in given.items()
        if value and value != MODEL_DOWNLOAD_DEFAULTS.get(field)
    }


def _local_engine_schema(options: Mapping[str, Any]) -> probatio.Schema:
    """Return the engine choice and, collapsed, where its models come from."""
    return probatio.Schema(
        {
            probatio.Required(
                CONF_LOCAL_ENGINE,
                default=options.get(CONF_LOCAL_ENGINE, LOCAL_ENGINE_BUILT_IN),
            ): _select(
                [SelectOptionDict(value=e, label=e) for e in LOCAL_ENGINES],
                translation_key=CONF_LOCAL_ENGINE,
            ),
            probatio.Optional(MODEL_DOWNLOADS_SECTION): _model_downloads_section(),
        }
    )


def _local_entities_schema(hass: HomeAssistant) -> probatio.Schema:
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
            probatio.Required(CONF_CLONE_MODEL, default=DEFAULT_CLONE_MODEL): _select(
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
