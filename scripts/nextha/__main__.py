"""Run a spoken command through the next Home Assistant release.

``scripts/next-ha-check`` runs this with an interpreter whose Home Assistant
is the release after the one the test suite pins (requirements_next_ha.txt):
pytest-homeassistant-custom-component only exists for the pinned one, so the
newer release is checked the way a user meets it, as a real ``hass`` process.

What it checks, on a device-only TTS.ai entry (built-in Piper and Whisper):

* the integration sets up and a satellite's turn (``assist_pipeline/run``
  from ``stt`` to ``tts``, audio in real time) hears the command and speaks
  a reply whose audio can be fetched;
* Home Assistant asks our STT entity for partial results
  (``async_process_audio_stream_with_progress``, new in 2026.11), and the
  words said before the command's pause come back as one while the user
  still speaks (our debug log line, with the time it was written).

Exit status 0 when all holds; the report names what did not.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime
from pathlib import Path
import re
import sys
import tempfile
import time

import aiohttp

from scripts.benchmarks.common import joe_voice
from scripts.benchmarks.turn import (
    SAMPLE_RATE,
    HomeAssistantSocket,
    Turn,
    add_device_entry,
    create_pipeline,
    entry_entity,
    run_turn,
    running_home_assistant,
    speak_16k,
    wait_models_ready,
)
from tests.harness import realhass

# Two breaths, so the first is decoded while the second is spoken. Not one of
# the benchmark's held-out commands.
FIRST = "Turn on the living room lights."
SECOND = "Then close the front door."
PAUSE_SECONDS = 0.7
# "2026-11-26 05:40:01.301+00:00 DEBUG (MainThread) [...] Partial result: ..."
PARTIAL_LINE = re.compile(r"^(?P<at>\S+ \S+) .*Partial result: (?P<text>.*)$")


def _speech() -> bytes:
    """The command, in Piper's joe voice at 16 kHz, with a pause between breaths."""
    from piper import PiperVoice  # noqa: PLC0415 - heavy

    voice = PiperVoice.load(str(joe_voice().model_path))
    pause = bytes(int(PAUSE_SECONDS * SAMPLE_RATE) * 2)
    return speak_16k(voice, FIRST, 1.0) + pause + speak_16k(voice, SECOND, 1.0)


def _version(dev: realhass.DevInstance) -> str:
    answer = realhass.http_request("GET", f"{dev.hass_url}/api/config", token=dev.token)
    return str(answer.body["version"])


async def _turn(dev: realhass.DevInstance, pipeline: str, pcm: bytes) -> Turn:
    async with (
        aiohttp.ClientSession() as session,
        HomeAssistantSocket(session, dev.hass_url, dev.token) as ws,
    ):
        return await run_turn(
            ws,
            session,
            hass_url=dev.hass_url,
            pipeline=pipeline,
            pcm=pcm,
            turn=Turn("device", round(len(pcm) / 2 / SAMPLE_RATE)),
        )


def check(log_path: Path) -> list[str]:
    """Run the turn; return what failed (nothing: all held)."""
    failures: list[str] = []
    pcm = _speech()
    with (
        log_path.open("w", encoding="utf-8") as log,
        running_home_assistant(
            log, logs={"custom_components.tts_ai.stt": "debug"}
        ) as dev,
    ):
        version = _version(dev)
        print(f"next-ha-check: Home Assistant {version}", flush=True)
        wait_models_ready(dev, 1)
        entry = add_device_entry(dev)
        wait_models_ready(dev, 2)
        stt = entry_entity(dev, entry, "stt")
        tts = entry_entity(dev, entry, "tts")
        pipeline = create_pipeline(dev, "next-ha-check", stt, tts, None)
        started = time.time()
        turn = asyncio.run(_turn(dev, pipeline, pcm))
        ended = started + len(pcm) / 2 / SAMPLE_RATE
        log.flush()
    print(f"next-ha-check: heard {turn.heard!r}, replied {turn.reply!r}")
    words = re.findall(r"[a-z]+", turn.heard.lower())
    for expected in ("living", "room", "lights", "front", "door"):
        if expected not in words:
            failures.append(f"the command was heard as {turn.heard!r}")
            break
    if not turn.reply:
        failures.append("no reply was spoken")
    partials = _partials(log_path.read_text(encoding="utf-8"))
    print(f"next-ha-check: partial results {partials}")
    early = [text for at, text in partials if at < ended and "living" in text.lower()]
    if not early:
        failures.append(
            "no partial result with the first breath's words before the end of speech"
        )
    return failures


def _partials(log: str) -> list[tuple[float, str]]:
    """(time written, text) of each partial-result line in Home Assistant's log."""
    found: list[tuple[float, str]] = []
    for line in log.splitlines():
        if (match := PARTIAL_LINE.search(line)) is None:
            continue
        try:
            at = datetime.fromisoformat(match["at"])
        except ValueError:
            continue
        found.append((at.timestamp(), match["text"]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, help="keep Home Assistant's log here")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="next-ha-") as scratch:
        log_path = arguments.log or Path(scratch) / "home-assistant.log"
        failures = check(log_path)
        if failures:
            print("next-ha-check: FAIL\n  " + "\n  ".join(failures))
            print(f"next-ha-check: log {log_path}" if arguments.log else "")
            return 1
    print("next-ha-check: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
