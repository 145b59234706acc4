"""A hostile or broken TTS.ai: a loopback proxy in front of the stand-in.

Every request is passed on to the contract-faithful stand-in, so untouched
answers are real (real models, real speech). A *tamper* rule rewrites the
answer for the paths it matches the ways a broken or malicious cloud would:
malformed JSON and header values, huge and gzip-bomb bodies, a trickle, a
hang, foreign and malformed result URLs, too many stems.

Usage::

    cloud = HostileCloud(standin.base_url)
    await cloud.start()
    cloud.tamper("tts/", gzip_bomb())
    ...  # point the client (or an entry) at cloud.base_url
    await cloud.stop()
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
import functools
import json
import socket
from typing import Any
import zlib

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

API_PREFIX = "/v1/"
MB = 1024 * 1024
# Headers that describe one hop's framing: never copied from the stand-in.
_HOP_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "content-encoding", "connection"}
)


@dataclass
class Upstream:
    """The stand-in's real answer to the request being tampered with."""

    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        """The answer as JSON."""
        return json.loads(self.body)


Tamper = Callable[[web.Request, Upstream], Awaitable[web.StreamResponse]]


@dataclass
class _Rule:
    path: str
    tamper: Tamper
    remaining: int | None


@dataclass
class Sent:
    """What the hostile cloud managed to write for one tampered answer."""

    path: str
    bytes_written: int = 0
    finished: bool = False


@dataclass
class HostileCloud:
    """The proxy; ``requests`` lists every path asked for (relative to /v1/)."""

    upstream_url: str
    requests: list[str] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    _rules: list[_Rule] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    _port: int = 0

    @property
    def base_url(self) -> str:
        """The base URL to give the client."""
        return f"http://127.0.0.1:{self._port}{API_PREFIX}"

    @property
    def origin(self) -> str:
        """scheme://host:port of the hostile cloud."""
        return f"http://127.0.0.1:{self._port}"

    def tamper(self, path: str, tamper: Tamper, *, times: int | None = None) -> None:
        """Rewrite the answers for ``path`` (a glob relative to /v1/)."""
        self._rules.insert(0, _Rule(path, tamper, times))

    def clear(self) -> None:
        """Answer faithfully again."""
        self._rules.clear()

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=200 * MB)
        app[_CLOUD] = self
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop listening and close the upstream session."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> HostileCloud:
        """Start; stop on exit."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop."""
        await self.stop()

    def _rule_for(self, path: str) -> _Rule | None:
        for rule in self._rules:
            if rule.remaining is not None and rule.remaining <= 0:
                continue
            if fnmatchcase(path, rule.path):
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.removeprefix(API_PREFIX)
        self.requests.append(path)
        rule = self._rule_for(path)
        if rule is None:
            return _faithful(await self._forward(request))
        if getattr(rule.tamper, "needs_upstream", True):
            upstream = await self._forward(request)
        else:  # the answer is made up whole: do not wait for real speech
            upstream = Upstream(200, CIMultiDict(), b"")
        return await rule.tamper(request, upstream)

    async def _forward(self, request: web.Request) -> Upstream:
        assert self._session is not None
        body = await request.read()
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("authorization", "content-type", "host")
        }
        url = URL(self.upstream_url).with_path(request.path).with_query(request.query)
        async with self._session.request(
            request.method, url, headers=headers, data=body, allow_redirects=False
        ) as answer:
            return Upstream(
                answer.status, CIMultiDict(answer.headers), await answer.read()
            )

    def record(self, request: web.Request) -> Sent:
        """Start counting what is written for ``request``."""
        sent = Sent(request.path.removeprefix(API_PREFIX))
        self.sent.append(sent)
        return sent


def _copy_headers(upstream: Upstream) -> CIMultiDict[str]:
    return CIMultiDict(
        (name, value)
        for name, value in upstream.headers.items()
        if name.lower() not in _HOP_HEADERS
    )


def _faithful(upstream: Upstream) -> web.Response:
    return web.Response(
        status=upstream.status, headers=_copy_headers(upstream), body=upstream.body
    )


_CLOUD = web.AppKey("hostile_cloud", HostileCloud)


def _cloud(request: web.Request) -> HostileCloud:
    return request.app[_CLOUD]


def _made_up(tamper: Tamper) -> Tamper:
    """Mark a tamper that ignores the stand-in's answer."""
    tamper.needs_upstream = False  # type: ignore[attr-defined]
    return tamper


# --- Tampers --------------------------------------------------------------------


def headers(**values: str) -> Tamper:
    """Keep the answer; set (or add) these header values (``_`` -> ``-``)."""

    async def tamper(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        response = _faithful(upstream)
        for name, value in values.items():
            response.headers[name.replace("_", "-")] = value
        return response

    return tamper


def status(code: int, body: Mapping[str, Any], **header_values: str) -> Tamper:
    """Answer ``code`` with a JSON body and these headers instead."""

    async def tamper(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        response = web.json_response(body, status=code)
        for name, value in header_values.items():
            response.headers[name.replace("_", "-")] = value
        return response

    return _made_up(tamper)


def json_body(
    change: Callable[[Any, web.Request], Any] | Any,
) -> Tamper:
    """Answer 200 with other JSON: ``change(upstream_json, request)`` or a value."""

    async def tamper(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        document = change(upstream.json(), request) if callable(change) else change
        response = web.Response(
            status=200,
            headers=_copy_headers(upstream),
            body=json.dumps(document).encode(),
        )
        response.content_type = "application/json"
        return response

    return tamper


def raw_body(body: bytes, content_type: str = "application/json") -> Tamper:
    """Answer 200 with exactly these bytes."""

    async def tamper(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        response = web.Response(status=200, headers=_copy_headers(upstream), body=body)
        response.headers["Content-Type"] = content_type
        return response

    return _made_up(tamper)


def huge(
    size: int, *, content_type: str = "audio/wav", declare_length: bool = False
) -> Tamper:
    """Answer ``size`` bytes of silence, chunked (or with its Content-Length)."""

    async def tamper(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        sent = _cloud(request).record(request)
        response = web.StreamResponse(status=200)
        response.content_type = content_type
        if declare_length:
            response.content_length = size
        await response.prepare(request)
        chunk = bytes(MB)
        try:
            while sent.bytes_written < size:
                piece = chunk[: size - sent.bytes_written]
                await response.write(piece)
                sent.bytes_written += len(piece)
            await response.write_eof()
            sent.finished = True
        except ConnectionError:
            pass  # the client stopped reading: what it should do
        return response

    return _made_up(tamper)


@functools.cache
def _gzip_of_zeros(inflated: int, prefix: bytes = b"") -> bytes:
    """A gzip member inflating to ``prefix`` + zeros (~1/1000 the size)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MB)
    parts = [compressor.compress(prefix)]
    parts += [compressor.compress(zeros) for _ in range(inflated // MB)]
    parts.append(compressor.flush())
    return b"".join(parts)


def gzip_bomb(
    inflated: int = 512 * MB, *, content_type: str = "audio/wav", prefix: bytes = b""
) -> Tamper:
    """Answer a small gzip body (Content-Encoding: gzip) that inflates hugely.

    ``prefix`` starts the inflated body (say, an MP3 tag, so it looks like audio).
    """

    async def tamper(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        body = await asyncio.to_thread(_gzip_of_zeros, inflated, prefix)
        sent = _cloud(request).record(request)
        response = web.StreamResponse(status=200)
        response.content_type = content_type
        response.headers["Content-Encoding"] = "gzip"
        response.content_length = len(body)
        await response.prepare(request)
        try:
            for start in range(0, len(body), 64 * 1024):
                await response.write(body[start : start + 64 * 1024])
                sent.bytes_written += min(64 * 1024, len(body) - start)
            await response.write_eof()
            sent.finished = True
        except ConnectionError:
            pass
        return response

    return _made_up(tamper)


def trickle(interval: float, *, content_type: str = "audio/mpeg") -> Tamper:
    """Send the headers at once, then one byte every ``interval`` s, forever."""

    async def tamper(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        sent = _cloud(request).record(request)
        response = web.StreamResponse(status=200)
        response.content_type = content_type
        await response.prepare(request)
        try:
            while True:
                await response.write(b"\xff")
                sent.bytes_written += 1
                await asyncio.sleep(interval)
        except ConnectionError:
            pass
        return response

    return _made_up(tamper)


def hang() -> Tamper:
    """Never answer (until the client gives up or the server stops)."""

    async def tamper(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError  # pragma: no cover

    return _made_up(tamper)


def result_url(url: str) -> Tamper:
    """Keep a JSON answer but point its ``audio_url`` at ``url``."""
    return json_body(lambda document, request: {**document, "audio_url": url})


def stems(count: int) -> Tamper:
    """Answer a finished separation task listing ``count`` stems."""

    def change(document: Any, request: web.Request) -> Any:
        origin = _cloud(request).origin
        return {
            "task_id": document.get("task_id", "task_hostile"),
            "status": "success",
            "stems": {
                f"stem{index}": f"{origin}{API_PREFIX}results/stem{index}.wav"
                for index in range(count)
            },
        }

    return json_body(change)
