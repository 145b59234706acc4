"""Client-side checks and encoding of request parameters.

Values the reference documents are checked before sending, so a mistake
costs no request (and no credits) and the message names the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .errors import BadRequestError


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
