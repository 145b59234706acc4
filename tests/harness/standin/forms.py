"""Reading request bodies (JSON or multipart) and validating their fields.

Every validation failure is a 400 ``bad_request`` whose message names the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import json
import re
from typing import Any

from aiohttp import BodyPartReader, web

from .errors import ApiError, bad_request

_CHUNK = 256 * 1024
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass
class Upload:
    """One uploaded file. ``data`` is ``None`` when it was over the size limit."""

    filename: str
    size: int
    data: bytes | None


@dataclass
class ParsedBody:
    """A request body: JSON object, or multipart text fields and files."""

    json: dict[str, Any] | None = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)
    error: ApiError | None = None  # raised after authentication, not before


async def parse_body(request: web.Request, max_file_bytes: int) -> ParsedBody:
    """Read the whole body; files over ``max_file_bytes`` are counted, not kept."""
    body = ParsedBody()
    if request.method not in {"POST", "PUT", "PATCH"} or not request.body_exists:
        return body
    try:
        if request.content_type == "application/json":
            raw = await request.read()
            value = json.loads(raw or b"null")
            if not isinstance(value, dict):
                body.error = bad_request("The request body must be a JSON object.")
            else:
                body.json = value
        elif request.content_type == "multipart/form-data":
            await _read_multipart(request, max_file_bytes, body)
        elif request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            body.form = {key: str(value) for key, value in form.items()}
        else:
            await request.read()
            body.error = bad_request(
                f"Unsupported Content-Type '{request.content_type}': "
                "send application/json or multipart/form-data."
            )
    except web.HTTPRequestEntityTooLarge:
        body.error = ApiError("file_too_large", "The request body is too large.")
    except (ValueError, UnicodeDecodeError) as err:
        body.error = bad_request(f"The request body could not be parsed: {err}")
    return body


async def _read_multipart(
    request: web.Request, max_file_bytes: int, body: ParsedBody
) -> None:
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.filename is None:
            body.form[part.name] = await part.text()
            continue
        chunks: list[bytes] = []
        size = 0
        while chunk := await part.read_chunk(_CHUNK):
            size += len(chunk)
            # Keep reading past the limit (the client is still sending), but
            # stop keeping the bytes.
            if size <= max_file_bytes:
                chunks.append(chunk)
        data = b"".join(chunks) if size <= max_file_bytes else None
        body.files[part.name] = Upload(part.filename, size, data)


class Fields:
    """Typed access to the fields of one request, JSON or multipart."""

    def __init__(self, body: ParsedBody) -> None:
        self._json = body.json
        self._values: dict[str, Any] = (
            body.json if body.json is not None else dict(body.form)
        )
        self._files = body.files
        self._typed = body.json is not None  # JSON carries real types

    def has(self, name: str) -> bool:
        """Whether the field was sent (and is not null)."""
        return self._values.get(name) is not None

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        default: str | None = None,
        choices: Sequence[str] | None = None,
        allow_empty: bool = False,
    ) -> str | None:
        """A string field."""
        value = self._values.get(name)
        if value is None:
            if required:
                raise bad_request(f"Field '{name}' is required.")
            return default
        if not isinstance(value, str):
            raise bad_request(f"Field '{name}' must be a string.")
        if not value.strip() and not allow_empty:
            if required:
                raise bad_request(f"Field '{name}' must not be empty.")
            return default
        if choices is not None and value not in choices:
            raise bad_request(
                f"Field '{name}' must be one of {', '.join(choices)} (got '{value}')."
            )
        return value

    def required_string(self, name: str, **kwargs: Any) -> str:
        """A required string field."""
        value = self.string(name, required=True, **kwargs)
        assert value is not None
        return value

    def string_or(
        self, name: str, default: str, *, choices: Sequence[str] | None = None
    ) -> str:
        """An optional string field with a default."""
        value = self.string(name, default=default, choices=choices)
        return default if value is None else value

    def number(
        self, name: str, *, default: float, minimum: float, maximum: float
    ) -> float:
        """A number field within [minimum, maximum]."""
        value = self._values.get(name)
        if value is None:
            return default
        if self._typed:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad_request(f"Field '{name}' must be a number.")
            number = float(value)
        else:
            try:
                number = float(value)
            except ValueError:
                raise bad_request(f"Field '{name}' must be a number.") from None
        if not minimum <= number <= maximum:
            raise bad_request(
                f"Field '{name}' must be between {minimum:g} and {maximum:g} "
                f"(got {number:g})."
            )
        return number

    def integer(
        self,
        name: str,
        *,
        default: int | None,
        minimum: int | None = None,
        maximum: int | None = None,
        choices: Sequence[int] | None = None,
    ) -> int | None:
        """An integer field, within a range or one of ``choices``."""
        value = self._values.get(name)
        if value is None:
            return default
        if self._typed:
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad_request(f"Field '{name}' must be an integer.")
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                raise bad_request(f"Field '{name}' must be an integer.") from None
        if (
            minimum is not None
            and maximum is not None
            and not minimum <= number <= maximum
        ):
            raise bad_request(
                f"Field '{name}' must be between {minimum} and {maximum} "
                f"(got {number})."
            )
        if choices is not None and number not in choices:
            raise bad_request(
                f"Field '{name}' must be one of {', '.join(map(str, choices))} "
                f"(got {number})."
            )
        return number

    def boolean(self, name: str, *, default: bool) -> bool:
        """A boolean field (JSON true/false, or "true"/"false" in a form)."""
        value = self._values.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if not self._typed and isinstance(value, str):
            if value.strip().lower() in _TRUE:
                return True
            if value.strip().lower() in _FALSE:
                return False
        raise bad_request(f"Field '{name}' must be a boolean (true or false).")

    def language(self, name: str, *, default: str | None = None) -> str | None:
        """A language code such as ``en`` or ``pt-BR``."""
        value = self.string(name, default=default)
        if value is not None and value != "auto" and not _LANGUAGE_CODE.match(value):
            raise bad_request(f"Field '{name}' must be a language code such as 'en'.")
        return value

    def file(self, name: str, *, required: bool = True) -> Upload | None:
        """An uploaded file (multipart only)."""
        upload = self._files.get(name)
        if upload is None and required:
            if name in self._values:
                raise bad_request(f"Field '{name}' must be a file upload.")
            raise bad_request(
                f"Field '{name}' is required (send it as a multipart file)."
            )
        return upload
