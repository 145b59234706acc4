"""The TTS.ai integration: cloud speech, with on-device fallback."""

from __future__ import annotations

from dataclasses import dataclass
import logging

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_API_KEY, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import config_validation as cv, issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.storage import Store
from homeassistant.helpers.typing import ConfigType

from .account import async_delete_account_issues, async_track_account_issues
from .action_fields import async_update_action_fields
from .api import DEFAULT_BASE_URL, TtsAiClient
from .cloned_voices import async_remove_recordings, async_track_recordings
from .const import (
    CONF_BASE_URL,
    CONF_HEDGE_DEADLINE,
    CONF_MODE,
    DOMAIN,
    ENTRY_MINOR_VERSION,
    ENTRY_VERSION,
)
from .coordinator import CatalogueCoordinator, catalogue_store
from .fallback import DEFAULT_HEDGE_DEADLINE, FallbackPolicy, Mode
from .local_speech import LocalSpeech, create_local_speech, packages_issue_id
from .services import async_setup_services
from .tasks import async_remove_tasks, async_setup_tasks

_LOGGER = logging.getLogger(__name__)

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.CONVERSATION,
    Platform.SENSOR,
    Platform.STT,
    Platform.TTS,
]
STATE_STORAGE_VERSION = 1


@dataclass(slots=True)
class CacheEpoch:
    """A number in the TTS cache key that changes whenever the device spoke.

    HA caches speech by message and options. Audio the device produced
    during an outage must not be replayed once the cloud is back, so every
    time the device serves a cloud-first request the number moves on and
    later requests miss the old entries. It is stored, because HA's file
    cache outlives restarts.
    """

    store: Store[dict[str, int]]
    value: int = 0

    async def async_load(self) -> None:
        """Read the stored value."""
        self.value = ((await self.store.async_load()) or {}).get("value", 0)

    def advance(self) -> None:
        """Move on after the device served a request."""
        self.value += 1
        self.store.async_delay_save(lambda: {"value": self.value}, 1)


@dataclass(slots=True)
class TtsAiData:
    """What a loaded entry holds."""

    policy: FallbackPolicy
    cache_epoch: CacheEpoch
    client: TtsAiClient | None = None
    catalogue: CatalogueCoordinator | None = None
    local: LocalSpeech | None = None


type TtsAiConfigEntry = ConfigEntry[TtsAiData]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions, which serve every TTS.ai entry."""
    async_setup_services(hass)
    return True


def create_client(hass: HomeAssistant, api_key: str, base_url: str) -> TtsAiClient:
    """Return a client on Home Assistant's shared HTTP session."""
    return TtsAiClient(async_get_clientsession(hass), api_key, base_url=base_url)


def entry_mode(entry: ConfigEntry) -> Mode:
    """Return the entry's mode; entries without a key are local-only."""
    if not entry.data.get(CONF_API_KEY):
        return Mode.LOCAL_ONLY
    return Mode(entry.options.get(CONF_MODE, Mode.CLOUD_FIRST))


async def async_migrate_entry(hass: HomeAssistant, entry: TtsAiConfigEntry) -> bool:
    """Bring an entry made by an older version up to date."""
    if entry.version > ENTRY_VERSION:
        # Made by a newer release (a downgrade): nothing here can read it.
        _LOGGER.error(
            "TTS.ai entry %s is version %s.%s; this release reads up to %s",
            entry.title,
            entry.version,
            entry.minor_version,
            ENTRY_VERSION,
        )
        return False
    if entry.minor_version < ENTRY_MINOR_VERSION:
        options = {
            key: value
            for key, value in entry.options.items()
            if value not in ("", None)
        }
        options[CONF_MODE] = entry_mode(entry)
        hass.config_entries.async_update_entry(
            entry, options=options, minor_version=ENTRY_MINOR_VERSION
        )
    return True


async def async_setup_entry(hass: HomeAssistant, entry: TtsAiConfigEntry) -> bool:
    """Set up TTS.ai from a config entry."""
    mode = entry_mode(entry)
    cache_epoch = CacheEpoch(
        Store(hass, STATE_STORAGE_VERSION, f"{DOMAIN}.state.{entry.entry_id}")
    )
    await cache_epoch.async_load()
    data = TtsAiData(
        policy=FallbackPolicy(
            mode,
            hedge_deadline=entry.options.get(
                CONF_HEDGE_DEADLINE, DEFAULT_HEDGE_DEADLINE
            ),
        ),
        cache_epoch=cache_epoch,
    )
    if mode is not Mode.LOCAL_ONLY:
        data.client = create_client(
            hass,
            entry.data[CONF_API_KEY],
            entry.data.get(CONF_BASE_URL, DEFAULT_BASE_URL),
        )
        data.catalogue = CatalogueCoordinator(hass, entry, data.client)
        # Network error and no stored catalogue -> ConfigEntryNotReady (retried);
        # a 401/403 -> ConfigEntryAuthFailed, which starts the reauth flow.
        await data.catalogue.async_config_entry_first_refresh()
        # Out of credits / no API access as repair issues that clear themselves.
        entry.async_on_unload(
            async_track_account_issues(hass, entry.entry_id, entry.title, data.client)
        )
        # Cloned voices: delete the recordings of removed or re-recorded ones.
        entry.async_on_unload(await async_track_recordings(hass, entry))
        # Long tasks (stem separation): webhook + pending ids; stops on unload.
        await async_setup_tasks(hass, entry, data.client)
    if mode is not Mode.CLOUD_ONLY:
        data.local = create_local_speech(hass, entry)
        await data.local.async_prepare()
    else:  # no on-device engine: its missing-packages repair no longer applies
        ir.async_delete_issue(hass, DOMAIN, packages_issue_id(entry.entry_id))
    entry.runtime_data = data
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    if data.catalogue is not None:
        # The action forms offer the catalogue's voices; listening also keeps
        # the coordinator refreshing every CATALOGUE_REFRESH_HOURS.
        @callback
        def catalogue_refreshed() -> None:
            hass.async_create_task(async_update_action_fields(hass))

        entry.async_on_unload(data.catalogue.async_add_listener(catalogue_refreshed))
        await async_update_action_fields(hass, loading=entry)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: TtsAiConfigEntry) -> bool:
    """Unload a config entry and free the on-device models."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded and entry.runtime_data.local is not None:
        await entry.runtime_data.local.async_close()
    if unloaded and entry.runtime_data.catalogue is not None:
        # Its voices are offered no more.
        await async_update_action_fields(hass, unloading=entry)
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: TtsAiConfigEntry) -> None:
    """Forget what was stored for a removed entry."""
    await catalogue_store(hass, entry.entry_id).async_remove()
    await Store(
        hass, STATE_STORAGE_VERSION, f"{DOMAIN}.state.{entry.entry_id}"
    ).async_remove()
    ir.async_delete_issue(hass, DOMAIN, packages_issue_id(entry.entry_id))
    async_delete_account_issues(hass, entry.entry_id)
    await async_remove_recordings(hass, entry.entry_id)
    await async_remove_tasks(hass, entry.entry_id)
