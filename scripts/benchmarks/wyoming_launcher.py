"""Run the Wyoming reference servers as this benchmark needs them.

``python -m scripts.benchmarks.wyoming_launcher CORES [wyoming-piper args]``
behaves as ``python -m wyoming_piper [args]`` on a board with CORES cores:
see :func:`scripts.benchmarks.common.ort_default_threads` for why a pinned
run needs this.

``python -m scripts.benchmarks.wyoming_launcher whisper [args]`` behaves as
``python -m wyoming_faster_whisper [args]`` in the Whisper add-on's own
environment. In this venv PyAV is Home Assistant's (19.x), which no longer
takes the ``metadata_errors`` argument faster-whisper 1.2.1 passes when it
decodes the server's WAV file; the argument (about tags, which the WAV has
none of) is dropped, and the decoding is otherwise PyAV's, as in the add-on.
"""

from __future__ import annotations

import functools
import runpy
import sys
from typing import Any

from .common import ort_default_threads


def _without_metadata_errors(open_container: Any) -> Any:
    @functools.wraps(open_container)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("metadata_errors", None)
        return open_container(*args, **kwargs)

    return wrapper


def main() -> None:
    """Start the server's own ``__main__`` with the fix or thread default in place."""
    if sys.argv[1] == "whisper":
        import av  # noqa: PLC0415 - only the Whisper server needs it

        av.open = _without_metadata_errors(av.open)
        sys.argv = ["wyoming_faster_whisper", *sys.argv[2:]]
        runpy.run_module("wyoming_faster_whisper", run_name="__main__", alter_sys=True)
        return
    cores = int(sys.argv[1])
    sys.argv = ["wyoming_piper", *sys.argv[2:]]
    with ort_default_threads(cores):
        runpy.run_module("wyoming_piper", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
