"""Figure 9: a long unpunctuated text against a normal announcement.

A templated automation text that forgot its punctuation used to become one
ONNX inference whose memory grew with its length (2,000 characters: +1.1 GB).
Each side is measured in a fresh process (so neither inherits the other's
heap), alternating, the median of each side taken:

* peak RSS growth while speaking it, above the warmed-up voice's RSS;
* time to the first audio chunk;
* and, with a hedge the cloud wins while the device is on the long text, the
  CPU time the process still spends after the win, against the CPU time of
  one piece (the device must stop within one piece).

Run on its own: ``python -m scripts.benchmarks.long_text probe KIND``
prints one side's JSON (used by the suite).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from .common import (
    REPO_ROOT,
    BenchConfig,
    Figure,
    device_profile,
    integration_module,
    joe_voice,
    rss_mb,
)

# A normal announcement of about 200 characters, sentences as people write them.
ANNOUNCEMENT = (
    "The washing machine in the basement has finished its cycle, so the laundry "
    "can go in the dryer. The back door is still unlocked and the living room "
    "window is open while it rains. Good night."
)
_SENTENCE_WITHOUT_PUNCTUATION = (
    "the garage door is open and the kitchen light is on in the hallway "
    "while the temperature in the living room is twenty one degrees"
)
_WORDS = _SENTENCE_WITHOUT_PUNCTUATION.split(" ")
LONG_TEXT_CHARS = 2_000
_SAMPLE_INTERVAL = 0.005
_PROBE_TIMEOUT = 600
_AFTER_WIN_WINDOW = 3.0


def long_text(length: int = LONG_TEXT_CHARS) -> str:
    """Words without any punctuation, ``length`` characters long."""
    text = " ".join(_WORDS[i % len(_WORDS)] for i in range(length))
    return text[:length].strip()


class _PeakRss:
    """Sample this process's RSS on a thread and keep the highest reading."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(_SAMPLE_INTERVAL)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


async def _probe_speech(text: str) -> dict[str, Any]:
    """Peak RSS growth and first audio for ``text`` with a warmed-up voice."""
    local = integration_module("local")
    idle = integration_module("local.idle")
    voice = joe_voice()
    engine = local.PiperEngine(device_profile(BenchConfig(quick=True)))
    try:
        await engine.load(voice)
        await engine.synthesize_wav("Hello, this warms the voice up.", voice)
        idle.trim_heap()
        await asyncio.sleep(0.3)
        baseline = rss_mb()
        chunks = 0
        with _PeakRss() as peak:
            start = time.perf_counter()
            first_audio = 0.0
            async for _chunk in engine.synthesize(text, voice):
                if chunks == 0:
                    first_audio = time.perf_counter() - start
                chunks += 1
            total = time.perf_counter() - start
        return {
            "chars": len(text),
            "pieces": chunks,
            "baseline_mb": round(baseline, 1),
            "peak_growth_mb": round(peak.peak - baseline, 1),
            "first_audio_s": round(first_audio, 4),
            "total_s": round(total, 3),
        }
    finally:
        await engine.close()


async def _probe_hedge() -> dict[str, Any]:
    """CPU spent after the cloud wins a hedge against the device's long text."""
    fallback = integration_module("fallback")
    local = integration_module("local")
    piper_engine = integration_module("local.piper_engine")
    voice = joe_voice()
    engine = local.PiperEngine(device_profile(BenchConfig(quick=True)))
    loop = asyncio.get_running_loop()
    device_started = asyncio.Event()
    real_render = piper_engine._render

    def render(piper: Any, text: str, length_scale: float) -> bytes:
        loop.call_soon_threadsafe(device_started.set)
        return real_render(piper, text, length_scale)

    try:
        await engine.load(voice)
        # CPU time of one whole piece, for scale.
        piece = piper_engine.split_for_streaming(long_text())[1]
        cpu = time.process_time()
        await engine.synthesize_wav(piece, voice)
        piece_cpu = time.process_time() - cpu
        piper_engine._render = render

        async def cloud() -> Any:
            await device_started.wait()
            yield b"cloud audio"

        async def device() -> Any:
            async for chunk in engine.synthesize(long_text(), voice):
                yield chunk.audio

        policy = fallback.FallbackPolicy(hedge_deadline=0.0)
        source, stream = await policy.stream(cloud, device)
        await anext(stream)
        won = time.process_time()
        await asyncio.sleep(_AFTER_WIN_WINDOW)
        return {
            "winner": str(source),
            "piece_chars": len(piece),
            "piece_cpu_s": round(piece_cpu, 4),
            "cpu_after_win_s": round(time.process_time() - won, 4),
        }
    finally:
        piper_engine._render = real_render
        await engine.close()


def _run_probe(kind: str) -> dict[str, Any]:
    """Run one probe in a fresh interpreter and return its JSON."""
    completed = subprocess.run(
        [sys.executable, "-m", "scripts.benchmarks.long_text", "probe", kind],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=_PROBE_TIMEOUT,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def long_text_figures(config: BenchConfig) -> list[Figure]:
    """Figures 9a-9c: memory, first audio and stopping after a lost hedge."""
    rounds = 2 if config.quick else 5
    normal: list[dict[str, Any]] = []
    long: list[dict[str, Any]] = []
    for index in range(rounds):
        order = ("normal", "long") if index % 2 == 0 else ("long", "normal")
        for kind in order:
            (normal if kind == "normal" else long).append(_run_probe(kind))
    hedges = [_run_probe("hedge") for _ in range(1 if config.quick else 3)]

    def median(samples: list[dict[str, Any]], key: str) -> float:
        return statistics.median(sample[key] for sample in samples)

    common_extras = {"normal_rounds": normal, "long_rounds": long}
    notes = (
        f"each side in a fresh process, {rounds} alternating rounds, medians; "
        f"normal: {len(ANNOUNCEMENT)} characters in 3 sentences, the first cut "
        "at its clause; long: "
        f"{LONG_TEXT_CHARS} characters without punctuation"
    )
    return [
        Figure(
            key="long_text_memory",
            title="Peak RSS growth, 2,000 unpunctuated characters vs announcement",
            unit="MB",
            value=median(long, "peak_growth_mb"),
            value_label="2,000-character unpunctuated text",
            anchor=median(normal, "peak_growth_mb"),
            anchor_label="200-character announcement",
            goal=1.2,
            goal_on="ratio",
            notes=notes,
            extras=common_extras,
        ),
        Figure(
            key="long_text_first_audio",
            title="First audio, 2,000 unpunctuated characters vs announcement",
            unit="s",
            value=median(long, "first_audio_s"),
            value_label="2,000-character unpunctuated text",
            anchor=median(normal, "first_audio_s"),
            anchor_label="200-character announcement",
            goal=1.2,
            goal_on="ratio",
            notes=notes,
        ),
        Figure(
            key="long_text_after_lost_hedge",
            title="CPU after the cloud wins a hedge vs one piece",
            unit="s CPU",
            value=median(hedges, "cpu_after_win_s"),
            value_label=f"process CPU in the {_AFTER_WIN_WINDOW:g} s after the win",
            anchor=median(hedges, "piece_cpu_s"),
            anchor_label="CPU of one whole piece",
            goal=1.2,
            goal_on="ratio",
            notes="the device was on the 2,000-character text when the cloud won",
            extras={"rounds": hedges},
        ),
    ]


def main() -> None:
    """``probe normal|long|hedge``: print one side's JSON."""
    kind = sys.argv[2]
    if kind == "hedge":
        result = asyncio.run(_probe_hedge())
    else:
        text = ANNOUNCEMENT if kind == "normal" else long_text()
        result = asyncio.run(_probe_speech(text))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
