"""Every number and shape of the TTS.ai contract that the stand-in uses, in one place.

Values come from the API reference restated in ``/work/shared/spec/tts-ai-api.md``.
Where the reference shows a feature but not its exact value, the value here is
marked **inferred** so it can be corrected in this one file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
import math
from typing import Any

API_PREFIX = "/v1/"

# --- Plans -----------------------------------------------------------------


@dataclass(frozen=True)
class PlanLimits:
    """Rate and size limits of one plan."""

    requests_per_minute: int
    concurrent: int
    max_text: int
    has_api_access: bool = True


PLAN_LIMITS: dict[str, PlanLimits] = {
    "pro": PlanLimits(requests_per_minute=60, concurrent=5, max_text=5_000),
    "enterprise": PlanLimits(requests_per_minute=300, concurrent=20, max_text=50_000),
    # The free plan exists but has no API access (403 forbidden). Its numbers
    # only matter for the rate-limit headers of the refused request.
    "free": PlanLimits(
        requests_per_minute=60, concurrent=5, max_text=5_000, has_api_access=False
    ),
}

RATE_LIMIT_WINDOW_SECONDS = 60

# --- Upload limits (413 file_too_large) ------------------------------------

MB = 1024 * 1024

#: Largest accepted upload per endpoint path (relative to /v1/).
#: The audio tools, voice chat and translate limits are **inferred** (100 MB).
UPLOAD_LIMITS: dict[str, int] = {
    "stt/": 100 * MB,
    "tts/clone/": 20 * MB,
    "voice-convert/": 50 * MB,
    "translate/": 100 * MB,
    "speech-to-speech/": 50 * MB,
    "audio/enhance/": 100 * MB,
    "audio/separate/": 100 * MB,
    "audio/dereverb/": 100 * MB,
    "audio/analyze/": 100 * MB,
    "audio/convert/": 100 * MB,
    "voice-chat/": 100 * MB,
}

# --- Field enumerations ----------------------------------------------------

TTS_FORMATS = ("mp3", "wav", "flac", "ogg")
CLONE_FORMATS = ("mp3", "wav", "flac")
VOICE_CONVERT_FORMATS = ("wav", "mp3", "flac")
SEPARATE_FORMATS = ("wav", "mp3", "flac")
CONVERT_FORMATS = ("mp3", "wav", "flac", "ogg", "m4a", "aac")
CONVERT_BITRATES_KBPS = (64, 128, 192, 256, 320)
CONVERT_SAMPLE_RATES = (22050, 44100, 48000)
CONVERT_CHANNELS = ("mono", "stereo")
EMOTIONS = ("neutral", "happy", "sad", "angry", "excited")
GENDERS = ("male", "female", "neutral")
DEREVERB_TYPES = ("echo", "reverb", "both")
SEPARATION_STEMS: dict[int, tuple[str, ...]] = {
    # Stem names per stem count are **inferred** (they follow Demucs/Spleeter).
    2: ("vocals", "accompaniment"),
    4: ("vocals", "drums", "bass", "other"),
    5: ("vocals", "drums", "bass", "piano", "other"),
    6: ("vocals", "drums", "bass", "guitar", "piano", "other"),
}
SPEED_RANGE = (0.5, 2.0)
ENHANCE_STRENGTH_RANGE = (1, 3)
DEREVERB_INTENSITY_RANGE = (1, 5)

#: Which catalogue models each endpoint accepts, default first.
ENDPOINT_MODELS: dict[str, tuple[str, ...]] = {
    "stt/": ("whisper", "faster-whisper", "sensevoice"),
    "tts/clone/": ("chatterbox", "cosyvoice2", "gpt-sovits"),
    "voice-convert/": ("openvoice", "knn-vc"),
    "speech-to-speech/": ("openvoice", "chatterbox"),
    "audio/separate/": ("demucs", "spleeter"),
}

#: Target languages of speech translation (the reference lists "es, fr, de, ja, …").
TRANSLATE_LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "ja", "ko", "zh", "nl")

#: Audio tools without a ``format`` field answer in this format (**inferred**).
TOOL_OUTPUT_FORMAT = "wav"
#: Speech translation and voice chat answers are stored as this format (**inferred**).
GENERATED_AUDIO_FORMAT = "mp3"

CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
}

# --- Credits ---------------------------------------------------------------
# The reference says *what* is billed; the amounts per minute / per turn are
# **inferred** (the examples show 5 credits for a short translation and 3 for
# a chat turn; separation costs 3-4 per minute).

CREDITS_PER_MINUTE: dict[str, int] = {
    "stt/": 1,
    "voice-convert/": 2,
    "speech-to-speech/": 2,
    "audio/enhance/": 1,
    "audio/dereverb/": 1,
    "translate/": 5,
}
SEPARATION_CREDITS_PER_MINUTE: dict[str, int] = {"demucs": 4, "spleeter": 3}
VOICE_CHAT_CREDITS_PER_TURN = 3


def credits_for_text(text: str, credits_per_1k_chars: float) -> int:
    """Credits for synthesising ``text``: each started 1,000 characters costs."""
    blocks = max(1, math.ceil(len(text) / 1000))
    return math.ceil(blocks * credits_per_1k_chars)


def credits_for_audio(duration_seconds: float, credits_per_minute: float) -> int:
    """Credits for processing audio: each started minute costs the rate."""
    minutes = max(1, math.ceil(duration_seconds / 60))
    return math.ceil(minutes * credits_per_minute)


# --- URLs and inferred response shapes --------------------------------------


def result_path(result_id: str) -> str:
    """Path (relative to /v1/) of a stored result: a file or a task."""
    return f"results/{result_id}"


def voice_preview_path(voice_id: str) -> str:
    """Path (relative to /v1/) of a voice's preview clip."""
    return f"voices/preview/{voice_id}.mp3"


def utc_timestamp(moment: float) -> str:
    """Format a unix time like the reference does: ``2025-01-15T10:30:00Z``."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def task_accepted_body(task_id: str) -> dict[str, Any]:
    """Answer to a long task's POST (**inferred**: 202 with this body)."""
    return {"task_id": task_id, "status": "queued"}


# Task statuses reported by GET results/<task_id> (**inferred**).
TASK_QUEUED = "queued"
TASK_PROCESSING = "processing"
TASK_COMPLETED = "completed"
TASK_FAILED = "failed"


def task_result_body(
    task_id: str,
    status: str,
    *,
    stems: dict[str, str] | None = None,
    credits_used: int,
    error: str | None = None,
) -> dict[str, Any]:
    """Body of GET results/<task_id> (**inferred** shape: one URL per stem)."""
    body: dict[str, Any] = {
        "task_id": task_id,
        "status": status,
        "credits_used": credits_used,
    }
    if stems is not None:
        body["stems"] = stems
    if error is not None:
        body["error"] = error
    return body


def webhook_body(
    task_id: str,
    *,
    succeeded: bool,
    result_url: str,
    credits_used: int,
    created_at: float,
    completed_at: float,
) -> dict[str, Any]:
    """JSON POSTed to ``webhook_url`` when a long task ends (documented shape).

    The failure variant (``task.failed`` / ``failed``) is **inferred**.
    """
    return {
        "event": "task.completed" if succeeded else "task.failed",
        "task_id": task_id,
        "status": "success" if succeeded else "failed",
        "result_url": result_url,
        "credits_used": credits_used,
        "created_at": utc_timestamp(created_at),
        "completed_at": utc_timestamp(completed_at),
    }
