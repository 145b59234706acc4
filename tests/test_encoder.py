"""The on-device MP3 encoder: ffmpeg fed sentence by sentence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import math
import struct
from typing import Any
from unittest.mock import patch

import pytest

from custom_components.tts_ai.local.encoder import EncoderError, encode_mp3
from custom_components.tts_ai.local.pcm import PcmChunk
from tests.audio import probe

RATE = 22050


def sentence(seconds: float, text: str, rate: int = RATE) -> PcmChunk:
    count = int(seconds * rate)
    audio = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 330 * i / rate)))
        for i in range(count)
    )
    return PcmChunk(audio=audio, sample_rate=rate, text=text)


async def stream(*chunks: PcmChunk) -> AsyncIterator[PcmChunk]:
    for chunk in chunks:
        yield chunk


async def test_sentences_become_one_mp3_of_their_total_length() -> None:
    parts = [sentence(0.5, "One."), sentence(1.0, "Two."), sentence(0.5, "Three.")]

    mp3 = b"".join([data async for data in encode_mp3(stream(*parts))])

    info = await probe(mp3)
    assert info.codec == "mp3"
    assert 1.9 < info.duration < 2.2


async def test_nothing_to_say_gives_no_audio_and_starts_no_ffmpeg() -> None:
    with patch("asyncio.create_subprocess_exec") as started:
        assert [data async for data in encode_mp3(stream())] == []
    started.assert_not_called()


async def test_an_ffmpeg_failure_is_an_encoder_error_with_its_message() -> None:
    # A sample rate ffmpeg refuses: its own words end up in the error.
    with pytest.raises(
        EncoderError, match=r"(?is)ffmpeg could not encode MP3: .*sample rate"
    ):
        async for _ in encode_mp3(stream(PcmChunk(b"\x00\x00" * 100, 0, "Hi."))):
            pass


async def test_a_listener_that_stops_early_leaves_no_ffmpeg_running() -> None:
    started: list[asyncio.subprocess.Process] = []
    real_exec = asyncio.create_subprocess_exec

    async def record(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        proc = await real_exec(*args, **kwargs)
        started.append(proc)
        return proc

    parts = [sentence(2.0, "A long sentence.") for _ in range(5)]
    with patch("asyncio.create_subprocess_exec", record):
        audio = encode_mp3(stream(*parts))
        assert await anext(audio)
        await audio.aclose()

    [proc] = started
    assert proc.returncode is not None
