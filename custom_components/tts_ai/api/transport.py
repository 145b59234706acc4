"""HTTP exchange with TTS.ai: auth, timeouts, retries and error translation.

Everything that touches aiohttp lives here; the client builds requests and
interprets successful responses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
import logging
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from .errors import (
    ModelLoadingError,
    TtsAiConnectionError,
    TtsAiError,
    TtsAiTimeoutError,
    error_from_response,
)
from .limiter import ConcurrencyLimiter

_LOGGER = logging.getLogger(__name__)

_REDACTED = "**REDACTED**"


@dataclass(frozen=True, slots=True)
class Upload:
    """A file sent in a multipart request."""

    field: str
    data: bytes
    filename: str
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """Everything needed to (re)send one request.

    Kept as data because a multipart body cannot be sent twice: each retry
    builds a fresh ``FormData`` from it.
    """

    method: str
    url: URL
    json: Mapping[str, Any] | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    upload: Upload | None = None
    query: Mapping[str, str] = field(default_factory=dict)

    def body_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``ClientSession.request`` (fresh each call)."""
        kwargs: dict[str, Any] = {}
        if self.query:
            kwargs["params"] = dict(self.query)
        if self.json is not None:
            kwargs["json"] = dict(self.json)
        elif self.upload is not None or self.fields:
            form = aiohttp.FormData()
            for name, value in self.fields.items():
                form.add_field(name, value)
            if self.upload is not None:
                form.add_field(
                    self.upload.field,
                    self.upload.data,
                    filename=self.upload.filename,
                    content_type=self.upload.content_type,
                )
            kwargs["data"] = form
        return kwargs


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """A fully read successful response."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type, without parameters, lower case."""
        raw = self.headers.get("Content-Type", "")
        return raw.split(";", 1)[0].strip().lower()


class Transport:
    """Sends :class:`ApiRequest` objects and turns failures into exceptions."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        *,
        connect_timeout: float,
        first_byte_timeout: float,
        model_loading_retries: int,
        model_loading_backoff: float,
        model_loading_max_delay: float,
        limiter: ConcurrencyLimiter,
        on_headers: Callable[[int, Mapping[str, str]], None],
        on_error: Callable[[TtsAiError], None],
    ) -> None:
        """Configure the exchange.

        ``on_headers`` sees every response's status and headers; ``on_error``
        every failure (error statuses and network errors alike).
        """
        self._session = session
        self._api_key = api_key
        self._first_byte_timeout = first_byte_timeout
        self._connect_timeout = connect_timeout
        self._model_loading_retries = max(0, model_loading_retries)
        self._model_loading_backoff = max(0.0, model_loading_backoff)
        self._model_loading_max_delay = max(0.0, model_loading_max_delay)
        self._limiter = limiter
        self._on_headers = on_headers
        self._on_error = on_error
        # sock_read starts once the request body is written, so for uploads it
        # measures the wait for the first byte (and any later stall) without
        # counting the upload itself.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=first_byte_timeout,
        )

    @property
    def first_byte_timeout(self) -> float:
        """Seconds allowed between sending a request and its first byte."""
        return self._first_byte_timeout

    def redact(self, text: str) -> str:
        """Remove the API key from ``text`` (it must never reach a log)."""
        return text.replace(self._api_key, _REDACTED) if self._api_key else text

    async def fetch(self, request: ApiRequest) -> ApiResponse:
        """Send ``request`` and read the whole successful response."""
        async with self.open(request) as response:
            body = await self._guard(response.read(), request)
            return ApiResponse(response.status, response.headers, body)

    @asynccontextmanager
    async def open(self, request: ApiRequest) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send ``request``; yield the successful response with its body unread.

        ``503 model_loading`` is retried with exponential backoff; every other
        error status raises its mapped exception at once. The concurrency slot
        is held until the block exits, so a stream counts while it is read.
        """
        attempt = 0
        while True:
            async with self._limiter.slot():
                response = await self._start(request)
                try:
                    self._on_headers(response.status, response.headers)
                    if response.status < 300:
                        yield response
                        return
                    body = await self._guard(response.read(), request)
                finally:
                    response.release()
            error = self._error_for(response, body)
            if (
                isinstance(error, ModelLoadingError)
                and attempt < self._model_loading_retries
            ):
                delay = self._retry_delay(attempt, error.retry_after)
                attempt += 1
                _LOGGER.debug(
                    "%s %s: model loading, retry %d in %.2f s",
                    request.method,
                    request.url.path,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self._on_error(error)
            raise error

    async def read_chunk(
        self,
        chunks: AsyncIterator[bytes],
        request: ApiRequest,
        *,
        deadline: float | None = None,
    ) -> bytes | None:
        """Read the next streamed chunk; None at the end of the stream."""
        return await self._guard(anext(chunks, None), request, deadline=deadline)

    async def _start(self, request: ApiRequest) -> aiohttp.ClientResponse:
        """Send the request and wait for the response headers."""
        # An upload's transfer time must not count against the first-byte
        # deadline; sock_read (started after the body is sent) covers uploads.
        deadline = (
            None
            if request.upload is not None
            else self._connect_timeout + self._first_byte_timeout
        )
        response = await self._guard(
            self._session.request(
                request.method,
                request.url,
                headers={"Authorization": f"Bearer {self._api_key}"},
                timeout=self._timeout,
                allow_redirects=False,  # never follow the key to another host
                **request.body_kwargs(),
            ),
            request,
            deadline=deadline,
        )
        _LOGGER.debug("%s %s -> %s", request.method, request.url.path, response.status)
        return response

    async def _guard[T](
        self,
        awaitable: Awaitable[T],
        request: ApiRequest,
        *,
        deadline: float | None = None,
    ) -> T:
        """Await ``awaitable``, translating network failures to our errors."""
        try:
            async with asyncio.timeout(deadline):
                return await awaitable
        except aiohttp.ConnectionTimeoutError as err:
            raise self._failed(
                TtsAiConnectionError(
                    f"Timed out connecting to TTS.ai at {request.url.host} "
                    f"(after {self._connect_timeout:g} s)"
                ),
                err,
            ) from None
        except TimeoutError as err:  # sock_read, or our own deadline
            raise self._failed(
                TtsAiTimeoutError(
                    f"TTS.ai did not answer {request.method} {request.url.path} "
                    f"within {self._first_byte_timeout:g} s"
                ),
                err,
            ) from None
        except aiohttp.ClientPayloadError as err:
            raise self._failed(
                TtsAiConnectionError(
                    "The connection to TTS.ai broke while receiving the response "
                    f"to {request.method} {request.url.path}"
                ),
                err,
            ) from None
        except aiohttp.ServerDisconnectedError as err:
            raise self._failed(
                TtsAiConnectionError(
                    f"TTS.ai closed the connection during {request.method} "
                    f"{request.url.path}"
                ),
                err,
            ) from None
        except aiohttp.ClientConnectorError as err:
            # Certificate errors subclass ClientConnectorError without an os_error.
            os_error = getattr(err, "_os_error", None)
            reason = (
                getattr(os_error, "strerror", None) or type(os_error or err).__name__
            )
            raise self._failed(
                TtsAiConnectionError(
                    f"Cannot connect to TTS.ai at {err.host}:{err.port}: {reason}"
                ),
                err,
            ) from None
        except aiohttp.ClientError as err:
            raise self._failed(
                TtsAiConnectionError(
                    f"Error talking to TTS.ai during {request.method} "
                    f"{request.url.path}: {type(err).__name__}"
                ),
                err,
            ) from None

    def _failed(self, error: TtsAiError, cause: BaseException) -> TtsAiError:
        """Record a network failure; keep the cause's type for debugging."""
        error.message = self.redact(error.message)
        error.args = (error.message,)
        error.extra["cause"] = type(cause).__name__
        self._on_error(error)
        return error

    def _error_for(self, response: aiohttp.ClientResponse, body: bytes) -> TtsAiError:
        """Build the exception for an error response."""
        if 300 <= response.status < 400:
            error = TtsAiError(
                f"TTS.ai answered with a redirect (HTTP {response.status}); "
                "redirects are not followed",
                code="unexpected_redirect",
                status=response.status,
            )
        else:
            error = error_from_response(response.status, response.headers, body)
        error.message = self.redact(error.message)
        error.args = (error.message,)
        return error

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retrying after ``503 model_loading``."""
        delay = (
            retry_after
            if retry_after is not None
            else self._model_loading_backoff * 2**attempt
        )
        return min(delay, self._model_loading_max_delay)
