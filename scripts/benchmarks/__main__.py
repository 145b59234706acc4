"""Benchmark the on-device fallback: ``python -m scripts.benchmarks [--quick]``.

Each suite runs in a fresh subprocess (see ``worker.py``); this process only
starts them, gathers their figures, prints the table and writes the JSON.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time
from typing import Any

from .common import REPO_ROOT
from .machine import machine_info
from .report import markdown_table

DEFAULT_JSON = REPO_ROOT / "bench-results.json"
DEFAULT_TABLE = Path(__file__).with_name("README-table.md")
# A suite that takes longer than this has hung (the full soak needs ~2 min
# on one core).
SUITE_TIMEOUT = 1800


@dataclass(frozen=True)
class SuiteRun:
    """One worker invocation: a suite, optionally pinned to some cores."""

    suite: str
    pin: int | None = None

    @property
    def label(self) -> str:
        """Name in the progress output and the JSON."""
        return self.suite if self.pin is None else f"{self.suite}-pinned-{self.pin}"


RUNS = (
    SuiteRun("speed"),
    SuiteRun("memory"),
    SuiteRun("soak"),
    # Figure 9: a long unpunctuated text against a normal announcement.
    SuiteRun("long_text"),
    # Figure 10: the satellite's on-device wake word.
    SuiteRun("wake"),
    # Figure 11: the event loop while the client joins and reads huge answers.
    SuiteRun("loop_stall"),
    # Figures 12-14: a spoken turn and an announcement through a real hass,
    # against Home Assistant's own Wyoming stack.
    SuiteRun("turn"),
    # Figure 8: the local figures again on one core, as a small board would.
    SuiteRun("speed", pin=1),
    SuiteRun("soak", pin=1),
)


def _worker_environment() -> dict[str, str]:
    """This environment, with the satellite package (``satellite/``) importable.

    The satellite is its own package, not installed in the checkout's venv;
    pytest finds it through its ``pythonpath`` setting, the workers this way.
    """
    paths = [str(REPO_ROOT / "satellite"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def run_worker(run: SuiteRun, quick: bool) -> dict[str, Any]:
    """Run one suite in a fresh interpreter and return its JSON."""
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        out = Path(scratch) / "figures.json"
        command = [sys.executable, "-m", "scripts.benchmarks.worker", run.suite]
        command += ["--out", str(out)]
        if quick:
            command.append("--quick")
        if run.pin is not None:
            command += ["--pin", str(run.pin)]
        completed = subprocess.run(
            command,
            cwd=REPO_ROOT,
            timeout=SUITE_TIMEOUT,
            check=False,
            env=_worker_environment(),
        )
        if completed.returncode != 0 or not out.exists():
            raise SystemExit(
                f"bench: suite {run.label} failed (exit {completed.returncode})"
            )
        return json.loads(out.read_text(encoding="utf-8"))


def main() -> None:
    """Run every suite, print the table, write the JSON (and the README table)."""
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description="Benchmark the on-device fallback."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny run for the smoke test: fewer repeats, 20 syntheses, 5 sentences",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"where to write the results (default: {DEFAULT_JSON.name})",
    )
    parser.add_argument(
        "--table",
        type=Path,
        help=(
            "where to write the Markdown table "
            f"(default for a full run: {DEFAULT_TABLE.relative_to(REPO_ROOT)}; "
            "a quick run writes none unless asked)"
        ),
    )
    args = parser.parse_args()
    table_path = args.table or (None if args.quick else DEFAULT_TABLE)

    started = time.perf_counter()
    figures: list[dict[str, Any]] = []
    suites: dict[str, Any] = {}
    for run in RUNS:
        print(f"bench: running {run.label} ...", flush=True)
        result = run_worker(run, args.quick)
        figures.extend(result["figures"])
        suites[run.label] = {
            key: value for key, value in result.items() if key != "figures"
        }
    results = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "machine": machine_info(),
        "suites": suites,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "all_goals_met": all(figure["passed"] for figure in figures),
        "figures": figures,
    }
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(results)
    print(table)
    if table_path is not None:
        table_path.write_text(table, encoding="utf-8")
        print(f"bench: table written to {table_path}")
    print(f"bench: results written to {args.json} in {results['elapsed_s']} s")


if __name__ == "__main__":
    main()
