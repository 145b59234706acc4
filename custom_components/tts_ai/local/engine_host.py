"""Run the on-device engines in a child process that exits when idle.

Loading Piper and Whisper into Home Assistant's own process imports
onnxruntime, CTranslate2 and NumPy there, and no unload gives that back:
measured with scripts/bench (figure 6b), Home Assistant stayed ~190 MB above
its pre-load size after the models' idle unload. So the engines run in a
child process instead, this interpreter (``sys.executable``) running
:mod:`.engine_child`, started on first use and ended when nothing has used it
for ``idle_exit_after`` seconds: all of its memory goes back with it. An
engine that crashes (a broken model, the kernel's OOM killer) takes only the
child down; the request it was serving fails with :class:`EngineCrashedError`
and the next one starts a fresh child.

The child is reached over its stdin and stdout with the frames of
:mod:`.host_protocol`; every frame read from it is size-checked, and what it
writes to stderr reaches the log in bounded lines, a bounded number of them.
The classes of :mod:`.hosted_engines` offer the calls of
:class:`.PiperEngine` and :class:`.WhisperEngine` through it, so the rest of
the integration does not know where the engines run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator, Sequence
import contextlib
import dataclasses
import itertools
import json
import logging
import os
from pathlib import Path
import signal
import sys
from typing import Any

from .device import DeviceProfile
from .host_protocol import (
    MAX_MESSAGE_CHARS,
    EngineCrashedError,
    EngineError,
    ProtocolError,
    encode_frame,
    field,
    read_frame,
)
from .idle import IdleReleaser

_LOGGER = logging.getLogger(__name__)

# The child's interpreter runs this (``python -c``). Importing the integration
# package would run its __init__, which imports Home Assistant (slow, and
# ~130 MB); the engines need none of it. So the packages above the engines
# are registered as bare package objects on their folders, and only the
# HA-free engine modules are imported. The parent's sys.path goes along: Home
# Assistant may have installed the engines' packages outside the defaults.
_BOOTSTRAP = """\
import importlib, json, sys, types
spec = json.loads(sys.argv[1])
sys.path[:] = spec["path"]
for name, folder in spec["packages"]:
    package = types.ModuleType(name)
    package.__path__ = [folder]
    sys.modules[name] = package
importlib.import_module(spec["main"]).main(spec["config"])
"""
# Seconds the child may take to start and say it is ready (imports only the
# light engine modules; a Pi's SD card can be slow).
START_TIMEOUT = 60.0
# After its stdin closes the child frees its models and exits; past this it
# is terminated, and killed after as long again.
STOP_TIMEOUT = 5.0
# A cancelled request is answered once the child has stopped it.
CANCEL_ACK_TIMEOUT = 5.0
# Frames queued for one request: the protocol keeps it to a chunk and an end.
# More means the child does not follow the protocol.
MAX_QUEUED_FRAMES = 8
# The child's stderr reaches the log in lines of at most this many
# characters, at most this many lines per child.
STDERR_LINE_MAX_CHARS = 500
STDERR_MAX_LINES = 100
_STDERR_READ_BYTES = 4096


class EngineHost:
    """The child process the engines run in: started on use, ended when idle.

    Safe for concurrent requests from the event loop: the child serves them
    side by side, as the engines do in-process.
    """

    def __init__(
        self,
        profile: DeviceProfile | None = None,
        *,
        idle_exit_after: float | None = 600.0,
        max_loaded_voices: int = 2,
        child_module: str | None = None,
        interpreter: Sequence[str] | None = None,
    ) -> None:
        """Prepare the host; the child starts with the first request.

        ``profile`` defaults to what the child detects;
        ``idle_exit_after=None`` keeps the child until :meth:`close`.
        ``child_module`` names another module to run in the child (its
        ``main(config)``): tests put a misbehaving child there.
        ``interpreter`` is the command that runs the child's Python, this
        interpreter by default (the emulated aarch64 check starts it through
        qemu, which cannot run an aarch64 program by itself).
        """
        self.interpreter = list(interpreter or [sys.executable])
        self._profile = profile
        self.child_module = child_module or f"{__package__}.engine_child"
        self._max_loaded_voices = max_loaded_voices
        self._idle = IdleReleaser(idle_exit_after, self.stop)
        self._child: _Child | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.voices: list[str] = []
        """Piper voices loaded in the child, least recently used first."""
        self.models: set[str] = set()
        """Whisper model folders loaded in the child."""
        self.starts = 0
        """How many children have been started."""

    @property
    def pid(self) -> int | None:
        """Process id of the running child, if any."""
        child = self._child
        return child.proc.pid if child is not None and child.alive else None

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Keep the child for the duration of the ``with`` block."""
        with self._idle.in_use():
            yield

    async def open(self, header: dict[str, Any], payload: bytes = b"") -> EngineRequest:
        """Start a request in the child (starting the child first if needed)."""
        async with self._lock:
            if self._child is None or not self._child.alive:
                self._child = await _Child.start(self)
                self.starts += 1
            child = self._child
        return child.open(next(self._ids), header, payload)

    async def request(
        self, header: dict[str, Any], payload: bytes = b""
    ) -> dict[str, Any]:
        """Run a one-reply request; return the child's ``end`` frame."""
        with self.in_use():
            call = await self.open(header, payload)
            try:
                reply, _ = await call.receive()
            except asyncio.CancelledError:
                call.abandon()
                raise
            if reply["op"] != "end":
                call.abandon()
                raise ProtocolError(f"a {reply['op']} frame instead of the reply")
            return reply

    async def request_if_running(self, header: dict[str, Any]) -> None:
        """Run a request only if the child runs (unloading needs no new child)."""
        if self.pid is not None:
            await self.request(header)

    async def stop(self) -> None:
        """End the child: close its stdin, then terminate or kill if need be."""
        async with self._lock:
            child, self._child = self._child, None
            self._child_gone(None)
            if child is not None:
                await child.stop()

    async def close(self) -> None:
        """Stop the idle countdown and end the child."""
        await self._idle.close()
        await self.stop()

    def _child_config(self) -> dict[str, Any]:
        return {
            "profile": dataclasses.asdict(self._profile) if self._profile else None,
            "max_loaded_voices": self._max_loaded_voices,
            "log_level": logging.getLogger(__package__).getEffectiveLevel(),
        }

    def _child_gone(self, child: _Child | None) -> None:
        """Forget what the ended child had loaded."""
        if self._child is child:
            self._child = None
        if self._child is None:
            self.voices = []
            self.models = set()

    def _update(self, reply: dict[str, Any]) -> None:
        """Take the child's word on what it has loaded."""
        voices = field(reply, "voices", list)
        models = field(reply, "models", list)
        if not all(isinstance(item, str) for item in [*voices, *models]):
            raise ProtocolError("loaded models are not names")
        self.voices = voices
        self.models = set(models)


def _child_environment() -> dict[str, str]:
    """Home Assistant's environment, with fewer glibc malloc arenas.

    glibc gives each thread that allocates its own arena (up to 8 per core),
    and the engines' threads leave memory in each. Measured with Piper medium
    and Whisper tiny loaded and used once, 3 runs each on the 2-core x86_64
    development machine: 302-309 MB resident with the default, 289 MB with
    two arenas. A value set by the user is kept.
    """
    return {"MALLOC_ARENA_MAX": "2", **os.environ}


def _launch_spec(host: EngineHost) -> str:
    """Return the bootstrap's argument: where the engine modules are, what to run."""
    local_package = __package__ or "custom_components.tts_ai.local"
    names = local_package.split(".")[:-1]  # the packages above local/
    folder = Path(__file__).resolve().parent
    packages: list[tuple[str, str]] = []
    for depth in range(len(names), 0, -1):
        folder = folder.parent
        packages.append((".".join(names[:depth]), str(folder)))
    return json.dumps(
        {
            "path": [entry for entry in sys.path if isinstance(entry, str)],
            "packages": packages[::-1],
            "main": host.child_module,
            "config": host._child_config(),
        }
    )


class _Child:
    """One engine process and the requests it is serving."""

    def __init__(self, host: EngineHost, proc: asyncio.subprocess.Process) -> None:
        self.host = host
        self.proc = proc
        self.alive = True
        self._calls: dict[int, EngineRequest] = {}
        self._reader: asyncio.Task[None] | None = None
        self._stderr: asyncio.Task[None] | None = None
        self._stderr_lines = 0

    @classmethod
    async def start(cls, host: EngineHost) -> _Child:
        """Start a child and wait until it is ready."""
        proc = await asyncio.create_subprocess_exec(
            *host.interpreter, "-c", _BOOTSTRAP, _launch_spec(host),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_child_environment(),
        )  # fmt: skip
        child = cls(host, proc)
        loop = asyncio.get_running_loop()
        child._stderr = loop.create_task(child._relay_stderr())
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(START_TIMEOUT):
                frame = await read_frame(proc.stdout)
            if frame is None or frame[0]["op"] != "ready":
                raise ProtocolError("it ended before saying it was ready")
        except (ProtocolError, TimeoutError) as err:
            await child.stop()
            raise EngineError(f"the engine process did not start: {err}") from err
        except BaseException:
            await child.stop()
            raise
        _LOGGER.debug("Started the on-device engine process %s", proc.pid)
        child._reader = loop.create_task(child._read())
        return child

    def open(
        self, call_id: int, header: dict[str, Any], payload: bytes
    ) -> EngineRequest:
        """Register a request and send its first frame."""
        call = EngineRequest(self, call_id)
        self._calls[call_id] = call
        call.send(header, payload)
        return call

    def write(self, frame: bytes) -> None:
        """Send a frame; dropped if the child has gone (its calls fail anyway)."""
        stdin = self.proc.stdin
        if self.alive and stdin is not None and not stdin.is_closing():
            stdin.write(frame)

    async def drain(self) -> None:
        """Wait until the pipe to the child has room again."""
        stdin = self.proc.stdin
        if not self.alive or stdin is None:
            raise EngineCrashedError("the engine process has ended")
        try:
            await stdin.drain()
        except OSError as err:
            raise EngineCrashedError("the engine process has ended") from err

    async def stop(self) -> None:
        """Close the child's stdin and wait for it to exit (bounded)."""
        proc = self.proc
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for ending in (None, proc.terminate, proc.kill):
            if ending is not None:
                with contextlib.suppress(ProcessLookupError):
                    ending()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await proc.wait()
                break
            except TimeoutError:
                continue
        for task in (self._reader, self._stderr):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._ended(EngineCrashedError("the engine process was stopped"))
        _LOGGER.debug("The on-device engine process %s has ended", proc.pid)

    def _ended(self, error: EngineError) -> None:
        """Fail every open request and tell the host."""
        self.alive = False
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call.fail(error)
        self.host._child_gone(self)

    async def _read(self) -> None:
        """Hand the child's frames to their requests until its stdout ends."""
        assert self.proc.stdout is not None
        error: EngineError | None = None
        try:
            while (frame := await read_frame(self.proc.stdout)) is not None:
                self._deliver(*frame)
        except ProtocolError as err:
            _LOGGER.error("The on-device engine process broke the protocol: %s", err)
            error = EngineError(f"the engine process sent a bad frame: {err}")
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.alive = False
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                code = await self.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            code = await self.proc.wait()
        if error is None and self._calls:
            _LOGGER.warning(
                "The on-device engine process ended while in use (%s)", _exit(code)
            )
            error = EngineCrashedError(f"the engine process ended ({_exit(code)})")
        self._ended(error or EngineCrashedError("the engine process ended"))

    def _deliver(self, header: dict[str, Any], payload: bytes) -> None:
        """Give a frame to its request (frames of forgotten requests are dropped)."""
        op = header["op"]
        call = self._calls.get(field(header, "id", int))
        if op not in ("chunk", "partial", "end", "error"):
            raise ProtocolError(f"unexpected op {op!r}")
        if call is None:
            return  # a request that gave up waiting
        if op == "partial":
            call.partial = field(header, "text", str)
            call.decodes = field(header, "decodes", int)
            return
        if op == "end":
            self.host._update(header)
        if op in ("end", "error"):
            del self._calls[call.id]
        call.put(header, payload)

    async def _relay_stderr(self) -> None:
        """Log what the child writes to stderr, in bounded lines and count.

        Read to the end whatever is logged: a child whose stderr pipe fills
        up would block.
        """
        stream = self.proc.stderr
        assert stream is not None
        pending = b""
        while data := await stream.read(_STDERR_READ_BYTES):
            pending += data
            *lines, pending = pending.split(b"\n")
            if len(pending) > STDERR_LINE_MAX_CHARS:
                lines.append(pending)
                pending = b""
            for line in lines:
                self._log_line(line)
        if pending:
            self._log_line(pending)

    def _log_line(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").rstrip()
        if not line:
            return
        self._stderr_lines += 1
        if self._stderr_lines > STDERR_MAX_LINES:
            if self._stderr_lines == STDERR_MAX_LINES + 1:
                _LOGGER.warning(
                    "On-device engine process %s: further output not logged",
                    self.proc.pid,
                )
            return
        level = logging.DEBUG if line.startswith(("DEBUG", "INFO")) else logging.WARNING
        _LOGGER.log(
            level,
            "On-device engine process %s: %s",
            self.proc.pid,
            line[:STDERR_LINE_MAX_CHARS],
        )


def _exit(code: int) -> str:
    """Describe an exit code: "exit code 1", "killed by SIGKILL"."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class EngineRequest:
    """One request to the child: the frames it sends, what it answered."""

    def __init__(self, child: _Child, call_id: int) -> None:
        self.id = call_id
        self._child = child
        self._frames: deque[tuple[dict[str, Any], bytes]] = deque()
        self._arrived = asyncio.Event()
        self._failure: EngineError | None = None
        self.ended = False
        self.partial = ""
        """A stream's text so far, as the child last reported it."""
        self.decodes = 0

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        """Send a frame of this request (never blocks)."""
        self._child.write(encode_frame({**header, "id": self.id}, payload))

    async def send_drained(self, header: dict[str, Any], payload: bytes) -> None:
        """Send a frame and wait until the pipe has room again."""
        self.send(header, payload)
        await self._child.drain()

    def put(self, header: dict[str, Any], payload: bytes) -> None:
        """Queue a frame the child sent for this request (the reader calls it)."""
        if len(self._frames) >= MAX_QUEUED_FRAMES:
            raise ProtocolError("the engine process sent more than was asked for")
        self._frames.append((header, payload))
        self._arrived.set()

    def fail(self, error: EngineError) -> None:
        """End this request with ``error`` (the child died or broke the protocol)."""
        if not self.ended:
            self._failure = error
            self._arrived.set()

    async def receive(self) -> tuple[dict[str, Any], bytes]:
        """Return the next chunk or the end; raise the child's error."""
        while not self._frames:
            if self._failure is not None:
                self.ended = True
                raise self._failure
            self._arrived.clear()
            await self._arrived.wait()
        header, payload = self._frames.popleft()
        if header["op"] in ("end", "error"):
            self.ended = True
        if header["op"] == "error":
            raise _error_from(header)
        return header, payload

    def abandon(self) -> None:
        """Ask the child to stop this request; nobody waits for its answer."""
        if not self.ended:
            self.send({"op": "cancel"})

    async def cancel(self) -> None:
        """Ask the child to stop this request and wait until it has (bounded)."""
        if self.ended:
            return
        self.send({"op": "cancel"})
        with contextlib.suppress(EngineError, ValueError, TimeoutError):
            async with asyncio.timeout(CANCEL_ACK_TIMEOUT):
                while not self.ended:
                    await self.receive()


def _error_from(header: dict[str, Any]) -> Exception:
    """Return the exception for the child's ``error`` frame."""
    message = str(header.get("message"))[:MAX_MESSAGE_CHARS]
    if header.get("kind") == "value":
        return ValueError(message)  # a bad argument, as the engine raises it
    return EngineError(message)
