"""The engine process: Piper and Whisper run here, not in Home Assistant.

Started by :class:`.engine_host.EngineHost` with this interpreter; it serves
the requests that arrive as frames on stdin (:mod:`.host_protocol`) with the
same :class:`.PiperEngine` and :class:`.WhisperEngine` that would otherwise
run in Home Assistant's process, and exits when stdin closes. The libraries
and the heap the models leave behind go with the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
import contextlib
from dataclasses import dataclass, field
import logging
import os
from pathlib import Path
import sys
from typing import Any, cast

from .device import DeviceProfile
from .host_protocol import (
    MAX_MESSAGE_CHARS,
    ProtocolError,
    encode_frame,
    read_frame,
)
from .pcm import PcmChunk
from .piper_engine import LocalVoice, PiperEngine
from .whisper_engine import Transcript, WhisperEngine, WhisperStream

_LOGGER = logging.getLogger(__name__)


@dataclass
class _Job:
    """One request in progress."""

    task: asyncio.Task[None] | None = None
    credit: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the parent wants the next piece of speech."""
    audio: bytearray | None = None
    """Audio of a whole-utterance transcription, as it arrives."""
    stream: WhisperStream | None = None
    model: WhisperEngine | None = None
    rate: int = 16000
    language: str | None = None


class _Server:
    """Serves the parent's requests with the engines."""

    def __init__(self, writer: asyncio.StreamWriter, config: dict[str, Any]) -> None:
        profile = config.get("profile")
        self._profile = DeviceProfile(**profile) if profile else None
        self._writer = writer
        # The child lives only while it is used: the parent ends it when idle,
        # so the engines keep their models until then.
        self.piper = PiperEngine(
            self._profile,
            max_loaded_voices=int(config.get("max_loaded_voices", 2)),
            idle_unload_after=None,
        )
        self._whispers: dict[str, WhisperEngine] = {}
        self._jobs: dict[int, _Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        """Queue a frame for the parent."""
        if not self._writer.is_closing():
            self._writer.write(encode_frame(header, payload))

    async def serve(self, reader: asyncio.StreamReader) -> None:
        """Handle frames until stdin ends, then free everything."""
        self.send({"op": "ready", "id": 0, "pid": os.getpid()})
        try:
            while (frame := await read_frame(reader)) is not None:
                header, payload = frame
                try:
                    self._dispatch(header, payload)
                except (KeyError, TypeError, ValueError, UnicodeError) as err:
                    # A request the engines cannot take: it alone fails.
                    call_id = header.get("id")
                    if isinstance(call_id, int):
                        self._jobs.pop(call_id, None)
                        self._error(call_id, "value", err)
                await self._writer.drain()
        finally:
            for job in list(self._jobs.values()):
                if job.task is not None:
                    job.task.cancel()
            await self.piper.close()
            for engine in self._whispers.values():
                await engine.close()

    def _dispatch(self, header: dict[str, Any], payload: bytes) -> None:
        op = header["op"]
        call_id = header.get("id")
        if not isinstance(call_id, int):
            raise ProtocolError("frame without a request id")
        job = self._jobs.get(call_id)
        if op == "more":
            if job is not None:
                job.credit.set()
        elif op == "audio":
            if job is not None and job.audio is not None:
                job.audio += payload
            elif job is not None and job.stream is not None:
                job.stream.feed(payload)
        elif op == "cancel":
            if job is not None:
                self._cancel(call_id, job)
        elif op == "run":
            if job is not None and job.task is None:
                self._start(call_id, job, whisper_run(job))
        else:
            self._new_request(op, call_id, header, payload)

    def _new_request(
        self, op: str, call_id: int, header: dict[str, Any], payload: bytes
    ) -> None:
        job = _Job()
        self._jobs[call_id] = job
        if op == "synth":
            voice = _voice(header["voice"])
            speed = float(header.get("speed", 1.0))
            text = payload.decode()
            self._start(
                call_id, job, lambda: self._synth(call_id, job, text, voice, speed)
            )
        elif op == "load":
            voice = _voice(header["voice"])
            self._start(call_id, job, lambda: self._load(voice))
        elif op == "unload":
            key = header.get("key")
            self._start(call_id, job, lambda: self._unload(key))
        elif op in ("transcribe", "stream"):
            job.model = self._whisper(header["model"])
            rate = int(header["rate"])
            language = header.get("language")
            if op == "transcribe":
                job.audio = bytearray()
            else:
                # Load the model while the user speaks, not at the first pause.
                self._background(job.model.load())
                job.stream = job.model.stream(sample_rate=rate, language=language)
                job.stream.on_text = lambda text: self.send(
                    {
                        "op": "partial",
                        "id": call_id,
                        "text": text,
                        "decodes": stream_decodes(job),
                    }
                )
            job.rate = rate
            job.language = language
        elif op == "whisper_load":
            engine = self._whisper(header["model"])
            self._start(call_id, job, lambda: _nothing(engine.load()))
        elif op == "whisper_unload":
            engine = self._whisper(header["model"])
            self._start(call_id, job, lambda: _nothing(engine.unload()))
        elif op == "status":
            self._start(call_id, job, lambda: self._status(call_id))
        else:
            del self._jobs[call_id]
            raise ProtocolError(f"unknown op {op!r}")

    def _background(self, work: Awaitable[None]) -> None:
        """Run work nobody waits for; a failure shows in the next request."""

        async def run() -> None:
            with contextlib.suppress(Exception):
                await work

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start(
        self,
        call_id: int,
        job: _Job,
        work: Callable[[], Awaitable[dict[str, Any] | None]],
    ) -> None:
        """Run a request's work; its end (or error) goes to the parent."""

        async def run() -> None:
            try:
                result = await work()
            except asyncio.CancelledError:
                if job.stream is not None:
                    await job.stream.aclose()
                self._end(call_id, {"cancelled": True})
            except ValueError as err:
                self._error(call_id, "value", err)
            except Exception as err:
                _LOGGER.exception("On-device engine request failed")
                self._error(call_id, "engine", err)
            else:
                self._end(call_id, result or {})
            finally:
                self._jobs.pop(call_id, None)

        job.task = asyncio.get_running_loop().create_task(run())

    def _cancel(self, call_id: int, job: _Job) -> None:
        if job.task is not None:
            job.task.cancel()
            return

        async def nothing() -> None:
            raise asyncio.CancelledError

        # A Whisper request still receiving audio: nothing runs yet.
        self._start(call_id, job, nothing)

    def _end(self, call_id: int, result: dict[str, Any]) -> None:
        self.send(
            {
                "op": "end",
                "id": call_id,
                **result,
                "voices": self.piper.loaded_voices,
                "models": [k for k, e in self._whispers.items() if e.is_loaded],
            }
        )

    def _error(self, call_id: int, kind: str, err: Exception) -> None:
        message = (str(err) or type(err).__name__)[:MAX_MESSAGE_CHARS]
        self.send({"op": "error", "id": call_id, "kind": kind, "message": message})

    async def _synth(
        self, call_id: int, job: _Job, text: str, voice: LocalVoice, speed: float
    ) -> None:
        # A generator (closed here at once when the request is cancelled).
        speech = cast(
            AsyncGenerator[PcmChunk], self.piper.synthesize(text, voice, speed=speed)
        )
        async with contextlib.aclosing(speech) as chunks:
            async for chunk in chunks:
                job.credit.clear()
                self.send(
                    {
                        "op": "chunk",
                        "id": call_id,
                        "rate": chunk.sample_rate,
                        "text": chunk.text,
                    },
                    chunk.audio,
                )
                # The engine renders the next piece meanwhile; it is asked
                # for it only when the listener wants it.
                await job.credit.wait()

    async def _load(self, voice: LocalVoice) -> dict[str, Any]:
        await self.piper.load(voice)
        return {"rate": self.piper.sample_rate(voice)}

    async def _unload(self, key: str | None) -> None:
        await self.piper.unload(key)

    async def _status(self, call_id: int) -> dict[str, Any]:
        return {"jobs": len([i for i in self._jobs if i != call_id])}

    def _whisper(self, spec: dict[str, Any]) -> WhisperEngine:
        """Return the engine for a model spec (dir, compute type, beam size)."""
        key = str(spec["dir"])
        engine = self._whispers.get(key)
        if engine is None:
            engine = WhisperEngine(
                Path(key),
                self._profile,
                compute_type=str(spec.get("compute_type", "int8")),
                beam_size=spec.get("beam_size"),
                idle_unload_after=None,
            )
            self._whispers[key] = engine
        return engine


def stream_decodes(job: _Job) -> int:
    """Return how many pieces a stream decoded while its audio arrived."""
    return job.stream.decodes_before_end if job.stream is not None else 0


def whisper_run(job: _Job) -> Callable[[], Awaitable[dict[str, Any]]]:
    """Return the work of a Whisper request, once its audio is all there."""

    async def run() -> dict[str, Any]:
        transcript: Transcript
        if job.stream is not None:
            transcript = await job.stream.finish()
        else:
            assert job.model is not None and job.audio is not None
            transcript = await job.model.transcribe(
                bytes(job.audio),
                sample_rate=job.rate,
                language=job.language,
            )
        return {
            "text": transcript.text,
            "language": transcript.language,
            "duration": transcript.duration,
            "decodes": stream_decodes(job),
        }

    return run


async def _nothing(work: Awaitable[None]) -> None:
    await work


def _voice(spec: dict[str, Any]) -> LocalVoice:
    return LocalVoice(
        key=str(spec["key"]),
        model_path=Path(spec["model"]),
        config_path=Path(spec["config"]),
    )


async def _serve(protocol_fd: int, config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader),
        os.fdopen(sys.stdin.fileno(), "rb", buffering=0),
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(protocol_fd, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    server = _Server(writer, config)
    try:
        await server.serve(reader)
    except ProtocolError as err:
        _LOGGER.error("Engine process stops: %s", err)
    finally:
        with contextlib.suppress(Exception):
            await writer.drain()
        writer.close()


def main(config: dict[str, Any]) -> None:
    """Serve until stdin closes. ``config``: profile, max_loaded_voices, log_level."""
    # stdout is the protocol's: whatever a library prints goes to stderr.
    protocol_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(
        level=int(config.get("log_level", logging.WARNING)),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_serve(protocol_fd, config))
