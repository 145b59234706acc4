"""Turn TTS.ai API errors into translated Home Assistant errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.util import dt as dt_util

from .api import (
    AuthenticationError,
    BadRequestError,
    FileTooLargeError,
    ForbiddenError,
    InsufficientCreditsError,
    InternalServerError,
    InvalidResponseError,
    ModelLoadingError,
    NotFoundError,
    RateLimitedError,
    ResponseTooLargeError,
    TtsAiConnectionError,
    TtsAiError,
    TtsAiTimeoutError,
)
from .const import DOMAIN

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant

    from . import TtsAiConfigEntry

# Most specific first: the first class the error is an instance of decides.
_TRANSLATION_KEYS: tuple[tuple[type[TtsAiError], str], ...] = (
    (AuthenticationError, "invalid_auth"),
    (ForbiddenError, "forbidden"),
    (InsufficientCreditsError, "insufficient_credits"),
    (RateLimitedError, "rate_limited"),
    (NotFoundError, "not_found"),
    (FileTooLargeError, "file_too_large"),
    (BadRequestError, "bad_request"),
    (ModelLoadingError, "model_loading"),
    (ResponseTooLargeError, "response_too_large"),
    (InvalidResponseError, "invalid_response"),
    (InternalServerError, "server_error"),
    (TtsAiTimeoutError, "timeout"),
    (TtsAiConnectionError, "cannot_connect"),
)

# The caller's own mistakes: shown as validation errors, not as service faults.
_CALLER_ERRORS = (BadRequestError, NotFoundError, FileTooLargeError)


def _reset_text(err: RateLimitedError) -> str:
    """Say when a rate limit ends, in the server's local time."""
    if err.reset_at is None:
        return "in a minute"
    return dt_util.as_local(err.reset_at).strftime("%H:%M:%S")


def describe(err: TtsAiError) -> tuple[str, dict[str, str]]:
    """Return the translation key and placeholders that name an error's cause."""
    key = next((k for cls, k in _TRANSLATION_KEYS if isinstance(err, cls)), "api_error")
    placeholders = {"message": err.message or str(err)}
    if isinstance(err, InsufficientCreditsError):
        placeholders["required"] = str(err.credits_required or "?")
        placeholders["available"] = str(err.credits_available or 0)
    if isinstance(err, RateLimitedError):
        placeholders["reset"] = _reset_text(err)
    return key, placeholders


@contextmanager
def reauth_on_refused_key(
    hass: HomeAssistant, entry: TtsAiConfigEntry
) -> Iterator[None]:
    """Start reauth when the cloud refuses the key inside the block, and re-raise.

    With a fallback the 401 never reaches the user as an error (the device
    speaks instead), so the reauth flow must start where the call is made.
    """
    try:
        yield
    except AuthenticationError:
        entry.async_start_reauth(hass)
        raise


def to_ha_error(
    hass: HomeAssistant, entry: TtsAiConfigEntry, err: TtsAiError
) -> HomeAssistantError:
    """Return the translated HA error for an API error; a 401 starts reauth."""
    if isinstance(err, AuthenticationError):
        entry.async_start_reauth(hass)
    key, placeholders = describe(err)
    error_class = (
        ServiceValidationError
        if isinstance(err, _CALLER_ERRORS)
        else HomeAssistantError
    )
    return error_class(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders,
    )
