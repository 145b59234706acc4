"""The results as a Markdown table, for the terminal and the README."""

from __future__ import annotations

from typing import Any

from .machine import machine_summary

# Figure numbers as the benchmark brief and the README use them.
FIGURE_NUMBERS = {
    "tts_total_time": "1",
    "tts_first_audio": "2",
    "fallback_refused_first_audio": "3a",
    "fallback_hang_first_audio": "3b",
    "stt_time": "4",
    "round_trip_wer": "5",
    "rss_loaded": "6a",
    "rss_after_idle_unload": "6b",
    "first_audio_after_idle": "6c",
    "rss_growth_syntheses": "7",
    "long_text_memory": "9a",
    "long_text_first_audio": "9b",
    "long_text_after_lost_hedge": "9c",
    "wake_miss_rate": "10a",
    "wake_false_activations": "10b",
    "wake_listen_cpu": "10c",
    "wake_to_command_audio": "10d",
    "wake_false_activations_okay": "10e",
    "loop_stall": "11",
    "turn_first_audio_1s": "12a",
    "turn_first_audio_3s": "12b",
    "turn_first_audio_6s": "12c",
    "turn_first_audio_1s_cloud_first": "12d",
    "turn_first_audio_3s_cloud_first": "12e",
    "turn_first_audio_6s_cloud_first": "12f",
    "turn_stt_growth": "13",
    "announce_first_audio": "14",
}
PINNED_PREFIX = "pinned_"


def figure_number(key: str) -> str:
    """ "3a" for a figure, "8 (1)" for the pinned run of figure 1."""
    if key.startswith(PINNED_PREFIX):
        return f"8 ({FIGURE_NUMBERS.get(key.removeprefix(PINNED_PREFIX), '?')})"
    return FIGURE_NUMBERS.get(key, "?")


def _amount(value: float, unit: str) -> str:
    """A value with its unit, to a sensible precision."""
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "%":
        return f"{value:.2f} %"
    return f"{value:.3g} {unit}"


def _checked(figure: dict[str, Any]) -> str:
    """What the goal was compared with, when it is not the ratio."""
    if figure["goal_on"] == "growth":
        return f"growth {figure['checked']:+.1f} {figure['unit']}"
    return ""


def _load_line(suites: dict[str, Any]) -> str:
    """Say how busy the machine was: other jobs make timings rougher."""
    loads = [
        load
        for suite in suites.values()
        for load in (
            suite.get("load_average_1min_before"),
            suite.get("load_average_1min_after"),
        )
        if load is not None
    ]
    if not loads:
        return ""
    return (
        f"1-minute load average during the suites: {min(loads):.2f} to "
        f"{max(loads):.2f} (this process adds about 1; more means other jobs "
        "shared the cores). Every round's time is in the JSON."
    )


def markdown_table(results: dict[str, Any]) -> str:
    """The README table: one row per figure, then the machine and the notes."""
    lines = [
        "| # | Figure | Value | Anchor (same run) | Ratio | Goal | Met |",
        "|---|---|---|---|---|---|---|",
    ]
    for figure in results["figures"]:
        value = _amount(figure["value"], figure["unit"])
        if extra := _checked(figure):
            value = f"{value} ({extra})"
        anchor = (
            f"{_amount(figure['anchor'], figure['unit'])}: {figure['anchor_label']}"
        )
        lines.append(
            f"| {figure_number(figure['key'])} | {figure['title']} | {value} "
            f"| {anchor} | {figure['ratio']:.3f} | {figure['goal_text']} "
            f"| {'yes' if figure['passed'] else '**no**'} |"
        )
    lines += [
        "",
        f"Measured {results['generated_at']} ({results['mode']} run) on "
        f"{machine_summary(results['machine'])}.",
        "",
        _load_line(results.get("suites", {})),
        "",
        "Notes:",
        "",
    ]
    lines += [
        f"- {figure_number(figure['key'])}: {figure['notes']}"
        for figure in results["figures"]
        if figure["notes"] and not figure["key"].startswith(PINNED_PREFIX)
    ]
    return "\n".join(lines) + "\n"
