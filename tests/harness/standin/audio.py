"""Audio decoding and encoding with the ffmpeg binary, run as asyncio subprocesses.

Uploads are written to a temporary file first (in a worker thread) because
some accepted containers (M4A/MP4) cannot be demuxed from a pipe. Outputs are
written to a temporary file too, so WAV and M4A headers carry real sizes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
from dataclasses import dataclass
from pathlib import Path
import shutil
import struct
import tempfile

import numpy as np

from .contract import CONTENT_TYPES
from .engines import WHISPER_SAMPLE_RATE, wav_bytes

FFMPEG = "ffmpeg"
_READ_SIZE = 16 * 1024


class AudioError(Exception):
    """ffmpeg could not decode or encode the audio."""


@dataclass(frozen=True)
class DecodedUpload:
    """An upload, decoded once: its path on disk and 16 kHz mono float32 samples."""

    path: Path
    samples: np.ndarray

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return len(self.samples) / WHISPER_SAMPLE_RATE


async def _run_ffmpeg(args: list[str], stdin_data: bytes | None = None) -> bytes:
    """Run ffmpeg with ``args``; return its stdout or raise :class:`AudioError`."""
    # -nostdin stops ffmpeg from reading the terminal when it gets no input.
    stdin_option = ["-nostdin"] if stdin_data is None else []
    process = await asyncio.create_subprocess_exec(
        FFMPEG,
        "-hide_banner",
        *stdin_option,
        "-loglevel",
        "error",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin_data is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await process.communicate(stdin_data)
    finally:
        # A cancelled request (client gone) must not leave ffmpeg running.
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        detail = stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(detail[-1] if detail else "ffmpeg failed")
    return stdout


def codec_arguments(fmt: str, *, bitrate_kbps: int | None = None) -> list[str]:
    """ffmpeg output options producing ``fmt`` (one of :data:`CONTENT_TYPES`)."""
    bitrate = ["-b:a", f"{bitrate_kbps}k"] if bitrate_kbps else []
    match fmt:
        case "mp3":
            return ["-c:a", "libmp3lame", *(bitrate or ["-b:a", "128k"]), "-f", "mp3"]
        case "wav":
            return ["-c:a", "pcm_s16le", "-f", "wav"]
        case "flac":
            return ["-c:a", "flac", "-f", "flac"]
        case "ogg":
            return ["-c:a", "libvorbis", *(bitrate or ["-q:a", "4"]), "-f", "ogg"]
        case "m4a":
            return ["-c:a", "aac", *(bitrate or ["-b:a", "128k"]), "-f", "mp4"]
        case "aac":
            return ["-c:a", "aac", *(bitrate or ["-b:a", "128k"]), "-f", "adts"]
    raise ValueError(f"unsupported format {fmt}")


def content_type(fmt: str) -> str:
    """The ``Content-Type`` of audio in ``fmt``."""
    return CONTENT_TYPES[fmt]


def _write_temp(data: bytes) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="tts-standin-"))
    path = directory / "upload"
    path.write_bytes(data)
    return path


def _remove_temp(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)


@contextlib.asynccontextmanager
async def decoded_upload(data: bytes) -> AsyncIterator[DecodedUpload]:
    """Store ``data`` on disk and decode it; raise :class:`AudioError` if unreadable."""
    loop = asyncio.get_running_loop()
    path = await loop.run_in_executor(None, _write_temp, data)
    try:
        try:
            raw = await _run_ffmpeg(
                [
                    "-i", str(path),
                    "-vn", "-ac", "1", "-ar", str(WHISPER_SAMPLE_RATE),
                    "-f", "f32le", "pipe:1",
                ]
            )  # fmt: skip
        except AudioError as err:
            # ffmpeg names the temporary file; the caller only knows "the upload".
            raise AudioError(str(err).replace(f"{path}: ", "")) from None
        samples = np.frombuffer(raw, dtype=np.float32)
        if samples.size == 0:
            raise AudioError("the file contains no audio")
        yield DecodedUpload(path, samples)
    finally:
        await loop.run_in_executor(None, _remove_temp, path)


def _read_and_remove(path: Path) -> bytes:
    try:
        return path.read_bytes()
    finally:
        _remove_temp(path)


async def transform(
    source: Path,
    fmt: str,
    *,
    audio_filter: str | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
    bitrate_kbps: int | None = None,
) -> bytes:
    """Re-encode the audio file ``source`` to ``fmt``, optionally filtered."""
    loop = asyncio.get_running_loop()
    directory = Path(await loop.run_in_executor(None, tempfile.mkdtemp))
    output = directory / f"output.{fmt}"
    args = ["-y", "-i", str(source), "-vn"]
    if audio_filter:
        args += ["-af", audio_filter]
    if sample_rate:
        args += ["-ar", str(sample_rate)]
    if channels:
        args += ["-ac", str(channels)]
    args += [*codec_arguments(fmt, bitrate_kbps=bitrate_kbps), str(output)]
    try:
        await _run_ffmpeg(args)
    except BaseException:
        await loop.run_in_executor(None, shutil.rmtree, directory, True)
        raise
    return await loop.run_in_executor(None, _read_and_remove, output)


async def encode_pcm(pcm: bytes, sample_rate: int, fmt: str) -> bytes:
    """Encode 16-bit mono PCM to ``fmt``."""
    if fmt == "wav":
        return wav_bytes(pcm, sample_rate)
    return await _run_ffmpeg(
        [
            "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
            *codec_arguments(fmt), "pipe:1",
        ],
        pcm,
    )  # fmt: skip


async def pcm16_to_whisper_samples(pcm16: bytes, rate: int) -> np.ndarray:
    """Turn 16-bit mono PCM at ``rate`` into 16 kHz float32 samples for Whisper."""
    if rate != WHISPER_SAMPLE_RATE:
        raw = await _run_ffmpeg(
            [
                "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
                "-ar", str(WHISPER_SAMPLE_RATE), "-f", "s16le", "pipe:1",
            ],
            pcm16,
        )  # fmt: skip
    else:
        raw = pcm16
    return np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0


def streaming_wav_header(sample_rate: int, channels: int = 1) -> bytes:
    """A WAV header for a stream of unknown length (sizes set to the maximum)."""
    byte_rate = sample_rate * channels * 2
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack(
            "<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * 2, 16
        )
        + b"data"
        + struct.pack("<I", unknown)
    )


class StreamingEncoder:
    """One ffmpeg process encoding PCM fed sentence by sentence, read as it appears."""

    def __init__(self, fmt: str, sample_rate: int) -> None:
        self._fmt = fmt
        self._sample_rate = sample_rate
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Launch ffmpeg."""
        self._process = await asyncio.create_subprocess_exec(
            FFMPEG,
            "-hide_banner", "-loglevel", "error",
            "-f", "s16le", "-ar", str(self._sample_rate), "-ac", "1", "-i", "pipe:0",
            *codec_arguments(self._fmt),
            # Hand every encoded packet to the pipe at once, so the client
            # hears the first sentence while later ones are still synthesised.
            "-flush_packets", "1",
            "pipe:1",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    @property
    def _proc(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError("StreamingEncoder.start() was not called")
        return self._process

    async def feed(self, pcm: bytes) -> None:
        """Give ffmpeg more PCM."""
        stdin = self._proc.stdin
        assert stdin is not None
        stdin.write(pcm)
        await stdin.drain()

    async def end_input(self) -> None:
        """Tell ffmpeg no more PCM will come."""
        stdin = self._proc.stdin
        assert stdin is not None
        stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            # Shielded: cancelling this wait (a client that hangs up) would
            # cancel asyncio's own close future, which then fails with
            # InvalidStateError when the pipe really closes.
            await asyncio.shield(stdin.wait_closed())

    async def read(self) -> bytes:
        """The next encoded bytes available; ``b""`` once ffmpeg has finished."""
        stdout = self._proc.stdout
        assert stdout is not None
        return await stdout.read(_READ_SIZE)

    async def close(self) -> None:
        """Stop ffmpeg if it still runs and reap it."""
        if self._process is None:
            return
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        await self._process.wait()
