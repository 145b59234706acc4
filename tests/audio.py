"""Audio checks for tests: decode what came out, with the real ffmpeg."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import json


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe says of a piece of audio."""

    format_name: str
    codec: str
    duration: float
    sample_rate: int


async def probe(data: bytes) -> AudioInfo:
    """Decode audio bytes with ffprobe; fail the test when they are not audio."""
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-print_format", "json", "-show_format",
        "-show_streams", "-i", "pipe:0",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate(data)
    assert proc.returncode == 0, err.decode()
    info = json.loads(out)
    stream = next(s for s in info["streams"] if s["codec_type"] == "audio")
    # Streamed MP3 has no length header: count decoded samples for the duration.
    duration = await decoded_duration(data)
    return AudioInfo(
        format_name=info["format"]["format_name"],
        codec=stream["codec_name"],
        duration=duration,
        sample_rate=int(stream["sample_rate"]),
    )


async def decode_pcm(data: bytes, rate: int = 16000) -> bytes:
    """Decode any audio to 16-bit mono PCM at `rate`."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1",
        "-ar", str(rate), "pipe:1",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate(data)
    assert proc.returncode == 0, err.decode()
    return out


async def decoded_duration(data: bytes) -> float:
    """Return the real playing time of audio bytes, in seconds."""
    return len(await decode_pcm(data)) / 2 / 16000
