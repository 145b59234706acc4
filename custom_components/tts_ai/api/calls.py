"""One call of an endpoint: the request the table describes, the answer read.

The client's typed methods name an endpoint of the table (``endpoints.py``)
and the values they were given; here the request is built under the base
URL, sent through the transport, and its answer read: JSON strictly, into
the model the method returns, audio through :class:`Synthesis`. Whatever
the cloud answers that cannot be accepted is an InvalidResponseError,
reported through the transport like its own failures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
import json
import re
from typing import Any

from yarl import URL

from . import endpoints as ep
from .errors import ForeignUrlError
from .headers import header_float
from .models import AudioResult
from .params import check_fields, form_fields, upload_for
from .synthesis import Synthesis
from .transport import DECODE_ERRORS, ApiRequest, Transport, Upload

# A result URL longer than this, or with control characters, is not one.
_MAX_URL_CHARS = 2048
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class EndpointCalls:
    """Calls the endpoints of the table under one base URL."""

    def __init__(
        self, base_url: URL, transport: Transport, synthesis: Synthesis
    ) -> None:
        """Send through ``transport``; read audio answers with ``synthesis``."""
        self._base_url = base_url
        self._transport = transport
        self._synthesis = synthesis

    def request(
        self,
        endpoint: ep.Endpoint,
        *,
        path_params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        fields: Mapping[str, str] | None = None,
        upload: Upload | None = None,
        query: Mapping[str, str] | None = None,
    ) -> ApiRequest:
        """Build the request for ``endpoint`` under the base URL."""
        path = endpoint.path.format(**(path_params or {}))
        return ApiRequest(
            endpoint.method,
            self._base_url.join(URL(path)),
            json=json,
            fields=dict(fields or {}),
            upload=upload,
            query=dict(query or {}),
            response_limit_bytes=endpoint.response_limit_bytes,
        )

    async def json[T](
        self,
        endpoint: ep.Endpoint,
        parse: Callable[[Mapping[str, Any]], T],
        **request_args: Any,
    ) -> T:
        """Call a JSON endpoint and parse its answer; unreadable ones are typed."""
        request = self.request(endpoint, **request_args)
        response = await self._transport.fetch(request)
        try:
            document = json.loads(response.body, parse_constant=_no_constant)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")  # noqa: TRY004
            credits_used = header_float(response.headers, ep.HEADER_CREDITS_USED)
            if document.get("credits_used") is None and credits_used is not None:
                # What this answer cost, from its header when the body is silent.
                document["credits_used"] = credits_used
            return parse(document)
        except DECODE_ERRORS as err:
            raise self._transport.invalid(
                f"{request.url.path} answered with JSON the contract does not "
                f"allow ({type(err).__name__}: {str(err)[:200]})"
            ) from None

    async def json_tool[T](
        self,
        endpoint: ep.Endpoint,
        audio: bytes,
        filename: str,
        values: Mapping[str, Any],
        parse: Callable[[Mapping[str, Any]], T],
    ) -> T:
        """Upload ``audio`` to an endpoint that answers with JSON."""
        check_fields(endpoint, values)
        upload = upload_for(endpoint, audio, filename)
        return await self.json(
            endpoint, parse, fields=form_fields(values), upload=upload
        )

    async def audio_tool(
        self,
        endpoint: ep.Endpoint,
        audio: bytes,
        filename: str,
        values: Mapping[str, Any],
    ) -> AudioResult:
        """Upload ``audio`` to an endpoint that answers with audio bytes."""
        check_fields(endpoint, values)
        upload = upload_for(endpoint, audio, filename)
        request = self.request(endpoint, fields=form_fields(values), upload=upload)
        expected = values.get("format") or endpoint.default_format
        return await self._synthesis.fetch(request, expected)

    async def download(self, url: Any, expected_format: str | None) -> AudioResult:
        """Fetch the result file at ``url``, a URL the cloud sent."""
        target = self._result_url(url)
        request = dataclasses.replace(self.request(ep.DOWNLOAD), url=target, query={})
        return await self._synthesis.fetch(request, expected_format)

    def _result_url(self, url: Any) -> URL:
        """Resolve a result URL the cloud sent; refuse foreign or malformed ones."""
        if (
            not isinstance(url, str)
            or not url
            or len(url) > _MAX_URL_CHARS
            or _CONTROL_CHARS.search(url)
        ):
            raise self._transport.invalid("the cloud sent a malformed result URL")
        try:
            target = self._base_url.join(URL(url))
            origin = target.origin()
        except ValueError, TypeError:
            raise self._transport.invalid(
                "the cloud sent a malformed result URL"
            ) from None
        if origin != self._base_url.origin():
            raise self._transport.refuse(
                ForeignUrlError(
                    f"refusing to send the API key to {target.scheme}://"
                    f"{target.host}: result URLs must be on {self._base_url.origin()}"
                )
            )
        return target


def _no_constant(name: str) -> Any:
    """Refuse ``NaN`` and ``Infinity`` in JSON: the contract has no such numbers."""
    raise ValueError(f"{name} is not a JSON number")
