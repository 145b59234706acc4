"""Client-side checks and encoding of request parameters and uploads.

Values the reference documents (the endpoint table) are checked before
sending, so a mistake costs no request (and no credits) and the message
names the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import endpoints as ep
from .errors import BadRequestError, UploadTooLargeError
from .transport import Upload


def check_fields(endpoint: ep.Endpoint, values: Mapping[str, Any]) -> None:
    """Check the fields the endpoint table constrains, before sending."""
    for name, allowed in endpoint.choices.items():
        check_choice(name, values.get(name), allowed)
    for name, bounds in endpoint.ranges.items():
        check_range(name, values.get(name), bounds)


def upload_for(
    endpoint: ep.Endpoint,
    data: bytes,
    filename: str,
    content_type: str | None = None,
) -> Upload:
    """Describe an upload; raise UploadTooLargeError before sending."""
    limit = endpoint.upload_limit_bytes
    if limit is not None and len(data) > limit:
        raise UploadTooLargeError(
            f"{filename} is {len(data) / ep.MEGABYTE:.1f} MB; {endpoint.path} "
            f"accepts at most {limit // ep.MEGABYTE} MB",
            extra={"limit_bytes": limit, "size_bytes": len(data)},
        )
    if not data:
        raise BadRequestError(f"{filename} is empty")
    assert endpoint.upload_field is not None
    return Upload(endpoint.upload_field, data, filename, content_type)


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise BadRequestError unless ``value`` is None or one of ``allowed``."""
    allowed = tuple(allowed)
    if value is not None and value not in allowed:
        choices = ", ".join(str(choice) for choice in allowed)
        raise BadRequestError(f"{name} must be one of {choices}; got {value!r}")


def check_range(name: str, value: float | None, bounds: tuple[float, float]) -> None:
    """Raise BadRequestError unless ``value`` is None or within ``bounds``."""
    low, high = bounds
    if value is None:
        return
    if isinstance(value, bool) or not low <= value <= high:
        raise BadRequestError(f"{name} must be between {low:g} and {high:g}")


def check_text(name: str, text: str) -> str:
    """Return ``text`` stripped; raise BadRequestError when it is blank."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequestError(f"{name} must not be empty")
    return text.strip()


def form_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """Encode optional multipart fields, leaving out those not given (None)."""
    return {
        name: form_value(value) for name, value in values.items() if value is not None
    }


def json_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the JSON fields that were given (not None)."""
    return {name: value for name, value in values.items() if value is not None}


def form_value(value: Any) -> str:
    """Encode one multipart value: booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
