"""Tolerant parsing of the service's response header values.

Every function here is total: any string (``inf``, ``nan``, ``1e400``, a date
in the year 9999, a number of milliseconds) gives a sane value or None, never
an exception. A header is advice; a bad one must not break a request, the
rate-limit sensor or the setup of an entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
import math

from .endpoints import MAX_RETRY_AFTER_SECONDS

# X-RateLimit-Reset: the reference does not say which form it takes, so
# accept them all. Below this it is "seconds from now" (a window is a minute);
# up to the next threshold Unix seconds (~1.7e9 today); above it Unix
# milliseconds (~1.7e12 today).
_EPOCH_SECONDS_FROM = 1_000_000_000
_EPOCH_MILLISECONDS_FROM = 100_000_000_000
# Counts in headers (limit, remaining) above this are nonsense, not a plan.
_MAX_HEADER_COUNT = 1_000_000_000
_MAX_HEADER_CHARS = 100


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """Return a non-negative integer header value, clamped; None when unusable."""
    number = header_float(headers, name)
    if number is None:
        return None
    return int(min(max(number, 0.0), _MAX_HEADER_COUNT))


def header_float(headers: Mapping[str, str], name: str) -> float | None:
    """Return a finite numeric header value, or None when missing or malformed."""
    return _finite(headers.get(name))


def parse_reset(raw: str | None, *, now: datetime | None = None) -> datetime | None:
    """Turn an ``X-RateLimit-Reset`` value into an aware UTC datetime.

    Accepts seconds from now, Unix seconds, Unix milliseconds, an ISO 8601
    timestamp or an HTTP date. The result is never before ``now`` nor more
    than ``MAX_RETRY_AFTER_SECONDS`` after it.
    """
    now = now or datetime.now(UTC)
    number = _wait_number(raw)
    if number is not None:
        if number >= _EPOCH_MILLISECONDS_FROM:
            seconds = number / 1000 - now.timestamp()
        elif number >= _EPOCH_SECONDS_FROM:
            seconds = number - now.timestamp()
        else:
            seconds = number
        return now + timedelta(seconds=_clamp_wait(seconds))
    moment = _parse_timestamp(raw)
    if moment is None:
        return None
    return now + timedelta(seconds=_clamp_wait((moment - now).total_seconds()))


def parse_retry_after(raw: str | None, *, now: datetime | None = None) -> float | None:
    """Turn a ``Retry-After`` value (seconds or HTTP date) into capped seconds."""
    number = _wait_number(raw)
    if number is not None:
        return _clamp_wait(number)
    moment = _parse_timestamp(raw)
    if moment is None:
        return None
    now = now or datetime.now(UTC)
    return _clamp_wait((moment - now).total_seconds())


def _clamp_wait(seconds: float) -> float:
    """Keep a wait between now and the longest believable one."""
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _wait_number(raw: str | None) -> float | None:
    """Parse a number of a wait; ``inf`` is "very long" (capped later), nan None."""
    if raw is None or len(raw) > _MAX_HEADER_CHARS:
        return None
    try:
        number = float(raw.strip())
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _finite(raw: str | None) -> float | None:
    """Parse a finite number; None for anything else (inf and nan included)."""
    if raw is None or len(raw) > _MAX_HEADER_CHARS:
        return None
    try:
        number = float(raw.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _parse_timestamp(raw: str | None) -> datetime | None:
    """Parse an ISO 8601 or HTTP-date timestamp as an aware UTC datetime."""
    if raw is None or not raw.strip() or len(raw) > _MAX_HEADER_CHARS:
        return None
    raw = raw.strip()
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        try:
            moment = parsedate_to_datetime(raw)
        except TypeError, ValueError, IndexError, OverflowError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError, ValueError:
        return None
