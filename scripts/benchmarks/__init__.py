"""Speed and memory benchmarks of the on-device fallback (run ``scripts/bench``).

Every figure is measured together with its anchor in the same run (the same
model through the library's own API, wyoming-piper, the local-only path, the
pre-load memory) and reported as a ratio against a goal. See ``__main__`` for
the runner and ``worker`` for the suites.
"""
