"""The stand-in server: routes, the request pipeline, and its life cycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import contextlib
import logging
import math
import socket
import time

from aiohttp import web

from .accounts import Account, RateLimitSnapshot, copy_accounts, default_accounts
from .common import drop_connection
from .contract import (
    API_PREFIX,
    MB,
    PLAN_LIMITS,
    RATE_LIMIT_WINDOW_SECONDS,
    UPLOAD_LIMITS,
)
from .endpoints_speech import handle_stt, handle_translate, handle_voice_chat
from .endpoints_tasks import handle_result, handle_separate
from .endpoints_tools import (
    handle_analyze,
    handle_convert,
    handle_dereverb,
    handle_enhance,
    handle_speech_to_speech,
    handle_voice_convert,
)
from .endpoints_tts import (
    handle_clone,
    handle_models,
    handle_tts,
    handle_voice_preview,
    handle_voices,
)
from .errors import ApiError, not_found
from .faults import Fault, FaultRule, normalize_path
from .forms import ParsedBody, parse_body
from .state import (
    ACCOUNT,
    API_KEY,
    BODY,
    CREDITS_USED,
    RATE_LIMIT,
    STATE_KEY,
    TRUNCATE,
    RecordedRequest,
    StandinState,
    insufficient_credits,
    number_for_json,
)

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Largest JSON body accepted (texts are at most 50,000 characters).
_MAX_JSON_BYTES = 4 * MB
#: Seconds aiohttp waits for running handlers when the server stops.
_SHUTDOWN_TIMEOUT = 2.0

_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "tts/", handle_tts),
    ("POST", "tts/clone/", handle_clone),
    ("POST", "stt/", handle_stt),
    ("POST", "voice-convert/", handle_voice_convert),
    ("POST", "translate/", handle_translate),
    ("POST", "speech-to-speech/", handle_speech_to_speech),
    ("POST", "audio/enhance/", handle_enhance),
    ("POST", "audio/separate/", handle_separate),
    ("POST", "audio/dereverb/", handle_dereverb),
    ("POST", "audio/analyze/", handle_analyze),
    ("POST", "audio/convert/", handle_convert),
    ("POST", "voice-chat/", handle_voice_chat),
    ("GET", "models/", handle_models),
    ("GET", "voices/", handle_voices),
    ("GET", "voices/preview/{voice}.mp3", handle_voice_preview),
    ("GET", "results/{name}", handle_result),
)


def _anonymous_rate_limit() -> RateLimitSnapshot:
    """Headers for a request that has no account to count against."""
    limit = PLAN_LIMITS["pro"].requests_per_minute
    return RateLimitSnapshot(
        limit, limit, math.ceil(time.time() + RATE_LIMIT_WINDOW_SECONDS)
    )


def _bearer_key(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _record(request: web.Request, path: str, body: ParsedBody) -> RecordedRequest:
    return RecordedRequest(
        method=request.method,
        path=path,
        query=dict(request.query),
        headers=dict(request.headers),
        json=body.json,
        form=dict(body.form),
        files={name: (up.filename, up.size) for name, up in body.files.items()},
    )


class _Pipeline:
    """What every request goes through: record, authenticate, limit, fault, handle."""

    def __init__(self, state: StandinState, release_hangs: asyncio.Event) -> None:
        self._state = state
        self._release_hangs = release_hangs

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """aiohttp middleware running the pipeline around ``handler``."""
        state = self._state
        path = normalize_path(request.path)
        if state.faults.refusing:
            # A keep-alive connection opened before REFUSE: a dead server
            # would not answer on it either.
            state.requests.append(_record(request, path, ParsedBody()))
            return drop_connection(request, web.Response())
        try:
            body = await parse_body(request, UPLOAD_LIMITS.get(path, 100 * MB))
        except Exception:
            _LOGGER.exception("Stand-in could not read the body of %s", path)
            body = ParsedBody(error=ApiError("bad_request", "Unreadable body."))
        request[BODY] = body
        record = _record(request, path, body)
        state.requests.append(record)
        try:
            response = await self._authorised(request, handler, path, body)
        except ApiError as err:
            response = err.to_response()
        record.status = response.status
        return response

    async def _authorised(
        self, request: web.Request, handler: Handler, path: str, body: ParsedBody
    ) -> web.StreamResponse:
        state = self._state
        api_key = _bearer_key(request)
        account = state.accounts.get(api_key) if api_key else None
        if api_key is None or account is None:
            request[RATE_LIMIT] = _anonymous_rate_limit()
            raise ApiError("unauthorized", "Missing or invalid API key.")
        if not account.plan_limits.has_api_access:
            request[RATE_LIMIT] = state.limiter.snapshot(
                api_key, account.effective_requests_per_minute
            )
            raise ApiError(
                "forbidden",
                f"The {account.plan} plan has no API access; "
                "upgrade to Pro or Enterprise.",
            )
        request[API_KEY] = api_key
        request[ACCOUNT] = account
        request[RATE_LIMIT] = state.limiter.admit(api_key, account)
        try:
            if body.error is not None:
                raise body.error
            rule = state.faults.take(path)
            if rule is not None:
                return await self._faulty(
                    request, handler, path, body, rule=rule, account=account
                )
            return await self._handle(request, handler, path, body)
        finally:
            state.limiter.release(api_key)

    async def _handle(
        self, request: web.Request, handler: Handler, path: str, body: ParsedBody
    ) -> web.StreamResponse:
        limit = UPLOAD_LIMITS.get(path, 100 * MB)
        for name, upload in body.files.items():
            if upload.data is None:
                raise ApiError(
                    "file_too_large",
                    f"File '{name}' is {upload.size} bytes; {path} accepts at most "
                    f"{limit // MB} MB.",
                )
        try:
            return await handler(request)
        except ApiError:
            raise
        except web.HTTPException as exc:
            raise _http_exception_to_api_error(exc, request) from None
        except Exception:
            _LOGGER.exception("Stand-in handler for %s failed", path)
            raise ApiError(
                "internal_error", "The stand-in failed; see its log."
            ) from None

    async def _faulty(
        self,
        request: web.Request,
        handler: Handler,
        path: str,
        body: ParsedBody,
        *,
        rule: FaultRule,
        account: Account,
    ) -> web.StreamResponse:
        match rule.fault:
            case Fault.HANG:
                # Never answer; the client gives up (which cancels this
                # handler) or the server stops (which drops the connection).
                await self._release_hangs.wait()
                return drop_connection(request, web.Response())
            case Fault.SLOW_FIRST_BYTE:
                await asyncio.sleep(rule.delay)
                return await self._handle(request, handler, path, body)
            case Fault.TRUNCATED_STREAM:
                request[TRUNCATE] = True
                try:
                    response = await self._handle(request, handler, path, body)
                except ApiError as err:
                    response = err.to_response()
                if response.prepared:  # a streamed answer cut itself short
                    return response
                assert isinstance(response, web.Response)
                return await _send_truncated(request, response)
            case Fault.INTERNAL_ERROR:
                raise ApiError("internal_error", "Internal server error; retry later.")
            case Fault.MODEL_LOADING:
                raise ApiError(
                    "model_loading", "The model is warming up; retry in a few seconds."
                )
            case Fault.RATE_LIMITED:
                snapshot = RateLimitSnapshot(
                    request[RATE_LIMIT].limit, 0, request[RATE_LIMIT].reset_epoch
                )
                raise ApiError(
                    "rate_limited",
                    "Too many requests; see the rate-limit headers.",
                    headers={
                        **snapshot.headers(),
                        "Retry-After": str(snapshot.retry_after()),
                    },
                )
            case Fault.INSUFFICIENT_CREDITS:
                raise insufficient_credits(
                    math.floor(account.credits) + 1, account.credits
                )
        raise AssertionError(f"unhandled fault {rule.fault}")


def _http_exception_to_api_error(
    exc: web.HTTPException, request: web.Request
) -> ApiError:
    if exc.status == 404:
        return not_found(f"No endpoint at {request.path}.")
    if exc.status == 405:
        return ApiError("method_not_allowed", f"{request.method} is not allowed here.")
    if exc.status == 413:
        return ApiError("file_too_large", "The request body is too large.")
    return ApiError("bad_request", exc.text or exc.reason)


async def _send_truncated(
    request: web.Request, response: web.Response
) -> web.StreamResponse:
    """Send the headers and half of ``response``'s body, then drop the connection."""
    body = bytes(response.body) if isinstance(response.body, bytes | bytearray) else b""
    partial = web.StreamResponse(status=response.status)
    for name, value in response.headers.items():
        if name.lower() != "content-length":
            partial.headers.add(name, value)
    partial.content_length = len(body)
    await partial.prepare(request)
    await partial.write(body[: len(body) // 2])
    return drop_connection(request, partial)


async def _add_standard_headers(
    request: web.Request, response: web.StreamResponse
) -> None:
    """Rate-limit headers on every answer; credit headers on billed ones."""
    snapshot: RateLimitSnapshot = request.get(RATE_LIMIT) or _anonymous_rate_limit()
    for name, value in snapshot.headers().items():
        response.headers.setdefault(name, value)
    credits = request.get(CREDITS_USED)
    account: Account | None = request.get(ACCOUNT)
    if credits is not None and account is not None:
        response.headers["X-Credits-Used"] = str(number_for_json(credits))
        response.headers["X-Credits-Remaining"] = str(number_for_json(account.credits))


def build_app(state: StandinState, release_hangs: asyncio.Event) -> web.Application:
    """The aiohttp application serving the API under /v1/."""
    pipeline = _Pipeline(state, release_hangs)
    app = web.Application(
        middlewares=[pipeline.middleware], client_max_size=_MAX_JSON_BYTES
    )
    app[STATE_KEY] = state
    for method, path, handler in _ROUTES:
        app.router.add_route(method, f"{API_PREFIX}{path}", handler)
    app.on_response_prepare.append(_add_standard_headers)
    return app


class StandinServer:
    """A contract-faithful TTS.ai API on loopback, with fault injection.

    Start it with :meth:`start`, point the integration at :attr:`base_url`,
    and stop it with :meth:`stop`. Tests may change :attr:`accounts` freely.
    """

    def __init__(
        self,
        accounts: dict[str, Account] | None = None,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        self._initial_accounts = (
            copy_accounts(accounts) if accounts is not None else default_accounts()
        )
        self._state = StandinState(accounts=copy_accounts(self._initial_accounts))
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._release_hangs = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._reopening: asyncio.Task[None] | None = None
        self._pending_socket: socket.socket | None = None

    # --- properties -----------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server listens on (valid after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("StandinServer.start() has not been awaited")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>/v1/``, the API base URL to configure."""
        return f"http://{self._host}:{self.port}{API_PREFIX}"

    @property
    def accounts(self) -> dict[str, Account]:
        """API key -> account. Mutable: tests may add keys or change fields."""
        return self._state.accounts

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order."""
        return self._state.requests

    @property
    def webhook_deliveries(self) -> list[dict[str, object]]:
        """Webhook calls made: ``{"url", "payload", "status"[, "error"]}``."""
        return self._state.webhook_deliveries

    # --- life cycle -----------------------------------------------------

    async def start(self) -> None:
        """Bind the port (0 = any free port) and start answering."""
        self._release_hangs.clear()
        app = build_app(self._state, self._release_hangs)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            # A client that gives up cancels its handler (and its ffmpeg).
            handler_cancellation=True,
        )
        await self._runner.setup()
        sock = self._bind(self._requested_port)
        self._port = sock.getsockname()[1]
        await self._serve(sock)
        _LOGGER.debug("TTS.ai stand-in listening on %s", self.base_url)

    async def stop(self) -> None:
        """Stop listening, drop hanging requests, end background tasks."""
        self._release_hangs.set()
        background = list(self._state.background)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if self._reopening is not None:
            self._reopening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reopening
            self._reopening = None
        self._close_listener()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- faults and test helpers ----------------------------------------

    def inject(
        self,
        fault: Fault,
        *,
        path: str | None = None,
        times: int | None = None,
        delay: float = 5.0,
    ) -> None:
        """Make matching requests fail with ``fault``.

        ``path`` is relative to /v1/ (``"tts/"``; shell-style wildcards such as
        ``"results/*"`` work); ``None`` matches every path. ``times`` limits the
        fault to the next N matching requests; ``None`` keeps it until
        :meth:`clear_faults`. ``delay`` is the wait of ``SLOW_FIRST_BYTE``.
        ``REFUSE`` closes the listening socket itself, so it takes neither
        ``path`` nor ``times``: it lasts until :meth:`clear_faults`.
        """
        if fault is Fault.REFUSE:
            if path is not None or times is not None:
                raise ValueError(
                    "Fault.REFUSE closes the port for every path until clear_faults();"
                    " it takes no path or times"
                )
            self._refuse_connections()
        self._state.faults.add(
            FaultRule(
                fault,
                normalize_path(path) if path is not None else None,
                times,
                delay,
            )
        )

    def clear_faults(self) -> None:
        """Remove every fault; re-open the port (same number) if REFUSE closed it."""
        self._state.faults.clear()
        if (
            self._runner is not None
            and self._listener is None
            and self._reopening is None
        ):
            # Binding now (synchronously) means connections made from here on
            # queue in the backlog instead of being refused.
            sock = self._bind(self.port)
            self._pending_socket = sock
            self._reopening = asyncio.get_running_loop().create_task(self._serve(sock))

    def hold_tasks(self) -> None:
        """Keep separation tasks "processing" until :meth:`release_tasks`."""
        self._state.tasks_running.clear()

    def release_tasks(self) -> None:
        """Let held separation tasks finish (and call their webhooks)."""
        self._state.tasks_running.set()

    def reset(self) -> None:
        """Clear faults, recorded requests and rate windows; restore the accounts."""
        self.clear_faults()
        self.release_tasks()
        self._state.requests.clear()
        self._state.webhook_deliveries.clear()
        self._state.limiter.reset_windows()
        self._state.accounts.clear()
        self._state.accounts.update(copy_accounts(self._initial_accounts))

    # --- sockets --------------------------------------------------------

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, port))
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def _serve(self, sock: socket.socket) -> None:
        assert self._runner is not None and self._runner.server is not None
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._runner.server, sock=sock)
        self._pending_socket = None
        self._reopening = None

    def _refuse_connections(self) -> None:
        if self._reopening is not None:
            self._reopening.cancel()
            self._reopening = None
        if self._pending_socket is not None:
            self._pending_socket.close()
            self._pending_socket = None
        self._close_listener()
        # Idle keep-alive connections would let clients bypass the closed
        # port: drop them, so the next request has to connect (and fail).
        # Connections busy with a request finish it, then close. aiohttp has
        # no public "is idle" flag, hence the private attribute.
        if self._runner is not None and self._runner.server is not None:
            for connection in self._runner.server.connections:
                if getattr(connection, "_request_in_progress", True):
                    connection.close()
                else:
                    connection.force_close()

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
