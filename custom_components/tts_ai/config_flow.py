"""Config flow for TTS.ai: cloud or device-only set-up, reauth, reconfigure.

The options flow is in options_flow.py, the cloned-voice subentry flow in
cloned_voice_flow.py; this flow hands them to Home Assistant.
"""

from __future__ import annotations

from collections.abc import Mapping
import hashlib
import logging
from typing import Any

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
)
from homeassistant.const import CONF_API_KEY
from homeassistant.core import callback
from homeassistant.helpers.selector import (
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import probatio

from . import TtsAiConfigEntry, create_client
from .api import (
    DEFAULT_BASE_URL,
    AuthenticationError,
    ForbiddenError,
    TtsAiConnectionError,
    TtsAiError,
)
from .cloned_voice_flow import ClonedVoiceSubentryFlow
from .cloned_voices import SUBENTRY_TYPE as CLONED_VOICE
from .const import (
    CONF_BASE_URL,
    CONF_LOCAL_ENGINE,
    CONF_LOCAL_STT_ENTITY,
    CONF_LOCAL_TTS_ENTITY,
    CONF_MODE,
    DOMAIN,
    ENTRY_MINOR_VERSION,
    ENTRY_VERSION,
    LOCAL_ENGINE_ENTITY,
)
from .fallback import Mode
from .flow_schemas import (
    MODEL_DOWNLOADS_SECTION,
    STEP_LOCAL_ENTITIES,
    URL_SELECTOR,
    local_engine_schema,
    local_entities_schema,
    model_download_options,
    model_downloads_section,
)
from .options_flow import TtsAiOptionsFlow

_LOGGER = logging.getLogger(__name__)

# Only one local-only entry: the device has one set of engines.
LOCAL_ONLY_UNIQUE_ID = "local_only"
_KEY_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))


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
            ): URL_SELECTOR,
        }
    )


def _cloud_schema() -> probatio.Schema:
    """Return the key and URL fields, and (collapsed) where models come from.

    The models are fetched as soon as the entry is set up, i.e. right after
    this form: a mirror given only later in the options would come too late.
    """
    return _credentials_schema({}).extend(
        {probatio.Optional(MODEL_DOWNLOADS_SECTION): model_downloads_section()}
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
                        **model_download_options(user_input),
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
                **model_download_options(user_input),
            }
            if user_input[CONF_LOCAL_ENGINE] == LOCAL_ENGINE_ENTITY:
                return await self.async_step_local_entities()
            return self._create_local_entry()
        return self.async_show_form(
            step_id="local", data_schema=local_engine_schema({})
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
                local_entities_schema(self.hass), user_input
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
