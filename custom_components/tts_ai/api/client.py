"""The asyncio client for the TTS.ai REST API: its typed methods and account state.

Each method checks what it was given and names its endpoint of the table
(``endpoints.py``); ``calls.py`` builds the request and reads the answer,
``synthesis.py`` reads audio (long texts in parts), ``transport.py`` sends.
Every answer updates the rate limit, credits, plan and last error here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
import logging
import re

import aiohttp
from yarl import URL

from . import endpoints as ep
from .calls import EndpointCalls
from .errors import BadRequestError, TextTooLongError, TtsAiError
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
    VoiceList,
    list_field,
    task_status,
    voice_page,
)
from .params import check_fields, check_text, form_fields, json_fields, upload_for
from .synthesis import Synthesis
from .transport import ApiRequest, Transport

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
        self._synthesis = Synthesis(self._transport)
        self._calls = EndpointCalls(self._base_url, self._transport, self._synthesis)

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
        return await self._calls.json(
            ep.MODELS,
            lambda doc: [Model.from_dict(item) for item in list_field(doc, "models")],
        )

    async def list_voices(
        self,
        *,
        model: str | None = None,
        language: str | None = None,
        gender: str | None = None,
    ) -> VoiceList:
        """Return the voices, optionally filtered by model, language, gender.

        The answer's ``total`` is kept; while it says more voices exist than
        arrived, the next page is asked for (at most ``MAX_VOICE_PAGES``).
        """
        values = {"model": model, "language": language, "gender": gender}
        check_fields(ep.VOICES, values)
        query = form_fields(values)
        voices: dict[str, Voice] = {}
        total: int | None = None
        for page in range(ep.MAX_VOICE_PAGES):
            if page:
                query[ep.VOICES_OFFSET_PARAM] = str(len(voices))
            batch, total = await self._calls.json(ep.VOICES, voice_page, query=query)
            new = [voice for voice in batch if voice.id not in voices]
            voices.update((voice.id, voice) for voice in new)
            if total is None or len(voices) >= total or not new:
                break
        return VoiceList(tuple(voices.values()), total)

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
        fields = {"model": model, "voice": voice, "speed": speed, "language": language}
        check_fields(ep.TTS, {**fields, "format": format})

        def one_part(chunk: str, part_format: str) -> ApiRequest:
            body = json_fields({**fields, "text": chunk, "format": part_format})
            return self._calls.request(ep.TTS, json=body)

        return await self._whole(text, format, one_part)

    async def _whole(
        self, text: str, fmt: str, one_part: Callable[[str, str], ApiRequest]
    ) -> AudioResult:
        """Synthesize ``text`` in as many parts as the plan's limits need."""
        return await self._synthesis.whole(
            text,
            fmt,
            one_part,
            max_chars=self.max_text_chars,
            concurrency=self.plan_limits.concurrent_requests,
        )

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
        fields = {"model": model, "voice": voice, "speed": speed, "language": language}
        check_fields(ep.TTS, {**fields, "format": format})

        def one_part(chunk: str) -> ApiRequest:
            body = json_fields(
                {**fields, "text": chunk, "format": format, "stream": True}
            )
            return self._calls.request(ep.TTS, json=body)

        pieces = self._synthesis.stream(
            text, format, one_part, max_chars=self.max_text_chars
        )
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
        fields = {"model": model, "language": language}
        check_fields(ep.CLONE, {**fields, "format": format})
        upload = upload_for(ep.CLONE, reference_audio, reference_filename)

        def one_part(chunk: str, part_format: str) -> ApiRequest:
            values = form_fields({**fields, "text": chunk, "format": part_format})
            return self._calls.request(ep.CLONE, fields=values, upload=upload)

        return await self._whole(text, format, one_part)

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
        upload = upload_for(ep.STT, audio, filename, content_type)
        fields = form_fields(
            {
                "model": model,
                "language": language,
                # Only sent when asked for: false is the service's default.
                "timestamps": True if timestamps else None,
                "diarize": True if diarize else None,
            }
        )
        return await self._calls.json(
            ep.STT, Transcription.from_dict, fields=fields, upload=upload
        )

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
        fields = {"target_voice": target_voice, "model": model, "format": format}
        return await self._calls.audio_tool(ep.VOICE_CONVERT, audio, filename, fields)

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
        fields = {
            "target_language": target_language,
            "voice": voice,
            "preserve_voice": preserve_voice,
        }
        return await self._calls.json_tool(
            ep.TRANSLATE, audio, filename, fields, Translation.from_dict
        )

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
        fields = {"voice": voice, "model": model, "emotion": emotion, "speed": speed}
        return await self._calls.audio_tool(
            ep.SPEECH_TO_SPEECH, audio, filename, fields
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
        fields = {
            "denoise": denoise,
            "enhance_clarity": enhance_clarity,
            "super_resolution": super_resolution,
            "strength": strength,
        }
        return await self._calls.audio_tool(ep.ENHANCE, audio, filename, fields)

    async def dereverb(
        self,
        audio: bytes,
        *,
        filename: str,
        type: str | None = None,
        intensity: int | None = None,
    ) -> AudioResult:
        """Remove echo and/or reverb from ``audio``."""
        fields = {"type": type, "intensity": intensity}
        return await self._calls.audio_tool(ep.DEREVERB, audio, filename, fields)

    async def analyze(self, audio: bytes, *, filename: str) -> AudioAnalysis:
        """Find the musical key and tempo of ``audio``."""
        return await self._calls.json_tool(
            ep.ANALYZE, audio, filename, {}, AudioAnalysis.from_dict
        )

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
        fields = {
            "format": format,
            "bitrate": bitrate,
            "sample_rate": sample_rate,
            "channels": channels,
        }
        return await self._calls.audio_tool(ep.CONVERT, audio, filename, fields)

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
        fields = {
            "model": model,
            "stems": stems,
            "format": format,
            "webhook_url": webhook_url,
        }
        return await self._calls.json_tool(
            ep.SEPARATE, audio, filename, fields, task_status
        )

    async def get_result(self, task_id: str) -> TaskStatus:
        """Return the state (and, when done, the result URLs) of a long task."""
        if not _TASK_ID.fullmatch(task_id or "") or ".." in task_id:
            raise BadRequestError(f"invalid task id {task_id!r}")
        return await self._calls.json(
            ep.RESULTS, task_status, path_params={"task_id": task_id}
        )

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
            return await self._calls.json_tool(
                ep.VOICE_CHAT,
                audio,
                filename or "audio.wav",
                values,
                VoiceChatReply.from_dict,
            )
        return await self._calls.json(
            ep.VOICE_CHAT, VoiceChatReply.from_dict, json=json_fields(values)
        )

    async def download(self, url: str, *, format: str | None = None) -> AudioResult:
        """Fetch a result file (``audio_url``, a stem URL) with the API key.

        The key is only ever sent to the base URL's own origin: a URL on any
        other host, port or scheme raises ForeignUrlError without a request,
        a malformed one InvalidResponseError. The result's format comes from
        the answer's audio Content-Type, else from ``format`` (what was asked
        for), never from the URL: the cloud does not choose file extensions.
        """
        return await self._calls.download(url, format)

    # --- Internals --------------------------------------------------------------

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
