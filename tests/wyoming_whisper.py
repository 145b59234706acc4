"""Run ``wyoming_faster_whisper`` as ``python -m tests.wyoming_whisper [args]``.

faster-whisper 1.2.1 (what wyoming-faster-whisper 3.8.1 resolves to) opens the
server's WAV files with ``av.open(..., metadata_errors="ignore")``; PyAV 19
(Home Assistant's pin, and what a fresh install resolves to on Python 3.14)
no longer has that argument, so every transcription fails with a TypeError.
The add-on's container brings its own older PyAV (18.1 still accepts it).
The test venv has one PyAV for both, so this launcher drops that single
keyword (its value only tolerates broken metadata tags, which the server's
own WAV files do not have) and then runs the server's real ``__main__``.
"""

from __future__ import annotations

import functools
import runpy
import sys
from typing import Any

import av


def _without_metadata_errors(open_: Any) -> Any:
    @functools.wraps(open_)
    def wrapper(*args: Any, metadata_errors: str | None = None, **kwargs: Any) -> Any:
        del metadata_errors
        return open_(*args, **kwargs)

    return wrapper


def main() -> None:
    """Drop the argument (harmless where PyAV has it), then start the server."""
    av.open = _without_metadata_errors(av.open)
    sys.argv[0] = "wyoming_faster_whisper"
    runpy.run_module("wyoming_faster_whisper", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
