"""The stand-in's mutable state and the helpers handlers use to reach it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
import secrets
from typing import Any

from aiohttp import web

from .accounts import Account, RateLimiter
from .contract import API_PREFIX, result_path
from .errors import ApiError
from .faults import FaultPlan


@dataclass
class RecordedRequest:
    """One request as the stand-in received it, and the status it answered.

    ``status`` is 0 while no answer was sent (still running, hanging, or dropped).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = field(repr=False)  # holds the bearer key
    json: dict[str, Any] | None
    form: dict[str, str]
    files: dict[str, tuple[str, int]]
    status: int = 0


@dataclass
class StoredAudio:
    """A generated audio file served under ``results/``."""

    owner: str
    data: bytes
    content_type: str


@dataclass
class SeparationTask:
    """A stem-separation job, as ``GET results/<task_id>`` reports it."""

    task_id: str
    owner: str
    status: str
    credits_used: int
    created_at: float
    stems: dict[str, str] | None = None
    error: str | None = None


@dataclass
class Conversation:
    """What the stand-in remembers of one voice-chat conversation."""

    owner: str
    turns: int = 0
    last_user_text: str | None = None
    system_prompt: str | None = None


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass
class StandinState:
    """Everything the request handlers share."""

    accounts: dict[str, Account]
    limiter: RateLimiter = field(default_factory=RateLimiter)
    faults: FaultPlan = field(default_factory=FaultPlan)
    requests: list[RecordedRequest] = field(default_factory=list)
    audio_results: dict[str, StoredAudio] = field(default_factory=dict)
    tasks: dict[str, SeparationTask] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    hanging: set[asyncio.Task[Any]] = field(default_factory=set)
    webhook_deliveries: list[dict[str, Any]] = field(default_factory=list)
    # Separation jobs stay "processing" while this is clear (a task that never ends).
    tasks_running: asyncio.Event = field(default_factory=_set_event)


STATE_KEY: web.AppKey[StandinState] = web.AppKey("standin_state", StandinState)

# Keys of per-request values stored on ``request``.
API_KEY = "standin_api_key"
ACCOUNT = "standin_account"
BODY = "standin_body"
CREDITS_USED = "standin_credits_used"
RATE_LIMIT = "standin_rate_limit"
TRUNCATE = "standin_truncate"


def get_state(request: web.Request) -> StandinState:
    """The server state behind ``request``."""
    return request.app[STATE_KEY]


def caller(request: web.Request) -> tuple[str, Account]:
    """The authenticated API key and account of ``request``."""
    return request[API_KEY], request[ACCOUNT]


def charge(request: web.Request, credits: int) -> None:
    """Bill ``credits`` to the caller, or raise 402 ``insufficient_credits``."""
    _key, account = caller(request)
    if account.credits < credits:
        raise insufficient_credits(credits, account.credits)
    account.credits -= credits
    request[CREDITS_USED] = credits


def insufficient_credits(required: float, available: float) -> ApiError:
    """The documented 402 answer."""
    return ApiError(
        "insufficient_credits",
        "You do not have enough credits for this request.",
        extra={
            "credits_required": number_for_json(required),
            "credits_available": number_for_json(available),
        },
    )


def number_for_json(value: float) -> float | int:
    """``4.0`` -> ``4``; other floats unchanged."""
    return int(value) if float(value).is_integer() else value


def public_url(request: web.Request, path: str) -> str:
    """Absolute URL of ``path`` (relative to /v1/) as the caller reached us."""
    return f"{request.url.origin()}{API_PREFIX}{path}"


def new_id(prefix: str) -> str:
    """A fresh opaque id such as ``translate_3f9a1c0d2b7e``."""
    return f"{prefix}_{secrets.token_hex(6)}"


def store_audio(request: web.Request, prefix: str, fmt: str, data: bytes) -> str:
    """Keep generated audio for download and return its absolute URL."""
    from .audio import content_type

    key, _account = caller(request)
    name = f"{new_id(prefix)}.{fmt}"
    get_state(request).audio_results[name] = StoredAudio(key, data, content_type(fmt))
    return public_url(request, result_path(name))
