"""Exceptions raised by the TTS.ai client, one per documented error code."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
import json
import math
from typing import Any

from .headers import parse_reset, parse_retry_after

# The service's error message goes into logs and translated errors: keep it short.
_MAX_MESSAGE_CHARS = 500
# Error codes are short snake_case words; anything longer is not one.
_MAX_CODE_CHARS = 64


class TtsAiError(Exception):
    """Any failure talking to TTS.ai.

    ``code`` is the service's error code (or a client-side one such as
    ``cannot_connect``), ``status`` the HTTP status when there was a response,
    and ``extra`` every additional field the service sent with the error.
    """

    default_code = "unknown"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Store the error details; ``str(error)`` is the message."""
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status
        self.extra: dict[str, Any] = dict(extra or {})

    def __repr__(self) -> str:
        """Show the class, code, status and message."""
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, "
            f"message={self.message!r})"
        )


class TtsAiConnectionError(TtsAiError):
    """The service could not be reached or the connection broke."""

    default_code = "cannot_connect"


class TtsAiTimeoutError(TtsAiConnectionError):
    """The service accepted the connection but did not answer in time."""

    default_code = "timeout"


class InvalidResponseError(TtsAiError):
    """The service answered with something the contract does not allow.

    Malformed JSON or fields, audio that is not audio, a result URL off the
    service's origin, more stems than exist, an answer over its size limit:
    every unreadable answer is this one error, and it means "the cloud cannot
    serve this now" (the device takes over where there is one).
    """

    default_code = "invalid_response"


class ResponseTooLargeError(InvalidResponseError):
    """The answer was bigger than its endpoint's limit; reading stopped there."""

    default_code = "response_too_large"


class BadRequestError(TtsAiError):
    """Invalid parameters (HTTP 400)."""

    default_code = "bad_request"


class AuthenticationError(TtsAiError):
    """Missing or wrong API key (HTTP 401)."""

    default_code = "unauthorized"


class InsufficientCreditsError(TtsAiError):
    """The account is out of credits (HTTP 402)."""

    default_code = "insufficient_credits"

    @property
    def credits_required(self) -> float | None:
        """Credits the request would have cost, when the service said."""
        return _number(self.extra.get("credits_required"))

    @property
    def credits_available(self) -> float | None:
        """Credits left on the account, when the service said."""
        return _number(self.extra.get("credits_available"))


class ForbiddenError(TtsAiError):
    """The plan has no API access (HTTP 403)."""

    default_code = "forbidden"


class NotFoundError(TtsAiError):
    """Unknown model, voice or task (HTTP 404)."""

    default_code = "not_found"


class FileTooLargeError(TtsAiError):
    """Upload over the endpoint's limit (HTTP 413)."""

    default_code = "file_too_large"

    @property
    def limit_bytes(self) -> int | None:
        """The endpoint's upload limit, when known."""
        for key in ("limit_bytes", "max_bytes", "max_size", "limit"):
            value = _number(self.extra.get(key))
            if value is not None and value >= 0:
                return int(value)
        return None


class RateLimitedError(TtsAiError):
    """Too many requests (HTTP 429)."""

    default_code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        extra: Mapping[str, Any] | None = None,
        reset_at: datetime | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Store when the rate-limit window resets."""
        super().__init__(message, code=code, status=status, extra=extra)
        self.reset_at = reset_at
        self.retry_after = retry_after


class InternalServerError(TtsAiError):
    """Server fault (HTTP 500 and other 5xx)."""

    default_code = "internal_error"


class ModelLoadingError(TtsAiError):
    """The model is warming up (HTTP 503); retry in a few seconds."""

    default_code = "model_loading"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        extra: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Store the server's suggested wait, if it sent one."""
        super().__init__(message, code=code, status=status, extra=extra)
        self.retry_after = retry_after


class TextTooLongError(BadRequestError):
    """Raised before sending: the text is over the plan's limit."""


class UploadTooLargeError(FileTooLargeError):
    """Raised before sending: the upload is over the endpoint's limit."""


class ForeignUrlError(InvalidResponseError):
    """A result URL points off the service's origin; the key is not sent there."""


ERROR_CLASSES: dict[str, type[TtsAiError]] = {
    "bad_request": BadRequestError,
    "unauthorized": AuthenticationError,
    "insufficient_credits": InsufficientCreditsError,
    "forbidden": ForbiddenError,
    "not_found": NotFoundError,
    "file_too_large": FileTooLargeError,
    "rate_limited": RateLimitedError,
    "internal_error": InternalServerError,
    "model_loading": ModelLoadingError,
}

_CLASSES_BY_STATUS: dict[int, type[TtsAiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: ForbiddenError,
    404: NotFoundError,
    413: FileTooLargeError,
    429: RateLimitedError,
    500: InternalServerError,
    503: ModelLoadingError,
}


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes
) -> TtsAiError:
    """Build the exception for an error response.

    The documented ``error.code`` picks the class; an unknown code or a body
    that is not the documented JSON falls back to the HTTP status.
    """
    code, message, extra = _parse_error_body(body)
    error_class = ERROR_CLASSES.get(code or "") or _class_for_status(status)
    message = message or f"TTS.ai answered HTTP {status}"
    kwargs: dict[str, Any] = {}
    if issubclass(error_class, RateLimitedError):
        reset_at = parse_reset(headers.get("X-RateLimit-Reset"))
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if retry_after is None and reset_at is not None:
            retry_after = max((reset_at - datetime.now(UTC)).total_seconds(), 0.0)
        kwargs = {"reset_at": reset_at, "retry_after": retry_after}
    elif issubclass(error_class, ModelLoadingError):
        kwargs = {"retry_after": parse_retry_after(headers.get("Retry-After"))}
    return error_class(message, code=code, status=status, extra=extra, **kwargs)


def _class_for_status(status: int) -> type[TtsAiError]:
    """Pick an exception class from the HTTP status alone."""
    if status in _CLASSES_BY_STATUS:
        return _CLASSES_BY_STATUS[status]
    if status >= 500:
        return InternalServerError
    return TtsAiError


def _parse_error_body(body: bytes) -> tuple[str | None, str | None, dict[str, Any]]:
    """Return ``(code, message, extra fields)`` from a documented error body."""
    try:
        document = json.loads(body)
    except ValueError, RecursionError:
        return None, None, {}
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None, None, {}
    code = error.get("code")
    message = error.get("message")
    extra = {k: v for k, v in error.items() if k not in ("code", "message")}
    return (
        _printable(code, _MAX_CODE_CHARS) if isinstance(code, str) else None,
        _printable(message, _MAX_MESSAGE_CHARS) if isinstance(message, str) else None,
        extra,
    )


def _printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, control characters as spaces.

    A newline in a message would start a forged line in Home Assistant's log.
    """
    return "".join(char if char.isprintable() else " " for char in text[:limit])


def _number(value: Any) -> float | None:
    """Return ``value`` as a finite number, or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
