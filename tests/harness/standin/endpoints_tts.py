"""Text to speech, voice cloning, and the model/voice catalogue."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import contextlib

from aiohttp import web

from .audio import StreamingEncoder, content_type, streaming_wav_header
from .catalogue import MODELS, find_model, find_voice, list_voices
from .common import (
    audio_response,
    check_text_length,
    drop_connection,
    form_fields,
    require_json,
    require_model,
    require_voice,
    synthesize_to,
    uploaded_audio,
)
from .contract import (
    CLONE_FORMATS,
    GENDERS,
    SPEED_RANGE,
    TTS_FORMATS,
    credits_for_text,
    voice_preview_path,
)
from .engines import PcmChunk, iter_sentences
from .errors import bad_request, not_found
from .state import TRUNCATE, charge, public_url

_END = None


async def handle_tts(request: web.Request) -> web.StreamResponse:
    """``POST tts/``: Piper speech in the requested format, whole or streamed."""
    fields = require_json(request)
    model_id = fields.required_string("model")
    text = fields.required_string("text")
    voice_id = fields.required_string("voice")
    fmt = fields.string_or("format", "mp3", choices=TTS_FORMATS)
    speed = fields.number(
        "speed", default=1.0, minimum=SPEED_RANGE[0], maximum=SPEED_RANGE[1]
    )
    language = fields.language("language")
    stream = fields.boolean("stream", default=False)

    model = require_model(model_id)
    if model.type != "tts":
        raise bad_request(f"Field 'model': '{model_id}' is not a text-to-speech model.")
    require_voice(voice_id, model=model)
    if language is not None and language.split("-")[0] not in model.languages:
        raise bad_request(
            f"Field 'language': '{language}' is not supported by model '{model_id}'."
        )
    check_text_length(request, text)
    charge(request, credits_for_text(text, model.credits_per_1k_chars))

    if stream:
        return await _stream_speech(request, text, speed, fmt)
    return audio_response(await synthesize_to(text, fmt, speed), fmt)


async def _stream_speech(
    request: web.Request, text: str, speed: float, fmt: str
) -> web.StreamResponse:
    """Send each sentence's audio as soon as Piper has produced it."""
    loop = asyncio.get_running_loop()
    sentences: Iterator[PcmChunk] = iter_sentences(text, speed)

    async def next_sentence() -> PcmChunk | None:
        return await loop.run_in_executor(None, next, sentences, _END)

    first = await next_sentence()
    if first is None:
        raise bad_request("Field 'text' contains nothing to speak.")
    response = web.StreamResponse(headers={"Content-Type": content_type(fmt)})
    response.enable_chunked_encoding()
    await response.prepare(request)

    if fmt == "wav":
        # WAV needs no encoder: a header for an open-ended stream, then raw PCM.
        await response.write(streaming_wav_header(first.sample_rate))
        chunk: PcmChunk | None = first
        while chunk is not None:
            await response.write(chunk.pcm)
            if request.get(TRUNCATE):
                return drop_connection(request, response)
            chunk = await next_sentence()
        await response.write_eof()
        return response

    encoder = StreamingEncoder(fmt, first.sample_rate)
    await encoder.start()

    async def feed_sentences() -> None:
        chunk: PcmChunk | None = first
        while chunk is not None:
            await encoder.feed(chunk.pcm)
            chunk = await next_sentence()
        await encoder.end_input()

    feeder = asyncio.create_task(feed_sentences())
    try:
        while data := await encoder.read():
            await response.write(data)
            if request.get(TRUNCATE):
                return drop_connection(request, response)
        await feeder
    finally:
        if not feeder.done():
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder
        await encoder.close()
    await response.write_eof()
    return response


async def handle_clone(request: web.Request) -> web.Response:
    """``POST tts/clone/``: speak ``text`` "in the reference voice" (Piper joe)."""
    fields = form_fields(request)
    text = fields.required_string("text")
    model_id = fields.string_or("model", "chatterbox")
    fmt = fields.string_or("format", "mp3", choices=CLONE_FORMATS)
    language = fields.language("language")
    model = require_model(model_id, endpoint="tts/clone/")
    if language is not None and language.split("-")[0] not in model.languages:
        raise bad_request(
            f"Field 'language': '{language}' is not supported by model '{model_id}'."
        )
    check_text_length(request, text)
    # The reference is only checked for being real audio: the stand-in always
    # speaks with its one Piper voice.
    async with uploaded_audio(fields, "reference_audio"):
        pass
    charge(request, credits_for_text(text, model.credits_per_1k_chars))
    return audio_response(await synthesize_to(text, fmt), fmt)


async def handle_models(request: web.Request) -> web.Response:
    """``GET models/``: the whole model catalogue."""
    return web.json_response({"models": [model.to_json() for model in MODELS]})


async def handle_voices(request: web.Request) -> web.Response:
    """``GET voices/``: voices filtered by model, language and gender."""
    query = request.query
    gender = query.get("gender") or None
    if gender is not None and gender not in GENDERS:
        raise bad_request(f"Parameter 'gender' must be one of {', '.join(GENDERS)}.")
    model = query.get("model") or None
    if model is not None and find_model(model) is None:
        raise not_found(f"Model '{model}' not found (parameter 'model').")
    voices = list_voices(
        model=model, language=query.get("language") or None, gender=gender
    )
    body = [
        {
            "id": voice.id,
            "name": voice.name,
            "model": voice.model,
            "language": voice.language,
            "gender": voice.gender,
            "preview_url": public_url(request, voice_preview_path(voice.id)),
        }
        for voice in voices
    ]
    return web.json_response({"voices": body, "total": len(body)})


async def handle_voice_preview(request: web.Request) -> web.Response:
    """``GET voices/preview/<voice>.mp3``: a short sample of the voice."""
    voice_id = request.match_info["voice"]
    voice = find_voice(voice_id)
    if voice is None:
        raise not_found(f"Voice '{voice_id}' not found.")
    data = await synthesize_to(f"Hello, I am {voice.name}.", "mp3")
    return audio_response(data, "mp3")
