"""Joining synthesised parts into one file, on audio made by the real ffmpeg."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
import struct
import tempfile

import pytest

from custom_components.tts_ai.speech.audio import id3v2_size, join_audio, pcm_to_wav
from tests.audio import probe

RATE = 22050


def tone(seconds: float, rate: int = RATE) -> bytes:
    """16-bit mono PCM of a 440 Hz tone."""
    count = int(seconds * rate)
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(count)
    )


async def encode(wav: bytes, *args: str) -> bytes:
    """Encode WAV with ffmpeg (``args`` before the output, e.g. the format).

    Into a file, not a pipe: only a seekable output gets MP3's Info frame.
    """
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "out"
        proc = await asyncio.create_subprocess_exec(
            "ffmpeg", "-v", "error", "-i", "pipe:0", *args, str(output),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate(wav)
        assert proc.returncode == 0, err.decode()
        return output.read_bytes()


async def mp3_part(seconds: float, title: str, *, rate: int, mono: bool) -> bytes:
    """An MP3 file as a service sends one: ID3v2 tag, Info frame, ID3v1 tag."""
    return await encode(
        pcm_to_wav(tone(seconds, rate), rate),
        *("-ac", "1" if mono else "2", "-b:a", "64k", "-c:a", "libmp3lame"),
        *("-metadata", f"title={title}", "-id3v2_version", "3"),
        *("-write_id3v1", "1", "-write_xing", "1", "-f", "mp3"),
    )


@pytest.mark.parametrize(
    ("rate", "mono"),
    [(22050, True), (22050, False), (44100, True), (44100, False)],
    ids=["mpeg2-mono", "mpeg2-stereo", "mpeg1-mono", "mpeg1-stereo"],
)
async def test_mp3_parts_play_as_one_file_of_their_total_length(
    rate: int, mono: bool
) -> None:
    """One ID3v2 tag at the start, no stale Info frame telling a shorter length."""
    first = await mp3_part(1.0, "first", rate=rate, mono=mono)
    second = await mp3_part(2.0, "second", rate=rate, mono=mono)
    assert id3v2_size(first) > 10
    assert first[-128:][:3] == b"TAG"
    assert b"Info" in first or b"Xing" in first

    joined = join_audio([first, second], "mp3")

    info = await probe(joined)
    assert info.codec == "mp3"
    assert 2.9 < info.duration < 3.2
    assert joined.count(b"ID3") == 1
    # The parts' Info frames (each telling its own part's length) are gone.
    assert joined.count(b"Info") + joined.count(b"Xing") == 0
    assert b"second" not in joined[: id3v2_size(joined)]


async def test_mp3_parts_without_info_frames_or_with_junk_first_join() -> None:
    """Streamed MP3 has no Info frame; bytes that only look like a frame are kept."""
    streamed = await encode(
        pcm_to_wav(tone(1.0), RATE),
        *("-ac", "1", "-c:a", "libmp3lame", "-write_xing", "0", "-f", "mp3"),
    )
    tagged = await mp3_part(1.0, "tagged", rate=RATE, mono=True)
    frames = tagged[id3v2_size(tagged) :]
    # A stray 0xFF, a Layer I header and a header with a bad bitrate index.
    junk = b"\xff\x00" + b"\xff\xfe\x90\x00" + b"\xff\xfb\xf0\x00"

    joined = join_audio([streamed, junk + frames, b"\xff" * 8], "mp3")

    assert b"Info" not in joined
    assert junk in joined
    assert joined.endswith(b"\xff" * 8)
    assert 1.9 < (await probe(joined)).duration < 2.2


async def test_ogg_parts_are_chained() -> None:
    """Ogg streams chain: players play one after the other."""
    first = await encode(pcm_to_wav(tone(1.0), RATE), "-c:a", "libvorbis", "-f", "ogg")
    second = await encode(pcm_to_wav(tone(1.5), RATE), "-c:a", "libvorbis", "-f", "ogg")

    joined = join_audio([first, second], "ogg")

    assert joined == first + second
    assert (await probe(joined)).codec == "vorbis"


async def test_wav_parts_with_streamed_sizes_and_extra_chunks_join() -> None:
    """A streamed WAV (size placeholder) and one with a LIST chunk join."""
    plain = pcm_to_wav(tone(1.0), RATE)
    streamed = plain[:40] + b"\xff\xff\xff\xff" + plain[44:]
    listed = plain[:36] + b"LIST" + (3).to_bytes(4, "little") + b"abc\x00" + plain[36:]

    joined = join_audio([plain, streamed, listed], "wav")

    info = await probe(joined)
    assert info.codec == "pcm_s16le"
    assert 2.9 < info.duration < 3.1


@pytest.mark.parametrize(
    ("parts", "fmt", "message"),
    [
        ([], "mp3", "no audio to join"),
        ([b"RIFF....WAVE", b"RIFF....WAVE"], "flac", "cannot be joined"),
        ([b"OggS", b"not a wav"], "wav", "not a WAV file"),
        (
            [b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00"] * 2,
            "wav",
            "no fmt chunk",
        ),
        ([b"RIFF\x00\x00\x00\x00WAVE"] * 2, "wav", "no data chunk"),
    ],
)
def test_parts_that_cannot_be_joined_are_refused(
    parts: list[bytes], fmt: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        join_audio(parts, fmt)


def test_a_single_part_is_returned_as_it_is() -> None:
    assert join_audio([b"anything"], "flac") == b"anything"


def test_id3v2_size_needs_ten_bytes_and_counts_a_footer() -> None:
    assert id3v2_size(b"ID3") is None
    assert id3v2_size(b"\xff\xfb\x90\x00" * 3) == 0
    # Syncsafe size 0x01 0x00 = 128 bytes, with a footer flag: 10 + 128 + 10.
    assert id3v2_size(b"ID3\x04\x00\x10\x00\x00\x01\x00") == 148
