"""Keeps the TTS.ai catalogue fresh, and remembered for when the cloud is away."""

from __future__ import annotations

from datetime import timedelta
import logging
from typing import TYPE_CHECKING

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.storage import Store
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .api import AuthenticationError, ForbiddenError, TtsAiClient, TtsAiError
from .catalogue import Catalogue
from .const import CATALOGUE_REFRESH_HOURS, CATALOGUE_STORAGE_VERSION, DOMAIN

if TYPE_CHECKING:
    from . import TtsAiConfigEntry

_LOGGER = logging.getLogger(__name__)


def catalogue_store(hass: HomeAssistant, entry_id: str) -> Store[dict]:
    """Return the store that keeps an entry's catalogue across restarts."""
    return Store(hass, CATALOGUE_STORAGE_VERSION, f"{DOMAIN}.catalogue.{entry_id}")


class CatalogueCoordinator(DataUpdateCoordinator[Catalogue]):
    """Fetches models and voices; falls back to the stored copy at start-up."""

    config_entry: TtsAiConfigEntry

    def __init__(
        self, hass: HomeAssistant, entry: TtsAiConfigEntry, client: TtsAiClient
    ) -> None:
        """Initialise the coordinator."""
        super().__init__(
            hass,
            _LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} catalogue",
            update_interval=timedelta(hours=CATALOGUE_REFRESH_HOURS),
        )
        self.client = client
        self._store = catalogue_store(hass, entry.entry_id)

    async def _async_update_data(self) -> Catalogue:
        """Fetch the catalogue, or reuse the stored one when the cloud is away."""
        try:
            models = await self.client.list_models()
            voices = await self.client.list_voices()
        except (AuthenticationError, ForbiddenError) as err:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN,
                translation_key="invalid_auth"
                if isinstance(err, AuthenticationError)
                else "forbidden",
            ) from err
        except TtsAiError as err:
            # HA types `data` as the catalogue, but it is None until the first
            # refresh succeeds.
            current: Catalogue | None = self.data
            if current is None and (stored := await self._store.async_load()):
                # Start-up without the cloud: speak and list voices from the last
                # catalogue we saw; the next refresh replaces it.
                _LOGGER.warning(
                    "TTS.ai is unreachable (%s); using the stored catalogue", err
                )
                return Catalogue.from_dict(stored)
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="catalogue_unavailable",
                translation_placeholders={"error": str(err)},
            ) from err
        if not voices.complete:
            _LOGGER.warning(
                "TTS.ai listed %d of the %s voices it counts; using those",
                len(voices),
                voices.total,
            )
        catalogue = Catalogue(models=tuple(models), voices=tuple(voices))
        await self._store.async_save(catalogue.as_dict())
        return catalogue
