"""The API's error answer: ``{"error": {"code", "message", ...}}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

#: HTTP status of each documented error code.
ERROR_STATUS: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "insufficient_credits": 402,
    "forbidden": 403,
    "not_found": 404,
    "file_too_large": 413,
    "rate_limited": 429,
    "internal_error": 500,
    "model_loading": 503,
    # Not in the reference's table: what a wrong HTTP method gets.
    "method_not_allowed": 405,
}


class ApiError(Exception):
    """An error the stand-in answers with the documented JSON body."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = ERROR_STATUS[code]
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}

    def to_response(self) -> web.Response:
        """Render the error as the documented JSON response."""
        return web.json_response(
            {"error": {"code": self.code, "message": self.message, **self.extra}},
            status=self.status,
            headers=self.headers,
        )


def bad_request(message: str) -> ApiError:
    """Build a 400 ``bad_request`` (the message must name the field)."""
    return ApiError("bad_request", message)


def not_found(message: str) -> ApiError:
    """Build a 404 ``not_found``."""
    return ApiError("not_found", message)
