"""Voice changer, speech-to-speech and the audio tools.

The "models" here are cheap ffmpeg filters over the real input audio, so the
answers are genuine audio of the right format and a plausible length.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .analysis import analyze
from .audio import transform
from .catalogue import Voice
from .common import (
    audio_response,
    form_fields,
    require_model,
    require_voice,
    uploaded_audio,
)
from .contract import (
    CONVERT_BITRATES_KBPS,
    CONVERT_CHANNELS,
    CONVERT_FORMATS,
    CONVERT_SAMPLE_RATES,
    CREDITS_PER_MINUTE,
    DEREVERB_INTENSITY_RANGE,
    DEREVERB_TYPES,
    EMOTIONS,
    ENHANCE_STRENGTH_RANGE,
    SPEED_RANGE,
    TOOL_OUTPUT_FORMAT,
    VOICE_CONVERT_FORMATS,
    credits_for_audio,
)
from .state import charge

_WORK_RATE = 44_100
_PITCH_BY_GENDER = {"female": 1.15, "male": 0.9, "neutral": 1.0}
# (pitch factor, volume) per emotion: a caricature, but audibly different.
_EMOTION_STYLE = {
    "neutral": (1.0, 1.0),
    "happy": (1.04, 1.0),
    "sad": (0.96, 0.8),
    "angry": (1.0, 1.3),
    "excited": (1.07, 1.15),
}


def _pitch_filter(factor: float, tempo: float = 1.0) -> str:
    """Shift pitch by ``factor`` and change tempo by ``tempo`` (ffmpeg filter)."""
    return (
        f"aresample={_WORK_RATE},asetrate={round(_WORK_RATE * factor)},"
        f"aresample={_WORK_RATE},atempo={tempo / factor:.4f}"
    )


def _voice_pitch(voice: Voice) -> float:
    return _PITCH_BY_GENDER.get(voice.gender, 1.0)


async def handle_voice_convert(request: web.Request) -> web.Response:
    """``POST voice-convert/``: the input speech, pitched towards the target voice."""
    fields = form_fields(request)
    fields.file("file")
    target = fields.required_string("target_voice")
    model_id = fields.string_or("model", "openvoice")
    fmt = fields.string_or("format", "wav", choices=VOICE_CONVERT_FORMATS)
    require_model(model_id, endpoint="voice-convert/")
    voice = require_voice(target, field="target_voice")
    async with uploaded_audio(fields, "file") as audio:
        charge(
            request,
            credits_for_audio(audio.duration, CREDITS_PER_MINUTE["voice-convert/"]),
        )
        data = await transform(
            audio.path, fmt, audio_filter=_pitch_filter(_voice_pitch(voice))
        )
    return audio_response(data, fmt)


async def handle_speech_to_speech(request: web.Request) -> web.Response:
    """``POST speech-to-speech/``: same words, another voice, emotion and speed."""
    fields = form_fields(request)
    fields.file("file")
    voice_id = fields.required_string("voice")
    model_id = fields.string_or("model", "openvoice")
    emotion = fields.string_or("emotion", "neutral", choices=EMOTIONS)
    speed = fields.number(
        "speed", default=1.0, minimum=SPEED_RANGE[0], maximum=SPEED_RANGE[1]
    )
    require_model(model_id, endpoint="speech-to-speech/")
    voice = require_voice(voice_id)
    pitch, volume = _EMOTION_STYLE[emotion]
    audio_filter = (
        f"{_pitch_filter(_voice_pitch(voice) * pitch, speed)},volume={volume}"
    )
    async with uploaded_audio(fields, "file") as audio:
        charge(
            request,
            credits_for_audio(audio.duration, CREDITS_PER_MINUTE["speech-to-speech/"]),
        )
        data = await transform(
            audio.path, TOOL_OUTPUT_FORMAT, audio_filter=audio_filter
        )
    return audio_response(data, TOOL_OUTPUT_FORMAT)


async def handle_enhance(request: web.Request) -> web.Response:
    """``POST audio/enhance/``: denoise / clarity / upsampling filters."""
    fields = form_fields(request)
    fields.file("file")
    denoise = fields.boolean("denoise", default=True)
    clarity = fields.boolean("enhance_clarity", default=True)
    super_resolution = fields.boolean("super_resolution", default=False)
    strength = fields.integer(
        "strength",
        default=2,
        minimum=ENHANCE_STRENGTH_RANGE[0],
        maximum=ENHANCE_STRENGTH_RANGE[1],
    )
    assert strength is not None
    filters = []
    if denoise:
        filters.append(f"afftdn=nr={6 * strength}")
    if clarity:
        filters.append(f"highpass=f=80,equalizer=f=3000:t=q:w=1:g={strength}")
    async with uploaded_audio(fields, "file") as audio:
        charge(
            request,
            credits_for_audio(audio.duration, CREDITS_PER_MINUTE["audio/enhance/"]),
        )
        data = await transform(
            audio.path,
            TOOL_OUTPUT_FORMAT,
            audio_filter=",".join(filters) or None,
            sample_rate=48_000 if super_resolution else None,
        )
    return audio_response(data, TOOL_OUTPUT_FORMAT)


async def handle_dereverb(request: web.Request) -> web.Response:
    """``POST audio/dereverb/``: echo / reverb reduction filters."""
    fields = form_fields(request)
    fields.file("file")
    kind = fields.string_or("type", "both", choices=DEREVERB_TYPES)
    intensity = fields.integer(
        "intensity",
        default=3,
        minimum=DEREVERB_INTENSITY_RANGE[0],
        maximum=DEREVERB_INTENSITY_RANGE[1],
    )
    assert intensity is not None
    filters = ["highpass=f=60", f"afftdn=nr={4 * intensity}"]
    if kind in {"reverb", "both"}:
        # A gentle gate shortens reverb tails between words.
        filters.append(f"agate=threshold={0.004 * intensity}:ratio=2")
    async with uploaded_audio(fields, "file") as audio:
        charge(
            request,
            credits_for_audio(audio.duration, CREDITS_PER_MINUTE["audio/dereverb/"]),
        )
        data = await transform(
            audio.path, TOOL_OUTPUT_FORMAT, audio_filter=",".join(filters)
        )
    return audio_response(data, TOOL_OUTPUT_FORMAT)


async def handle_analyze(request: web.Request) -> web.Response:
    """``POST audio/analyze/``: key, scale, BPM and Camelot code (free)."""
    fields = form_fields(request)
    fields.file("file")
    async with uploaded_audio(fields, "file") as audio:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, analyze, audio.samples)
    return web.json_response(result)


async def handle_convert(request: web.Request) -> web.Response:
    """``POST audio/convert/``: re-encode to another format, bitrate, rate (free)."""
    fields = form_fields(request)
    fields.file("file")
    fmt = fields.string_or("format", "mp3", choices=CONVERT_FORMATS)
    bitrate = fields.integer("bitrate", default=None, choices=CONVERT_BITRATES_KBPS)
    sample_rate = fields.integer(
        "sample_rate", default=None, choices=CONVERT_SAMPLE_RATES
    )
    channels = fields.string("channels", choices=CONVERT_CHANNELS)
    async with uploaded_audio(fields, "file") as audio:
        data = await transform(
            audio.path,
            fmt,
            sample_rate=sample_rate,
            channels={"mono": 1, "stereo": 2}.get(channels or ""),
            # Lossless formats have no bitrate to choose.
            bitrate_kbps=bitrate if fmt not in {"wav", "flac"} else None,
        )
    return audio_response(data, fmt)
