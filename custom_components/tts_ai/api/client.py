"""The asyncio client for the TTS.ai REST API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
import json
import logging
import re
from typing import Any

import aiohttp
from yarl import URL

from ..speech.audio import (
    JOINABLE_FORMATS,
    STREAM_JOINABLE_FORMATS,
    id3v2_size,
    join_audio,
)
from ..speech.text import chunk_text
from . import endpoints as ep
from .errors import (
    BadRequestError,
    ForeignUrlError,
    InvalidResponseError,
    TextTooLongError,
    TtsAiError,
    UploadTooLargeError,
)
from .headers import header_float
from .limiter import ConcurrencyLimiter
from .models import (
    AudioAnalysis,
    AudioResult,
    Credits,
    Model,
    RateLimit,
    TaskStatus,
    Transcription,
    Translation,
    Voice,
    VoiceChatReply,
)
from .params import (
    check_choice,
    check_range,
    check_text,
    form_fields,
    json_fields,
)
from .transport import ApiRequest, ApiResponse, Transport, Upload

_LOGGER = logging.getLogger(__name__)

# Task ids go into a URL path: allow only what cannot change the path.
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class TtsAiClient:
    """Talks to TTS.ai over one ``aiohttp.ClientSession``.

    Attributes updated from every response (errors included):
    ``rate_limit``, ``credits``, ``plan_limits``, ``last_error`` (the most
    recent failure, kept after later successes) and ``last_ok`` (whether the
    latest response was a success; None before the first). Listeners added
    with :meth:`add_listener` are called after each update.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        *,
        base_url: str = ep.DEFAULT_BASE_URL,
        connect_timeout: float = 10.0,
        first_byte_timeout: float = 30.0,
        model_loading_retries: int = 3,
        model_loading_backoff: float = 1.0,
        model_loading_max_delay: float = 10.0,
        plan: str | None = None,
        max_text_chars: int | None = None,
    ) -> None:
        """Create a client.

        ``plan`` ("pro"/"enterprise") fixes the limits; otherwise they are
        inferred from ``X-RateLimit-Limit``. ``max_text_chars`` overrides the
        plan's text limit (texts above it are split into several requests).
        ``model_loading_max_delay`` caps each wait between 503 retries, also
        when the service asks for a longer one with ``Retry-After``.
        """
        if plan is not None and plan not in ep.PLANS:
            raise ValueError(f"unknown plan {plan!r}; expected one of {list(ep.PLANS)}")
        self._base_url = URL(base_url if base_url.endswith("/") else f"{base_url}/")
        if not self._base_url.is_absolute():
            raise ValueError("base_url must be an absolute http(s) URL")
        self._fixed_plan = plan is not None
        self._max_text_chars = max_text_chars
        self._listeners: list[Callable[[], None]] = []
        self.rate_limit: RateLimit | None = None
        self.credits: Credits | None = None
        self.last_error: TtsAiError | None = None
        self.last_ok: bool | None = None
        self.plan_limits: ep.PlanLimits = ep.PLANS[plan] if plan else ep.DEFAULT_PLAN
        self._limiter = ConcurrencyLimiter(self.plan_limits.concurrent_requests)
        self._transport = Transport(
            session,
            api_key,
            connect_timeout=connect_timeout,
            first_byte_timeout=first_byte_timeout,
            model_loading_retries=model_loading_retries,
            model_loading_backoff=model_loading_backoff,
            model_loading_max_delay=model_loading_max_delay,
            limiter=self._limiter,
            on_headers=self._observe_headers,
            on_error=self._observe_error,
        )

    @property
    def base_url(self) -> str:
        """The normalised base URL (always ends with ``/``)."""
        return str(self._base_url)

    @property
    def max_text_chars(self) -> int:
        """Longest text sent in one request; longer texts are split."""
        return self._max_text_chars or self.plan_limits.max_text_chars

    def add_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after every state update; return its remover."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    # --- Catalogue ------------------------------------------------------------

    async def validate(self) -> list[Model]:
        """Check the key and base URL by listing the models."""
        return await self.list_models()

    async def list_models(self) -> list[Model]:
        """Return the models the service offers."""
        document = await self._fetch_json(self._request(ep.MODELS))
        return [Model.from_dict(item) for item in _list_field(document, "models")]

    async def list_voices(
        self,
        *,
        model: str | None = None,
        language: str | None = None,
        gender: str | None = None,
    ) -> list[Voice]:
        """Return the voices, optionally filtered by model, language, gender."""
        check_choice("gender", gender, ep.GENDERS)
        query = form_fields({"model": model, "language": language, "gender": gender})
        document = await self._fetch_json(self._request(ep.VOICES, query=query))
        return [Voice.from_dict(item) for item in _list_field(document, "voices")]

    # --- Speech synthesis -----------------------------------------------------

    async def tts(
        self,
        text: str,
        *,
        model: str,
        voice: str,
        format: str = "mp3",
        speed: float | None = None,
        language: str | None = None,
    ) -> AudioResult:
        """Synthesise ``text``; texts over the plan's limit are split and joined.

        A multi-part FLAC request is synthesised as WAV (FLAC files cannot be
        joined), so check ``AudioResult.format``.
        """
        text = check_text("text", text)
        check_choice("format", format, ep.TTS_FORMATS)
        check_range("speed", speed, ep.SPEED_RANGE)
        fields = {"model": model, "voice": voice, "speed": speed, "language": language}

        def one_part(chunk: str, part_format: str) -> ApiRequest:
            body = json_fields({**fields, "text": chunk, "format": part_format})
            return self._request(ep.TTS, json=body)

        return await self._synthesize(text, format, one_part)

    async def tts_stream(
        self,
        text: str,
        *,
        model: str,
        voice: str,
        format: str = "mp3",
        speed: float | None = None,
        language: str | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield the audio of ``text`` as the service produces it.

        Errors before the first byte raise their mapped exception; a dropped
        connection mid-stream raises TtsAiConnectionError. Text over the
        plan's limit is streamed part after part for mp3 and ogg (formats
        that stay playable when concatenated); for wav and flac it raises
        TextTooLongError.
        """
        text = check_text("text", text)
        check_choice("format", format, ep.TTS_FORMATS)
        check_range("speed", speed, ep.SPEED_RANGE)
        chunks = chunk_text(text, self.max_text_chars)
        if len(chunks) > 1 and format not in STREAM_JOINABLE_FORMATS:
            raise TextTooLongError(
                f"text is {len(text)} characters; a {format} stream allows at most "
                f"{self.max_text_chars} (use mp3 or ogg to stream longer texts)"
            )
        fields = {"model": model, "voice": voice, "speed": speed, "language": language}
        for index, chunk in enumerate(chunks):
            body = json_fields(
                {**fields, "text": chunk, "format": format, "stream": True}
            )
            pieces = self._stream(self._request(ep.TTS, json=body))
            if index and format == "mp3":
                pieces = _without_id3v2(pieces)
            async with aclosing(pieces):
                async for piece in pieces:
                    yield piece

    async def clone_tts(
        self,
        text: str,
        reference_audio: bytes,
        *,
        reference_filename: str,
        model: str | None = None,
        format: str = "mp3",
        language: str | None = None,
    ) -> AudioResult:
        """Speak ``text`` in the voice of ``reference_audio`` (sent every call).

        Long texts are split like :meth:`tts`; each part re-sends the reference.
        """
        text = check_text("text", text)
        check_choice("format", format, ep.CLONE_FORMATS)
        upload = self._upload(ep.CLONE, reference_audio, reference_filename)
        fields = {"model": model, "language": language}

        def one_part(chunk: str, part_format: str) -> ApiRequest:
            values = form_fields({**fields, "text": chunk, "format": part_format})
            return self._request(ep.CLONE, fields=values, upload=upload)

        return await self._synthesize(text, format, one_part)

    # --- Speech recognition and transformation -----------------------------------

    async def stt(
        self,
        audio: bytes,
        *,
        filename: str = "audio.wav",
        content_type: str = "audio/wav",
        model: str | None = None,
        language: str | None = None,
        timestamps: bool = False,
        diarize: bool = False,
    ) -> Transcription:
        """Transcribe ``audio``."""
        upload = self._upload(ep.STT, audio, filename, content_type)
        fields = form_fields(
            {
                "model": model,
                "language": language,
                # Only sent when asked for: false is the service's default.
                "timestamps": True if timestamps else None,
                "diarize": True if diarize else None,
            }
        )
        request = self._request(ep.STT, fields=fields, upload=upload)
        return Transcription.from_dict(await self._fetch_json(request))

    async def voice_convert(
        self,
        audio: bytes,
        *,
        filename: str,
        target_voice: str,
        model: str | None = None,
        format: str | None = None,
    ) -> AudioResult:
        """Make ``audio`` sound like ``target_voice``."""
        check_choice("format", format, ep.VOICE_CONVERT_FORMATS)
        fields = {"target_voice": target_voice, "model": model, "format": format}
        return await self._audio_tool(
            ep.VOICE_CONVERT, audio, filename, fields, format or "wav"
        )

    async def translate(
        self,
        audio: bytes,
        *,
        filename: str,
        target_language: str,
        voice: str | None = None,
        preserve_voice: bool | None = None,
    ) -> Translation:
        """Transcribe, translate and re-speak ``audio``; fetch ``audio_url``."""
        upload = self._upload(ep.TRANSLATE, audio, filename)
        fields = form_fields(
            {
                "target_language": target_language,
                "voice": voice,
                "preserve_voice": preserve_voice,
            }
        )
        request = self._request(ep.TRANSLATE, fields=fields, upload=upload)
        return Translation.from_dict(await self._fetch_json(request))

    async def speech_to_speech(
        self,
        audio: bytes,
        *,
        filename: str,
        voice: str,
        model: str | None = None,
        emotion: str | None = None,
        speed: float | None = None,
    ) -> AudioResult:
        """Change the delivery, emotion or voice of ``audio``."""
        check_choice("emotion", emotion, ep.EMOTIONS)
        check_range("speed", speed, ep.SPEED_RANGE)
        fields = {"voice": voice, "model": model, "emotion": emotion, "speed": speed}
        return await self._audio_tool(
            ep.SPEECH_TO_SPEECH, audio, filename, fields, None
        )

    # --- Audio tools ------------------------------------------------------------

    async def enhance(
        self,
        audio: bytes,
        *,
        filename: str,
        denoise: bool | None = None,
        enhance_clarity: bool | None = None,
        super_resolution: bool | None = None,
        strength: int | None = None,
    ) -> AudioResult:
        """Denoise and clarify ``audio``."""
        check_range("strength", strength, ep.ENHANCE_STRENGTH_RANGE)
        fields = {
            "denoise": denoise,
            "enhance_clarity": enhance_clarity,
            "super_resolution": super_resolution,
            "strength": strength,
        }
        return await self._audio_tool(ep.ENHANCE, audio, filename, fields, None)

    async def dereverb(
        self,
        audio: bytes,
        *,
        filename: str,
        type: str | None = None,
        intensity: int | None = None,
    ) -> AudioResult:
        """Remove echo and/or reverb from ``audio``."""
        check_choice("type", type, ep.DEREVERB_TYPES)
        check_range("intensity", intensity, ep.DEREVERB_INTENSITY_RANGE)
        fields = {"type": type, "intensity": intensity}
        return await self._audio_tool(ep.DEREVERB, audio, filename, fields, None)

    async def analyze(self, audio: bytes, *, filename: str) -> AudioAnalysis:
        """Find the musical key and tempo of ``audio``."""
        upload = self._upload(ep.ANALYZE, audio, filename)
        request = self._request(ep.ANALYZE, upload=upload)
        return AudioAnalysis.from_dict(await self._fetch_json(request))

    async def convert(
        self,
        audio: bytes,
        *,
        filename: str,
        format: str,
        bitrate: int | None = None,
        sample_rate: int | None = None,
        channels: str | None = None,
    ) -> AudioResult:
        """Convert ``audio`` to another format (free)."""
        check_choice("format", format, ep.CONVERT_FORMATS)
        check_choice("bitrate", bitrate, ep.CONVERT_BITRATES_KBPS)
        check_choice("sample_rate", sample_rate, ep.CONVERT_SAMPLE_RATES)
        check_choice("channels", channels, ep.CONVERT_CHANNELS)
        fields = {
            "format": format,
            "bitrate": bitrate,
            "sample_rate": sample_rate,
            "channels": channels,
        }
        return await self._audio_tool(ep.CONVERT, audio, filename, fields, format)

    async def separate(
        self,
        audio: bytes,
        *,
        filename: str,
        model: str | None = None,
        stems: int | None = None,
        format: str | None = None,
        webhook_url: str | None = None,
    ) -> TaskStatus:
        """Start stem separation; poll :meth:`get_result` or await the webhook."""
        check_choice("stems", stems, ep.SEPARATE_STEMS)
        check_choice("format", format, ep.SEPARATE_FORMATS)
        upload = self._upload(ep.SEPARATE, audio, filename)
        fields = form_fields(
            {
                "model": model,
                "stems": stems,
                "format": format,
                "webhook_url": webhook_url,
            }
        )
        request = self._request(ep.SEPARATE, fields=fields, upload=upload)
        return _task_status(await self._fetch_json(request))

    async def get_result(self, task_id: str) -> TaskStatus:
        """Return the state (and, when done, the result URLs) of a long task."""
        if not _TASK_ID.fullmatch(task_id or "") or ".." in task_id:
            raise BadRequestError(f"invalid task id {task_id!r}")
        request = self._request(ep.RESULTS, path_params={"task_id": task_id})
        return _task_status(await self._fetch_json(request))

    # --- Voice chat and downloads ---------------------------------------------------

    async def voice_chat(
        self,
        *,
        text: str | None = None,
        audio: bytes | None = None,
        filename: str | None = None,
        voice: str | None = None,
        tts_model: str | None = None,
        system_prompt: str | None = None,
        conversation_id: str | None = None,
    ) -> VoiceChatReply:
        """Send one turn (typed or spoken) and get the AI's reply."""
        if (text is None) == (audio is None):
            raise BadRequestError("voice chat needs exactly one of text or audio")
        if text is not None:
            text = check_text("text", text)
            if len(text) > self.max_text_chars:
                raise TextTooLongError(
                    f"text is {len(text)} characters; the limit is "
                    f"{self.max_text_chars}"
                )
        values = {
            "text": text,
            "voice": voice,
            "tts_model": tts_model,
            "system_prompt": system_prompt,
            "conversation_id": conversation_id,
        }
        if audio is not None:
            upload = self._upload(ep.VOICE_CHAT, audio, filename or "audio.wav")
            request = self._request(
                ep.VOICE_CHAT, fields=form_fields(values), upload=upload
            )
        else:
            request = self._request(ep.VOICE_CHAT, json=json_fields(values))
        return VoiceChatReply.from_dict(await self._fetch_json(request))

    async def download(self, url: str) -> AudioResult:
        """Fetch a result file (``audio_url``, a stem URL) with the API key.

        The key is only ever sent to the base URL's own origin: any other
        host, port or scheme raises ForeignUrlError without a request.
        """
        target = self._base_url.join(URL(url))
        if target.origin() != self._base_url.origin():
            raise ForeignUrlError(
                f"refusing to send the API key to {target.scheme}://{target.host}: "
                f"result URLs must be on {self._base_url.origin()}"
            )
        response = await self._transport.fetch(ApiRequest("GET", target))
        suffix = target.suffix.lstrip(".").lower() or None
        return self._audio_result(response, suffix)

    # --- Internals --------------------------------------------------------------

    def _request(
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
        )

    def _upload(
        self,
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

    async def _fetch_json(self, request: ApiRequest) -> dict[str, Any]:
        """Send ``request`` and decode its JSON object response."""
        response = await self._transport.fetch(request)
        try:
            document = json.loads(response.body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise self._invalid(f"{request.url.path} did not answer with a JSON object")
        return document

    async def _audio_tool(
        self,
        endpoint: ep.Endpoint,
        audio: bytes,
        filename: str,
        values: Mapping[str, Any],
        expected_format: str | None,
    ) -> AudioResult:
        """Upload ``audio`` to an endpoint that answers with audio bytes."""
        upload = self._upload(endpoint, audio, filename)
        request = self._request(endpoint, fields=form_fields(values), upload=upload)
        return self._audio_result(await self._transport.fetch(request), expected_format)

    async def _synthesize(
        self,
        text: str,
        fmt: str,
        one_part: Callable[[str, str], ApiRequest],
    ) -> AudioResult:
        """Synthesise ``text`` in as many requests as the text limit needs."""
        chunks = chunk_text(text, self.max_text_chars)
        if len(chunks) == 1:
            response = await self._transport.fetch(one_part(chunks[0], fmt))
            return self._audio_result(response, fmt)
        part_format = fmt if fmt in JOINABLE_FORMATS else "wav"
        _LOGGER.debug("Synthesising %d characters in %d parts", len(text), len(chunks))
        # Parts run concurrently (bounded by the plan's concurrency limit); a
        # failing part cancels the others.
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._transport.fetch(one_part(chunk, part_format)))
                for chunk in chunks
            ]
        parts = [self._audio_result(task.result(), part_format) for task in tasks]
        return self._join(parts)

    def _join(self, parts: list[AudioResult]) -> AudioResult:
        """Join synthesised parts into one result."""
        formats = {part.format for part in parts}
        if len(formats) != 1:
            raise self._invalid(f"parts came back in different formats: {formats}")
        fmt = formats.pop()
        try:
            data = join_audio([part.data for part in parts], fmt)
        except ValueError as err:
            raise self._invalid(f"cannot join the synthesised parts: {err}") from None
        used = [part.credits_used for part in parts if part.credits_used is not None]
        return AudioResult(
            data=data,
            format=fmt,
            content_type=parts[0].content_type,
            credits_used=sum(used) if used else None,
        )

    def _audio_result(
        self, response: ApiResponse, expected_format: str | None
    ) -> AudioResult:
        """Turn an audio response into an AudioResult."""
        content_type = response.content_type
        fmt = ep.FORMAT_BY_CONTENT_TYPE.get(content_type)
        if fmt is None and content_type in ("", "application/octet-stream"):
            fmt = expected_format
        if fmt is None or not response.body:
            raise self._invalid(
                f"expected audio but got {content_type or 'no content type'} "
                f"({len(response.body)} bytes)"
            )
        return AudioResult(
            data=response.body,
            format=fmt,
            content_type=ep.CONTENT_TYPES.get(fmt, content_type),
            credits_used=header_float(response.headers, ep.HEADER_CREDITS_USED),
        )

    async def _stream(self, request: ApiRequest) -> AsyncIterator[bytes]:
        """Yield the body of ``request``'s response as it arrives."""
        async with self._transport.open(request) as response:
            chunks = aiter(response.content.iter_any())
            # The first byte has its own deadline: headers may come at once
            # while synthesis has not produced any audio yet.
            chunk = await self._transport.read_chunk(
                chunks, request, deadline=self._first_byte_deadline
            )
            while chunk is not None:
                if chunk:
                    yield chunk
                chunk = await self._transport.read_chunk(chunks, request)

    @property
    def _first_byte_deadline(self) -> float:
        """Seconds allowed for a stream's first audio bytes."""
        return self._transport.first_byte_timeout

    def _invalid(self, message: str) -> InvalidResponseError:
        """Build (and record) an InvalidResponseError."""
        error = InvalidResponseError(message)
        self._observe_error(error)
        return error

    def _observe_headers(self, status: int, headers: Mapping[str, str]) -> None:
        """Update success, rate limit, credits and plan from a response."""
        self.last_ok = status < 300
        rate_limit = RateLimit.from_headers(headers)
        if rate_limit is not None:
            self.rate_limit = rate_limit
            if not self._fixed_plan:
                plan = ep.plan_for_rate_limit(rate_limit.limit)
                if plan != self.plan_limits:
                    _LOGGER.debug("TTS.ai plan looks like %s", plan.name)
                    self.plan_limits = plan
                    self._limiter.resize(plan.concurrent_requests)
        credits = Credits.from_headers(headers)
        if credits is not None:
            if credits.remaining is None and self.credits is not None:
                credits = Credits(used=credits.used, remaining=self.credits.remaining)
            self.credits = credits
        self._notify()

    def _observe_error(self, error: TtsAiError) -> None:
        """Remember the latest failure."""
        self.last_error = error
        self.last_ok = False
        self._notify()

    def _notify(self) -> None:
        """Call the listeners; a failing listener must not break a request."""
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                _LOGGER.exception("Error in a TTS.ai client listener")


def _list_field(document: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    """Return the list of objects under ``name`` (tolerating its absence)."""
    items = document.get(name)
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, Mapping) and "id" in item]


def _task_status(document: Mapping[str, Any]) -> TaskStatus:
    """Parse a task status, rejecting a body without a task id."""
    if "task_id" not in document:
        raise InvalidResponseError("the task response has no task_id")
    return TaskStatus.from_dict(document)


async def _without_id3v2(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Pass an MP3 stream through, minus a leading ID3v2 tag.

    Used for the second and later parts of a multi-part stream: a tag in the
    middle of a stream is junk to a decoder.
    """
    head = b""
    to_skip: int | None = None
    async with aclosing(pieces):
        async for piece in pieces:
            data = piece
            if to_skip is None:
                head += data
                to_skip = id3v2_size(head)
                if to_skip is None:
                    continue  # fewer than 10 bytes so far
                data, head = head, b""
            if to_skip:
                dropped = min(to_skip, len(data))
                data, to_skip = data[dropped:], to_skip - dropped
            if data:
                yield data
        if to_skip is None and head:
            yield head
