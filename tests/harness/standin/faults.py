"""Fault injection: make the stand-in misbehave the ways a real service does."""

from __future__ import annotations

from dataclasses import dataclass
import enum
from fnmatch import fnmatchcase


class Fault(enum.Enum):
    """A way the stand-in can fail a request."""

    REFUSE = "refuse"
    """Stop listening: connections are refused until ``clear_faults()``."""
    HANG = "hang"
    """Accept the request and never answer (until the client gives up)."""
    SLOW_FIRST_BYTE = "slow_first_byte"
    """Wait ``delay`` seconds, then answer normally."""
    TRUNCATED_STREAM = "truncated_stream"
    """Send the headers and part of the body, then drop the connection."""
    INTERNAL_ERROR = "internal_error"
    """Answer 500 ``internal_error``."""
    MODEL_LOADING = "model_loading"
    """Answer 503 ``model_loading``."""
    RATE_LIMITED = "rate_limited"
    """Answer 429 ``rate_limited`` with rate-limit headers and ``Retry-After``."""
    INSUFFICIENT_CREDITS = "insufficient_credits"
    """Answer 402 ``insufficient_credits``."""


@dataclass
class FaultRule:
    """One injected fault and which requests it still applies to."""

    fault: Fault
    path: str | None
    remaining: int | None
    delay: float

    def matches(self, path: str) -> bool:
        """Whether the rule applies to a request for ``path`` (relative to /v1/)."""
        if self.remaining is not None and self.remaining <= 0:
            return False
        return self.path is None or fnmatchcase(path, self.path)


def normalize_path(path: str) -> str:
    """Make ``/v1/tts/``, ``v1/tts/`` and ``tts/`` all read ``tts/``."""
    path = path.lstrip("/")
    return path.removeprefix("v1/")


class FaultPlan:
    """The injected faults, newest first."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        """Inject a rule; newer rules win over older ones."""
        self._rules.insert(0, rule)

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    def take(self, path: str) -> FaultRule | None:
        """Return the rule for a request to ``path`` and use up one of its times."""
        for rule in self._rules:
            if rule.fault is not Fault.REFUSE and rule.matches(path):
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None

    @property
    def refusing(self) -> bool:
        """Whether a REFUSE fault is active."""
        return any(rule.fault is Fault.REFUSE for rule in self._rules)
