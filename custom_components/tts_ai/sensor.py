"""Sensors: which engine speaks, the on-device models, and the account."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.util import dt as dt_util

from . import TtsAiConfigEntry
from .api import TtsAiClient
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
    if (client := entry.runtime_data.client) is not None:
        entities.extend(
            AccountSensor(entry, client, description) for description in ACCOUNT_SENSORS
        )
    async_add_entities(entities)


class ActiveEngineSensor(TtsAiEntity, RestoreSensor):
    """Cloud or device: who produced the last speech or transcript.

    Its state changes are what the logbook shows when the engine switches.
    Before the first request it shows the engine that served before a restart
    or, on a new entry, the one the next request goes to.
    """

    _attr_device_class = SensorDeviceClass.ENUM
    _attr_options = [source.value for source in Source]

    def __init__(self, entry: TtsAiConfigEntry) -> None:
        """Initialise the sensor."""
        super().__init__(entry, "active_engine")
        self._restored: str | None = None

    async def async_added_to_hass(self) -> None:
        """Restore the last engine, then follow the fallback policy."""
        await super().async_added_to_hass()
        if (last := await self.async_get_last_sensor_data()) is not None and (
            last.native_value in self._attr_options
        ):
            self._restored = str(last.native_value)
        self.async_on_remove(self._data.policy.add_listener(self.async_write_ha_state))

    @property
    def native_value(self) -> str:
        """Return the engine that served last, or the one that will serve next."""
        policy = self._data.policy
        if policy.active is not None:
            return policy.active.value
        if self._restored is not None:
            return self._restored
        return (Source.CLOUD if policy.cloud_reachable else Source.LOCAL).value


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


type AccountValue = float | datetime | None


@dataclass(frozen=True, kw_only=True)
class AccountSensorDescription(SensorEntityDescription):
    """An account figure the client reads from response headers."""

    value_fn: Callable[[TtsAiClient, datetime], AccountValue]
    # Restored after a restart: credits last until used; a rate-limit window
    # is long gone by then.
    restore: bool = True
    # Changes by itself when the rate-limit window ends, without a request.
    follows_window: bool = False


def _credits_remaining(client: TtsAiClient, now: datetime) -> AccountValue:
    return client.credits.remaining if client.credits else None


def _credits_used(client: TtsAiClient, now: datetime) -> AccountValue:
    return client.credits.used if client.credits else None


def _window_passed(client: TtsAiClient, now: datetime) -> bool:
    reset_at = client.rate_limit.reset_at if client.rate_limit else None
    return reset_at is not None and reset_at <= now


def _rate_limit_remaining(client: TtsAiClient, now: datetime) -> AccountValue:
    if client.rate_limit is None:
        return None
    if _window_passed(client, now):
        return client.rate_limit.limit  # a new window: every request is left
    return client.rate_limit.remaining


def _rate_limit_reset(client: TtsAiClient, now: datetime) -> AccountValue:
    # Once the window has passed there is nothing to wait for: no time shown,
    # rather than one in the past.
    if client.rate_limit is None or _window_passed(client, now):
        return None
    return client.rate_limit.reset_at


ACCOUNT_SENSORS: tuple[AccountSensorDescription, ...] = (
    AccountSensorDescription(
        key="credits_remaining",
        translation_key="credits_remaining",
        native_unit_of_measurement="credits",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=_credits_remaining,
    ),
    # The noisy ones (they change with every request) are off until enabled.
    AccountSensorDescription(
        key="credits_used",
        translation_key="credits_used",
        native_unit_of_measurement="credits",
        state_class=SensorStateClass.MEASUREMENT,
        entity_registry_enabled_default=False,
        value_fn=_credits_used,
    ),
    AccountSensorDescription(
        key="rate_limit_remaining",
        translation_key="rate_limit_remaining",
        native_unit_of_measurement="requests",
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        restore=False,
        follows_window=True,
        value_fn=_rate_limit_remaining,
    ),
    AccountSensorDescription(
        key="rate_limit_reset",
        translation_key="rate_limit_reset",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        restore=False,
        follows_window=True,
        value_fn=_rate_limit_reset,
    ),
)


class AccountSensor(TtsAiEntity, RestoreSensor):
    """Credits and rate limit, from the headers of every response.

    No polling: the figures change only when a request is made, and every
    request reports them (the rate-limit window also ends by itself, once).
    Credits are restored after a restart, until the first response brings
    fresh ones.
    """

    entity_description: AccountSensorDescription

    def __init__(
        self,
        entry: TtsAiConfigEntry,
        client: TtsAiClient,
        description: AccountSensorDescription,
    ) -> None:
        """Initialise the sensor."""
        super().__init__(entry, description.key)
        self.entity_description = description
        self._client = client
        self._restored: AccountValue = None
        self._cancel_window_end: CALLBACK_TYPE | None = None

    async def async_added_to_hass(self) -> None:
        """Restore the last value, then follow the client's responses."""
        await super().async_added_to_hass()
        if (
            self.entity_description.restore
            and (last := await self.async_get_last_sensor_data()) is not None
        ):
            value = last.native_value
            if isinstance(value, float | int | datetime):
                self._restored = value
        self.async_on_remove(self._client.add_listener(self._client_updated))
        self.async_on_remove(self._cancel_window_timer)
        self._follow_window()

    @callback
    def _client_updated(self) -> None:
        if self.entity_description.value_fn(self._client, dt_util.utcnow()) is not None:
            self._restored = None
        self._follow_window()
        self.async_write_ha_state()

    @callback
    def _follow_window(self) -> None:
        """Write the state again when the current rate-limit window ends."""
        self._cancel_window_timer()
        reset_at = self._client.rate_limit.reset_at if self._client.rate_limit else None
        if self.entity_description.follows_window and reset_at is not None:
            self._cancel_window_end = async_track_point_in_utc_time(
                self.hass, self._window_ended, reset_at
            )

    @callback
    def _window_ended(self, _now: datetime) -> None:
        self._cancel_window_end = None
        self.async_write_ha_state()

    @callback
    def _cancel_window_timer(self) -> None:
        if self._cancel_window_end is not None:
            self._cancel_window_end()
            self._cancel_window_end = None

    @property
    def native_value(self) -> AccountValue:
        """Return the latest figure, or the restored one before any response."""
        value = self.entity_description.value_fn(self._client, dt_util.utcnow())
        return value if value is not None else self._restored
