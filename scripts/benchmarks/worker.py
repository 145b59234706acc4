"""Run one benchmark suite in this process and write its figures as JSON.

Started by the orchestrator (``python -m scripts.benchmarks``) as a fresh
subprocess per suite, so memory figures start clean and a pinned suite's
thread pools are created on the pinned core::

    python -m scripts.benchmarks.worker speed --out figures.json [--quick] [--pin 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
import time
from typing import Any

from .common import (
    BenchConfig,
    Figure,
    confine_threads,
    device_profile,
    integration_module,
    joe_voice,
    pin_to_cores,
    run_blocking,
    whisper_dir,
)
from .memory import loaded_memory_figures, soak_memory_figure

SUITES = ("speed", "memory", "soak", "long_text", "wake", "loop_stall", "turn")
PINNED_PREFIX = "pinned_"


async def speed_suite(config: BenchConfig) -> list[Figure]:
    """Figures 1-5 (without 3 when pinned: the fallback figure is not per-board)."""
    # Imported here, not at the top: they bring numpy, aiohttp and the
    # stand-in, which must not be in a memory suite's pre-load figure.
    from .fallback import fallback_figures  # noqa: PLC0415
    from .stt import (  # noqa: PLC0415
        load_raw_whisper,
        round_trip_figure,
        stt_time_figure,
    )
    from .tts import (  # noqa: PLC0415
        first_audio_figure,
        load_raw_piper,
        tts_total_time_figure,
    )

    local = integration_module("local")
    voice = joe_voice()
    profile = device_profile(config)
    piper = local.PiperEngine(profile, idle_unload_after=None)
    whisper = local.WhisperEngine(whisper_dir(), profile, idle_unload_after=None)
    try:
        await piper.load(voice)
        await whisper.load()
        raw_piper = await run_blocking(load_raw_piper, voice, config.pinned_cores)
        raw_whisper = await run_blocking(load_raw_whisper, whisper_dir(), profile)
        if config.pinned_cores is not None:
            confine_threads(os.getpid(), os.sched_getaffinity(0))
        figures = [
            await tts_total_time_figure(piper, raw_piper, voice, config),
            await first_audio_figure(piper, voice, config),
        ]
        if config.pinned_cores is None:
            figures.extend(await fallback_figures(piper, voice, config))
        figures.append(
            await stt_time_figure(whisper, raw_whisper, piper, voice, config)
        )
        figures.append(
            await round_trip_figure(
                piper=piper,
                whisper=whisper,
                raw_piper=raw_piper,
                raw_model=raw_whisper,
                voice=voice,
                config=config,
            )
        )
    finally:
        await piper.close()
        await whisper.close()
    return figures


async def run_suite(name: str, config: BenchConfig) -> list[Figure]:
    """Run the named suite."""
    if name == "speed":
        return await speed_suite(config)
    if name == "memory":
        return await loaded_memory_figures(config)
    if name == "soak":
        return [await soak_memory_figure(config)]
    if name == "long_text":
        # Each side runs in a process of its own; this one only gathers.
        from .long_text import long_text_figures  # noqa: PLC0415

        return long_text_figures(config)
    if name == "wake":
        from .wake import wake_figures  # noqa: PLC0415

        return await wake_figures(config)
    if name == "loop_stall":
        from .loop_stall import loop_stall_figure  # noqa: PLC0415

        return [await loop_stall_figure(config)]
    if name == "turn":
        # A real Home Assistant; the set-up blocks and runs its own loop.
        from .turn import turn_figures  # noqa: PLC0415

        return await asyncio.to_thread(turn_figures, config)
    raise ValueError(f"unknown suite {name!r}")


def main() -> None:
    """Parse the arguments, pin if asked, run the suite, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=SUITES)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pin", type=int, metavar="CORES")
    args = parser.parse_args()

    # Pin before anything starts a thread pool: ONNX Runtime and CTranslate2
    # size theirs from the cores this process may use.
    pinned = pin_to_cores(args.pin) if args.pin else None
    config = BenchConfig(quick=args.quick, pinned_cores=args.pin)
    start = time.perf_counter()
    load_before = os.getloadavg()
    figures = asyncio.run(run_suite(args.suite, config))
    load_after = os.getloadavg()
    if pinned is not None:
        suffix = f" [{args.pin} core]" if args.pin == 1 else f" [{args.pin} cores]"
        figures = [figure.prefixed(PINNED_PREFIX, suffix) for figure in figures]
    result: dict[str, Any] = {
        "suite": args.suite,
        "pinned_cpus": pinned,
        "affinity": sorted(os.sched_getaffinity(0)),
        "elapsed_s": round(time.perf_counter() - start, 1),
        # Other work on the machine shows here: timings from a busy machine
        # are rougher.
        "load_average_1min_before": round(load_before[0], 2),
        "load_average_1min_after": round(load_after[0], 2),
        "figures": [figure.to_json() for figure in figures],
    }
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
