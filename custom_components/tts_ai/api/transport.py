"""HTTP exchange with TTS.ai: auth, timeouts, retries and error translation.

Everything that touches aiohttp lives here; the client builds requests and
interprets successful responses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
import logging
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from .endpoints import (
    JSON_RESPONSE_LIMIT_BYTES,
    MEGABYTE,
    MIN_TRANSFER_BYTES_PER_SECOND,
)
from .errors import (
    InvalidResponseError,
    ModelLoadingError,
    ResponseTooLargeError,
    TtsAiConnectionError,
    TtsAiError,
    TtsAiTimeoutError,
    error_from_response,
)
from .limiter import ConcurrencyLimiter

_LOGGER = logging.getLogger(__name__)

_REDACTED = "**REDACTED**"
# An error answer is a small JSON object; read no more of one than this.
_ERROR_BODY_LIMIT_BYTES = 64 * 1024
# Bodies bigger than this are joined in the executor, not in the event loop.
_JOIN_IN_LOOP_BYTES = 4 * MEGABYTE
# What a malformed answer raises while it is decoded: all mean "unreadable".
DECODE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    OverflowError,
    RecursionError,
)


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
    # Largest answer accepted, after decompression (the endpoint's limit).
    response_limit_bytes: int = JSON_RESPONSE_LIMIT_BYTES

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
        return media_type(self.headers)


def media_type(headers: Mapping[str, str]) -> str:
    """Return the Content-Type's media type, without parameters, lower case."""
    raw = headers.get("Content-Type", "")
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

    def refuse[E: TtsAiError](self, error: E) -> E:
        """Report ``error``, about an answer this client refuses; return it."""
        self._on_error(error)
        return error

    def invalid(self, message: str) -> InvalidResponseError:
        """Build (and report) the error for an answer that cannot be accepted."""
        return self.refuse(InvalidResponseError(message))

    async def fetch(self, request: ApiRequest) -> ApiResponse:
        """Send ``request`` and read the whole successful response.

        Every failure leaves as a TtsAiError: anything else that escapes the
        exchange (a bug, a value aiohttp refuses) is an unreadable answer,
        never a raw exception.
        """
        try:
            return await self._read(request)
        except TtsAiError:
            raise
        except DECODE_ERRORS as err:
            raise self.invalid(
                f"unreadable answer to {request.method} {request.url.path}: "
                f"{type(err).__name__}"
            ) from None

    async def _read(self, request: ApiRequest) -> ApiResponse:
        """Send ``request`` and read the whole successful response's body."""
        async with self.open(request) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.body(response, request):
                chunks.append(chunk)
                size += len(chunk)
            if size > _JOIN_IN_LOOP_BYTES:
                # Copying up to the limit (100 MB) would stall the event loop.
                body = await asyncio.get_running_loop().run_in_executor(
                    None, b"".join, chunks
                )
            else:
                body = b"".join(chunks)
            return ApiResponse(response.status, response.headers, body)

    @asynccontextmanager
    async def open(self, request: ApiRequest) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send ``request``; yield the successful response with its body unread.

        ``503 model_loading`` is retried with exponential backoff; every other
        error status raises its mapped exception at once. The concurrency slot
        is held until the block exits, so a stream counts while it is read.
        Waiting for the slot counts against the deadline for the answer.
        """
        attempt = 0
        while True:
            deadline_at = self._answer_deadline(request)
            async with AsyncExitStack() as stack:
                await self._guard(
                    stack.enter_async_context(self._limiter.slot(deadline_at)),
                    request,
                    timeout_message=(
                        f"No free TTS.ai request slot for {request.method} "
                        f"{request.url.path}: every slot stayed busy past the "
                        "deadline"
                    ),
                )
                response = await self._start(request, deadline_at)
                stack.callback(response.release)
                self._on_headers(response.status, response.headers)
                if response.status < 300:
                    self._check_length(response, request)
                    yield response
                    return
                body = await self._error_body(response, request)
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

    async def body(
        self,
        response: aiohttp.ClientResponse,
        request: ApiRequest,
        *,
        first_byte_timeout: float | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield a successful response's body, within its size and time limits.

        The size counts decompressed bytes as they arrive, so a gzip bomb is
        refused after its limit, not after it has filled the memory. The body
        has ``first_byte_timeout`` for its first byte and must then keep an
        average of MIN_TRANSFER_BYTES_PER_SECOND: a cloud trickling a byte
        now and then times out instead of holding the request forever.
        """
        limit = request.response_limit_bytes
        loop = asyncio.get_running_loop()
        grace = (
            self._first_byte_timeout
            if first_byte_timeout is None
            else first_byte_timeout
        )
        started = loop.time()
        received = 0
        while True:
            chunk = await self._guard(
                response.content.readany(),
                request,
                deadline_at=started + grace + received / MIN_TRANSFER_BYTES_PER_SECOND,
                timeout_message=(
                    f"TTS.ai sent the answer to {request.method} {request.url.path} "
                    f"too slowly (stopped after {received} bytes)"
                ),
            )
            if not chunk:
                return
            received += len(chunk)
            if received > limit:
                raise self._too_large(request)
            yield chunk

    def _check_length(
        self, response: aiohttp.ClientResponse, request: ApiRequest
    ) -> None:
        """Refuse at once an answer whose declared length is over the limit."""
        length = response.content_length
        if length is not None and length > request.response_limit_bytes:
            raise self._too_large(request)

    def _too_large(self, request: ApiRequest) -> ResponseTooLargeError:
        """Build (and record) the error for an answer over its limit."""
        limit = request.response_limit_bytes
        error = ResponseTooLargeError(
            f"TTS.ai's answer to {request.method} {request.url.path} is over "
            f"the {limit / MEGABYTE:g} MB this client accepts from it",
            extra={"limit_bytes": limit},
        )
        self._on_error(error)
        return error

    async def _error_body(
        self, response: aiohttp.ClientResponse, request: ApiRequest
    ) -> bytes:
        """Read an error answer's body, at most ``_ERROR_BODY_LIMIT_BYTES``."""
        body = bytearray()
        loop = asyncio.get_running_loop()
        deadline_at = loop.time() + self._first_byte_timeout
        while len(body) <= _ERROR_BODY_LIMIT_BYTES:
            chunk = await self._guard(
                response.content.readany(), request, deadline_at=deadline_at
            )
            if not chunk:
                return bytes(body)
            body += chunk
        # Longer than any error object: judge the answer by its status alone.
        return b""

    def _answer_deadline(self, request: ApiRequest) -> float:
        """Loop time by which the answer's headers must have arrived.

        A slot, the connection and the first byte each have their documented
        timeout; an upload adds its size at the minimum transfer rate.
        """
        budget = self._connect_timeout + self._first_byte_timeout
        if request.upload is not None:
            budget += len(request.upload.data) / MIN_TRANSFER_BYTES_PER_SECOND
        return asyncio.get_running_loop().time() + budget

    async def _start(
        self, request: ApiRequest, deadline_at: float
    ) -> aiohttp.ClientResponse:
        """Send the request and wait for the response headers."""
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
            deadline_at=deadline_at,
        )
        _LOGGER.debug("%s %s -> %s", request.method, request.url.path, response.status)
        return response

    async def _guard[T](
        self,
        awaitable: Awaitable[T],
        request: ApiRequest,
        *,
        deadline_at: float | None = None,
        timeout_message: str | None = None,
    ) -> T:
        """Await ``awaitable``, translating network failures to our errors.

        ``deadline_at`` is a loop time (None: only aiohttp's own timeouts).
        """
        try:
            async with asyncio.timeout_at(deadline_at):
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
                    timeout_message
                    or f"TTS.ai did not answer {request.method} {request.url.path} "
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
