"""Binary sensor: whether the TTS.ai cloud is reachable."""

from __future__ import annotations

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import TtsAiConfigEntry
from .entity import TtsAiEntity
from .fallback import Mode

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: TtsAiConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensor to entries that use the cloud."""
    if entry.runtime_data.policy.mode is not Mode.LOCAL_ONLY:
        async_add_entities([CloudReachableSensor(entry)])


class CloudReachableSensor(TtsAiEntity, BinarySensorEntity):
    """On while the cloud answers; off while the device speaks in its place."""

    _attr_device_class = BinarySensorDeviceClass.CONNECTIVITY
    _attr_entity_category = EntityCategory.DIAGNOSTIC

    def __init__(self, entry: TtsAiConfigEntry) -> None:
        """Initialise the sensor."""
        super().__init__(entry, "cloud_reachable")

    async def async_added_to_hass(self) -> None:
        """Follow the fallback policy."""
        await super().async_added_to_hass()
        self.async_on_remove(self._data.policy.add_listener(self.async_write_ha_state))

    @property
    def is_on(self) -> bool:
        """Return whether the cloud is believed to work."""
        return self._data.policy.cloud_reachable
