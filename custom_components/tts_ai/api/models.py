"""Immutable values returned by the TTS.ai client.

Every ``from_dict`` ignores fields it does not know, so the service may add
fields without breaking the client.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
import math
from typing import Any, Self

from .endpoints import (
    HEADER_CREDITS_REMAINING,
    HEADER_CREDITS_USED,
    HEADER_RATE_LIMIT,
    HEADER_RATE_REMAINING,
    HEADER_RATE_RESET,
    MAX_STEMS,
)
from .headers import header_float, header_int, parse_reset


@dataclass(frozen=True, slots=True)
class Model:
    """A model from ``GET models/``."""

    id: str
    name: str
    type: str
    tier: str | None = None
    languages: list[str] = field(default_factory=list)
    supports_cloning: bool = False
    supports_streaming: bool = False
    credits_per_1k_chars: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from the service's JSON object."""
        return cls(
            id=_str(data["id"]),
            name=_str(data.get("name") or data["id"]),
            type=_str(data.get("type") or "tts"),
            tier=_optional_str(data.get("tier")),
            languages=[_str(lang) for lang in _list(data.get("languages"))],
            supports_cloning=bool(data.get("supports_cloning", False)),
            supports_streaming=bool(data.get("supports_streaming", False)),
            credits_per_1k_chars=_optional_float(data.get("credits_per_1k_chars")),
        )


@dataclass(frozen=True, slots=True)
class Voice:
    """A voice from ``GET voices/``."""

    id: str
    name: str
    model: str | None = None
    language: str | None = None
    gender: str | None = None
    preview_url: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from the service's JSON object."""
        return cls(
            id=_str(data["id"]),
            name=_str(data.get("name") or data["id"]),
            model=_optional_str(data.get("model")),
            language=_optional_str(data.get("language")),
            gender=_optional_str(data.get("gender")),
            preview_url=_optional_url(data.get("preview_url")),
        )


@dataclass(frozen=True, slots=True)
class VoiceList:
    """The voices of ``GET voices/`` and the ``total`` the service reported.

    Iterates like the list of voices. ``complete`` is False when the service
    said it has more voices than the pages fetched returned.
    """

    voices: tuple[Voice, ...]
    total: int | None = None

    @property
    def complete(self) -> bool:
        """Whether every voice the service counted is here."""
        return self.total is None or len(self.voices) >= self.total

    def __iter__(self) -> Iterator[Voice]:
        """Iterate over the voices."""
        return iter(self.voices)

    def __len__(self) -> int:
        """Return the number of voices fetched."""
        return len(self.voices)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The rate-limit window as reported by the latest response."""

    limit: int
    remaining: int | None
    reset_at: datetime | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Self | None:
        """Read the ``X-RateLimit-*`` headers; None when they are absent."""
        limit = header_int(headers, HEADER_RATE_LIMIT)
        if limit is None:
            return None
        return cls(
            limit=limit,
            remaining=header_int(headers, HEADER_RATE_REMAINING),
            reset_at=parse_reset(headers.get(HEADER_RATE_RESET)),
        )


@dataclass(frozen=True, slots=True)
class Credits:
    """Credits as reported by the latest billable response."""

    used: float | None
    remaining: float | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Self | None:
        """Read the ``X-Credits-*`` headers; None when both are absent."""
        used = header_float(headers, HEADER_CREDITS_USED)
        remaining = header_float(headers, HEADER_CREDITS_REMAINING)
        if used is None and remaining is None:
            return None
        return cls(used=used, remaining=remaining)


@dataclass(frozen=True, slots=True)
class AudioResult:
    """Audio returned by the service (or joined from several responses)."""

    data: bytes
    # Short name: "mp3", "wav", "flac", "ogg", "m4a", "aac".
    format: str
    content_type: str
    credits_used: float | None = None


@dataclass(frozen=True, slots=True)
class Word:
    """A word with its timing, when word timestamps were requested."""

    word: str
    start: float
    end: float
    probability: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from the service's JSON object."""
        return cls(
            word=_str(data.get("word", data.get("text", ""))),
            start=_number(data.get("start", 0.0)),
            end=_number(data.get("end", 0.0)),
            probability=_optional_float(data.get("probability")),
        )


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of transcribed speech."""

    start: float
    end: float
    text: str
    speaker: str | None = None
    words: list[Word] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from the service's JSON object."""
        return cls(
            start=_number(data.get("start", 0.0)),
            end=_number(data.get("end", 0.0)),
            text=_str(data.get("text", "")),
            speaker=_optional_str(data.get("speaker")),
            words=[Word.from_dict(word) for word in _list(data.get("words"))],
        )


@dataclass(frozen=True, slots=True)
class Transcription:
    """Result of ``POST stt/``."""

    text: str
    language: str | None = None
    duration: float | None = None
    segments: list[Segment] = field(default_factory=list)
    # What this answer said it cost (its X-Credits-Used; None: it did not say).
    credits_used: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from the service's JSON object."""
        return cls(
            text=_str(data.get("text", "")),
            language=_optional_str(data.get("language")),
            duration=_optional_float(data.get("duration")),
            segments=[Segment.from_dict(seg) for seg in _list(data.get("segments"))],
            credits_used=_optional_float(data.get("credits_used")),
        )


@dataclass(frozen=True, slots=True)
class Translation:
    """Result of ``POST translate/``; the audio is fetched from ``audio_url``."""

    original_text: str
    translated_text: str
    source_language: str | None = None
    target_language: str | None = None
    audio_url: str | None = None
    credits_used: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from the service's JSON object."""
        return cls(
            original_text=_str(data.get("original_text", "")),
            translated_text=_str(data.get("translated_text", "")),
            source_language=_optional_str(data.get("source_language")),
            target_language=_optional_str(data.get("target_language")),
            audio_url=_optional_url(data.get("audio_url")),
            credits_used=_optional_float(data.get("credits_used")),
        )


@dataclass(frozen=True, slots=True)
class AudioAnalysis:
    """Result of ``POST audio/analyze/`` (key and BPM finder)."""

    key: str | None = None
    scale: str | None = None
    bpm: float | None = None
    time_signature: str | None = None
    camelot: str | None = None
    compatible_keys: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from the service's JSON object."""
        return cls(
            key=_optional_str(data.get("key")),
            scale=_optional_str(data.get("scale")),
            bpm=_optional_float(data.get("bpm")),
            time_signature=_optional_str(data.get("time_signature")),
            camelot=_optional_str(data.get("camelot")),
            compatible_keys=[_str(k) for k in _list(data.get("compatible_keys"))],
        )


@dataclass(frozen=True, slots=True)
class VoiceChatReply:
    """Result of ``POST voice-chat/``; the audio is fetched from ``audio_url``."""

    conversation_id: str | None
    user_text: str
    ai_text: str
    audio_url: str | None = None
    credits_used: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from the service's JSON object."""
        return cls(
            conversation_id=_optional_str(data.get("conversation_id")),
            user_text=_str(data.get("user_text", "")),
            ai_text=_str(data.get("ai_text", "")),
            audio_url=_optional_url(data.get("audio_url")),
            credits_used=_optional_float(data.get("credits_used")),
        )


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """State of a long task (stem separation); the shape is inferred.

    ``urls`` maps a name (a stem such as "vocals") to a downloadable URL;
    ``result`` keeps the raw JSON for anything not modelled.
    """

    task_id: str
    status: str
    result_url: str | None = None
    urls: dict[str, str] = field(default_factory=dict)
    credits_used: float | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Whether the task has finished, successfully or not."""
        return self.status in ("success", "completed", "failed", "error")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from the service's JSON object."""
        return cls(
            task_id=_str(data["task_id"]),
            status=_str(data.get("status", "unknown")),
            result_url=_optional_url(data.get("result_url")),
            urls=_collect_urls(data),
            credits_used=_optional_float(data.get("credits_used")),
            result=dict(data),
        )


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """The ``task.completed`` call the service makes to a ``webhook_url``.

    The reference documents no signature: treat the content as untrusted
    (accept only task ids you started; fetch results with your own key).
    """

    event: str
    task_id: str
    status: str
    result_url: str | None = None
    credits_used: float | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Validate and parse a webhook payload; ValueError when malformed."""
        if not isinstance(data, Mapping):
            # ValueError for every malformed payload: one type for callers.
            raise ValueError("webhook payload is not a JSON object")  # noqa: TRY004
        event, task_id = data.get("event"), data.get("task_id")
        if not isinstance(event, str) or not isinstance(task_id, str) or not task_id:
            raise ValueError("webhook payload lacks event or task_id")
        return cls(
            event=event,
            task_id=task_id,
            status=str(data.get("status", "unknown")),
            result_url=_optional_str(data.get("result_url")),
            credits_used=_optional_float(data.get("credits_used")),
            created_at=_optional_datetime(data.get("created_at")),
            completed_at=_optional_datetime(data.get("completed_at")),
        )


# --- Whole answers ------------------------------------------------------------
# A ValueError (or any error of a malformed document) makes the client refuse
# the answer as unreadable.


def list_field(document: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    """Return the list of objects under ``name`` (tolerating its absence)."""
    items = document.get(name)
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, Mapping) and "id" in item]


def voice_page(document: Mapping[str, Any]) -> tuple[list[Voice], int | None]:
    """Parse one page of ``GET voices/``: its voices and the catalogue's total."""
    voices = [Voice.from_dict(item) for item in list_field(document, "voices")]
    total = document.get("total")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        total = None
    return voices, total


def task_status(document: Mapping[str, Any]) -> TaskStatus:
    """Parse a task status; no task id or more stems than exist is unreadable."""
    if not isinstance(document.get("task_id"), str | int):
        raise ValueError("the task response has no task_id")  # noqa: TRY004
    status = TaskStatus.from_dict(document)
    if len(status.urls) > MAX_STEMS:
        raise ValueError(
            f"the task lists {len(status.urls)} results; a separation has at "
            f"most {MAX_STEMS} stems"
        )
    return status


def _collect_urls(data: Mapping[str, Any]) -> dict[str, str]:
    """Gather per-stem result URLs from the (inferred) result shapes."""
    urls: dict[str, str] = {}
    for key in ("stems", "urls", "files"):
        value = data.get(key)
        if isinstance(value, Mapping):
            urls.update({_str(k): _str(v) for k, v in value.items() if v})
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str):
                    urls[f"{key}_{index}"] = item
                elif isinstance(item, Mapping) and item.get("url"):
                    name = item.get("name") or item.get("stem") or f"{key}_{index}"
                    urls[_str(name)] = _str(item["url"])
    return urls


def _str(value: Any) -> str:
    """Return a JSON scalar as a string; a list or object is not one (TypeError)."""
    if isinstance(value, Mapping | list):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return str(value)


def _optional_str(value: Any) -> str | None:
    """Return ``value`` as a string, keeping None."""
    return None if value is None else _str(value)


def _optional_url(value: Any) -> str | None:
    """Return a URL field: a string or None; anything else is TypeError."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a URL, got {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    """Return a JSON array (None or absent as empty); anything else is TypeError."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _number(value: Any) -> float:
    """Return a finite JSON number; anything else is ValueError/TypeError."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _optional_float(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None when absent or not numeric."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except TypeError, ValueError, OverflowError:
        return None
    return number if math.isfinite(number) else None


def _optional_datetime(value: Any) -> datetime | None:
    """Parse an ISO 8601 timestamp ("Z" accepted), or None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
