"""The integration's actions: the API's audio tools, with results on players.

Every action takes an input audio (a local media-source id or an allowed file
path), calls one endpoint, stores audio results in the media folder and
answers with where they are, how long they play and what they cost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
import mimetypes
from typing import TYPE_CHECKING, Any

from homeassistant.components.media_player import (
    ATTR_MEDIA_ANNOUNCE,
    ATTR_MEDIA_CONTENT_ID,
    ATTR_MEDIA_CONTENT_TYPE,
    DOMAIN as MEDIA_PLAYER_DOMAIN,
    SERVICE_PLAY_MEDIA,
    MediaType,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
import probatio

from .announce import Announcement, async_announce
from .api import (
    AudioResult,
    Transcription,
    Translation,
    TtsAiClient,
    TtsAiError,
    endpoints as ep,
)
from .const import (
    ATTR_AUDIO,
    ATTR_CHIME,
    ATTR_CONFIG_ENTRY_ID,
    ATTR_MEDIA_PLAYER_ENTITY_ID,
    ATTR_MESSAGE,
    ATTR_TIMEOUT,
    ATTR_VOLUME,
    CONF_LANGUAGE,
    CONF_MODEL,
    CONF_SPEED,
    CONF_VOICE,
    DOMAIN,
    SERVICE_ANALYZE_AUDIO,
    SERVICE_ANNOUNCE,
    SERVICE_CHANGE_VOICE,
    SERVICE_CONVERT_AUDIO,
    SERVICE_ENHANCE_AUDIO,
    SERVICE_REMOVE_ECHO,
    SERVICE_RESTYLE_SPEECH,
    SERVICE_SEPARATE_STEMS,
    SERVICE_TRANSCRIBE,
    SERVICE_TRANSLATE_SPEECH,
)
from .errors import to_ha_error
from .media_io import (
    InputAudio,
    StoredResult,
    async_discard,
    async_read_input,
    async_store_result,
)
from .tasks import get_tracker

if TYPE_CHECKING:
    from . import TtsAiConfigEntry

DEFAULT_TASK_TIMEOUT = 120.0
MAX_TASK_TIMEOUT = 3600.0

# --- Schemas -------------------------------------------------------------------

_BASE = {
    probatio.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
    probatio.Required(ATTR_AUDIO): cv.string,
}
_PLAYERS = {probatio.Optional(ATTR_MEDIA_PLAYER_ENTITY_ID): cv.entity_ids}
_SPEED = probatio.All(probatio.Coerce(float), probatio.Range(*ep.SPEED_RANGE))


def _choice(values: tuple[Any, ...]) -> probatio.In:
    """Validate one of the contract's allowed values."""
    return probatio.In(values)


def _int_choice(values: tuple[int, ...]) -> probatio.All:
    """Validate one of the contract's allowed numbers (given as text or number)."""
    return probatio.All(probatio.Coerce(int), probatio.In(values))


def _int_range(bounds: tuple[int, int]) -> probatio.All:
    """Validate a whole number within the contract's range."""
    return probatio.All(probatio.Coerce(int), probatio.Range(*bounds))


def _chime(value: Any) -> str:
    """Accept the chime as text or as the action form's choice.

    The form sends the built-in chime as "built_in" and a picked sound as
    the media selector's value; automations written as text keep working.
    """
    if isinstance(value, Mapping):
        if (choice := value.get("active_choice")) is not None:
            return _chime(value.get(choice))
        value = value.get(ATTR_MEDIA_CONTENT_ID)
    chime: str = probatio.All(cv.string, probatio.Length(min=1))(value)
    return chime


SCHEMAS: dict[str, probatio.Schema] = {
    SERVICE_TRANSCRIBE: probatio.Schema(
        {
            **_BASE,
            probatio.Optional("model"): _choice(ep.STT_MODELS),
            probatio.Optional("language"): _choice(("auto", *ep.STT_LANGUAGES)),
            probatio.Optional("timestamps", default=False): cv.boolean,
            probatio.Optional("diarize", default=False): cv.boolean,
        }
    ),
    SERVICE_CHANGE_VOICE: probatio.Schema(
        {
            **_BASE,
            **_PLAYERS,
            probatio.Required("target_voice"): cv.string,
            probatio.Optional("model"): _choice(ep.VOICE_CONVERT_MODELS),
            probatio.Optional("format"): _choice(ep.VOICE_CONVERT_FORMATS),
        }
    ),
    SERVICE_RESTYLE_SPEECH: probatio.Schema(
        {
            **_BASE,
            **_PLAYERS,
            probatio.Required("voice"): cv.string,
            probatio.Optional("model"): _choice(ep.SPEECH_TO_SPEECH_MODELS),
            probatio.Optional("emotion"): _choice(ep.EMOTIONS),
            probatio.Optional("speed"): _SPEED,
        }
    ),
    SERVICE_TRANSLATE_SPEECH: probatio.Schema(
        {
            **_BASE,
            **_PLAYERS,
            probatio.Required("target_language"): cv.string,
            probatio.Optional("voice"): cv.string,
            probatio.Optional("preserve_voice"): cv.boolean,
        }
    ),
    SERVICE_ENHANCE_AUDIO: probatio.Schema(
        {
            **_BASE,
            **_PLAYERS,
            probatio.Optional("denoise"): cv.boolean,
            probatio.Optional("enhance_clarity"): cv.boolean,
            probatio.Optional("super_resolution"): cv.boolean,
            probatio.Optional("strength"): _int_range(ep.ENHANCE_STRENGTH_RANGE),
        }
    ),
    SERVICE_REMOVE_ECHO: probatio.Schema(
        {
            **_BASE,
            **_PLAYERS,
            probatio.Optional("type"): _choice(ep.DEREVERB_TYPES),
            probatio.Optional("intensity"): _int_range(ep.DEREVERB_INTENSITY_RANGE),
        }
    ),
    SERVICE_SEPARATE_STEMS: probatio.Schema(
        {
            **_BASE,
            probatio.Optional("model"): _choice(ep.SEPARATE_MODELS),
            probatio.Optional("stems"): _int_choice(ep.SEPARATE_STEMS),
            probatio.Optional("format"): _choice(ep.SEPARATE_FORMATS),
            probatio.Optional(ATTR_TIMEOUT, default=DEFAULT_TASK_TIMEOUT): probatio.All(
                probatio.Coerce(float), probatio.Range(min=1, max=MAX_TASK_TIMEOUT)
            ),
        }
    ),
    SERVICE_ANALYZE_AUDIO: probatio.Schema(_BASE),
    SERVICE_CONVERT_AUDIO: probatio.Schema(
        {
            **_BASE,
            **_PLAYERS,
            probatio.Required("format"): _choice(ep.CONVERT_FORMATS),
            probatio.Optional("bitrate"): _int_choice(ep.CONVERT_BITRATES_KBPS),
            probatio.Optional("sample_rate"): _int_choice(ep.CONVERT_SAMPLE_RATES),
            probatio.Optional("channels"): _choice(ep.CONVERT_CHANNELS),
        }
    ),
    SERVICE_ANNOUNCE: probatio.Schema(
        {
            probatio.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
            probatio.Required(ATTR_MESSAGE): probatio.All(
                cv.string, probatio.Length(min=1)
            ),
            probatio.Required(ATTR_MEDIA_PLAYER_ENTITY_ID): cv.entity_ids,
            probatio.Optional(ATTR_CHIME): _chime,
            probatio.Optional(ATTR_VOLUME): probatio.All(
                probatio.Coerce(float), probatio.Range(min=0.0, max=1.0)
            ),
            probatio.Optional(CONF_VOICE): cv.string,
            probatio.Optional(CONF_MODEL): cv.string,
            probatio.Optional(CONF_LANGUAGE): cv.string,
            probatio.Optional(CONF_SPEED): _SPEED,
        }
    ),
}

# Fields that are not endpoint parameters.
_NOT_API_FIELDS = {
    ATTR_CONFIG_ENTRY_ID,
    ATTR_AUDIO,
    ATTR_MEDIA_PLAYER_ENTITY_ID,
    ATTR_TIMEOUT,
}


def _api_options(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return the call's fields that go to the endpoint as they are."""
    return {k: v for k, v in data.items() if k not in _NOT_API_FIELDS}


# --- Audio-to-audio actions ---------------------------------------------------

type AudioCall = Callable[
    [TtsAiClient, InputAudio, dict[str, Any]], Awaitable[AudioResult]
]


@dataclass(frozen=True, slots=True)
class AudioTool:
    """An action that uploads audio and gets audio back."""

    endpoint: ep.Endpoint
    call: AudioCall


AUDIO_TOOLS: dict[str, AudioTool] = {
    SERVICE_CHANGE_VOICE: AudioTool(
        ep.VOICE_CONVERT,
        lambda c, a, o: c.voice_convert(a.data, filename=a.filename, **o),
    ),
    SERVICE_RESTYLE_SPEECH: AudioTool(
        ep.SPEECH_TO_SPEECH,
        lambda c, a, o: c.speech_to_speech(a.data, filename=a.filename, **o),
    ),
    SERVICE_ENHANCE_AUDIO: AudioTool(
        ep.ENHANCE, lambda c, a, o: c.enhance(a.data, filename=a.filename, **o)
    ),
    SERVICE_REMOVE_ECHO: AudioTool(
        ep.DEREVERB, lambda c, a, o: c.dereverb(a.data, filename=a.filename, **o)
    ),
    SERVICE_CONVERT_AUDIO: AudioTool(
        ep.CONVERT, lambda c, a, o: c.convert(a.data, filename=a.filename, **o)
    ),
}


# --- Helpers -------------------------------------------------------------------


def _validation_error(key: str, **placeholders: str) -> ServiceValidationError:
    """Build a translated error for a mistake in the call."""
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders,
    )


def _cloud_entry(
    hass: HomeAssistant, call: ServiceCall, *, cloud: bool = True
) -> TtsAiConfigEntry:
    """Return the loaded entry the call is for (the only one if unnamed).

    ``cloud``: the entry must have an API key (every action but announce,
    which speaks through the entry's TTS entity, on-device ones included).
    """
    entry_id = call.data.get(ATTR_CONFIG_ENTRY_ID)
    entry: TtsAiConfigEntry | None
    if entry_id:
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            raise _validation_error("entry_not_found", entry_id=entry_id)
    else:
        candidates = [
            candidate
            for candidate in hass.config_entries.async_loaded_entries(DOMAIN)
            if candidate.runtime_data.client is not None or not cloud
        ]
        if len(candidates) != 1:
            raise _validation_error("entry_required", count=str(len(candidates)))
        entry = candidates[0]
    if entry.state is not ConfigEntryState.LOADED:
        raise _validation_error("entry_not_loaded", title=entry.title)
    if cloud and entry.runtime_data.client is None:
        raise _validation_error("cloud_required", title=entry.title)
    return entry


def _credits(client: TtsAiClient, used: float | None) -> dict[str, float | None]:
    """Return what this call's answer said it cost, and what is left.

    ``used`` is only ever this answer's figure: a free call's answer carries
    no credit headers, and the previous call's cost must not stand in for it.
    """
    known = client.credits
    return {
        "credits_used": used,
        "credits_remaining": known.remaining if known is not None else None,
    }


async def _async_play(hass: HomeAssistant, call: ServiceCall, media_id: str) -> None:
    """Play a stored result on the call's players, as an announcement."""
    players = call.data.get(ATTR_MEDIA_PLAYER_ENTITY_ID)
    if not players:
        return
    await hass.services.async_call(
        MEDIA_PLAYER_DOMAIN,
        SERVICE_PLAY_MEDIA,
        {
            ATTR_ENTITY_ID: players,
            ATTR_MEDIA_CONTENT_ID: media_id,
            ATTR_MEDIA_CONTENT_TYPE: MediaType.MUSIC,
            ATTR_MEDIA_ANNOUNCE: True,
        },
        blocking=True,
        context=call.context,
    )


async def _async_store_and_play(
    hass: HomeAssistant, call: ServiceCall, audio: AudioResult
) -> StoredResult:
    """Store an audio result and play it where the call asks."""
    stored = await async_store_result(hass, call.service, audio.data, audio.format)
    try:
        await _async_play(hass, call, stored.media_content_id)
    except BaseException:
        # The call fails, so it leaves nothing behind.
        await async_discard(hass, [stored])
        raise
    return stored


async def _async_call_cloud[T](
    call: ServiceCall,
    endpoint: ep.Endpoint,
    request: Callable[[TtsAiClient, InputAudio], Awaitable[T]],
) -> tuple[TtsAiClient, T]:
    """Run a cloud action's request; return the client it used and the result.

    The one way every cloud action starts: find the entry the call is for
    (with a client), read the call's input audio within the endpoint's
    limits, make the request, and turn an API error into a translated HA one.
    """
    hass = call.hass
    entry = _cloud_entry(hass, call)
    client = entry.runtime_data.client
    assert client is not None  # _cloud_entry checked it
    audio = await async_read_input(hass, call.data[ATTR_AUDIO], endpoint)
    try:
        return client, await request(client, audio)
    except TtsAiError as err:
        raise to_ha_error(hass, entry, err) from err


# --- Handlers -------------------------------------------------------------------


async def _async_audio_tool(call: ServiceCall) -> ServiceResponse:
    """Run one of the audio-to-audio tools."""
    tool = AUDIO_TOOLS[call.service]
    options = _api_options(call.data)
    client, result = await _async_call_cloud(
        call, tool.endpoint, lambda client, audio: tool.call(client, audio, options)
    )
    stored = await _async_store_and_play(call.hass, call, result)
    return {
        **stored.as_response(),
        "format": result.format,
        **_credits(client, result.credits_used),
    }


def _transcription_response(result: Transcription) -> dict[str, Any]:
    """Turn a transcription into response data."""
    return {
        "text": result.text,
        "language": result.language,
        "duration": result.duration,
        "segments": [
            {
                "start": segment.start,
                "end": segment.end,
                "text": segment.text,
                "speaker": segment.speaker,
                "words": [
                    {"word": word.word, "start": word.start, "end": word.end}
                    for word in segment.words
                ],
            }
            for segment in result.segments
        ],
    }


async def _async_transcribe(call: ServiceCall) -> ServiceResponse:
    """Speech to text."""
    options = _api_options(call.data)

    async def request(client: TtsAiClient, audio: InputAudio) -> Transcription:
        content_type = mimetypes.guess_type(audio.filename)[0]
        return await client.stt(
            audio.data,
            filename=audio.filename,
            content_type=content_type or "application/octet-stream",
            **options,
        )

    client, result = await _async_call_cloud(call, ep.STT, request)
    return {
        **_transcription_response(result),
        **_credits(client, result.credits_used),
    }


async def _async_translate(call: ServiceCall) -> ServiceResponse:
    """Transcribe, translate and re-speak; store the spoken translation."""
    options = _api_options(call.data)

    async def request(
        client: TtsAiClient, audio: InputAudio
    ) -> tuple[Translation, AudioResult | None]:
        result = await client.translate(audio.data, filename=audio.filename, **options)
        if not result.audio_url:
            return result, None
        return result, await client.download(result.audio_url)

    client, (result, speech) = await _async_call_cloud(call, ep.TRANSLATE, request)
    response: dict[str, Any] = {
        "original_text": result.original_text,
        "translated_text": result.translated_text,
        "source_language": result.source_language,
        "target_language": result.target_language,
        **_credits(client, result.credits_used),
    }
    if speech is not None:
        stored = await _async_store_and_play(call.hass, call, speech)
        response |= {**stored.as_response(), "format": speech.format}
    return response


async def _async_analyze(call: ServiceCall) -> ServiceResponse:
    """Key and tempo of a piece of music."""
    _client, result = await _async_call_cloud(
        call,
        ep.ANALYZE,
        lambda client, audio: client.analyze(audio.data, filename=audio.filename),
    )
    return {
        "key": result.key,
        "scale": result.scale,
        "bpm": result.bpm,
        "time_signature": result.time_signature,
        "camelot": result.camelot,
        "compatible_keys": [*result.compatible_keys],
    }


async def _async_separate(call: ServiceCall) -> ServiceResponse:
    """Start stem separation; with a response, wait for the stems."""
    hass = call.hass
    entry = _cloud_entry(hass, call)
    tracker = get_tracker(hass, entry.entry_id)
    if tracker is None:
        raise _validation_error("cloud_required", title=entry.title)
    audio = await async_read_input(hass, call.data[ATTR_AUDIO], ep.SEPARATE)
    task_id = await tracker.async_separate(
        audio.data, audio.filename, _api_options(call.data)
    )
    if not call.return_response:
        return None
    timeout = call.data[ATTR_TIMEOUT]
    try:
        outcome = await tracker.async_wait(task_id, timeout)
    except TimeoutError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="task_timeout",
            translation_placeholders={"task_id": task_id, "timeout": f"{timeout:g}"},
        ) from err
    if outcome.status != "success":
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="task_failed",
            translation_placeholders={
                "task_id": task_id,
                "error": outcome.error or outcome.status,
            },
        )
    return outcome.as_response()


async def _async_announce(call: ServiceCall) -> ServiceResponse:
    """Speak a message on media players."""
    hass = call.hass
    entry = _cloud_entry(hass, call, cloud=False)
    options = {
        key: call.data[key]
        for key in (CONF_VOICE, CONF_MODEL, CONF_SPEED)
        if key in call.data
    }
    announcement = Announcement(
        message=call.data[ATTR_MESSAGE],
        players=call.data[ATTR_MEDIA_PLAYER_ENTITY_ID],
        chime=call.data.get(ATTR_CHIME),
        volume=call.data.get(ATTR_VOLUME),
        language=call.data.get(CONF_LANGUAGE),
        tts_options=options,
    )
    response = await async_announce(hass, entry.entry_id, announcement, call.context)
    return response if call.return_response else None


_HANDLERS: dict[
    str,
    tuple[
        Callable[[ServiceCall], Coroutine[Any, Any, ServiceResponse]], SupportsResponse
    ],
] = {
    SERVICE_TRANSCRIBE: (_async_transcribe, SupportsResponse.ONLY),
    SERVICE_TRANSLATE_SPEECH: (_async_translate, SupportsResponse.OPTIONAL),
    SERVICE_ANALYZE_AUDIO: (_async_analyze, SupportsResponse.ONLY),
    SERVICE_SEPARATE_STEMS: (_async_separate, SupportsResponse.OPTIONAL),
    SERVICE_ANNOUNCE: (_async_announce, SupportsResponse.OPTIONAL),
    **dict.fromkeys(AUDIO_TOOLS, (_async_audio_tool, SupportsResponse.OPTIONAL)),
}


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions (once, for all entries)."""
    for name, (handler, supports_response) in _HANDLERS.items():
        hass.services.async_register(
            DOMAIN,
            name,
            handler,
            schema=SCHEMAS[name],
            supports_response=supports_response,
        )
