"""Figures 6 and 7: resident memory of the engines, each run in a fresh process.

Figure 6c, the cost of the engine process in first-audio time after a quiet
spell, is measured here too: it is the other side of figure 6b.

The worker that runs these has imported nothing heavy (no numpy, onnxruntime,
ctranslate2, nor Home Assistant) when the pre-load figure is taken, so the
numbers show what the engines add to a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

from .common import (
    BenchConfig,
    Figure,
    announcements,
    confine_threads,
    device_profile,
    integration_module,
    joe_voice,
    median_of,
    rss_mb,
    time_pair,
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


async def _speak(engine: PiperEngine | Any, voice: LocalVoice, text: str) -> bytes:
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


def _exists(pid: int) -> bool:
    """Whether a process (or its unreaped remains) exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def loaded_memory_figures(config: BenchConfig) -> list[Figure]:
    """Figures 6a-6c: memory with the engines loaded and after the idle exit,
    and the first audio after a quiet spell.

    The engines run in their child process, as the integration runs them:
    the parent's figure is Home Assistant's. Then, in the same process, the
    engines run in-process as they used to, for the old figures (extras) and
    for 6c's anchor: the first audio of an in-process engine reloading its
    voice after an idle unload.
    """
    local = integration_module("local")
    voice = joe_voice()
    profile = device_profile(config)
    host = local.EngineHost(profile, idle_exit_after=IDLE_UNLOAD_AFTER)
    piper = local.HostedPiper(host)
    whisper = local.HostedWhisper(host, whisper_dir())
    gc.collect()
    pre_load = rss_mb()
    # Loaded and used once each: working buffers are part of the footprint.
    pcm = await _speak(piper, voice, _SPOKEN_TEXT)
    await whisper.transcribe(pcm, sample_rate=piper.sample_rate(voice), language="en")
    parent_loaded = rss_mb()
    child_pid = host.pid
    assert child_pid is not None
    child_loaded = rss_mb(child_pid)
    engine_modules = [name for name in _ENGINE_MODULES if name in sys.modules]

    async def exited() -> None:
        # The host signals nothing when the child exits, so poll.
        while host.pid is not None or _exists(child_pid):  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    await asyncio.wait_for(exited(), _UNLOAD_TIMEOUT)
    await asyncio.sleep(_SETTLE)
    gc.collect()
    after_exit = rss_mb()
    await host.close()

    in_process = await _in_process_memory(local, voice, profile)
    first_audio = await _first_audio_after_idle_figure(local, voice, profile, config)

    common_notes = (
        "fresh process without Home Assistant imported; "
        f"{profile.intra_op_threads} inference threads; the engines run in "
        "their child process, as in the integration"
    )
    loaded_figure = Figure(
        key="rss_loaded",
        title="RSS with Piper medium + Whisper tiny loaded (parent + engine process)",
        unit="MB",
        value=parent_loaded + child_loaded,
        value_label=(
            f"parent {parent_loaded:.0f} MB + engine process {child_loaded:.0f} MB, "
            "after one synthesis and one transcription"
        ),
        anchor=pre_load,
        anchor_label="parent before loading",
        goal=350.0,
        goal_on="value",
        notes=common_notes,
        extras={
            "parent_loaded_mb": round(parent_loaded, 1),
            "engine_process_loaded_mb": round(child_loaded, 1),
            "engine_modules_in_parent": engine_modules,
            # Measured after the engine process, in this same process: not a
            # fresh process's figure (that reads ~306 MB here).
            "in_process_loaded_mb": round(in_process["loaded"], 1),
            "in_process_pre_load_mb": round(in_process["pre_load"], 1),
        },
    )
    unload_figure = Figure(
        key="rss_after_idle_unload",
        title="Parent RSS after the engine process's idle exit vs pre-load",
        unit="MB",
        value=after_exit,
        value_label=f"parent after the idle exit ({IDLE_UNLOAD_AFTER:g} s)",
        anchor=pre_load,
        anchor_label="same process before loading",
        goal=30.0,
        goal_on="growth",
        notes=(
            f"{common_notes}; in-process (as before), the idle unload left "
            f"+{in_process['after_unload'] - in_process['pre_load']:.0f} MB"
        ),
        extras={
            "engine_modules_in_parent": engine_modules,
            "in_process_after_idle_unload_mb": round(in_process["after_unload"], 1),
            "in_process_growth_mb": round(
                in_process["after_unload"] - in_process["pre_load"], 1
            ),
            "in_process_libraries_imported_mb": round(in_process["libraries"], 1),
        },
    )
    return [loaded_figure, unload_figure, first_audio]


# What the engines import; none of it may be in the parent (figure 6a's extras).
_ENGINE_MODULES = ("numpy", "onnxruntime", "piper", "faster_whisper", "ctranslate2")


async def _in_process_memory(
    local: Any, voice: LocalVoice, profile: Any
) -> dict[str, float]:
    """RSS of the engines loaded in this process and after their idle unload."""
    piper = local.PiperEngine(profile, idle_unload_after=IDLE_UNLOAD_AFTER)
    whisper = local.WhisperEngine(
        whisper_dir(), profile, idle_unload_after=IDLE_UNLOAD_AFTER
    )
    gc.collect()
    pre_load = rss_mb()
    _import_engine_libraries()
    libraries = rss_mb()
    pcm = await _speak(piper, voice, _SPOKEN_TEXT)
    await whisper.transcribe(pcm, sample_rate=piper.sample_rate(voice), language="en")
    loaded = rss_mb()

    async def unloaded() -> None:
        while piper.loaded_voices or whisper.is_loaded:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    await asyncio.wait_for(unloaded(), _UNLOAD_TIMEOUT)
    await asyncio.sleep(_SETTLE)
    after_unload = rss_mb()
    await piper.close()
    await whisper.close()
    return {
        "pre_load": pre_load,
        "libraries": libraries,
        "loaded": loaded,
        "after_unload": after_unload,
    }


async def _first_chunk(engine: Any, voice: LocalVoice) -> float:
    """Seconds until the first piece of _SPOKEN_TEXT is synthesised."""
    start = time.perf_counter()
    async with contextlib.aclosing(engine.synthesize(_SPOKEN_TEXT, voice)) as chunks:
        await anext(chunks)
    return time.perf_counter() - start


async def _first_audio_after_idle_figure(
    local: Any, voice: LocalVoice, profile: Any, config: BenchConfig
) -> Figure:
    """Figure 6c: first audio after a quiet spell, engine process vs in-process.

    After the idle exit the first request starts the engine process, which
    imports the engines' libraries and loads the voice; an in-process engine
    after its idle unload only reloads the voice (its libraries stayed).
    Both are timed to the first synthesised piece, in alternating rounds;
    warm engines (voice loaded) give the floor.
    """
    host = local.EngineHost(profile, idle_exit_after=None)
    hosted = local.HostedPiper(host)
    in_process = local.PiperEngine(profile, idle_unload_after=None)
    await in_process.load(voice)  # its libraries are imported for good

    async def host_after_idle() -> float:
        await host.stop()  # what the idle exit does
        return await _first_chunk(hosted, voice)

    async def in_process_after_idle() -> float:
        await in_process.unload()  # what the idle unload does
        return await _first_chunk(in_process, voice)

    async def host_warm() -> float:
        return await _first_chunk(hosted, voice)

    async def in_process_warm() -> float:
        return await _first_chunk(in_process, voice)

    try:
        cold = await time_pair(host_after_idle, in_process_after_idle, config)
        await hosted.load(voice)
        warm = await time_pair(host_warm, in_process_warm, config)
    finally:
        await host.close()
        await in_process.close()
    return Figure(
        key="first_audio_after_idle",
        title="First audio after the idle exit vs in-process reload after idle unload",
        unit="s",
        value=cold.first_median,
        value_label="engine process start + voice load + first piece",
        anchor=cold.second_median,
        anchor_label="in-process engine: voice reload + first piece",
        goal=1.0,
        goal_on="growth",
        notes=(
            f"{median_of(config)}; first piece of a 2-sentence announcement; warm, "
            f"the engine process gives it in {warm.first_median:.3f} s, "
            f"in-process {warm.second_median:.3f} s "
            f"(ratio {warm.first_median / warm.second_median:.2f})"
        ),
        extras={
            **cold.extras("after_idle_exit", "in_process_after_unload"),
            **warm.extras("warm_engine_process", "warm_in_process"),
            "warm_ratio": round(warm.first_median / warm.second_median, 3),
            "after_idle_vs_warm_engine_process_ratio": round(
                cold.first_median / warm.first_median, 3
            ),
        },
    )


async def soak_memory_figure(config: BenchConfig) -> Figure:
    """Figure 7: RSS growth over many short local syntheses, as a slope.

    RSS is sampled after every few syntheses and a least-squares line is
    fitted through the whole trace: its rise over the run is the growth.
    End minus start would hang on two samples, and a heap trim or a
    neighbour's page-cache pressure at either end moves it by megabytes.
    """
    local = integration_module("local")
    voice = joe_voice()
    # As the integration runs it: Piper in the engine process, which never
    # exits here; the RSS is both processes' together.
    host = local.EngineHost(device_profile(config), idle_exit_after=None)
    engine = local.HostedPiper(host)
    sentences = announcements()
    # Warm up over distinct sentences so ONNX Runtime has seen the usual
    # input lengths before the baseline is taken.
    for sentence in sentences[:10]:
        await _speak(engine, voice, sentence)
    child = host.pid
    assert child is not None

    def both_rss_mb() -> float:
        return rss_mb() + rss_mb(child)

    if config.pinned_cores is not None:
        confine_threads(os.getpid(), os.sched_getaffinity(0))
        confine_threads(child, os.sched_getaffinity(0))
    gc.collect()
    before = both_rss_mb()
    count = config.soak_syntheses
    trace_every = max(count // _TRACE_POINTS, 1)
    done: list[float] = [0.0]
    trace: list[float] = [before]
    for index in range(count):
        await _speak(engine, voice, sentences[index % len(sentences)])
        if (index + 1) % trace_every == 0:
            done.append(float(index + 1))
            trace.append(both_rss_mb())
    gc.collect()
    after = both_rss_mb()
    if host.starts != 1:
        raise RuntimeError("the engine process restarted during the soak")
    await engine.close()
    await host.close()
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
            f"Piper in the engine process, as in the integration (RSS of both"
            f" processes); short announcements in turn; least-squares line "
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
