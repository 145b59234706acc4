"""The single table of facts about the TTS.ai REST API.

Everything the client knows about paths, body kinds, upload limits, plans and
allowed values lives here, so a correction to the vendor contract (several
paths are only inferred from the reference) is a one-line change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

DEFAULT_BASE_URL = "https://api.tts.ai/v1/"

MEGABYTE = 1024 * 1024

# --- Limits on what the cloud may send (anything it sends may be hostile) ---
# Largest JSON answer: a catalogue or a transcript. A transcript of 100 MB of
# compressed audio with word timestamps is the biggest documented answer.
JSON_RESPONSE_LIMIT_BYTES = 16 * MEGABYTE
# Largest audio answer (synthesis, an audio tool, a downloaded result): an
# hour of 22 kHz 16-bit WAV is ~160 MB, but one request speaks at most the
# plan's text (minutes), and audio tools answer roughly what they were sent.
AUDIO_RESPONSE_LIMIT_BYTES = 100 * MEGABYTE
# Below this average rate a body (either way) is a trickle, not a transfer:
# after the first byte a response must keep at least this pace, an upload
# gets its size at this pace on top of the first-byte timeout. 4 KiB/s is
# below the bitrate of any audio a stream could play in real time.
MIN_TRANSFER_BYTES_PER_SECOND = 4 * 1024
# Retry-After and X-RateLimit-Reset further out than this are taken as this:
# the rate-limit window is a minute, and a broken clock or header must not
# keep the cloud off for days.
MAX_RETRY_AFTER_SECONDS = 3600.0
# Voices are fetched in at most this many pages (``total`` above what came).
MAX_VOICE_PAGES = 20
# Query parameter asking for the next page of voices (inferred: the reference
# shows ``total`` but no paging parameter).
VOICES_OFFSET_PARAM = "offset"


class BodyKind(StrEnum):
    """How an endpoint expects its request parameters."""

    JSON = "json"
    MULTIPART = "multipart"
    QUERY = "query"
    # voice-chat takes multipart when audio is uploaded, JSON for typed text.
    JSON_OR_MULTIPART = "json_or_multipart"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST endpoint of the service."""

    name: str
    method: str
    # Relative to the base URL; may contain ``{placeholders}``.
    path: str
    body: BodyKind
    # Form field that carries the uploaded file, for multipart endpoints.
    upload_field: str | None = None
    upload_limit_bytes: int | None = None
    # True where the vendor reference shows the feature but not the exact path.
    path_inferred: bool = False
    # Largest answer accepted (after decompression); more is refused.
    response_limit_bytes: int = JSON_RESPONSE_LIMIT_BYTES
    # Allowed values and numeric bounds of request fields, checked before
    # sending so a mistake costs no request (or credits).
    choices: dict[str, tuple[Any, ...]] = field(
        default_factory=dict, hash=False, compare=False
    )
    ranges: dict[str, tuple[float, float]] = field(
        default_factory=dict, hash=False, compare=False
    )
    # The audio format when the request names none (the service's default).
    default_format: str | None = None


# Allowed values, per endpoint where they differ.
TTS_FORMATS = ("mp3", "wav", "flac", "ogg")
CLONE_FORMATS = ("mp3", "wav", "flac")
VOICE_CONVERT_FORMATS = ("wav", "mp3", "flac")
SEPARATE_FORMATS = ("wav", "mp3", "flac")
CONVERT_FORMATS = ("mp3", "wav", "flac", "ogg", "m4a", "aac")
CONVERT_BITRATES_KBPS = (64, 128, 192, 256, 320)
CONVERT_SAMPLE_RATES = (22050, 44100, 48000)
CONVERT_CHANNELS = ("mono", "stereo")
SPEED_RANGE = (0.5, 2.0)
STT_MODELS = ("whisper", "faster-whisper", "sensevoice")
# "99 languages" (Whisper's): the reference names none, so Whisper's list is
# assumed (inferred).
STT_LANGUAGES = (
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca",
    "cs", "cy", "da", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fo", "fr",
    "gl", "gu", "ha", "haw", "he", "hi", "hr", "ht", "hu", "hy", "id", "is", "it",
    "ja", "jw", "ka", "kk", "km", "kn", "ko", "la", "lb", "ln", "lo", "lt", "lv",
    "mg", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "ne", "nl", "nn", "no",
    "oc", "pa", "pl", "ps", "pt", "ro", "ru", "sa", "sd", "si", "sk", "sl", "sn",
    "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "tg", "th", "tk", "tl", "tr",
    "tt", "uk", "ur", "uz", "vi", "yi", "yo", "zh",
)  # fmt: skip
CLONE_MODELS = ("chatterbox", "cosyvoice2", "gpt-sovits")
VOICE_CONVERT_MODELS = ("openvoice", "knn-vc")
SPEECH_TO_SPEECH_MODELS = ("openvoice", "chatterbox")
EMOTIONS = ("neutral", "happy", "sad", "angry", "excited")
GENDERS = ("male", "female", "neutral")
SEPARATE_MODELS = ("demucs", "spleeter")
SEPARATE_STEMS = (2, 4, 5, 6)
# A separation result lists one URL per stem: never more than this.
MAX_STEMS = max(SEPARATE_STEMS)
# "both" is inferred: the reference says "echo, reverb or both (default both)".
DEREVERB_TYPES = ("echo", "reverb", "both")
ENHANCE_STRENGTH_RANGE = (1, 3)
DEREVERB_INTENSITY_RANGE = (1, 5)

AUDIO = AUDIO_RESPONSE_LIMIT_BYTES

TTS = Endpoint(
    "tts",
    "POST",
    "tts/",
    BodyKind.JSON,
    response_limit_bytes=AUDIO,
    choices={"format": TTS_FORMATS},
    ranges={"speed": SPEED_RANGE},
    default_format="mp3",
)
STT = Endpoint(
    "stt", "POST", "stt/", BodyKind.MULTIPART, "file", upload_limit_bytes=100 * MEGABYTE
)
CLONE = Endpoint(
    "clone",
    "POST",
    "tts/clone/",
    BodyKind.MULTIPART,
    "reference_audio",
    upload_limit_bytes=20 * MEGABYTE,
    response_limit_bytes=AUDIO,
    choices={"format": CLONE_FORMATS},
    default_format="mp3",
)
VOICE_CONVERT = Endpoint(
    "voice_convert",
    "POST",
    "voice-convert/",
    BodyKind.MULTIPART,
    "file",
    upload_limit_bytes=50 * MEGABYTE,
    response_limit_bytes=AUDIO,
    choices={"format": VOICE_CONVERT_FORMATS},
    default_format="wav",
)
TRANSLATE = Endpoint(
    "translate",
    "POST",
    "translate/",
    BodyKind.MULTIPART,
    "file",
    upload_limit_bytes=100 * MEGABYTE,
    path_inferred=True,
)
SPEECH_TO_SPEECH = Endpoint(
    "speech_to_speech",
    "POST",
    "speech-to-speech/",
    BodyKind.MULTIPART,
    "file",
    upload_limit_bytes=50 * MEGABYTE,
    path_inferred=True,
    response_limit_bytes=AUDIO,
    choices={"emotion": EMOTIONS},
    ranges={"speed": SPEED_RANGE},
)
ENHANCE = Endpoint(
    "enhance",
    "POST",
    "audio/enhance/",
    BodyKind.MULTIPART,
    "file",
    upload_limit_bytes=100 * MEGABYTE,
    response_limit_bytes=AUDIO,
    ranges={"strength": ENHANCE_STRENGTH_RANGE},
)
SEPARATE = Endpoint(
    "separate",
    "POST",
    "audio/separate/",
    BodyKind.MULTIPART,
    "file",
    upload_limit_bytes=100 * MEGABYTE,
    path_inferred=True,
    choices={"stems": SEPARATE_STEMS, "format": SEPARATE_FORMATS},
)
DEREVERB = Endpoint(
    "dereverb",
    "POST",
    "audio/dereverb/",
    BodyKind.MULTIPART,
    "file",
    upload_limit_bytes=100 * MEGABYTE,
    path_inferred=True,
    response_limit_bytes=AUDIO,
    choices={"type": DEREVERB_TYPES},
    ranges={"intensity": DEREVERB_INTENSITY_RANGE},
)
ANALYZE = Endpoint(
    "analyze",
    "POST",
    "audio/analyze/",
    BodyKind.MULTIPART,
    "file",
    upload_limit_bytes=100 * MEGABYTE,
    path_inferred=True,
)
CONVERT = Endpoint(
    "convert",
    "POST",
    "audio/convert/",
    BodyKind.MULTIPART,
    "file",
    upload_limit_bytes=100 * MEGABYTE,
    path_inferred=True,
    response_limit_bytes=AUDIO,
    choices={
        "format": CONVERT_FORMATS,
        "bitrate": CONVERT_BITRATES_KBPS,
        "sample_rate": CONVERT_SAMPLE_RATES,
        "channels": CONVERT_CHANNELS,
    },
)
VOICE_CHAT = Endpoint(
    "voice_chat",
    "POST",
    "voice-chat/",
    BodyKind.JSON_OR_MULTIPART,
    "audio",
    # The reference gives no limit; the general audio-tool limit is assumed.
    upload_limit_bytes=100 * MEGABYTE,
    path_inferred=True,
)
# The reference shows the models list but not its path.
MODELS = Endpoint("models", "GET", "models/", BodyKind.QUERY, path_inferred=True)
VOICES = Endpoint(
    "voices", "GET", "voices/", BodyKind.QUERY, choices={"gender": GENDERS}
)
# How a long task reports back is itself inferred (see the spec's webhooks).
RESULTS = Endpoint(
    "results", "GET", "results/{task_id}", BodyKind.QUERY, path_inferred=True
)
# A result file (``audio_url``, a stem): fetched by URL, so it has no path.
DOWNLOAD = Endpoint("download", "GET", "", BodyKind.QUERY, response_limit_bytes=AUDIO)
# Long-task ids go into the results path and the log. The contract shows only
# "task_abc123"; the shape and length allowed here are inferred bounds, far above
# any id the service gives, refusing anything that could change the path.
TASK_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
TASK_ID_MAX_CHARS = 128
# The webhook's task.completed call is a ~300-byte JSON object; anything much
# larger is not one.
WEBHOOK_MAX_BYTES = 16 * 1024

ENDPOINTS: dict[str, Endpoint] = {
    endpoint.name: endpoint
    for endpoint in (
        TTS,
        STT,
        CLONE,
        VOICE_CONVERT,
        TRANSLATE,
        SPEECH_TO_SPEECH,
        ENHANCE,
        SEPARATE,
        DEREVERB,
        ANALYZE,
        CONVERT,
        VOICE_CHAT,
        MODELS,
        VOICES,
        RESULTS,
    )
}


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """What a subscription plan allows."""

    name: str
    requests_per_minute: int
    concurrent_requests: int
    max_text_chars: int


PRO = PlanLimits(
    "pro", requests_per_minute=60, concurrent_requests=5, max_text_chars=5000
)
ENTERPRISE = PlanLimits(
    "enterprise", requests_per_minute=300, concurrent_requests=20, max_text_chars=50000
)
PLANS: dict[str, PlanLimits] = {plan.name: plan for plan in (PRO, ENTERPRISE)}
# Only Pro and Enterprise have API access, so an unknown plan is at least Pro.
DEFAULT_PLAN = PRO


def plan_for_rate_limit(requests_per_minute: int) -> PlanLimits:
    """Infer the plan from the ``X-RateLimit-Limit`` header value."""
    if requests_per_minute >= ENTERPRISE.requests_per_minute:
        return ENTERPRISE
    return PRO


# A body of unknown type: then the format asked for is assumed.
OCTET_STREAM = "application/octet-stream"
# Response Content-Type <-> short format name.
CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
}
FORMAT_BY_CONTENT_TYPE: dict[str, str] = {
    **{content_type: fmt for fmt, content_type in CONTENT_TYPES.items()},
    "audio/mp3": "mp3",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/x-flac": "flac",
    "audio/vorbis": "ogg",
    "audio/opus": "ogg",
    "audio/x-m4a": "m4a",
    "audio/m4a": "m4a",
}

# Response headers.
HEADER_RATE_LIMIT = "X-RateLimit-Limit"
HEADER_RATE_REMAINING = "X-RateLimit-Remaining"
HEADER_RATE_RESET = "X-RateLimit-Reset"
HEADER_CREDITS_USED = "X-Credits-Used"
HEADER_CREDITS_REMAINING = "X-Credits-Remaining"
