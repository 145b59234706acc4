"""The engine host's wire format: length-prefixed frames over a pipe.

The parent (Home Assistant) and the engine process (:mod:`.engine_child`)
talk over the child's stdin and stdout. A frame is an 8-byte header (two
big-endian 32-bit lengths), a small JSON object that says what the frame is
(``op``) and which request it belongs to (``id``), and a binary payload (PCM
audio, or a text to speak as UTF-8). Both lengths are checked against
:data:`MAX_HEADER_BYTES` and :data:`MAX_PAYLOAD_BYTES` before anything is
read, so a broken or hostile peer cannot make the reader allocate more.

Parent to child:

* ``synth`` {voice, speed} + text: speak; the child sends one ``chunk``
  (rate, text + PCM) and waits for ``more`` before it asks the engine for the
  next piece, so it runs at most one piece ahead of the listener, as the
  engine does in-process. ``end`` closes the request.
* ``load`` {voice}, ``unload`` {key}: a Piper voice in or out of memory.
* ``transcribe`` / ``stream`` {model, rate, language}: Whisper; the audio
  follows in ``audio`` frames, ``run`` asks for the transcript (``end``
  carries it). A stream sends ``partial`` {text} as pieces are decoded.
* ``whisper_load`` / ``whisper_unload`` {model}; ``status``.
* ``cancel``: stop the request at the next piece (Piper) or window
  (Whisper); the child answers ``end`` {cancelled} once it has stopped.

Child to parent: ``ready`` once at start, then ``chunk``, ``partial``,
``end`` and ``error`` {kind, message} frames, all with the request's id.
Closing the child's stdin tells it to exit.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

_LENGTHS = struct.Struct(">II")
# A header is a handful of short fields; a text to speak goes in the payload.
MAX_HEADER_BYTES = 64 * 1024
# The largest payload either side accepts. A Piper piece is at most 100
# characters (piper_engine.MAX_PIECE_CHARS), ~10 s of 22 kHz audio (~450 kB)
# at normal speed and a few MB at the slowest; the parent sends audio to
# transcribe in pieces of AUDIO_PIECE_BYTES and texts well below this.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
AUDIO_PIECE_BYTES = 1024 * 1024
# Error messages crossing the pipe are cut to this length.
MAX_MESSAGE_CHARS = 500


class EngineError(RuntimeError):
    """An on-device engine could not do what was asked."""


class EngineCrashedError(EngineError):
    """The engine process ended (crashed, killed) while serving a request."""


class ProtocolError(EngineError):
    """The peer sent something that is not a valid frame."""


def encode_frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """Return one frame: lengths, JSON header, payload."""
    encoded = json.dumps(header, separators=(",", ":")).encode()
    if len(encoded) > MAX_HEADER_BYTES or len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("frame too large to send")
    return _LENGTHS.pack(len(encoded), len(payload)) + encoded + payload


async def read_frame(
    reader: asyncio.StreamReader,
) -> tuple[dict[str, Any], bytes] | None:
    """Read one frame; None when the pipe ends cleanly between frames.

    Raises :class:`ProtocolError` for oversized or malformed frames and for
    a pipe that ends inside one.
    """
    try:
        lengths = await reader.readexactly(_LENGTHS.size)
    except asyncio.IncompleteReadError as err:
        if not err.partial:
            return None
        raise ProtocolError("pipe ended inside a frame") from err
    header_size, payload_size = _LENGTHS.unpack(lengths)
    if header_size > MAX_HEADER_BYTES or payload_size > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            f"frame of {header_size} + {payload_size} bytes is over the limit"
        )
    try:
        raw_header = await reader.readexactly(header_size)
        payload = await reader.readexactly(payload_size)
    except asyncio.IncompleteReadError as err:
        raise ProtocolError("pipe ended inside a frame") from err
    try:
        header = json.loads(raw_header)
    except ValueError as err:
        raise ProtocolError("frame header is not JSON") from err
    if not isinstance(header, dict) or not isinstance(header.get("op"), str):
        raise ProtocolError("frame header has no op")
    return header, payload


def field[T](header: dict[str, Any], name: str, kind: type[T]) -> T:
    """Return ``header[name]`` if it is a ``kind``, else raise ProtocolError."""
    value = header.get(name)
    # bool is an int in Python; a count or a rate must not be True.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"frame field {name!r} is not a {kind.__name__}")
    return value
