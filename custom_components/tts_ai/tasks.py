"""Long tasks (stem separation): webhook receiver, polling and result storage.

The service calls back on a webhook when a task ends, but documents no
signature, so a call is only a hint: the receiver accepts task ids this entry
started, then asks the service itself (with its own key) for the result.
When Home Assistant has no URL the service could call, the task is polled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from homeassistant.components import webhook
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.network import NoURLAvailableError
from homeassistant.helpers.storage import Store
from homeassistant.util.hass_dict import HassKey

from .api import (
    InternalServerError,
    ModelLoadingError,
    RateLimitedError,
    TaskStatus,
    TtsAiClient,
    TtsAiConnectionError,
    TtsAiError,
    TtsAiTimeoutError,
    WebhookEvent,
)
from .const import DOMAIN, EVENT_TASK_COMPLETED, SERVICE_SEPARATE_STEMS
from .errors import to_ha_error
from .media_io import StoredResult, async_discard, async_store_result

if TYPE_CHECKING:
    from homeassistant.config_entries import ConfigEntry

_LOGGER = logging.getLogger(__name__)

DATA_TASKS: HassKey[dict[str, TaskTracker]] = HassKey(f"{DOMAIN}_tasks")
TASKS_STORAGE_VERSION = 1
# Finished ids remembered to recognise replays; older ones count as unknown.
REMEMBERED_FINISHED = 200
SUCCESS_STATUSES = frozenset({"success", "completed"})
# Failures worth asking again about, rather than giving the task up.
TRANSIENT_ERRORS = (
    InternalServerError,
    ModelLoadingError,
    RateLimitedError,
    TtsAiConnectionError,
    TtsAiTimeoutError,
)


@dataclass(slots=True)
class PollSettings:
    """How tasks are polled (bounded: ``max_attempts`` requests at most).

    Without a webhook a task is polled every ``interval``. With one, it is
    still polled, slowly and only after ``webhook_grace``: the URL HA offers
    may be one the service cannot reach (an internal address).
    """

    interval: float = 5.0
    max_attempts: int = 360
    webhook_grace: float = 60.0
    webhook_interval: float = 30.0


@dataclass(slots=True)
class TaskOutcome:
    """What a finished task produced."""

    task_id: str
    status: str
    stems: dict[str, StoredResult] = field(default_factory=dict)
    credits_used: float | None = None
    error: str | None = None

    def as_response(self) -> dict[str, Any]:
        """Return the action response / event data for this outcome."""
        return {
            "task_id": self.task_id,
            "status": self.status,
            "stems": {name: stem.as_response() for name, stem in self.stems.items()},
            "credits_used": self.credits_used,
            "error": self.error,
        }


class TaskTracker:
    """The long tasks one config entry started, and their webhook."""

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry, client: TtsAiClient
    ) -> None:
        """Create the tracker; call :meth:`async_start` before use."""
        self.hass = hass
        self.entry = entry
        self.client = client
        self.poll = PollSettings()
        self.webhook_id = ""
        self._store: Store[dict[str, Any]] = Store(
            hass, TASKS_STORAGE_VERSION, f"{DOMAIN}.tasks.{entry.entry_id}"
        )
        # task id -> action that started it; persisted so a restart in the
        # middle of a task still accepts its webhook.
        self._pending: dict[str, str] = {}
        self._finished: dict[str, float] = {}
        self._in_progress: set[str] = set()
        self._waiters: dict[str, asyncio.Future[TaskOutcome]] = {}

    @property
    def pending(self) -> set[str]:
        """Ids of the tasks still awaited."""
        return set(self._pending)

    async def async_start(self) -> None:
        """Load the stored state, register the webhook, resume pending tasks."""
        stored = await self._store.async_load() or {}
        self.webhook_id = stored.get("webhook_id") or webhook.async_generate_id()
        self._pending = dict(stored.get("pending", {}))
        self._finished = dict(stored.get("finished", {}))
        webhook.async_register(
            self.hass,
            DOMAIN,
            f"TTS.ai tasks ({self.entry.title})",
            self.webhook_id,
            self._async_handle_webhook,
            local_only=False,
            allowed_methods=["POST"],
        )
        self._save()
        # A webhook may have been missed while HA was down: ask once more.
        for task_id in self._pending:
            self._start_polling(task_id)

    async def async_stop(self) -> None:
        """Unregister the webhook and fail whoever still waits."""
        webhook.async_unregister(self.hass, self.webhook_id)
        for task_id, future in self._waiters.items():
            if not future.done():
                # The task stays pending (stored) and resumes after a reload.
                future.set_result(
                    TaskOutcome(task_id, "unfinished", error="the entry was unloaded")
                )
        self._waiters.clear()
        await self._store.async_save(self._data())

    def webhook_url(self) -> str | None:
        """Return the URL the service should call, or None when HA has none."""
        try:
            return webhook.async_generate_url(self.hass, self.webhook_id)
        except NoURLAvailableError:
            return None

    async def async_separate(
        self, audio: bytes, filename: str, options: Mapping[str, Any]
    ) -> str:
        """Start stem separation; return the task id."""
        url = self.webhook_url()
        try:
            status = await self.client.separate(
                audio, filename=filename, webhook_url=url, **options
            )
        except TtsAiError as err:
            raise to_ha_error(self.hass, self.entry, err) from err
        task_id = status.task_id
        self._pending[task_id] = SERVICE_SEPARATE_STEMS
        self._waiters[task_id] = self.hass.loop.create_future()
        self._save()
        if status.done:
            await self._async_finish(task_id)
        elif url is None:
            _LOGGER.debug("No URL for a webhook: polling task %s", task_id)
            self._start_polling(task_id)
        else:
            self._start_polling(
                task_id,
                delay=self.poll.webhook_grace,
                interval=self.poll.webhook_interval,
            )
        return task_id

    async def async_wait(self, task_id: str, seconds: float) -> TaskOutcome:
        """Wait for a task this tracker started; TimeoutError after ``seconds``."""
        future = self._waiters.get(task_id)
        if future is None:
            raise KeyError(task_id)
        async with asyncio.timeout(seconds):
            return await asyncio.shield(future)

    # --- Webhook -------------------------------------------------------------

    async def _async_handle_webhook(
        self, hass: HomeAssistant, webhook_id: str, request: web.Request
    ) -> web.Response:
        """Handle the service's ``task.completed`` call (untrusted input)."""
        try:
            event = WebhookEvent.from_dict(await request.json())
        except ValueError as err:
            _LOGGER.warning("Ignored a malformed TTS.ai webhook call: %s", err)
            return web.Response(status=400)
        task_id = event.task_id
        if task_id in self._finished or task_id in self._in_progress:
            _LOGGER.info("Ignored a replayed TTS.ai webhook call for %s", task_id)
            return web.Response(status=200)
        if task_id not in self._pending:
            _LOGGER.warning("Ignored a TTS.ai webhook for unknown task %s", task_id)
            return web.Response(status=200)
        # Answer at once; the result is fetched in the background.
        self.entry.async_create_background_task(
            hass, self._async_finish(task_id), f"{DOMAIN} task {task_id}"
        )
        return web.Response(status=200)

    # --- Polling -------------------------------------------------------------

    def _start_polling(
        self, task_id: str, *, delay: float = 0.0, interval: float | None = None
    ) -> None:
        """Poll ``task_id`` in the background (ends with the entry)."""
        self.entry.async_create_background_task(
            self.hass,
            self._async_poll(task_id, delay, interval or self.poll.interval),
            f"{DOMAIN} poll {task_id}",
        )

    async def _async_poll(self, task_id: str, delay: float, interval: float) -> None:
        """Ask for the task's state until it ends (bounded)."""
        await asyncio.sleep(delay)
        for _attempt in range(self.poll.max_attempts):
            if task_id not in self._pending:
                return  # the webhook won
            try:
                status = await self.client.get_result(task_id)
            except TtsAiError as err:
                _LOGGER.debug("Polling task %s failed: %s", task_id, err)
            else:
                if status.done:
                    await self._async_finish(task_id, status)
                    return
            await asyncio.sleep(interval)
        _LOGGER.warning("Gave up waiting for TTS.ai task %s", task_id)

    # --- Completion ----------------------------------------------------------

    async def _async_finish(
        self, task_id: str, status: TaskStatus | None = None
    ) -> None:
        """Fetch, store and announce the result of a finished task, once."""
        if task_id not in self._pending or task_id in self._in_progress:
            return
        self._in_progress.add(task_id)
        try:
            if status is None:
                try:
                    status = await self.client.get_result(task_id)
                except TRANSIENT_ERRORS as err:
                    _LOGGER.debug("Task %s: %s; polling instead", task_id, err)
                    self._start_polling(task_id)
                    return
            if not status.done:
                # The call came before the result: keep waiting by polling.
                self._start_polling(task_id)
                return
            outcome = await self._async_collect(status)
        except (TtsAiError, HomeAssistantError) as err:
            _LOGGER.warning("Cannot fetch TTS.ai task %s: %s", task_id, err)
            outcome = TaskOutcome(task_id, "failed", error=str(err))
        finally:
            self._in_progress.discard(task_id)
        action = self._pending.pop(task_id, SERVICE_SEPARATE_STEMS)
        self._finished[task_id] = time.time()
        self._save()
        self.hass.bus.async_fire(
            EVENT_TASK_COMPLETED,
            {"entry_id": self.entry.entry_id, "action": action} | outcome.as_response(),
        )
        future = self._waiters.pop(task_id, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    async def _async_collect(self, status: TaskStatus) -> TaskOutcome:
        """Download a finished task's files into the media folder."""
        if status.status not in SUCCESS_STATUSES:
            error = status.result.get("error")
            return TaskOutcome(
                status.task_id,
                "failed",
                credits_used=status.credits_used,
                error=str(error or status.status),
            )
        stored: dict[str, StoredResult] = {}
        try:
            for name, url in status.urls.items():
                audio = await self.client.download(url)
                stored[name] = await async_store_result(
                    self.hass,
                    SERVICE_SEPARATE_STEMS,
                    audio.data,
                    audio.format,
                    label=f"{status.task_id}-{name}",
                )
        except BaseException:
            await async_discard(self.hass, stored.values())
            raise
        return TaskOutcome(
            status.task_id, "success", stored, credits_used=status.credits_used
        )

    # --- Storage -------------------------------------------------------------

    def _data(self) -> dict[str, Any]:
        """Return what is stored: webhook id, pending and recent finished ids."""
        newest = sorted(self._finished.items(), key=lambda item: item[1])
        self._finished = dict(newest[-REMEMBERED_FINISHED:])
        return {
            "webhook_id": self.webhook_id,
            "pending": self._pending,
            "finished": self._finished,
        }

    def _save(self) -> None:
        """Store the state soon (batched)."""
        self._store.async_delay_save(self._data, 1)


async def async_setup_tasks(
    hass: HomeAssistant, entry: ConfigEntry, client: TtsAiClient
) -> TaskTracker:
    """Start the entry's task tracker; it stops when the entry unloads."""
    tracker = TaskTracker(hass, entry, client)
    await tracker.async_start()
    trackers = hass.data.setdefault(DATA_TASKS, {})
    trackers[entry.entry_id] = tracker

    async def stop() -> None:
        trackers.pop(entry.entry_id, None)
        await tracker.async_stop()

    entry.async_on_unload(stop)
    return tracker


def get_tracker(hass: HomeAssistant, entry_id: str) -> TaskTracker | None:
    """Return the task tracker of a loaded cloud entry."""
    return hass.data.get(DATA_TASKS, {}).get(entry_id)


async def async_remove_tasks(hass: HomeAssistant, entry_id: str) -> None:
    """Forget the stored tasks of a removed entry."""
    await Store(
        hass, TASKS_STORAGE_VERSION, f"{DOMAIN}.tasks.{entry_id}"
    ).async_remove()
