"""Joining audio from several pieces into one file, and raw PCM into WAV.

A text over the plan's limit is synthesised in several requests; the parts
are joined here so the caller gets one playable file:

* MP3 is a sequence of self-contained frames, so parts are concatenated. The
  ID3v2 tag of later parts and trailing ID3v1 tags of earlier parts are
  dropped, and so is every part's Xing/Info/VBRI header frame: it states the
  frame count of its own part only, and players would trust it and report (or
  stop at) the first part's duration.
* WAV parts are merged under one RIFF header (the formats must match).
* Ogg allows chaining: concatenated Ogg files are a valid chained stream.
* FLAC cannot be concatenated (one STREAMINFO describes the whole stream), so
  the client requests WAV for multi-part FLAC synthesis and returns "wav".
"""

from __future__ import annotations

from collections.abc import Sequence
import struct

# Formats whose files can be concatenated byte-wise (possibly after header
# surgery); FLAC, M4A and AAC-in-MP4 cannot.
JOINABLE_FORMATS = frozenset({"mp3", "wav", "ogg"})
# Formats that stay playable when streamed parts are simply sent one after
# another (mp3 with later ID3v2 tags removed; chained Ogg).
STREAM_JOINABLE_FORMATS = frozenset({"mp3", "ogg"})

_ID3V2_HEADER_SIZE = 10
_ID3V1_SIZE = 128
_WAVE_FORMAT_PCM = 1
_INFO_FRAME_SEARCH_BYTES = 4096
# Layer III bitrates in kbit/s by bitrate index, for MPEG-1 and MPEG-2/2.5.
_MPEG1_L3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_L3_KBPS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_SAMPLE_RATES = {
    0b11: (44100, 48000, 32000),  # MPEG-1
    0b10: (22050, 24000, 16000),  # MPEG-2
    0b00: (11025, 12000, 8000),  # MPEG-2.5
}


def pcm_to_wav(pcm: bytes, rate: int, channels: int = 1, width: int = 2) -> bytes:
    """Wrap raw little-endian PCM samples in a WAV (RIFF) header."""
    block_align = channels * width
    fmt = struct.pack(
        "<HHIIHH", _WAVE_FORMAT_PCM, channels, rate, rate * block_align,
        block_align, width * 8,
    )  # fmt: skip
    return _wav_file(fmt, [pcm])


def join_audio(parts: list[bytes], fmt: str) -> bytes:
    """Join audio files of format ``fmt`` into one file of that format.

    Raises ValueError for an empty list, a format that cannot be joined
    (FLAC, M4A, AAC) or WAV parts with differing sample formats.
    """
    if not parts:
        raise ValueError("no audio to join")
    if len(parts) == 1:
        return parts[0]
    if fmt == "mp3":
        return _join_mp3(parts)
    if fmt == "wav":
        return _join_wav(parts)
    if fmt == "ogg":
        return b"".join(parts)
    raise ValueError(f"{fmt} audio cannot be joined; request wav instead")


def id3v2_size(data: bytes) -> int | None:
    """Size of the ID3v2 tag at the start of ``data``; 0 when there is none.

    None when ``data`` is too short to tell (fewer than 10 bytes).
    """
    if len(data) < _ID3V2_HEADER_SIZE:
        return None
    if data[:3] != b"ID3":
        return 0
    # The tag size is "syncsafe": 4 bytes of 7 bits each.
    size = 0
    for byte in data[6:10]:
        size = (size << 7) | (byte & 0x7F)
    has_footer = bool(data[5] & 0x10)
    return _ID3V2_HEADER_SIZE + size + (_ID3V2_HEADER_SIZE if has_footer else 0)


def _join_mp3(parts: list[bytes]) -> bytes:
    """Concatenate MP3 files, keeping only the first part's ID3v2 tag.

    Joining hundreds of megabytes in an executor must not hold the GIL (and
    so Home Assistant's event loop) for the length of the copy. The parts are
    cut into ``bytes`` (each cut holds the GIL for one part's size) and joined
    by ``bytes.join``, which lets other threads run while it copies as long
    as every piece is exactly ``bytes``.
    """
    pieces: list[bytes] = []
    last = len(parts) - 1
    for index, part in enumerate(parts):
        tag_size = id3v2_size(part) or 0
        if index == 0:
            pieces.append(part[:tag_size])
        end = len(part)
        if (
            index != last
            and end - _ID3V1_SIZE >= tag_size
            and part[end - _ID3V1_SIZE : end - _ID3V1_SIZE + 3] == b"TAG"
        ):
            end -= _ID3V1_SIZE
        pieces.extend(_without_info_frame(part[tag_size:end]))
    return b"".join(pieces)


def _without_info_frame(frames: bytes) -> list[bytes]:
    """``frames`` without a leading Xing/Info/VBRI header frame, if it has one."""
    # The info frame, when present, is the first frame; junk before it is rare.
    head = frames[:_INFO_FRAME_SEARCH_BYTES]
    search_end = len(head)
    start = head.find(b"\xff", 0, search_end)
    while start != -1 and start + 4 <= search_end:
        length = _layer3_frame_length(head[start : start + 4])
        if length:
            break
        start = head.find(b"\xff", start + 1, search_end)
    else:
        return [frames]
    header = head[start : start + 4]
    mpeg1 = (header[1] >> 3) & 0b11 == 0b11
    mono = header[3] >> 6 == 0b11
    side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    crc = 0 if header[1] & 0x01 else 2
    xing_at = start + 4 + crc + side_info
    if frames[xing_at : xing_at + 4] in (b"Xing", b"Info") or (
        frames[start + 36 : start + 40] == b"VBRI"
    ):
        return [frames[:start], frames[start + length :]]
    return [frames]


def _layer3_frame_length(header: bytes) -> int | None:
    """Length in bytes of the MPEG Layer III frame with this 4-byte header."""
    if header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 0b11
    layer = (header[1] >> 1) & 0b11
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 0b11
    if version not in _SAMPLE_RATES or layer != 0b01:
        return None
    if bitrate_index in (0, 15) or rate_index == 3:
        return None
    padding = (header[2] >> 1) & 1
    sample_rate = _SAMPLE_RATES[version][rate_index]
    if version == 0b11:
        return 144_000 * _MPEG1_L3_KBPS[bitrate_index] // sample_rate + padding
    return 72_000 * _MPEG2_L3_KBPS[bitrate_index] // sample_rate + padding


def _join_wav(parts: list[bytes]) -> bytes:
    """Merge the samples of WAV files under one header (see _join_mp3 on the GIL)."""
    first_fmt, _ = _parse_wav(parts[0])
    samples: list[bytes] = []
    for part in parts:
        fmt, pcm = _parse_wav(part)
        if fmt != first_fmt:
            raise ValueError("WAV parts have different sample formats")
        samples.append(pcm)
    return _wav_file(first_fmt, samples)


def _parse_wav(data: bytes) -> tuple[bytes, bytes]:
    """Return the ``fmt `` chunk body and the samples of a WAV file."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    fmt: bytes | None = None
    position = 12
    while position + 8 <= len(data):
        chunk_id = data[position : position + 4]
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        body = position + 8
        if chunk_id == b"data":
            if fmt is None:
                raise ValueError("WAV file has no fmt chunk before its data")
            # Streamed WAVs carry a placeholder size (0 or 0xFFFFFFFF).
            end = body + size if 0 < size <= len(data) - body else len(data)
            return fmt, data[body:end]
        if chunk_id == b"fmt ":
            fmt = data[body : body + size]
        position = body + size + (size & 1)
    raise ValueError("WAV file has no data chunk")


def _wav_file(fmt: bytes, samples: Sequence[bytes]) -> bytes:
    """Build a RIFF/WAVE file from a ``fmt `` chunk body and runs of samples."""
    size = sum(len(run) for run in samples)
    pad = b"\x00" if size % 2 else b""
    riff_size = 4 + (8 + len(fmt)) + (8 + size + len(pad))
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", riff_size),
            b"WAVE",
            b"fmt ",
            struct.pack("<I", len(fmt)),
            fmt,
            b"data",
            struct.pack("<I", size),
            *samples,
            pad,
        )
    )
