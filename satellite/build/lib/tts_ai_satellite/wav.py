"""WAV bytes and files: tolerant reading, writing, and the mono 16-bit form.

Home Assistant streams converted speech with ffmpeg to a pipe, so the WAV it
serves has no final sizes in its header (0 or 0xFFFFFFFF). The standard
``wave`` module trusts those sizes; this reader walks the RIFF chunks itself
and takes whatever audio is there. It accepts what a user is likely to hand
``--input``: 8/16/24/32-bit integer PCM or 32/64-bit float, mono or not; the
result is always mono signed 16-bit samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import struct

import numpy as np

_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = {0x0002: "ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0055: "MP3"}
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
_INT16_MAX = 32767


class WavError(ValueError):
    """Bytes or a file that are not a WAV this program can play or send."""


@dataclass(frozen=True)
class Pcm:
    """Mono signed 16-bit audio."""

    samples: np.ndarray
    """1-D ``int16`` array."""
    sample_rate: int

    @property
    def duration(self) -> float:
        """Playing time in seconds."""
        return len(self.samples) / self.sample_rate

    def to_bytes(self) -> bytes:
        """Little-endian 16-bit PCM, what Assist and PortAudio take."""
        return self.samples.astype("<i2").tobytes()


def parse_wav(data: bytes) -> Pcm:
    """Decode a RIFF/WAVE file held in memory; raise :class:`WavError` if not one."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    position = 12
    fmt: tuple[int, int, int, int] | None = None
    while position + 8 <= len(data):
        chunk_id = data[position : position + 4]
        (size,) = struct.unpack_from("<I", data, position + 4)
        body_start = position + 8
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body_start : body_start + size])
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("WAV data comes before its format chunk")
            # A streamed WAV does not know its size: the audio runs to the end.
            end = len(data) if size in _UNKNOWN_SIZES else body_start + size
            return _decode(data[body_start:end], *fmt)
        position = body_start + size + (size & 1)  # chunks are word aligned
    raise WavError("WAV file has no audio (no data chunk)")


def read_wav(path: Path) -> Pcm:
    """Read a WAV file; every failure is a :class:`WavError` naming the file."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise WavError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        return parse_wav(data)
    except WavError as err:
        raise WavError(f"{path}: {err}") from err


def wav_bytes(pcm: Pcm) -> bytes:
    """Encode mono 16-bit PCM as a complete WAV file."""
    audio = pcm.to_bytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", 36 + len(audio), b"WAVE", b"fmt ", 16, _FORMAT_PCM, 1),
        *(pcm.sample_rate, pcm.sample_rate * 2, 2, 16, b"data", len(audio)),
    )
    return header + audio


def write_wav(path: Path, pcm: Pcm) -> None:
    """Write mono 16-bit PCM to a WAV file (via a temporary name: never half)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(wav_bytes(pcm))
    partial.replace(path)


def _parse_fmt(body: bytes) -> tuple[int, int, int, int]:
    """(encoding, channels, sample rate, bits per sample) of a ``fmt `` chunk."""
    if len(body) < 16:
        raise WavError("WAV format chunk is too short")
    encoding, channels, rate, _byte_rate, _align, bits = struct.unpack_from(
        "<HHIIHH", body
    )
    if encoding == _FORMAT_EXTENSIBLE and len(body) >= 26:
        (encoding,) = struct.unpack_from("<H", body, 24)  # the sub-format GUID
    if encoding not in (_FORMAT_PCM, _FORMAT_FLOAT):
        name = _FORMAT_NAMES.get(encoding, f"format 0x{encoding:04x}")
        raise WavError(f"unsupported WAV encoding {name}: convert it to PCM")
    if channels < 1 or rate < 1:
        raise WavError(f"WAV header is broken ({channels} channels, {rate} Hz)")
    if (encoding, bits) not in {
        (_FORMAT_PCM, 8),
        (_FORMAT_PCM, 16),
        (_FORMAT_PCM, 24),
        (_FORMAT_PCM, 32),
        (_FORMAT_FLOAT, 32),
        (_FORMAT_FLOAT, 64),
    }:
        raise WavError(f"unsupported WAV sample size: {bits} bits")
    return encoding, channels, rate, bits


def _decode(audio: bytes, encoding: int, channels: int, rate: int, bits: int) -> Pcm:
    """Turn interleaved frames into mono float, then into 16-bit samples."""
    frame_bytes = channels * bits // 8
    audio = audio[: len(audio) - len(audio) % frame_bytes]  # drop a torn frame
    if encoding == _FORMAT_FLOAT:
        values = np.frombuffer(audio, dtype=f"<f{bits // 8}").astype(np.float64)
    elif bits == 8:  # unsigned, centred on 128
        values = (np.frombuffer(audio, dtype=np.uint8).astype(np.float64) - 128) / 128
    elif bits == 24:
        raw = np.frombuffer(audio, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        joined = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        values = np.where(joined >= 1 << 23, joined - (1 << 24), joined) / (1 << 23)
    else:
        dtype = "<i2" if bits == 16 else "<i4"
        values = np.frombuffer(audio, dtype=dtype).astype(np.float64)
        values /= 1 << (bits - 1)
    mono = values.reshape(-1, channels).mean(axis=1)
    return Pcm(float_to_int16(mono), rate)


def float_to_int16(values: np.ndarray) -> np.ndarray:
    """Scale [-1, 1] floats to 16-bit samples, clipping what is out of range."""
    return np.clip(np.round(values * _INT16_MAX), -_INT16_MAX - 1, _INT16_MAX).astype(
        np.int16
    )
