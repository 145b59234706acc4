"""Give a model's memory back after a quiet spell.

A Piper voice holds ~100 MB and Whisper tiny ~150 MB; on a 1-2 GB Pi that
memory is worth returning when nobody has spoken for a while. The next
request reloads the model, which costs about a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
import contextlib
import ctypes
import gc
import logging
from typing import Any

_LOGGER = logging.getLogger(__name__)


class IdleReleaser:
    """Call ``release`` once nothing has used the engine for ``delay`` seconds.

    Wrap each use in :meth:`in_use`; the countdown starts when the last
    concurrent use ends and is cancelled when a new one begins, so a long
    synthesis is never unloaded under its feet. ``delay=None`` disables it.
    """

    def __init__(
        self, delay: float | None, release: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Prepare the countdown; nothing is scheduled until a use ends."""
        self._delay = delay
        self._release = release
        self._active = 0
        self._timer: asyncio.TimerHandle | None = None
        self._release_task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Mark the engine busy for the duration of the ``with`` block."""
        self._cancel_timer()
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0 and self._delay is not None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self._delay, self._on_idle)

    async def close(self) -> None:
        """Cancel the countdown and wait for a release that already started."""
        self._cancel_timer()
        if self._release_task is not None:
            # Let it finish: it only frees memory, and cancelling it would
            # leave the executor job running unobserved. A failure has been
            # logged by _on_released already.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release_task)

    def _cancel_timer(self) -> None:
        """Stop the pending countdown, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_idle(self) -> None:
        """Timer callback: start the release unless a use began meanwhile."""
        self._timer = None
        if self._active:
            return
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._release()
        )
        self._release_task = task
        task.add_done_callback(self._on_released)

    def _on_released(self, task: asyncio.Task[None]) -> None:
        """Forget the finished release task and log its failure, if any."""
        if self._release_task is task:
            self._release_task = None
        if not task.cancelled() and (error := task.exception()) is not None:
            _LOGGER.warning("Unloading an idle speech model failed: %s", error)


def free_objects(objects: list[Any]) -> None:
    """Drop the last references to ``objects`` and collect garbage.

    Run in an executor: destroying an ONNX or CTranslate2 session and the
    collection that follows take long enough to stall the event loop. The
    caller must hand over the only references, in a list it then forgets.
    """
    objects.clear()
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise).

    Measured with scripts/bench: after unloading Piper and Whisper the
    resident size stayed ~250 MB above the pre-load figure; trimming the
    heap brings it down by ~130 MB. Between syntheses it also keeps RSS from
    creeping up (300 short syntheses: +3 MB untrimmed, -14 MB trimmed every
    50th). Other C libraries (musl on HA OS) have no malloc_trim and return
    memory on their own. Blocks for a few milliseconds: run it in an executor.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
