"""Tolerant parsing of the service's response header values."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

# Values below this are "seconds from now", above it Unix timestamps. The
# reference does not say which form X-RateLimit-Reset takes, so accept both
# (a window is at most a minute; a Unix time is ~1.7e9).
_EPOCH_THRESHOLD = 1_000_000_000


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """Return an integer header value, or None when missing or malformed."""
    number = header_float(headers, name)
    return None if number is None else int(number)


def header_float(headers: Mapping[str, str], name: str) -> float | None:
    """Return a numeric header value, or None when missing or malformed."""
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return float(raw.strip())
    except ValueError:
        return None


def parse_reset(raw: str | None, *, now: datetime | None = None) -> datetime | None:
    """Turn an ``X-RateLimit-Reset`` value into an aware UTC datetime.

    Accepts a Unix timestamp, a number of seconds from now, an ISO 8601
    timestamp or an HTTP date.
    """
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    now = now or datetime.now(UTC)
    try:
        number = float(raw)
    except ValueError:
        return _parse_timestamp(raw)
    if number >= _EPOCH_THRESHOLD:
        return datetime.fromtimestamp(number, UTC)
    return now + timedelta(seconds=max(number, 0.0))


def parse_retry_after(raw: str | None, *, now: datetime | None = None) -> float | None:
    """Turn a ``Retry-After`` value (seconds or HTTP date) into seconds."""
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    moment = _parse_timestamp(raw)
    if moment is None:
        return None
    now = now or datetime.now(UTC)
    return max((moment - now).total_seconds(), 0.0)


def _parse_timestamp(raw: str) -> datetime | None:
    """Parse an ISO 8601 or HTTP-date timestamp as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        try:
            moment = parsedate_to_datetime(raw)
        except TypeError, ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
