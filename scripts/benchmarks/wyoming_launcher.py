"""Run wyoming-piper with ONNX Runtime defaulting to a given thread count.

``python -m scripts.benchmarks.wyoming_launcher CORES [wyoming-piper args]``
behaves as ``python -m wyoming_piper [args]`` on a board with CORES cores:
see :func:`scripts.benchmarks.common.ort_default_threads` for why a pinned
run needs this.
"""

from __future__ import annotations

import runpy
import sys

from .common import ort_default_threads


def main() -> None:
    """Start wyoming-piper's own ``__main__`` with the thread default in place."""
    cores = int(sys.argv[1])
    sys.argv = ["wyoming_piper", *sys.argv[2:]]
    with ort_default_threads(cores):
        runpy.run_module("wyoming_piper", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
