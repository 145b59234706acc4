"""Helpers shared by the endpoint handlers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib

from aiohttp import web

from .audio import AudioError, DecodedUpload, content_type, decoded_upload, encode_pcm
from .catalogue import Model, Voice, find_model, find_voice
from .contract import ENDPOINT_MODELS
from .engines import PcmChunk, synthesize_pcm
from .errors import bad_request, not_found
from .forms import Fields
from .state import BODY, caller


def require_json(request: web.Request) -> Fields:
    """Fields of a JSON request body, or 400 if the body is not JSON."""
    body = request[BODY]
    if body.json is None:
        raise bad_request("The request body must be a JSON object.")
    return Fields(body)


def require_model(model_id: str, *, endpoint: str | None = None) -> Model:
    """The catalogue model ``model_id`` (404 if unknown, 400 if wrong for endpoint)."""
    model = find_model(model_id)
    if model is None:
        raise not_found(f"Model '{model_id}' not found (field 'model').")
    allowed = ENDPOINT_MODELS.get(endpoint) if endpoint else None
    if allowed is not None and model_id not in allowed:
        raise bad_request(
            f"Field 'model' must be one of {', '.join(allowed)} (got '{model_id}')."
        )
    return model


def require_voice(
    voice_id: str, *, field: str = "voice", model: Model | None = None
) -> Voice:
    """The catalogue voice ``voice_id``, of ``model`` when given (else 404)."""
    voice = find_voice(voice_id)
    if voice is None or (model is not None and voice.model != model.id):
        owner = f" for model '{model.id}'" if model is not None else ""
        raise not_found(f"Voice '{voice_id}' not found{owner} (field '{field}').")
    return voice


def check_text_length(request: web.Request, text: str, field: str = "text") -> None:
    """400 when ``text`` is longer than the caller's plan allows."""
    _key, account = caller(request)
    limit = account.effective_max_text
    if len(text) > limit:
        raise bad_request(
            f"Field '{field}' is {len(text)} characters long; your plan allows at "
            f"most {limit} characters per request."
        )


async def _synthesize(text: str, speed: float = 1.0) -> PcmChunk:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, synthesize_pcm, text, speed)


async def synthesize_to(text: str, fmt: str, speed: float = 1.0) -> bytes:
    """Speak ``text`` with Piper and encode it to ``fmt``."""
    chunk = await _synthesize(text, speed)
    return await encode_pcm(chunk.pcm, chunk.sample_rate, fmt)


def audio_response(data: bytes, fmt: str) -> web.Response:
    """A complete audio answer with ``Content-Length``."""
    return web.Response(body=data, content_type=content_type(fmt))


def drop_connection(
    request: web.Request, response: web.StreamResponse
) -> web.StreamResponse:
    """Close the connection mid-body: the client sees a truncated response."""
    if request.transport is not None:
        request.transport.close()
    return response


def form_fields(request: web.Request) -> Fields:
    """Fields of a multipart (or JSON) request body."""
    return Fields(request[BODY])


@contextlib.asynccontextmanager
async def uploaded_audio(fields: Fields, name: str) -> AsyncIterator[DecodedUpload]:
    """Decode the required audio upload ``name``; 400 if it is not readable audio."""
    upload = fields.file(name)
    # Oversized uploads were answered 413 before the handler ran.
    assert upload is not None and upload.data is not None
    try:
        async with decoded_upload(upload.data) as decoded:
            yield decoded
    except AudioError as err:
        raise bad_request(f"Field '{name}' is not readable audio: {err}") from None
