"""When to use the cloud and when the device: circuit breaker and hedging.

Plain asyncio, no Home Assistant import. The entities hand this module two
ways to produce a result — the cloud and the local engine — and it decides:

* Errors that say the cloud cannot serve now (no connection, timeouts, 5xx,
  a 503 that outlived its retries, 429 until the reset, 402 until credits
  return, a refused key) switch to the local engine. Errors that are the
  caller's mistake (400, 404, 413) are raised: masking them would hide a bug.
* A circuit breaker skips the cloud while it is known to be down and lets a
  single probe through after a back-off that grows with each failed probe.
* Hedging: if the cloud has produced nothing by the hedge deadline, the local
  engine starts as well, and whichever produces first wins; the other is
  cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
from dataclasses import dataclass
from enum import StrEnum
import logging
import time
from typing import Any

from .api import (
    AuthenticationError,
    BadRequestError,
    FileTooLargeError,
    ForbiddenError,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitedError,
    TtsAiError,
)

_LOGGER = logging.getLogger(__name__)

DEFAULT_HEDGE_DEADLINE = 1.5
# Probing a cloud that is down: first after 5 s, doubling up to 5 minutes.
PROBE_BACKOFF_START = 5.0
PROBE_BACKOFF_MAX = 300.0
# Credits rarely come back within minutes: probe an out-of-credits account slowly.
NO_CREDITS_PROBE_DELAY = 300.0


class Mode(StrEnum):
    """Which engines an entry may use."""

    CLOUD_FIRST = "cloud_first"
    LOCAL_ONLY = "local_only"
    CLOUD_ONLY = "cloud_only"


class Source(StrEnum):
    """Who produced a result."""

    CLOUD = "cloud"
    LOCAL = "local"


def falls_back(err: BaseException) -> bool:
    """Return whether an error means "use the device", not "report a mistake"."""
    if isinstance(err, TtsAiError):
        return not isinstance(err, (BadRequestError, NotFoundError, FileTooLargeError))
    # Network failures that escaped the client's own mapping.
    return isinstance(err, (OSError, TimeoutError))


@dataclass(slots=True)
class CircuitBreaker:
    """Tracks whether the cloud is worth asking."""

    clock: Callable[[], float] = time.monotonic
    open_until: float = 0.0
    failures: int = 0
    probing: bool = False
    last_error: BaseException | None = None

    @property
    def is_open(self) -> bool:
        """Return whether the cloud is considered down."""
        return self.failures > 0

    def allow(self) -> bool:
        """Return whether to ask the cloud now (a closed breaker, or one probe)."""
        if not self.is_open:
            return True
        if self.probing or self.clock() < self.open_until:
            return False
        self.probing = True
        return True

    def record_success(self) -> None:
        """Close the breaker: the cloud answered."""
        self.failures = 0
        self.open_until = 0.0
        self.probing = False
        self.last_error = None

    def record_failure(self, err: BaseException) -> None:
        """Open the breaker for as long as the error says the cloud is away."""
        self.failures += 1
        self.probing = False
        self.last_error = err
        now = self.clock()
        delay = min(PROBE_BACKOFF_START * 2 ** (self.failures - 1), PROBE_BACKOFF_MAX)
        if isinstance(err, RateLimitedError) and err.reset_at is not None:
            delay = max(err.reset_at.timestamp() - time.time(), 0.0)
        elif isinstance(err, RateLimitedError) and err.retry_after is not None:
            delay = err.retry_after
        elif isinstance(err, InsufficientCreditsError):
            delay = NO_CREDITS_PROBE_DELAY
        elif isinstance(err, (AuthenticationError, ForbiddenError)):
            # Nothing changes until the user fixes the key: probe rarely.
            delay = PROBE_BACKOFF_MAX
        self.open_until = now + delay

    def release_probe(self) -> None:
        """Give back a probe slot that was not used (the request was cancelled)."""
        self.probing = False


class _Race:
    """The first item of each contender, as they arrive."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Source, Any, BaseException | None]] = (
            asyncio.Queue()
        )


async def _first_item[T](
    source: Source, iterator: AsyncIterator[T], race: _Race
) -> None:
    try:
        item = await anext(iterator)
    except StopAsyncIteration as err:
        await race.queue.put((source, None, err))
    except asyncio.CancelledError:
        raise
    except Exception as err:
        await race.queue.put((source, None, err))
    else:
        await race.queue.put((source, item, None))


async def _chain[T](first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item


async def _close(iterator: AsyncIterator[Any]) -> None:
    if (aclose := getattr(iterator, "aclose", None)) is not None:
        with contextlib.suppress(Exception):
            await aclose()


class FallbackPolicy:
    """Chooses cloud or device for each request, and reports which is active."""

    def __init__(
        self,
        mode: Mode = Mode.CLOUD_FIRST,
        *,
        hedge_deadline: float = DEFAULT_HEDGE_DEADLINE,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """Initialise the policy."""
        self.mode = mode
        self.hedge_deadline = hedge_deadline
        self.breaker = breaker or CircuitBreaker()
        self.active: Source | None = None
        self._listeners: list[Callable[[], None]] = []

    @property
    def cloud_reachable(self) -> bool:
        """Return whether the cloud is believed to work."""
        return self.mode is not Mode.LOCAL_ONLY and not self.breaker.is_open

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` when the active engine or cloud health changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    def _used(self, source: Source) -> None:
        if self.active is not source:
            self.active = source
            self._notify()

    def cloud_succeeded(self) -> None:
        """Record a cloud answer."""
        was_open = self.breaker.is_open
        self.breaker.record_success()
        if was_open:
            _LOGGER.info("TTS.ai cloud is reachable again")
            self._notify()
        self._used(Source.CLOUD)

    def cloud_failed(self, err: BaseException) -> None:
        """Record a cloud failure that makes the device take over."""
        was_open = self.breaker.is_open
        self.breaker.record_failure(err)
        if not was_open:
            _LOGGER.warning("TTS.ai cloud unavailable, speaking on the device: %s", err)
            self._notify()

    def _use_cloud(self) -> bool:
        if self.mode is Mode.CLOUD_ONLY:
            return True
        if self.mode is Mode.LOCAL_ONLY:
            return False
        return self.breaker.allow()

    async def stream[T](
        self,
        cloud: Callable[[], AsyncIterator[T]],
        local: Callable[[], AsyncIterator[T]],
    ) -> tuple[Source, AsyncIterator[T]]:
        """Start a streamed result; return who won and the stream to read.

        The returned stream begins with the winner's first item. A cloud error
        after that point is the caller's to handle (see `cloud_failed`).
        """
        if not self._use_cloud():
            self._used(Source.LOCAL)
            return Source.LOCAL, local()
        if self.mode is Mode.CLOUD_ONLY:
            return await self._cloud_only(cloud)
        return await self._hedge(cloud, local)

    async def _cloud_only[T](
        self, cloud: Callable[[], AsyncIterator[T]]
    ) -> tuple[Source, AsyncIterator[T]]:
        iterator = cloud()
        try:
            first = await anext(iterator)
        except StopAsyncIteration:
            return Source.CLOUD, iterator
        except Exception as err:
            if falls_back(err):
                self.cloud_failed(err)
            raise
        self.cloud_succeeded()
        return Source.CLOUD, _chain(first, iterator)

    async def _hedge[T](
        self,
        cloud: Callable[[], AsyncIterator[T]],
        local: Callable[[], AsyncIterator[T]],
    ) -> tuple[Source, AsyncIterator[T]]:
        race = _Race()
        iterators: dict[Source, AsyncIterator[T]] = {Source.CLOUD: cloud()}
        tasks: dict[Source, asyncio.Task[None]] = {
            Source.CLOUD: asyncio.create_task(
                _first_item(Source.CLOUD, iterators[Source.CLOUD], race)
            )
        }

        def start_local() -> None:
            if Source.LOCAL not in tasks:
                iterators[Source.LOCAL] = local()
                tasks[Source.LOCAL] = asyncio.create_task(
                    _first_item(Source.LOCAL, iterators[Source.LOCAL], race)
                )

        deadline = asyncio.get_running_loop().time() + self.hedge_deadline
        pending = {Source.CLOUD}
        errors: dict[Source, BaseException] = {}
        try:
            while True:
                timeout = None
                if Source.LOCAL not in tasks:
                    timeout = max(deadline - asyncio.get_running_loop().time(), 0)
                try:
                    async with asyncio.timeout(timeout):
                        source, item, err = await race.queue.get()
                except TimeoutError:
                    _LOGGER.debug(
                        "Cloud silent past the hedge deadline; starting local"
                    )
                    start_local()
                    pending.add(Source.LOCAL)
                    continue
                pending.discard(source)
                if err is None or isinstance(err, StopAsyncIteration):
                    winner = source
                    break
                errors[source] = err
                if source is Source.CLOUD:
                    if not falls_back(err):
                        raise err
                    self.cloud_failed(err)
                    start_local()
                    pending.add(Source.LOCAL)
                elif not pending:
                    raise err
        except BaseException:
            await self._cancel(tasks, iterators, keep=None)
            if Source.CLOUD not in errors:
                self.breaker.release_probe()
            raise

        loser = Source.LOCAL if winner is Source.CLOUD else Source.CLOUD
        await self._cancel(tasks, iterators, keep=winner)
        if winner is Source.CLOUD:
            self.cloud_succeeded()
        else:
            if loser not in errors:
                # The cloud lost the race without failing: it is slow, not down.
                self.breaker.release_probe()
            self._used(Source.LOCAL)
        stream = iterators[winner]
        if item is None and isinstance(err, StopAsyncIteration):
            return winner, stream
        return winner, _chain(item, stream)

    @staticmethod
    async def _cancel(
        tasks: dict[Source, asyncio.Task[None]],
        iterators: dict[Source, AsyncIterator[Any]],
        keep: Source | None,
    ) -> None:
        for source, task in tasks.items():
            if source is keep:
                continue
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await _close(iterators[source])

    async def call[T](
        self,
        cloud: Callable[[], Awaitable[T]],
        local: Callable[[], Awaitable[T]],
    ) -> tuple[Source, T]:
        """Run a one-shot request (such as STT) with the same rules as `stream`."""

        async def as_stream(factory: Callable[[], Awaitable[T]]) -> AsyncIterator[T]:
            yield await factory()

        source, stream = await self.stream(
            lambda: as_stream(cloud), lambda: as_stream(local)
        )
        result = await anext(stream)
        await _close(stream)
        return source, result
