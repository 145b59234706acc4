"""Figure 11: the event loop never stalls on what the cloud sends.

Home Assistant runs everything on one event loop: a client that joins a
278 MB WAV or buffers a 90 MB answer on it freezes every automation for the
time it takes, and so does a copy in an executor thread that holds the GIL.
A watchdog task wakes every 5 ms and records how late it was
woken; the figure is the worst lateness while the client

* synthesises a long text in 20 parts whose WAV answers (14 MB each, from a
  plain server in another process, so no synthesis is timed) are joined, and
* reads a 90 MB audio answer,

against the worst lateness during small requests in the same run (the
machine's own noise). Goal: at most 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import statistics
import subprocess
import sys
import time
from typing import Any
import wave

import aiohttp
from aiohttp import web

from .common import REPO_ROOT, BenchConfig, Figure, free_port, integration_module

_TICK = 0.005
_PART_SECONDS = 320  # 14 MB of 22,050 Hz 16-bit mono
_PARTS = 20
_BIG_BODY = 90 * 1024 * 1024
_GOAL_MS = 50.0


def _wav(seconds: int, rate: int = 22_050) -> bytes:
    """A silent 16-bit mono WAV file of ``seconds``."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(bytes(2 * rate * seconds))
    return buffer.getvalue()


class _Watchdog:
    """Wake every few milliseconds and keep the worst lateness."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + _TICK
            await asyncio.sleep(_TICK)
            self.worst = max(self.worst, loop.time() - due)

    async def __aenter__(self) -> _Watchdog:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(_TICK * 2)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class _AudioServer:
    """A server in a process of its own answering every TTS request with a WAV.

    A server in this process would copy its 280 MB of answers while holding
    the GIL and stall the very loop being measured; Home Assistant's loop only
    ever runs the client. ``POST /mode/part`` or ``/mode/big`` picks the WAV.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The API base URL the client is given."""
        return f"http://127.0.0.1:{self.port}/v1/"

    async def __aenter__(self) -> _AudioServer:
        self._process = subprocess.Popen(  # noqa: ASYNC220 - starting is quick
            [sys.executable, "-m", "scripts.benchmarks.loop_stall", str(self.port)],
            cwd=REPO_ROOT,
        )
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/ready"):
                        return self
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        raise RuntimeError("the loop-stall audio server did not start")

    async def __aexit__(self, *_exc: object) -> None:
        assert self._process is not None
        self._process.terminate()
        self._process.wait(10)

    async def serve(self, session: aiohttp.ClientSession, kind: str) -> None:
        """Answer the next TTS requests with the ``part`` or the ``big`` WAV."""
        async with session.post(f"http://127.0.0.1:{self.port}/mode/{kind}"):
            pass


def _serve(port: int) -> None:
    """Run the audio server (the child process's whole work)."""
    bodies = {"part": _wav(_PART_SECONDS), "big": _wav(_BIG_BODY // (2 * 22_050))}
    mode = {"kind": "part"}

    async def tts(_request: web.Request) -> web.Response:
        return web.Response(body=bodies[mode["kind"]], content_type="audio/wav")

    async def set_mode(request: web.Request) -> web.Response:
        mode["kind"] = request.match_info["kind"]
        return web.Response(text="ok")

    async def ready(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/tts/", tts)
    app.router.add_post("/mode/{kind}", set_mode)
    app.router.add_get("/ready", ready)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


async def _worst_stalls(rounds: int) -> dict[str, list[float]]:
    """Worst loop lateness (ms) per round for each kind of work."""
    api = integration_module("api")
    part_bytes = 2 * 22_050 * _PART_SECONDS
    stalls: dict[str, list[float]] = {"small": [], "join": [], "big_body": []}
    async with _AudioServer() as server, aiohttp.ClientSession() as session:
        limit = 1_000
        client = api.TtsAiClient(
            session, "sk-tts-bench", base_url=server.base_url, max_text_chars=limit
        )
        long_text = " ".join(["The garage door is open."] * (limit * _PARTS // 25))
        for _ in range(rounds):
            await server.serve(session, "part")
            async with _Watchdog() as watchdog:
                await client.tts("Hello.", model="kokoro", voice="af_bella")
            stalls["small"].append(watchdog.worst * 1000)
            async with _Watchdog() as watchdog:
                result = await client.tts(
                    long_text, model="kokoro", voice="af_bella", format="wav"
                )
            if len(result.data) < _PARTS * part_bytes:
                raise RuntimeError("the joined WAV is shorter than its parts")
            stalls["join"].append(watchdog.worst * 1000)
            await server.serve(session, "big")
            async with _Watchdog() as watchdog:
                result = await client.tts(
                    "Hello.", model="kokoro", voice="af_bella", format="wav"
                )
            if len(result.data) < _BIG_BODY * 0.99:
                raise RuntimeError("the big answer came back short")
            stalls["big_body"].append(watchdog.worst * 1000)
            del result
    return stalls


async def loop_stall_figure(config: BenchConfig) -> Figure:
    """Figure 11: worst event-loop stall on huge answers vs small requests."""
    rounds = 1 if config.quick else 3
    started = time.perf_counter()
    stalls = await _worst_stalls(rounds)
    worst = max(*stalls["join"], *stalls["big_body"])
    extras: dict[str, Any] = {
        "rounds_ms": {
            key: [round(v, 2) for v in values] for key, values in stalls.items()
        },
        "join_parts": _PARTS,
        "join_total_mb": round(_PARTS * 2 * 22_050 * _PART_SECONDS / 1e6, 1),
        "big_body_mb": round(_BIG_BODY / 1e6, 1),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    return Figure(
        key="loop_stall",
        title="Worst event-loop stall: 20-part WAV join and a 90 MB answer",
        unit="ms",
        value=worst,
        value_label="worst lateness of a 5 ms watchdog",
        anchor=statistics.median(stalls["small"]),
        anchor_label="the same during a small request",
        goal=_GOAL_MS,
        goal_on="value",
        notes=(
            f"{rounds} round(s); the answers come from a WAV server in another "
            "process, so neither synthesis nor serving is timed"
        ),
        extras=extras,
    )


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
