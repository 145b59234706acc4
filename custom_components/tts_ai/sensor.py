"""Sensors: which engine speaks, and the state of the on-device models."""

from __future__ import annotations

from typing import Any

from homeassistant.components.sensor import SensorDeviceClass, SensorEntity
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import TtsAiConfigEntry
from .entity import TtsAiEntity
from .fallback import Mode, Source
from .local_speech import BuiltinSpeech, ModelStatus

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: TtsAiConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the engine sensor, and the model sensor for the built-in engines."""
    entities: list[SensorEntity] = []
    if entry.runtime_data.policy.mode is Mode.CLOUD_FIRST:
        entities.append(ActiveEngineSensor(entry))
    if isinstance(entry.runtime_data.local, BuiltinSpeech):
        entities.append(LocalModelsSensor(entry))
    async_add_entities(entities)


class ActiveEngineSensor(TtsAiEntity, SensorEntity):
    """Cloud or device: who produced the last speech or transcript.

    Its state changes are what the logbook shows when the engine switches.
    """

    _attr_device_class = SensorDeviceClass.ENUM
    _attr_options = [source.value for source in Source]

    def __init__(self, entry: TtsAiConfigEntry) -> None:
        """Initialise the sensor."""
        super().__init__(entry, "active_engine")

    async def async_added_to_hass(self) -> None:
        """Follow the fallback policy."""
        await super().async_added_to_hass()
        self.async_on_remove(self._data.policy.add_listener(self.async_write_ha_state))

    @property
    def native_value(self) -> str | None:
        """Return the engine that served last (none before the first request)."""
        active = self._data.policy.active
        return active.value if active is not None else None


class LocalModelsSensor(TtsAiEntity, SensorEntity):
    """Whether the on-device models are downloaded, with download progress."""

    _attr_device_class = SensorDeviceClass.ENUM
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_options = list(ModelStatus.ALL)

    def __init__(self, entry: TtsAiConfigEntry) -> None:
        """Initialise the sensor."""
        super().__init__(entry, "local_models")
        assert isinstance(entry.runtime_data.local, BuiltinSpeech)
        self._local = entry.runtime_data.local

    async def async_added_to_hass(self) -> None:
        """Follow the downloads."""
        await super().async_added_to_hass()
        self.async_on_remove(self._local.add_listener(self.async_write_ha_state))

    @property
    def native_value(self) -> str:
        """Return the models' state."""
        return self._local.status

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return the download progress per model, in percent, and any error."""
        return {"progress": dict(self._local.progress), "error": self._local.error}
