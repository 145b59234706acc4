"""A misbehaving engine process, run by the engine host in place of the real one.

What it does wrong is chosen by the ``HOSTILE_ENGINE_CHILD`` environment
variable (the child inherits the test's environment):

* ``huge_frame``: says it is ready, then answers a request with a frame that
  claims a payload of 1 GB.
* ``garbage``: says it is ready, then answers with bytes that are no frame.
* ``flood``: fills stderr with long lines, endless ones among them, then
  serves nothing (exits when stdin closes).
* ``exit``: exits at once, before it is ready.
* ``flood_of_frames``: answers one request with many frames nobody asked for.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from typing import Any


def _frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack(">II", len(encoded), len(payload)) + encoded + payload


def _read_request() -> dict[str, Any]:
    lengths = sys.stdin.buffer.read(8)
    header_size, payload_size = struct.unpack(">II", lengths)
    header: dict[str, Any] = json.loads(sys.stdin.buffer.read(header_size))
    sys.stdin.buffer.read(payload_size)
    return header


def main(config: dict[str, Any]) -> None:
    """Misbehave as the environment says."""
    mode = os.environ.get("HOSTILE_ENGINE_CHILD", "")
    out = sys.stdout.buffer
    if mode == "exit":
        sys.exit(3)
    if mode == "flood":
        for index in range(2000):
            sys.stderr.write(f"line {index} " + "x" * 5000 + "\n")
        sys.stderr.write("y" * 200_000)  # a line that never ends
        sys.stderr.flush()
    out.write(_frame({"op": "ready", "id": 0}))
    out.flush()
    if mode == "flood":
        sys.stdin.buffer.read()  # until the host closes stdin
        return
    if mode == "bad_answers":
        _answer_badly(out)
        return
    request = _read_request()
    if mode == "huge_frame":
        out.write(struct.pack(">II", 20, 1 << 30))
    elif mode == "garbage":
        out.write(b"\xff" * 64)
    elif mode == "flood_of_frames":
        for _ in range(100):
            out.write(
                _frame(
                    {"op": "chunk", "id": request["id"], "rate": 22050, "text": "a"},
                    b"\0\0",
                )
            )
    out.flush()
    sys.stdin.buffer.read()


# Well-formed frames whose values are wrong, one kind per request.
_LOADED: dict[str, Any] = {"voices": [], "models": []}
_BAD_ANSWERS: dict[str, dict[str, Any]] = {
    "load": {"op": "end", "rate": 0, **_LOADED},
    "synth": {"op": "chunk", "rate": 22050, "text": 7},
    "transcribe": {"op": "end", "text": "hi", "language": 5, "duration": 1.0},
    "stream": {"op": "end", "text": "hi", "language": "en", "duration": True},
}


def _answer_badly(out: Any) -> None:
    """Answer every request with a frame whose values are wrong."""
    waiting: dict[int, str] = {}
    while len(lengths := sys.stdin.buffer.read(8)) == 8:
        header_size, payload_size = struct.unpack(">II", lengths)
        header: dict[str, Any] = json.loads(sys.stdin.buffer.read(header_size))
        sys.stdin.buffer.read(payload_size)
        op, call = header["op"], header["id"]
        if op in ("transcribe", "stream"):
            waiting[call] = op  # answered at "run"
            continue
        if op == "run":
            op = waiting.pop(call, op)
        if (answer := _BAD_ANSWERS.get(op)) is not None:
            if answer["op"] == "end":
                answer = {**_LOADED, **answer}
            out.write(_frame({**answer, "id": call}))
            out.flush()
