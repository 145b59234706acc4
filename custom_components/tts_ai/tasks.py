"""Long tasks (stem separation): webhook receiver, polling and result storage.

The service calls back on a webhook when a task ends, but documents no
signature, so a call is only a hint: the receiver accepts task ids this entry
started, and wakes that task's one watcher, which asks the service itself (with
its own key) for the state. When Home Assistant has no URL the service could
call, the watcher polls. A task that has not ended after ``TASK_MAX_AGE`` is
given up: it ends as failed, with the usual event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from homeassistant.components import webhook
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.network import NoURLAvailableError
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util
from homeassistant.util.hass_dict import HassKey
from homeassistant.util.json import json_loads

from .api import (
    InternalServerError,
    InvalidResponseError,
    ModelLoadingError,
    RateLimitedError,
    TaskStatus,
    TtsAiClient,
    TtsAiConnectionError,
    TtsAiError,
    TtsAiTimeoutError,
    WebhookEvent,
    endpoints as ep,
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
# A task not ended this long after it started is given up (ends as failed).
# Separation takes minutes; hours mean the service lost it. Counted across
# restarts, so a lost task is not asked about after every reload forever.
TASK_MAX_AGE = timedelta(hours=6)
# What is logged of an untrusted value (a webhook's task id, an error text).
LOGGED_CHARS = 64
# The same kind of warning about webhook calls is logged once per period.
WARNING_PERIOD_SECONDS = 300.0

_TASK_ID = re.compile(ep.TASK_ID_PATTERN)


def valid_task_id(task_id: str) -> bool:
    """Whether ``task_id`` has the shape and length of a task id."""
    return (
        len(task_id) <= ep.TASK_ID_MAX_CHARS
        and _TASK_ID.fullmatch(task_id) is not None
        and ".." not in task_id
    )


def for_log(value: object, limit: int = LOGGED_CHARS) -> str:
    """Return ``value`` as one short, printable line (untrusted text)."""
    text = str(value)
    shown = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    if len(text) > limit:
        shown += f"…(+{len(text) - limit} characters)"
    return shown


class _WarningLimiter:
    """Log each kind of message at most once per period; count the rest.

    Webhook calls come from anyone who knows the URL: a flood of them must not
    become a flood of log lines.
    """

    def __init__(self, period: float = WARNING_PERIOD_SECONDS) -> None:
        self.period = period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.period:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        if suppressed := self._suppressed.pop(kind, 0):
            message += " (and %d more such calls since the last message)"
            args = (*args, suppressed)
        _LOGGER.log(level, message, *args)


@dataclass(slots=True)
class PollSettings:
    """How a task's watcher asks for its state.

    Without a webhook a task is polled from every ``interval``, slowing by
    ``backoff`` to every ``max_interval``. With one, it is still polled, slowly
    and only after ``webhook_grace``: the URL HA offers may be one the service
    cannot reach (an internal address). A webhook call makes the watcher look
    at once, but never sooner than ``webhook_min_gap`` after its last look.
    """

    interval: float = 5.0
    backoff: float = 1.5
    max_interval: float = 300.0
    webhook_grace: float = 60.0
    webhook_interval: float = 30.0
    webhook_min_gap: float = 5.0
    max_age: float = TASK_MAX_AGE.total_seconds()


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


@dataclass(slots=True)
class PendingTask:
    """A task this entry started and still awaits (stored across restarts)."""

    action: str
    # When it was started (POSIX seconds): its age decides when it is given up.
    started: float

    @classmethod
    def from_stored(cls, value: Any, now: float) -> PendingTask | None:
        """Read a stored entry; None when unreadable.

        Versions before the age limit stored only the action: such a task's
        age counts from now.
        """
        if isinstance(value, str):
            return cls(value, now)
        if not isinstance(value, Mapping):
            return None
        action, started = value.get("action"), value.get("started")
        if not isinstance(action, str) or not isinstance(started, (int, float)):
            return None
        return cls(action, min(float(started), now))

    def as_stored(self) -> dict[str, Any]:
        """Return what is stored."""
        return {"action": self.action, "started": self.started}


@dataclass(slots=True)
class _Watcher:
    """The one background job following a pending task."""

    job: asyncio.Task[None]
    # Set by a webhook call: "look now".
    wake: asyncio.Event


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
        # Persisted so a restart in the middle of a task still accepts its
        # webhook, and still knows the task's age.
        self._pending: dict[str, PendingTask] = {}
        self._finished: dict[str, float] = {}
        self._in_progress: set[str] = set()
        self._watchers: dict[str, _Watcher] = {}
        self._waiters: dict[str, asyncio.Future[TaskOutcome]] = {}
        self._warnings = _WarningLimiter()

    @property
    def pending(self) -> set[str]:
        """Ids of the tasks still awaited."""
        return set(self._pending)

    async def async_start(self) -> None:
        """Load the stored state, register the webhook, resume pending tasks."""
        stored = await self._store.async_load() or {}
        self.webhook_id = stored.get("webhook_id") or webhook.async_generate_id()
        now = dt_util.utcnow().timestamp()
        for task_id, value in dict(stored.get("pending") or {}).items():
            task = PendingTask.from_stored(value, now)
            if task is not None and isinstance(task_id, str) and valid_task_id(task_id):
                self._pending[task_id] = task
        self._finished = dict(stored.get("finished") or {})
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
        # A webhook may have been missed while HA was down: ask once more
        # (a task past its age gets that one last look, then is given up).
        for task_id in self._pending:
            self._watch(task_id)

    async def async_stop(self) -> None:
        """Unregister the webhook and fail whoever still waits."""
        webhook.async_unregister(self.hass, self.webhook_id)
        for watcher in self._watchers.values():
            watcher.job.cancel()
        self._watchers.clear()
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
            task_id = status.task_id
            if not valid_task_id(task_id):
                raise InvalidResponseError(
                    f"the service gave an invalid task id {for_log(task_id)}"
                )
        except TtsAiError as err:
            raise to_ha_error(self.hass, self.entry, err) from err
        self._pending[task_id] = PendingTask(
            SERVICE_SEPARATE_STEMS, dt_util.utcnow().timestamp()
        )
        self._waiters[task_id] = self.hass.loop.create_future()
        self._save()
        if status.done:
            self._watch(task_id)
        elif url is None:
            _LOGGER.debug("No URL for a webhook: polling task %s", task_id)
            self._watch(task_id)
        else:
            self._watch(
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
        """Handle the service's ``task.completed`` call (untrusted input).

        Cheap whatever arrives: nothing is fetched here. A call for a pending
        task only wakes that task's watcher.
        """
        body = await _read_bounded(request, ep.WEBHOOK_MAX_BYTES)
        if body is None:
            self._warnings.log(
                logging.WARNING,
                "too_large",
                "Ignored a TTS.ai webhook call over %d bytes",
                ep.WEBHOOK_MAX_BYTES,
            )
            return web.Response(status=413)
        try:
            event = WebhookEvent.from_dict(json_loads(body))
        except ValueError as err:
            self._warnings.log(
                logging.WARNING,
                "malformed",
                "Ignored a malformed TTS.ai webhook call: %s",
                for_log(err),
            )
            return web.Response(status=400)
        task_id = event.task_id
        if not valid_task_id(task_id):
            self._warnings.log(
                logging.WARNING,
                "invalid_id",
                "Ignored a TTS.ai webhook call with an invalid task id %s",
                for_log(task_id),
            )
            return web.Response(status=400)
        if task_id in self._finished:
            self._warnings.log(
                logging.INFO,
                "replayed",
                "Ignored a replayed TTS.ai webhook call for %s",
                task_id,
            )
            return web.Response(status=200)
        if task_id not in self._pending:
            self._warnings.log(
                logging.WARNING,
                "unknown",
                "Ignored a TTS.ai webhook call for unknown task %s",
                task_id,
            )
            return web.Response(status=200)
        # Answer at once; the watcher fetches the result in the background.
        self._watch(task_id).wake.set()
        return web.Response(status=200)

    # --- Watching --------------------------------------------------------------

    def _watch(
        self, task_id: str, *, delay: float = 0.0, interval: float | None = None
    ) -> _Watcher:
        """Return the task's watcher, starting it if there is none (one per task)."""
        watcher = self._watchers.get(task_id)
        if watcher is not None and not watcher.job.done():
            return watcher
        wake = asyncio.Event()
        age = dt_util.utcnow().timestamp() - self._pending[task_id].started
        expires = self.hass.loop.time() + self.poll.max_age - age
        job = self.entry.async_create_background_task(
            self.hass,
            self._async_watch(
                task_id, wake, expires, delay, interval or self.poll.interval
            ),
            f"{DOMAIN} task {task_id}",
        )
        watcher = self._watchers[task_id] = _Watcher(job, wake)
        return watcher

    async def _async_watch(
        self,
        task_id: str,
        wake: asyncio.Event,
        expires: float,
        delay: float,
        interval: float,
    ) -> None:
        """Follow a task until it ends or expires; the only caller of get_result.

        So there is never more than one status request in flight per task, and
        webhook calls cost at most one request per ``webhook_min_gap``.
        """
        try:
            await self._async_follow(task_id, wake, expires, delay, interval)
        except Exception as err:
            # A bug or an unreadable answer must not leave the task pending.
            _LOGGER.exception("Following TTS.ai task %s failed", task_id)
            await self._async_end(
                TaskOutcome(task_id, "failed", error=for_log(err, 200))
            )
        finally:
            watcher = self._watchers.get(task_id)
            if watcher is not None and watcher.wake is wake:
                del self._watchers[task_id]

    async def _async_follow(
        self,
        task_id: str,
        wake: asyncio.Event,
        expires: float,
        delay: float,
        interval: float,
    ) -> None:
        loop = self.hass.loop
        next_look = loop.time() + delay
        last_look: float | None = None
        while task_id in self._pending:
            expired = loop.time() >= expires
            if not expired:
                woken = await _wait_event(wake, min(next_look, expires) - loop.time())
                if woken and last_look is not None:
                    # "Look now", but not sooner than the gap after the last look.
                    gap = last_look + self.poll.webhook_min_gap - loop.time()
                    await asyncio.sleep(max(gap, 0.0))
                expired = not woken and loop.time() >= expires
            if task_id not in self._pending:
                return
            wake.clear()
            last_look = loop.time()
            try:
                status: TaskStatus | None = await self.client.get_result(task_id)
            except TRANSIENT_ERRORS as err:
                _LOGGER.debug("Asking for task %s failed: %s", task_id, for_log(err))
                status = None
            except TtsAiError as err:
                _LOGGER.warning(
                    "Cannot fetch TTS.ai task %s: %s", task_id, for_log(err, 200)
                )
                await self._async_end(TaskOutcome(task_id, "failed", error=str(err)))
                return
            if status is not None and status.done:
                await self._async_finish(task_id, status)
                return
            if expired:
                await self._async_expire(task_id)
                return
            interval = min(interval * self.poll.backoff, self.poll.max_interval)
            next_look = loop.time() + interval

    # --- Completion ----------------------------------------------------------

    async def _async_finish(self, task_id: str, status: TaskStatus) -> None:
        """Fetch, store and announce the result of a finished task, once."""
        if task_id not in self._pending or task_id in self._in_progress:
            return
        self._in_progress.add(task_id)
        try:
            outcome = await self._async_collect(task_id, status)
        except (TtsAiError, HomeAssistantError) as err:
            _LOGGER.warning(
                "Cannot fetch TTS.ai task %s: %s", task_id, for_log(err, 200)
            )
            outcome = TaskOutcome(task_id, "failed", error=str(err))
        finally:
            self._in_progress.discard(task_id)
        await self._async_end(outcome)

    async def _async_expire(self, task_id: str) -> None:
        """Give up a task older than the maximum age: it ends as failed."""
        hours = f"{self.poll.max_age / 3600:g}"
        error = HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="task_expired",
            translation_placeholders={"task_id": task_id, "max_age": hours},
        )
        _LOGGER.warning("Gave up TTS.ai task %s after %s h", task_id, hours)
        await self._async_end(TaskOutcome(task_id, "failed", error=str(error)))

    async def _async_end(self, outcome: TaskOutcome) -> None:
        """Forget a pending task, fire the event and answer its waiter, once."""
        task = self._pending.pop(outcome.task_id, None)
        if task is None:
            return
        self._finished[outcome.task_id] = time.time()
        self._save()
        self.hass.bus.async_fire(
            EVENT_TASK_COMPLETED,
            {"entry_id": self.entry.entry_id, "action": task.action}
            | outcome.as_response(),
        )
        future = self._waiters.pop(outcome.task_id, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    async def _async_collect(self, task_id: str, status: TaskStatus) -> TaskOutcome:
        """Download a finished task's files into the media folder."""
        if status.status not in SUCCESS_STATUSES:
            error = status.result.get("error")
            return TaskOutcome(
                task_id,
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
                    label=f"{task_id}-{name}",
                )
        except BaseException:
            await async_discard(self.hass, stored.values())
            raise
        return TaskOutcome(task_id, "success", stored, credits_used=status.credits_used)

    # --- Storage -------------------------------------------------------------

    def _data(self) -> dict[str, Any]:
        """Return what is stored: webhook id, pending and recent finished ids."""
        newest = sorted(self._finished.items(), key=lambda item: item[1])
        self._finished = dict(newest[-REMEMBERED_FINISHED:])
        return {
            "webhook_id": self.webhook_id,
            "pending": {
                task_id: task.as_stored() for task_id, task in self._pending.items()
            },
            "finished": self._finished,
        }

    def _save(self) -> None:
        """Store the state soon (batched)."""
        self._store.async_delay_save(self._data, 1)


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """Read a request body of at most ``limit`` bytes; None when larger."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(4096):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def _wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; whether it was set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(max(seconds, 0.0)):
            await event.wait()
    except TimeoutError:
        return False
    return True


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
