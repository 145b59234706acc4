"""Figures 6 and 7: resident memory of the engines, each run in a fresh process.

The worker that runs these has imported nothing heavy (no numpy, onnxruntime,
ctranslate2, nor Home Assistant) when the pre-load figure is taken, so the
numbers show what the engines add to a process.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import os
import statistics
from typing import TYPE_CHECKING

from .common import (
    BenchConfig,
    Figure,
    announcements,
    confine_threads,
    device_profile,
    integration_module,
    joe_voice,
    rss_mb,
    whisper_dir,
)

if TYPE_CHECKING:
    from custom_components.tts_ai.local import LocalVoice, PiperEngine

# Short, so the idle unload happens within the benchmark.
IDLE_UNLOAD_AFTER = 1.0
_UNLOAD_TIMEOUT = 60.0
# Time for the release task (gc in the executor) to finish after the engines
# report nothing loaded.
_SETTLE = 1.0
# RSS samples over the soak (figure 7), for the slope.
_TRACE_POINTS = 100
_SPOKEN_TEXT = "The front door is unlocked. It is 21 degrees in the living room."


async def _speak(engine: PiperEngine, voice: LocalVoice, text: str) -> bytes:
    """Synthesise ``text`` and return its PCM."""
    return b"".join([chunk.audio async for chunk in engine.synthesize(text, voice)])


def _import_engine_libraries() -> None:
    """Import what loading the engines imports, so its cost can be told apart.

    Loading would import these anyway, so the loaded figure is unchanged;
    unloading cannot un-import them.
    """
    import ctranslate2  # noqa: F401, PLC0415
    import faster_whisper  # noqa: F401, PLC0415
    import numpy  # noqa: F401, PLC0415
    import onnxruntime  # noqa: F401, PLC0415
    import piper  # noqa: F401, PLC0415


def _malloc_trim() -> bool:
    """Ask glibc to give freed heap memory back to the system; False if no glibc."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name)
    if not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


async def loaded_memory_figures(config: BenchConfig) -> list[Figure]:
    """Figure 6: RSS with Piper medium + Whisper tiny loaded, and after idle unload."""
    local = integration_module("local")
    voice = joe_voice()
    profile = device_profile(config)
    piper = local.PiperEngine(profile, idle_unload_after=IDLE_UNLOAD_AFTER)
    whisper = local.WhisperEngine(
        whisper_dir(), profile, idle_unload_after=IDLE_UNLOAD_AFTER
    )
    gc.collect()
    pre_load = rss_mb()
    _import_engine_libraries()
    libraries_imported = rss_mb()
    # Loaded and used once each: working buffers are part of the footprint.
    pcm = await _speak(piper, voice, _SPOKEN_TEXT)
    await whisper.transcribe(pcm, sample_rate=piper.sample_rate(voice), language="en")
    loaded = rss_mb()

    async def unloaded() -> None:
        # The engines signal nothing when they unload, so poll.
        while piper.loaded_voices or whisper.is_loaded:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    await asyncio.wait_for(unloaded(), _UNLOAD_TIMEOUT)
    await asyncio.sleep(_SETTLE)
    after_unload = rss_mb()
    trimmed = _malloc_trim()
    after_trim = rss_mb()
    await piper.close()
    await whisper.close()

    common_notes = (
        "fresh process without Home Assistant imported; "
        f"{profile.intra_op_threads} inference threads"
    )
    loaded_figure = Figure(
        key="rss_loaded",
        title="RSS with Piper medium + Whisper tiny loaded",
        unit="MB",
        value=loaded,
        value_label="after one synthesis and one transcription",
        anchor=pre_load,
        anchor_label="same process before loading",
        goal=350.0,
        goal_on="value",
        notes=common_notes,
        extras={
            "libraries_imported_mb": round(libraries_imported, 1),
            "models_added_mb": round(loaded - libraries_imported, 1),
        },
    )
    unload_figure = Figure(
        key="rss_after_idle_unload",
        title="RSS after idle unload vs pre-load",
        unit="MB",
        value=after_unload,
        value_label=f"after the engines' idle unload ({IDLE_UNLOAD_AFTER:g} s)",
        anchor=pre_load,
        anchor_label="same process before loading",
        goal=80.0,
        goal_on="growth",
        notes=(
            f"{common_notes}; the libraries imported on first load "
            f"(+{libraries_imported - pre_load:.0f} MB) stay, as in production"
            + (
                f"; glibc malloc_trim(0) then brings it to {after_trim:.0f} MB"
                if trimmed
                else ""
            )
        ),
        extras={
            "libraries_imported_mb": round(libraries_imported, 1),
            "growth_over_libraries_imported_mb": round(
                after_unload - libraries_imported, 1
            ),
            "after_malloc_trim_mb": round(after_trim, 1) if trimmed else None,
            "growth_after_malloc_trim_mb": (
                round(after_trim - pre_load, 1) if trimmed else None
            ),
            "growth_over_libraries_after_malloc_trim_mb": (
                round(after_trim - libraries_imported, 1) if trimmed else None
            ),
        },
    )
    return [loaded_figure, unload_figure]


async def soak_memory_figure(config: BenchConfig) -> Figure:
    """Figure 7: RSS growth over many short local syntheses, as a slope.

    RSS is sampled after every few syntheses and a least-squares line is
    fitted through the whole trace: its rise over the run is the growth.
    End minus start would hang on two samples, and a heap trim or a
    neighbour's page-cache pressure at either end moves it by megabytes.
    """
    local = integration_module("local")
    voice = joe_voice()
    engine = local.PiperEngine(device_profile(config), idle_unload_after=None)
    sentences = announcements()
    # Warm up over distinct sentences so ONNX Runtime has seen the usual
    # input lengths before the baseline is taken.
    for sentence in sentences[:10]:
        await _speak(engine, voice, sentence)
    if config.pinned_cores is not None:
        confine_threads(os.getpid(), os.sched_getaffinity(0))
    gc.collect()
    before = rss_mb()
    count = config.soak_syntheses
    trace_every = max(count // _TRACE_POINTS, 1)
    done: list[float] = [0.0]
    trace: list[float] = [before]
    for index in range(count):
        await _speak(engine, voice, sentences[index % len(sentences)])
        if (index + 1) % trace_every == 0:
            done.append(float(index + 1))
            trace.append(rss_mb())
    gc.collect()
    after = rss_mb()
    await engine.close()
    slope, intercept = statistics.linear_regression(done, trace)
    return Figure(
        key="rss_growth_syntheses",
        title=f"RSS growth over {count} local syntheses (slope of the trace)",
        unit="MB",
        value=intercept + slope * count,
        value_label=f"fitted RSS after {count} syntheses",
        anchor=intercept,
        anchor_label="fitted RSS after 10 warm-up syntheses",
        goal=20.0,
        goal_on="growth",
        strict=True,
        notes=(
            f"fresh process; short announcements in turn; least-squares line "
            f"through {len(trace)} RSS samples (one every {trace_every} "
            f"syntheses); end minus start was {after - before:+.1f} MB"
        ),
        extras={
            "rss_trace_mb": [round(mb, 1) for mb in trace],
            "trace_every": trace_every,
            "slope_mb_per_synthesis": round(slope, 5),
            "start_mb": round(before, 1),
            "end_mb": round(after, 1),
            "end_minus_start_mb": round(after - before, 1),
        },
    )
