"""Figures 1 and 2: PiperEngine against Piper's own API and against wyoming-piper."""

from __future__ import annotations

from contextlib import aclosing
import time
from typing import TYPE_CHECKING, Any

from .common import (
    THREE_SENTENCE_ANNOUNCEMENT,
    BenchConfig,
    Figure,
    announcements,
    elapsed_since,
    median_of,
    ort_default_threads,
    rounded,
    run_blocking,
    time_pair,
)
from .wyoming_server import WyomingPiperServer, wyoming_first_audio

if TYPE_CHECKING:
    from piper import PiperVoice

    from custom_components.tts_ai.local import LocalVoice, PiperEngine


def load_raw_piper(voice: LocalVoice, board_cores: int | None = None) -> PiperVoice:
    """Load the voice the way Piper's README does: ``PiperVoice.load`` defaults.

    ``board_cores`` (pinned runs) gives ONNX Runtime the default thread count
    of a board with that many cores; see :func:`ort_default_threads`.
    """
    from piper import PiperVoice  # noqa: PLC0415 - heavy, and only needed here

    with ort_default_threads(board_cores):
        return PiperVoice.load(voice.model_path, voice.config_path)


def raw_synthesize_all(piper: PiperVoice, texts: list[str]) -> int:
    """Synthesise every text with ``PiperVoice.synthesize``; return PCM bytes made.

    The int16 bytes are taken from each chunk, as the engine does, so both
    sides end with the same playable PCM.
    """
    produced = 0
    for text in texts:
        for chunk in piper.synthesize(text):
            produced += len(chunk.audio_int16_bytes)
    return produced


async def engine_synthesize_all(
    engine: PiperEngine, voice: LocalVoice, texts: list[str]
) -> int:
    """Synthesise every text through the engine; return PCM bytes made."""
    produced = 0
    for text in texts:
        async for chunk in engine.synthesize(text, voice):
            produced += len(chunk.audio)
    return produced


async def engine_first_audio(
    engine: PiperEngine, voice: LocalVoice, text: str
) -> float:
    """Seconds from the request to the engine's first PCM chunk.

    The rest of the stream is drained (untimed) so the next round starts
    with the engine idle.
    """
    start = time.perf_counter()
    first: float | None = None
    async with aclosing(engine.synthesize(text, voice)) as stream:
        async for _chunk in stream:
            if first is None:
                first = elapsed_since(start)
    if first is None:
        raise RuntimeError("the engine produced no audio")
    return first


async def tts_total_time_figure(
    engine: PiperEngine, raw: PiperVoice, voice: LocalVoice, config: BenchConfig
) -> Figure:
    """Figure 1: total synthesis time, engine ÷ raw ``PiperVoice.synthesize``."""
    texts = announcements(config.timing_texts)

    async def engine_side() -> float:
        start = time.perf_counter()
        await engine_synthesize_all(engine, voice, texts)
        return elapsed_since(start)

    async def raw_side() -> float:
        start = time.perf_counter()
        await run_blocking(raw_synthesize_all, raw, texts)
        return elapsed_since(start)

    timing = await time_pair(engine_side, raw_side, config)
    return Figure(
        key="tts_total_time",
        title="Local TTS total time vs raw PiperVoice.synthesize",
        unit="s",
        value=timing.first_median,
        value_label="PiperEngine.synthesize",
        anchor=timing.second_median,
        anchor_label="PiperVoice.load + synthesize (defaults)",
        goal=1.05,
        goal_on="ratio",
        notes=f"{len(texts)} announcements per round; {median_of(config)}",
        extras={"texts": texts, **timing.extras("engine", "raw")},
    )


async def first_audio_figure(
    engine: PiperEngine, voice: LocalVoice, config: BenchConfig
) -> Figure:
    """Figure 2: time to first audio, engine ÷ wyoming-piper 2.5 (streaming events).

    The non-streaming ``synthesize`` event is timed too and kept in the extras.
    """
    text = THREE_SENTENCE_ANNOUNCEMENT
    extras: dict[str, Any] = {"text": text}
    async with WyomingPiperServer(voice, board_cores=config.pinned_cores) as server:
        extras["wyoming_piper_version"] = server.version
        extras["wyoming_supports_streaming"] = server.supports_streaming

        async def engine_side() -> float:
            return await engine_first_audio(engine, voice, text)

        async def wyoming_streaming() -> float:
            return await wyoming_first_audio(server, text, streaming=True)

        async def wyoming_single_event() -> float:
            return await wyoming_first_audio(server, text, streaming=False)

        anchor_side = wyoming_streaming if server.supports_streaming else None
        mode = "synthesize-start/chunk/stop (streaming)"
        if anchor_side is None:
            anchor_side = wyoming_single_event
            mode = "synthesize (single event)"
        timing = await time_pair(engine_side, anchor_side, config)
        single_event = await time_pair(engine_side, wyoming_single_event, config)
    extras |= {
        "wyoming_mode_measured": mode,
        "wyoming_single_event_first_audio_s": round(single_event.second_median, 4),
        **timing.extras("engine", "wyoming"),
        "wyoming_single_event_samples": rounded(single_event.second),
    }
    return Figure(
        key="tts_first_audio",
        title="Time to first audio (3 sentences) vs wyoming-piper",
        unit="s",
        value=timing.first_median,
        value_label="PiperEngine first chunk",
        anchor=timing.second_median,
        anchor_label=f"wyoming-piper first AudioChunk, {mode}",
        goal=0.6,
        goal_on="ratio",
        notes=(
            "wyoming-piper runs as a subprocess on 127.0.0.1, one TCP connection "
            f"per request; {median_of(config)}"
        ),
        extras=extras,
    )
