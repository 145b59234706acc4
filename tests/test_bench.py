"""Smoke test of scripts/bench: a --quick run reports every figure with numbers.

No timing is asserted: this machine's speed says nothing about the code. The
test checks that every benchmark ran end to end (models, wyoming-piper, the
stand-in, the pinned subprocesses) and reported what the README table needs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
import subprocess

REPO_ROOT = Path(__file__).resolve().parents[1]
TURN_FIGURES = {
    f"turn_first_audio_{seconds}s{entry}"
    for seconds in (1, 3, 6)
    for entry in ("", "_cloud_first")
}
EXPECTED_FIGURES = {
    "tts_total_time",
    "tts_first_audio",
    "fallback_refused_first_audio",
    "fallback_hang_first_audio",
    "stt_time",
    "round_trip_wer",
    "rss_loaded",
    "rss_after_idle_unload",
    "first_audio_after_idle",
    "rss_growth_syntheses",
    # Figure 8: the local figures again, pinned to one core.
    "pinned_tts_total_time",
    "pinned_tts_first_audio",
    "pinned_stt_time",
    "pinned_round_trip_wer",
    "pinned_rss_growth_syntheses",
    # Figure 9: a long unpunctuated text against a normal announcement.
    "long_text_memory",
    "long_text_first_audio",
    "long_text_after_lost_hedge",
    # Figure 10: the satellite's on-device wake word.
    "wake_miss_rate",
    "wake_false_activations",
    "wake_listen_cpu",
    "wake_to_command_audio",
    "wake_false_activations_okay",
    # Figure 11: the event loop while the client joins and reads huge answers.
    "loop_stall",
    # Figures 12-14: a spoken turn and an announcement through a real hass.
    *TURN_FIGURES,
    "turn_stt_growth",
    "announce_first_audio",
}
TIME_FIGURES = {
    "tts_total_time",
    "tts_first_audio",
    "fallback_refused_first_audio",
    "fallback_hang_first_audio",
    "stt_time",
    "first_audio_after_idle",
    *TURN_FIGURES,
    "turn_stt_growth",
    "announce_first_audio",
}
# The hanging-cloud round cannot answer before the hedge deadline.
HEDGE_DEADLINE = 1.5


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    results_path = tmp_path / "bench.json"
    table_path = tmp_path / "table.md"
    completed = subprocess.run(
        [
            str(REPO_ROOT / "scripts" / "bench"),
            "--quick",
            "--json",
            str(results_path),
            "--table",
            str(table_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr

    results = json.loads(results_path.read_text(encoding="utf-8"))
    assert results["mode"] == "quick"
    figures = {figure["key"]: figure for figure in results["figures"]}
    assert set(figures) == EXPECTED_FIGURES

    for key, figure in figures.items():
        for field in ("value", "anchor", "ratio", "goal", "checked"):
            assert _is_number(figure[field]), (key, field, figure[field])
        assert isinstance(figure["passed"], bool), key
        assert figure["goal_on"] in {"ratio", "value", "growth"}, key
        assert figure["value_label"], key
        assert figure["anchor_label"], key

    for key in TIME_FIGURES:
        assert figures[key]["value"] > 0, key
        assert figures[key]["anchor"] > 0, key
    assert figures["fallback_hang_first_audio"]["value"] >= HEDGE_DEADLINE
    # The round trip really spoke and listened to the five quick sentences.
    assert figures["round_trip_wer"]["extras"]["sentences"] == 5
    # The long text was spoken in many pieces, and the cloud won the hedge.
    assert all(
        sample["pieces"] > 30
        for sample in figures["long_text_memory"]["extras"]["long_rounds"]
    )
    hedges = figures["long_text_after_lost_hedge"]["extras"]["rounds"]
    assert all(hedge["winner"] == "cloud" for hedge in hedges)
    assert figures["round_trip_wer"]["extras"]["reference_words"] > 0
    # Memory figures were measured: loading the models costs memory.
    assert figures["rss_loaded"]["value"] > figures["rss_loaded"]["anchor"]
    # ... in the engine process: none of the engines' libraries in the parent.
    assert figures["rss_loaded"]["extras"]["engine_process_loaded_mb"] > 0
    assert figures["rss_loaded"]["extras"]["engine_modules_in_parent"] == []
    # The quick soak ran its 20 syntheses.
    assert "20 local syntheses" in figures["rss_growth_syntheses"]["title"]
    # Every turn was heard and answered: the words of the command reached
    # Home Assistant's agent and a reply came back, on every side.
    for key in TURN_FIGURES:
        rounds = figures[key]["extras"]["rounds"]
        assert {r["stack"] for r in rounds} >= {"wyoming"}, key
        for turn in rounds:
            assert turn["heard"].strip(), (key, turn)
            assert turn["reply"].strip(), (key, turn)
            assert 0 < turn["stt-end"] < turn["first_audio"], (key, turn)
    # The pinned suites really ran on one core.
    assert len(results["suites"]["speed-pinned-1"]["affinity"]) == 1
    assert len(results["suites"]["soak-pinned-1"]["affinity"]) == 1

    machine = results["machine"]
    assert machine["cpu_model"]
    assert machine["logical_cores"] >= 1
    assert machine["ram_mb"] > 0
    assert machine["python"]
    for package in ("onnxruntime", "piper-tts", "ctranslate2", "wyoming-piper"):
        assert machine["packages"][package], package

    table = table_path.read_text(encoding="utf-8")
    table_rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(table_rows) == 1 + len(EXPECTED_FIGURES)  # header + one per figure
