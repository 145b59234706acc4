"""Base entity of the TTS.ai integration."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity

from . import TtsAiConfigEntry
from .catalogue import Catalogue
from .const import DOMAIN, MANUFACTURER


class TtsAiEntity(Entity):
    """An entity of one entry: one service device per config entry."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, entry: TtsAiConfigEntry, key: str) -> None:
        """Initialise the entity for a config entry."""
        self._entry = entry
        self._data = entry.runtime_data
        self._attr_unique_id = f"{entry.entry_id}_{key}"
        self._attr_translation_key = key
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.entry_id)},
            manufacturer=MANUFACTURER,
            name=entry.title,
            entry_type=DeviceEntryType.SERVICE,
        )

    @property
    def catalogue(self) -> Catalogue | None:
        """Return the cloud catalogue, or None for a local-only entry."""
        if self._data.catalogue is None:
            return None
        return self._data.catalogue.data
