"""API keys, their accounts, and the per-key rate and concurrency limits."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import math
import time

from .contract import PLAN_LIMITS, RATE_LIMIT_WINDOW_SECONDS, PlanLimits
from .errors import ApiError

DEFAULT_API_KEY = "sk-tts-standin-demo"
ENTERPRISE_API_KEY = "sk-tts-standin-enterprise"
FREE_PLAN_API_KEY = "sk-tts-standin-free"
BROKE_API_KEY = "sk-tts-standin-broke"


@dataclass
class Account:
    """One API key's account. Tests may change any field while the server runs."""

    plan: str = "pro"
    credits: float = 10_000.0
    requests_per_minute: int | None = None
    concurrent: int | None = None
    max_text: int | None = None

    @property
    def plan_limits(self) -> PlanLimits:
        """The documented limits of the account's plan."""
        return PLAN_LIMITS.get(self.plan, PLAN_LIMITS["pro"])

    @property
    def effective_requests_per_minute(self) -> int:
        """Requests per minute: the override, else the plan's."""
        if self.requests_per_minute is not None:
            return self.requests_per_minute
        return self.plan_limits.requests_per_minute

    @property
    def effective_concurrent(self) -> int:
        """Concurrent requests allowed: the override, else the plan's."""
        if self.concurrent is not None:
            return self.concurrent
        return self.plan_limits.concurrent

    @property
    def effective_max_text(self) -> int:
        """Longest accepted text: the override, else the plan's."""
        return self.max_text if self.max_text is not None else self.plan_limits.max_text


def default_accounts() -> dict[str, Account]:
    """Fresh copies of the demo accounts every stand-in starts with."""
    return {
        DEFAULT_API_KEY: Account(plan="pro"),
        ENTERPRISE_API_KEY: Account(plan="enterprise", credits=1_000_000.0),
        FREE_PLAN_API_KEY: Account(plan="free"),
        BROKE_API_KEY: Account(plan="pro", credits=0.0),
    }


def copy_accounts(accounts: dict[str, Account]) -> dict[str, Account]:
    """Copy accounts so tests mutating one server's accounts affect nothing else."""
    return {key: replace(account) for key, account in accounts.items()}


@dataclass(frozen=True)
class RateLimitSnapshot:
    """What the ``X-RateLimit-*`` headers of one response say."""

    limit: int
    remaining: int
    reset_epoch: int

    def headers(self) -> dict[str, str]:
        """The three documented rate-limit headers."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(self.reset_epoch),
        }

    def retry_after(self) -> int:
        """Seconds until the window resets (at least 1), for ``Retry-After``."""
        # reset_epoch is rounded up to whole seconds; never promise more than
        # one window.
        seconds = math.ceil(self.reset_epoch - time.time())
        return min(RATE_LIMIT_WINDOW_SECONDS, max(1, seconds))


@dataclass
class _Window:
    started: float
    count: int = 0


@dataclass
class RateLimiter:
    """Fixed one-minute windows and in-flight counters, per API key."""

    _windows: dict[str, _Window] = field(default_factory=dict)
    _in_flight: dict[str, int] = field(default_factory=dict)

    def _window(self, api_key: str) -> _Window:
        now = time.time()
        window = self._windows.get(api_key)
        if window is None or now >= window.started + RATE_LIMIT_WINDOW_SECONDS:
            window = self._windows[api_key] = _Window(started=now)
        return window

    def snapshot(self, api_key: str, limit: int) -> RateLimitSnapshot:
        """Current headers for ``api_key`` without counting a request."""
        window = self._window(api_key)
        return RateLimitSnapshot(
            limit=limit,
            remaining=limit - window.count,
            reset_epoch=math.ceil(window.started + RATE_LIMIT_WINDOW_SECONDS),
        )

    def admit(self, api_key: str, account: Account) -> RateLimitSnapshot:
        """Count one request against the key, or raise 429 ``rate_limited``.

        The caller must call :meth:`release` when an admitted request ends.
        """
        limit = account.effective_requests_per_minute
        window = self._window(api_key)
        before = self.snapshot(api_key, limit)
        if window.count >= limit:
            raise _rate_limited(
                before,
                f"Rate limit of {limit} requests per minute exceeded.",
                window_exhausted=True,
            )
        concurrent = account.effective_concurrent
        if self._in_flight.get(api_key, 0) >= concurrent:
            raise _rate_limited(
                before,
                f"Too many concurrent requests (limit {concurrent}).",
                window_exhausted=False,
            )
        window.count += 1
        self._in_flight[api_key] = self._in_flight.get(api_key, 0) + 1
        return self.snapshot(api_key, limit)

    def release(self, api_key: str) -> None:
        """Mark one admitted request of ``api_key`` as finished."""
        self._in_flight[api_key] = max(0, self._in_flight.get(api_key, 0) - 1)

    def reset_windows(self) -> None:
        """Forget all per-minute counts (in-flight requests stay counted)."""
        self._windows.clear()


def _rate_limited(
    snapshot: RateLimitSnapshot, message: str, *, window_exhausted: bool
) -> ApiError:
    if window_exhausted:
        snapshot = replace(snapshot, remaining=0)
        retry_after = snapshot.retry_after()
    else:
        # A concurrency slot frees as soon as one running request ends.
        retry_after = 1
    return ApiError(
        "rate_limited",
        message,
        headers={**snapshot.headers(), "Retry-After": str(retry_after)},
    )
