"""The Wyoming reference servers as subprocesses, and a timed Piper client.

wyoming-piper is started with the same voice files as the engine: its data
directory is the folder holding ``en_US-joe-medium.onnx`` and its JSON, so it
finds the voice there and downloads nothing (its download directory is a
scratch folder all the same, so nothing is ever written into site-packages).
wyoming-faster-whisper gets the engine's CTranslate2 model files likewise.
Both run the same way: :class:`WyomingServer` starts one, waits until it
answers, and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib.metadata import version
import os
import sys
import tempfile
import time
from types import TracebackType
from typing import TYPE_CHECKING, Self

from wyoming.audio import AudioChunk, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from .common import confine_threads, elapsed_since, free_port

if TYPE_CHECKING:
    from pathlib import Path

    from custom_components.tts_ai.local import LocalVoice

HOST = "127.0.0.1"
# Loading Python, onnxruntime and the voice list takes a few seconds; on one
# pinned core, more.
_START_TIMEOUT = 120.0
_STOP_TIMEOUT = 10.0


class WyomingServer:
    """A Wyoming server (``package``) on 127.0.0.1, run for an ``async with`` block.

    Subclasses give the command line (:meth:`_arguments`) and may prepare the
    started server (:meth:`_prepare`).
    """

    def __init__(self, package: str) -> None:
        """Pick a port and a scratch folder for the server of ``package``."""
        self.package = package
        self.port = free_port()
        self.version = version(package)
        self._process: asyncio.subprocess.Process | None = None
        self._scratch = tempfile.TemporaryDirectory(prefix=f"bench-{package}-")
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __aexit__

    def _arguments(self) -> list[str]:
        """The arguments to ``python`` that run the server."""
        raise NotImplementedError

    async def _prepare(self, info: Info, pid: int) -> None:
        """Ready the server that answered with ``info`` for the first round."""

    async def __aenter__(self) -> Self:
        """Start the server, wait until it answers, and prepare it."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            *self._arguments(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        pid = self._process.pid
        try:
            info = await asyncio.wait_for(self._wait_ready(), _START_TIMEOUT)
            await self._prepare(info, pid)
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        await self._stop()

    async def _wait_ready(self) -> Info:
        """Ask for the server's info until it answers."""
        while True:
            if self._process is not None and self._process.returncode is not None:
                raise RuntimeError(f"{self.package} exited:\n{self._read_log()}")
            try:
                async with AsyncTcpClient(HOST, self.port) as client:
                    await client.write_event(Describe().event())
                    event = await client.read_event()
            except OSError:
                await asyncio.sleep(0.2)
                continue
            if event is not None and Info.is_type(event.type):
                return Info.from_event(event)
            await asyncio.sleep(0.2)

    async def _stop(self) -> None:
        """Terminate the process (kill it if it lingers) and clean up."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), _STOP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
        self._log.close()
        self._scratch.cleanup()

    def _read_log(self) -> str:
        """The server's output so far, for error messages."""
        with contextlib.suppress(OSError, ValueError):
            self._log.seek(0)
            return self._log.read().decode(errors="replace")[-4000:]
        return ""


class WyomingPiperServer(WyomingServer):
    """``python -m wyoming_piper``, serving the engine's voice files."""

    def __init__(self, voice: LocalVoice, *, board_cores: int | None = None) -> None:
        """Prepare to serve ``voice`` (its files' folder is the data directory).

        ``board_cores`` (pinned runs) starts the server through
        ``wyoming_launcher`` so its ONNX Runtime gets the default thread count
        of a board with that many cores, like the raw Piper anchor.
        """
        super().__init__("wyoming-piper")
        self.voice = voice
        self.board_cores = board_cores
        self.supports_streaming = False

    def _arguments(self) -> list[str]:
        launcher = ["-m", "wyoming_piper"]
        if self.board_cores is not None:
            launcher = [
                "-m", "scripts.benchmarks.wyoming_launcher", str(self.board_cores)
            ]  # fmt: skip
        return [
            *launcher,
            "--uri", f"tcp://{HOST}:{self.port}",
            "--voice", self.voice.key,
            "--data-dir", str(self.voice.model_path.parent),
            "--download-dir", self._scratch.name,
        ]  # fmt: skip

    async def _prepare(self, info: Info, pid: int) -> None:
        """Note streaming support; load the voice; confine the server's threads."""
        self.supports_streaming = any(
            program.supports_synthesize_streaming for program in info.tts
        )
        # The server loads the voice on its first request: do that now,
        # then hold its threads (ONNX Runtime pins its own) to the cores
        # this process may use.
        await wyoming_first_audio(self, "Ready.", streaming=False)
        confine_threads(pid, os.sched_getaffinity(0))


class WyomingWhisperServer(WyomingServer):
    """``python -m wyoming_faster_whisper``, serving the engine's model files.

    What the Whisper add-on runs, with the engine's settings: the same
    CTranslate2 model files (``model_dir``), int8, ``threads`` CPU threads,
    greedy decoding (the add-on picks a beam of 5 on x86 by itself: that
    would only slow the anchor down), English. It downloads nothing.
    """

    def __init__(self, model_dir: Path, *, threads: int, beam_size: int = 1) -> None:
        """Prepare to serve the model in ``model_dir``."""
        super().__init__("wyoming-faster-whisper")
        self.model_dir = model_dir
        self.threads = threads
        self.beam_size = beam_size

    def _arguments(self) -> list[str]:
        return [
            # The launcher fixes a PyAV call for this venv (see there).
            "-m", "scripts.benchmarks.wyoming_launcher", "whisper",
            "--uri", f"tcp://{HOST}:{self.port}",
            "--model", str(self.model_dir),
            "--data-dir", self._scratch.name,
            "--local-files-only",
            "--stt-library", "faster-whisper",
            "--compute-type", "int8",
            "--cpu-threads", str(self.threads),
            "--beam-size", str(self.beam_size),
            "--language", "en",
        ]  # fmt: skip


async def wyoming_first_audio(
    server: WyomingPiperServer, text: str, *, streaming: bool
) -> float:
    """Seconds from connecting to the first ``audio-chunk`` event.

    ``streaming`` sends the text the way Home Assistant does for a server that
    supports it: synthesize-start, one synthesize-chunk, the compatibility
    synthesize event, synthesize-stop. Otherwise one synthesize event. The
    whole answer is read (untimed) before returning, so the server is idle
    when the next round starts.
    """
    voice = SynthesizeVoice(name=server.voice.key)
    start = time.perf_counter()
    first: float | None = None
    async with AsyncTcpClient(HOST, server.port) as client:
        if streaming:
            await client.write_event(SynthesizeStart(voice=voice).event())
            await client.write_event(SynthesizeChunk(text=text).event())
            await client.write_event(Synthesize(text=text, voice=voice).event())
            await client.write_event(SynthesizeStop().event())
            last_event_type = SynthesizeStopped().event().type
        else:
            await client.write_event(Synthesize(text=text, voice=voice).event())
            last_event_type = AudioStop().event().type
        while True:
            event = await client.read_event()
            if event is None:
                raise RuntimeError("wyoming-piper closed the connection early")
            if Error.is_type(event.type):
                raise RuntimeError(f"wyoming-piper error: {Error.from_event(event)}")
            if first is None and AudioChunk.is_type(event.type):
                first = elapsed_since(start)
            if event.type == last_event_type:
                break
    if first is None:
        raise RuntimeError("wyoming-piper sent no audio")
    return first
