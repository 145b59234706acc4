"""Figure 3: first audio through FallbackPolicy when the cloud refuses or hangs.

The cloud side is the real TtsAiClient talking HTTP to the TTS.ai stand-in
on 127.0.0.1, with a fault injected; the local side is the PiperEngine,
yielding raw PCM (nothing is encoded, so only the policy's cost shows).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
import logging
import statistics
import time
from typing import TYPE_CHECKING

import aiohttp

from tests.harness.standin import DEFAULT_API_KEY, Fault, StandinServer

from .common import (
    THREE_SENTENCE_ANNOUNCEMENT,
    VOICE_KEY,
    BenchConfig,
    Figure,
    elapsed_since,
    integration_module,
    median_of,
    rounded,
    time_pair,
)

if TYPE_CHECKING:
    from custom_components.tts_ai.local import LocalVoice, PiperEngine

HEDGE_DEADLINE = 1.5
# Figure 3b's goal: the hedge deadline plus local first audio plus this slack.
HANG_SLACK = 0.1


async def _local_pcm(
    engine: PiperEngine, voice: LocalVoice, text: str
) -> AsyncIterator[bytes]:
    """The local factory's stream: the engine's PCM bytes, unencoded."""
    async with aclosing(engine.synthesize(text, voice)) as chunks:
        async for chunk in chunks:
            yield chunk.audio


async def fallback_figures(
    engine: PiperEngine, voice: LocalVoice, config: BenchConfig
) -> list[Figure]:
    """Figure 3a (cloud refusing) and 3b (cloud hanging)."""
    fallback = integration_module("fallback")
    api = integration_module("api")
    text = THREE_SENTENCE_ANNOUNCEMENT
    # Each refused round logs "cloud unavailable" (a fresh policy each time):
    # expected here, so keep it out of the benchmark's output.
    logging.getLogger(fallback.__name__).setLevel(logging.ERROR)
    server = StandinServer()
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = api.TtsAiClient(session, DEFAULT_API_KEY, base_url=server.base_url)

            def cloud() -> AsyncIterator[bytes]:
                return client.tts_stream(
                    text, model="piper", voice=VOICE_KEY, format="mp3"
                )

            def local() -> AsyncIterator[bytes]:
                return _local_pcm(engine, voice, text)

            async def first_audio(mode: object) -> float:
                # A new policy each round: a shared one would open its circuit
                # breaker after the first failure and skip the cloud after that.
                policy = fallback.FallbackPolicy(mode, hedge_deadline=HEDGE_DEADLINE)
                start = time.perf_counter()
                source, stream = await policy.stream(cloud, local)
                async with aclosing(stream):
                    await anext(stream)
                    elapsed = elapsed_since(start)
                    async for _rest in stream:
                        pass  # drain untimed, so the engine is idle next round
                if source is not fallback.Source.LOCAL:
                    raise RuntimeError(f"expected the local engine, got {source}")
                return elapsed

            async def local_only() -> float:
                return await first_audio(fallback.Mode.LOCAL_ONLY)

            async def cloud_first() -> float:
                return await first_audio(fallback.Mode.CLOUD_FIRST)

            server.inject(Fault.REFUSE)
            timing = await time_pair(cloud_first, local_only, config)
            server.clear_faults()
            server.inject(Fault.HANG)
            hang_samples = [await cloud_first() for _ in range(config.hang_repeats)]
    finally:
        await server.stop()

    local_s = timing.second_median
    hang_s = statistics.median(hang_samples)
    hang_goal_s = HEDGE_DEADLINE + local_s + HANG_SLACK
    refused = Figure(
        key="fallback_refused_first_audio",
        title="First audio, cloud refusing connections vs local-only",
        unit="s",
        value=timing.first_median,
        value_label="FallbackPolicy cloud_first, stand-in Fault.REFUSE",
        anchor=local_s,
        anchor_label="FallbackPolicy local_only",
        goal=1.10,
        goal_on="ratio",
        notes=f"real TtsAiClient over HTTP; {median_of(config)}",
        extras={"text": text, **timing.extras("refused", "local_only")},
    )
    hanging = Figure(
        key="fallback_hang_first_audio",
        title="First audio, cloud hanging vs hedge deadline + local + 0.1 s",
        unit="s",
        value=hang_s,
        value_label="FallbackPolicy cloud_first, stand-in Fault.HANG",
        anchor=hang_goal_s,
        anchor_label=(
            f"hedge_deadline {HEDGE_DEADLINE} s + local-only first audio "
            f"+ {HANG_SLACK} s"
        ),
        goal=1.0,
        goal_on="ratio",
        notes=f"median of {config.hang_repeats} rounds",
        extras={
            "hedge_deadline_s": HEDGE_DEADLINE,
            "local_only_first_audio_s": round(local_s, 4),
            "hang_samples": rounded(hang_samples),
        },
    )
    return [refused, hanging]
