"""Encode streamed PCM to MP3 on the fly with ffmpeg.

Cloud and device audio are sent to media players as one MP3 stream: when the
cloud breaks off mid-announcement, the device's sentences follow in the same
format. ffmpeg runs as a subprocess fed sentence by sentence, so the first
sentence's MP3 frames leave before the last sentence is synthesised.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib

from .pcm import PcmChunk

# 64 kbit/s mono is transparent for 22 kHz speech and small for the network.
MP3_BITRATE = "64k"
_READ_SIZE = 4096


class EncoderError(RuntimeError):
    """ffmpeg failed to encode the audio."""


async def encode_mp3(
    chunks: AsyncIterator[PcmChunk],
    *,
    ffmpeg: str = "ffmpeg",
    sample_rate: int | None = None,
) -> AsyncIterator[bytes]:
    """Yield MP3 bytes for a stream of PCM chunks, as soon as ffmpeg has them.

    With the ``sample_rate`` known up front, ffmpeg starts while the first
    chunk is still being synthesised, and the listener does not wait for
    the process to start after it (tens of milliseconds on a busy board).
    """
    if sample_rate is None:
        first = await anext(chunks, None)
        if first is None:
            return
        sample_rate = first.sample_rate
        chunks = _chain(first, chunks)
    proc = await asyncio.create_subprocess_exec(
        ffmpeg, "-hide_banner", "-loglevel", "error",
        # Raw PCM needs no probing; without this ffmpeg reads about 5 s of
        # audio (or up to the end of the input) before it writes anything:
        # a first clause's MP3 waited for the rest of its sentence.
        "-probesize", "32", "-analyzeduration", "0",
        "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
        # No ID3 tag: the first bytes out are audio (Home Assistant tags the
        # MP3 files it caches itself).
        "-f", "mp3", "-b:a", MP3_BITRATE, "-write_xing", "0", "-id3v2_version", "0",
        "-flush_packets", "1", "pipe:1",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None

    fed = False

    async def feed() -> None:
        nonlocal fed
        assert proc.stdin is not None
        try:
            async for chunk in chunks:
                fed = True
                if chunk.sample_rate != sample_rate:
                    raise EncoderError(
                        f"audio at {chunk.sample_rate} Hz in a {sample_rate} Hz stream"
                    )
                proc.stdin.write(chunk.audio)
                await proc.stdin.drain()
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    feeder = asyncio.create_task(feed())
    try:
        while data := await proc.stdout.read(_READ_SIZE):
            yield data
        await feeder  # re-raises a synthesis error from the PCM source
        if await proc.wait() != 0 and fed:  # no audio at all: nothing to say
            message = (await proc.stderr.read()).decode(errors="replace").strip()
            raise EncoderError(f"ffmpeg could not encode MP3: {message}")
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeder
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _chain(
    first: PcmChunk, rest: AsyncIterator[PcmChunk]
) -> AsyncIterator[PcmChunk]:
    yield first
    async for chunk in rest:
        yield chunk
