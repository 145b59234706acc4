"""Figures 10a-10e: the satellite's on-device wake word (``okay_nabu``).

10a, 10b and 10e count what the satellite acts on with ``--wake-verify`` (the
set-up README recommends): detections Whisper confirmed. What the model alone
fired is in each figure's extras.

- 10a, detection: held-out wake phrases ("Okay Nabu" / "OK Nabu" and commands
  no test uses) in two synthetic voices, Piper's joe at three speeds and four
  espeak-ng voices, clean and in household noise at 10 dB SNR. Anchor: the
  misses on the clean phrases alone.
- 10b, false activations: speech without the wake word (the announcements and
  commands, both voices) between stretches of household noise, 30 minutes in
  the full run (a one-minute slice in the quick one). Anchor: the same stream
  with wake phrases spliced in, detected.
- 10e, the same with people also saying "Okay, ..." (held-out sentences), the
  model's nearest misses. Anchor: the bare model at its own threshold.
- 10c, CPU while listening: the satellite itself (``python -m
  tts_ai_satellite --wake-word``), its microphone a real-time ALSA capture
  (:mod:`tests.harness.alsa_room`), against the same satellite waiting for a
  push-to-talk trigger on the same microphone (the anchor).
- 10d, wake detected -> first command audio sent: measured by the satellite,
  against a loopback server that speaks Home Assistant's websocket API for
  the run and answers at once. Anchor: the server's own view, from the run
  command arriving to the first audio frame.

The satellite package is found through ``PYTHONPATH`` (the orchestrator puts
``satellite/`` there, as pytest's ``pythonpath`` does for the tests).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from aiohttp import WSMsgType, web
import numpy as np

from tests.harness.alsa_room import AlsaRoom
from tests.harness.espeak import espeak_16k
from tests.harness.standin.engines import synthesize_pcm
from tts_ai_satellite.resample import resample
from tts_ai_satellite.verify import WakeWordVerifier, WhisperVerifier
from tts_ai_satellite.wake import (
    DEFAULT_NOISE_SUPPRESSION_DB,
    DEFAULT_WAKE_GAIN_DB,
    DEFAULT_WAKE_THRESHOLD,
    MicroWakeWordModel,
    WakeWordListener,
)

from .common import REPO_ROOT, BenchConfig, Figure, announcements, whisper_dir

RATE = 16000
CHUNK_BYTES = 960  # 30 ms, as the satellite's microphone delivers it
MODEL = "okay_nabu"
WAKE_PHRASE = "Okay Nabu"
WAKE_FORMS = ("Okay Nabu", "OK Nabu")
# Commands no test or tuning used (the tests say "turn on the kitchen lights").
HELD_OUT_COMMANDS = (
    "what time is it?",
    "turn off the bedroom lamp.",
    "set a timer for ten minutes.",
    "what's the weather like tomorrow?",
    "lock the front door.",
    "play some jazz in the living room.",
    "is the garage door closed?",
    "turn the heating up to twenty one degrees.",
)
# What people say in a kitchen that sounds most like the wake word: "Okay"
# (and "Nah") heading a sentence. Held out, as the commands are (the tuning's
# own near misses are NEAR_MISS_SENTENCES below).
HELD_OUT_NEAR_MISSES = (
    "Okay, that sounds good.",
    "OK, I'll be right there.",
    "Okay, who wants tea?",
    "Nah, not today.",
)
PIPER_SPEEDS = (0.85, 1.0, 1.2)
ESPEAK_VOICES = ("en-us", "en-gb-x-rp", "en-us+m3", "en-us+f3")
NOISE_SNR_DB = 10.0
MODELS_OWN_THRESHOLD = None
"""The model's own cutoff (0.85), measured beside the satellite's default."""
NO_SUPPRESSION = None
"""The model hearing the microphone uncleaned, measured beside the default."""
NO_GAIN = None
"""The model hearing the microphone at its own level, measured beside it."""
FALSE_ACTIVATION_MINUTES_FULL = 30.0
FALSE_ACTIVATION_MINUTES_QUICK = 1.0
SPLICED_WAKE_PHRASES = 5
SATELLITE_DIR = REPO_ROOT / "satellite"
LATENCY_LINE = re.compile(r"First command audio sent (\d+) ms after the wake word")
VERIFY_LINE = re.compile(r"Wake word confirmed by Whisper in (\d+) ms")


# --- voices and noise ---------------------------------------------------------------


def piper_16k(text: str, speed: float = 1.0) -> np.ndarray:
    """``text`` in Piper's joe voice, 16 kHz, different each time as for users."""
    spoken = synthesize_pcm(text, speed, varied=True)
    samples = np.frombuffer(spoken.pcm, dtype="<i2")
    return resample(samples, spoken.sample_rate, RATE).astype(np.float64)


def household_noise(count: int, rng: np.random.Generator) -> np.ndarray:
    """A kitchen: a fridge's hum, a fan's pink noise, now and then a clatter.

    Unit RMS; scale it to the level wanted.
    """
    white = rng.standard_normal(count)
    # Pink noise (a fan, a distant road): white noise shaped by 1/sqrt(f) in
    # blocks of about four seconds.
    block = 1 << 16
    shape = 1 / np.sqrt(np.maximum(np.fft.rfftfreq(block, 1 / RATE), 20.0))
    pink = np.empty(count)
    for start in range(0, count, block):
        spectrum = np.fft.rfft(rng.standard_normal(block)) * shape
        pink[start : start + block] = np.fft.irfft(spectrum, block)[: count - start]
    pink = pink / (np.std(pink) or 1.0) + 0.3 * white
    times = np.arange(count) / RATE
    hum = 0.6 * np.sin(2 * np.pi * 50 * times) + 0.3 * np.sin(2 * np.pi * 100 * times)
    clatter = np.zeros(count)
    for start in rng.integers(0, max(1, count - RATE // 5), size=count // (3 * RATE)):
        decay = np.exp(-np.arange(RATE // 5) / (RATE * 0.02))
        burst = rng.standard_normal(RATE // 5) * decay * 4
        clatter[start : start + len(burst)] += burst
    noise = pink + hum + clatter
    return noise / np.sqrt(np.mean(noise**2))


def mix_at_snr(
    speech: np.ndarray, snr_db: float, rng: np.random.Generator
) -> np.ndarray:
    """``speech`` in household noise ``snr_db`` below its active level."""
    active = speech[np.abs(speech) > 0.05 * np.max(np.abs(speech))]
    speech_rms = float(np.sqrt(np.mean(active**2)))
    noise = household_noise(len(speech), rng) * speech_rms / 10 ** (snr_db / 20)
    return speech + noise


def _pcm(samples: np.ndarray) -> bytes:
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def _padded(speech: np.ndarray, seconds: float = 0.5) -> np.ndarray:
    pad = np.zeros(round(seconds * RATE))
    return np.concatenate([pad, speech, pad])


def detection_samples(
    listener: WakeWordListener,
    audio: bytes,
    verifier: WakeWordVerifier | None = None,
) -> list[int]:
    """The sample after which each of the listener's detections in ``audio`` came.

    With ``verifier``, only the detections it confirms, judged on the
    listener's clip as the satellite does.
    """
    return [
        (start + CHUNK_BYTES) // 2
        for start in range(0, len(audio), CHUNK_BYTES)
        if listener.feed(audio[start : start + CHUNK_BYTES])
        and (verifier is None or verifier.confirms(listener.clip()))
    ]


def fresh_detections(
    pcm: bytes,
    threshold: float | None = DEFAULT_WAKE_THRESHOLD,
    level: float | None = DEFAULT_NOISE_SUPPRESSION_DB,
    gain: float | None = DEFAULT_WAKE_GAIN_DB,
    verifier: WakeWordVerifier | None = None,
) -> list[int]:
    """:func:`detection_samples` of a new listener with these settings.

    The defaults are the satellite's; None leaves that part out (the
    threshold: the model's own; the verifier: no second opinion).
    """
    model = MicroWakeWordModel(MODEL, threshold, level, gain)
    return detection_samples(WakeWordListener(model), pcm, verifier)


@dataclass
class CountingVerifier:
    """Whisper's second opinion, counting what it was asked and how long it took."""

    verifier: WhisperVerifier
    asked: int = 0
    seconds: list[float] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    """What Whisper heard where it said no."""

    def confirms(self, clip: bytes) -> bool:
        self.asked += 1
        confirmed = self.verifier.confirms(clip)
        self.seconds.append(self.verifier.last_seconds)
        if not confirmed:
            self.rejected.append(self.verifier.last_heard)
        return confirmed

    def extras(self) -> dict[str, Any]:
        """The figure's extras: the model's own detections, and the checks' time."""
        return {
            "fired_before_whisper_check": self.asked,
            "whisper_rejected": self.rejected,
            "whisper_check_ms_median": round(
                1000 * statistics.median(self.seconds or [0.0])
            ),
        }


def whisper_check() -> CountingVerifier:
    """A counting ``--wake-verify`` (tiny.en) for the model's phrase."""
    return CountingVerifier(WhisperVerifier(WAKE_PHRASE, str(whisper_dir())))


# --- 10a: detection ---------------------------------------------------------------


@dataclass
class _Tally:
    tried: int = 0
    missed: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def miss_percent(self) -> float:
        return 100.0 * self.missed / self.tried if self.tried else 0.0


def detection_figure(config: BenchConfig) -> Figure:
    """Figure 10a: misses on held-out wake phrases, clean and at 10 dB SNR."""
    commands = HELD_OUT_COMMANDS[:3] if config.quick else HELD_OUT_COMMANDS
    speakers: list[tuple[str, Any]] = [
        (f"piper-joe x{speed}", lambda text, s=speed: piper_16k(text, s))
        for speed in ((1.0,) if config.quick else PIPER_SPEEDS)
    ]
    speakers += [
        (f"espeak-ng {voice}", lambda text, v=voice: espeak_16k(text, v))
        for voice in (ESPEAK_VOICES[:2] if config.quick else ESPEAK_VOICES)
    ]
    clean, noisy = _Tally(), _Tally()
    # Beside the defaults, each part of the front end left out in turn, and
    # the bare model at its own threshold.
    variants = {
        "missed_without_gain": (
            DEFAULT_WAKE_THRESHOLD,
            DEFAULT_NOISE_SUPPRESSION_DB,
            NO_GAIN,
        ),
        "missed_without_noise_suppression": (
            DEFAULT_WAKE_THRESHOLD,
            NO_SUPPRESSION,
            DEFAULT_WAKE_GAIN_DB,
        ),
        "missed_by_bare_model_at_its_own_threshold": (
            MODELS_OWN_THRESHOLD,
            NO_SUPPRESSION,
            NO_GAIN,
        ),
    }
    variant_misses = dict.fromkeys(variants, 0)
    check = whisper_check()
    missed_by_model_alone = 0
    per_voice: dict[str, list[int]] = {}
    for name, speak in speakers:
        for form in WAKE_FORMS:
            for command in commands:
                phrase = f"{form}, {command}"
                speech = speak(phrase)
                # Each phrase its own noise: Piper's lengths vary from run to
                # run, and with one generator for all they moved the noise of
                # every later phrase (the same setting measured 11 and 18
                # misses in two runs).
                rng = np.random.default_rng((10, clean.tried))
                # The room's noise goes on before the phrase, as in a kitchen
                # (the model's front end adapts to it).
                for tally, audio in (
                    (clean, _padded(speech)),
                    (noisy, mix_at_snr(_padded(speech, 2.0), NOISE_SNR_DB, rng)),
                ):
                    pcm = _pcm(audio)
                    for key, settings in variants.items():
                        if not fresh_detections(pcm, *settings):
                            variant_misses[key] += 1
                    tally.tried += 1
                    counts = per_voice.setdefault(name, [0, 0])
                    counts[0] += 1
                    fired_before = check.asked
                    if not fresh_detections(pcm, verifier=check):
                        missed_by_model_alone += check.asked == fired_before
                        tally.missed += 1
                        counts[1] += 1
                        kind = "clean" if tally is clean else "noise"
                        tally.misses.append(f"{name} ({kind}): {phrase}")
    total = _Tally(
        clean.tried + noisy.tried,
        clean.missed + noisy.missed,
        clean.misses + noisy.misses,
    )
    return Figure(
        key="wake_miss_rate",
        title=(
            f"Wake word missed ({MODEL} and the Whisper check; {total.tried}"
            f" held-out phrases, {len(speakers)} voices, clean and at"
            f" {NOISE_SNR_DB:g} dB SNR)"
        ),
        unit="%",
        value=total.miss_percent,
        value_label="missed, clean and noisy",
        anchor=clean.miss_percent,
        anchor_label="missed, clean only",
        goal=5.0,
        goal_on="value",
        notes=(
            "detection rate >= 95 %: misses <= 5 %; at the satellite's defaults,"
            f" --wake-threshold {DEFAULT_WAKE_THRESHOLD},"
            f" --wake-gain {DEFAULT_WAKE_GAIN_DB:g} and"
            f" --wake-noise-suppression {DEFAULT_NOISE_SUPPRESSION_DB:g}, with"
            " --wake-verify (extras: misses of the model alone, without the gain,"
            " without the noise suppression, and of the bare model at its own 0.85;"
            " those four without the check)"
        ),
        extras={
            "phrases": total.tried,
            "missed": total.missed,
            "misses": total.misses,
            "noisy_miss_percent": round(noisy.miss_percent, 2),
            "per_voice_tried_missed": per_voice,
            "missed_by_model_alone": missed_by_model_alone,
            **variant_misses,
            **check.extras(),
        },
    )


# --- 10b: false activations ---------------------------------------------------


def _speech_stream(
    minutes: float,
    rng: np.random.Generator,
    config: BenchConfig,
    *,
    near_misses: bool,
) -> np.ndarray:
    """Sentences without the wake word in household noise, ``minutes`` long.

    The sentences are synthesised once (both voices) and then cycled with new
    gaps, gains and noise, as a day in a kitchen repeats itself. With
    ``near_misses``, people also say "Okay, ..." (HELD_OUT_NEAR_MISSES).
    """
    texts = [
        *announcements(6 if config.quick else None),
        *(command.capitalize() for command in HELD_OUT_COMMANDS),
        *(HELD_OUT_NEAR_MISSES if near_misses else ()),
    ]
    voices = (
        [piper_16k]
        if config.quick
        else [lambda t, s=s: piper_16k(t, s) for s in PIPER_SPEEDS]
    )
    voices += [lambda t, v=v: espeak_16k(t, v) for v in ESPEAK_VOICES[:2]]
    utterances = [speak(text) for speak in voices for text in texts]
    return _kitchen_stream(utterances, minutes, rng)


def _kitchen_stream(
    utterances: list[np.ndarray], minutes: float, rng: np.random.Generator
) -> np.ndarray:
    """``utterances`` cycled in a shuffled order, ``minutes`` long.

    Each with a new gap before it (0.5-3 s) and a new level; household noise
    15 dB below the speech under it all.
    """
    target = round(minutes * 60 * RATE)
    parts: list[np.ndarray] = []
    length = 0
    order = rng.permutation(len(utterances))
    index = 0
    while length < target:
        gap = np.zeros(round(rng.uniform(0.5, 3.0) * RATE))
        speech = utterances[order[index % len(order)]] * rng.uniform(0.3, 1.0)
        index += 1
        parts += [gap, speech]
        length += len(gap) + len(speech)
    stream = np.concatenate(parts)[:target]
    level = float(np.sqrt(np.mean(stream[np.abs(stream) > 300] ** 2)))
    return np.asarray(
        stream + household_noise(len(stream), rng) * level / 10 ** (15 / 20)
    )


def false_activation_figures(config: BenchConfig) -> list[Figure]:
    """Figures 10b and 10e: activations in speech without the wake word."""
    minutes = (
        FALSE_ACTIVATION_MINUTES_QUICK
        if config.quick
        else FALSE_ACTIVATION_MINUTES_FULL
    )
    stream = _speech_stream(
        minutes, np.random.default_rng(11), config, near_misses=False
    )
    pcm = _pcm(stream)
    check = whisper_check()
    started = time.process_time()
    false_activations = len(fresh_detections(pcm, verifier=check))
    cpu_seconds = time.process_time() - started
    # The anchor: the same stream with wake phrases spliced in at even places.
    spliced = stream.copy()
    phrase = piper_16k("Okay Nabu, lock the front door.")
    spans = []
    for number in range(SPLICED_WAKE_PHRASES):
        at = round((number + 0.5) * len(stream) / SPLICED_WAKE_PHRASES)
        end = min(len(spliced), at + len(phrase))
        spliced[at:end] = spliced[at:end] * 0.1 + phrase[: end - at]
        spans.append((at, end))
    spliced_check = CountingVerifier(check.verifier)
    fired = fresh_detections(_pcm(spliced), verifier=spliced_check)
    heard = sum(any(at < sample <= end for sample in fired) for at, end in spans)
    ordinary = Figure(
        key="wake_false_activations",
        title=(
            f"False wake-ups in {minutes:g} min of speech without the wake word"
            " and household noise"
        ),
        unit="wake-ups",
        value=float(false_activations),
        value_label="false wake-ups",
        anchor=float(heard),
        anchor_label=f"of {SPLICED_WAKE_PHRASES} wake phrases spliced in, heard",
        goal=0.0,
        goal_on="value",
        notes=(
            "0 in 30 minutes (the full run); the quick run listens to a slice;"
            " wake-ups Whisper confirmed (--wake-verify)"
        ),
        extras={
            "minutes": minutes,
            "spliced": SPLICED_WAKE_PHRASES,
            "cpu_seconds_model_and_checks": round(cpu_seconds, 3),
            **check.extras(),
            "spliced_fired_before_whisper_check": spliced_check.asked,
            "spliced_whisper_rejected": spliced_check.rejected,
            "false_wake_ups_without_gain": len(fresh_detections(pcm, gain=NO_GAIN)),
            "false_wake_ups_without_noise_suppression": len(
                fresh_detections(pcm, level=NO_SUPPRESSION)
            ),
        },
    )
    # The same kitchen, where people also say "Okay, ...": the model's
    # nearest misses. Anchor: the bare model at its own, stricter threshold.
    okay_pcm = _pcm(
        _speech_stream(minutes, np.random.default_rng(12), config, near_misses=True)
    )
    okay_check = CountingVerifier(check.verifier)
    okay = Figure(
        key="wake_false_activations_okay",
        title=(
            f"False wake-ups in {minutes:g} min of the same speech and noise with"
            ' people also saying "Okay, ..." (held-out sentences)'
        ),
        unit="wake-ups",
        value=float(len(fresh_detections(okay_pcm, verifier=okay_check))),
        value_label="false wake-ups",
        anchor=float(
            len(
                fresh_detections(
                    okay_pcm, MODELS_OWN_THRESHOLD, NO_SUPPRESSION, NO_GAIN
                )
            )
        ),
        anchor_label="the bare model at its own 0.85",
        goal=0.0,
        goal_on="value",
        notes=(
            "0 in 30 minutes (the full run); sentences opening with Okay are the"
            " model's nearest misses; wake-ups Whisper confirmed (--wake-verify)"
        ),
        extras={
            "minutes": minutes,
            "sentences": list(HELD_OUT_NEAR_MISSES),
            "false_wake_ups_without_gain": len(
                fresh_detections(okay_pcm, gain=NO_GAIN)
            ),
            **okay_check.extras(),
        },
    )
    return [ordinary, okay]


# --- 10c and 10d: the satellite process -----------------------------------------


class _FakeAssist:
    """Home Assistant's websocket API, as far as an Assist run from STT needs it.

    Answers at once; records when a run was asked for and when its first audio
    frame came.
    """

    def __init__(self) -> None:
        self.runs: list[tuple[float, float | None]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/websocket", self._websocket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await ws.send_json({"type": "auth_required"})
        await ws.receive_json()
        await ws.send_json({"type": "auth_ok", "ha_version": "bench"})
        run_id: int | None = None

        async def event(kind: str, data: dict[str, Any]) -> None:
            await ws.send_json(
                {"id": run_id, "type": "event", "event": {"type": kind, "data": data}}
            )

        async for message in ws:
            if message.type is WSMsgType.TEXT:
                command = json.loads(message.data)
                intent_only = command.get("start_stage") == "intent"
                if command["type"] == "assist_pipeline/pipeline/list":
                    pipeline = {"id": "bench", "name": "Bench", "language": "en"}
                    result = {"pipelines": [pipeline], "preferred_pipeline": "bench"}
                elif command["type"] == "assist_pipeline/run" and intent_only:
                    # The intent of a confirmed wake word's command (--wake-verify).
                    run_id = command["id"]
                    result = None
                elif command["type"] == "assist_pipeline/run":
                    run_id = command["id"]
                    self.runs.append((time.perf_counter(), None))
                    result = None
                else:
                    result = None
                await ws.send_json(
                    {"id": command["id"], "type": "result", "success": True}
                    | {"result": result}
                )
                if command["type"] == "assist_pipeline/run" and intent_only:
                    speech = {"speech": {"plain": {"speech": ""}}}
                    await event("intent-end", {"intent_output": {"response": speech}})
                    await event("run-end", {})
                    run_id = None
                elif command["type"] == "assist_pipeline/run":
                    handler = {"stt_binary_handler_id": 1}
                    await event("run-start", {"runner_data": handler})
                    await event("stt-start", {})
            elif message.type is WSMsgType.BINARY and run_id is not None:
                asked, first = self.runs[-1]
                if first is None:
                    self.runs[-1] = (asked, time.perf_counter())
                if len(message.data) == 1:  # the end of the command's audio
                    await event("stt-end", {"stt_output": {"text": "lock the door"}})
                    speech = {"speech": {"plain": {"speech": ""}}}
                    await event("intent-end", {"intent_output": {"response": speech}})
                    await event("run-end", {})
                    run_id = None
        return ws


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Satellite:
    """The satellite as a process on the room's microphone; its log gathered."""

    def __init__(self, url: str, room: AlsaRoom, token_file: Path, wake: bool) -> None:
        args = [sys.executable, "-m", "tts_ai_satellite", "--url", url]
        args += ["--token-file", str(token_file), "--no-cues"]
        if wake:
            args += ["--wake-word", MODEL, "--wake-verify", str(whisper_dir())]
        self.process = subprocess.Popen(
            args,
            cwd=SATELLITE_DIR,
            env=room.environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, fragment: str, count: int, timeout: float) -> None:
        with self._changed:
            found = self._changed.wait_for(
                lambda: sum(fragment in line for line in self.lines) >= count, timeout
            )
        if not found:
            raise RuntimeError(f"satellite: no {fragment!r}:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)


async def _listening_cpu(
    server: _FakeAssist, folder: Path, wake: bool, seconds: float
) -> tuple[float, _Satellite, AlsaRoom]:
    """Percent of one core the satellite uses over ``seconds`` of room noise."""
    token_file = folder / "token"
    token_file.write_text("bench-token")
    room_dir = folder / ("wake" if wake else "push-to-talk")
    room_dir.mkdir()
    room = AlsaRoom(room_dir)
    satellite = _Satellite(server.url, room, token_file, wake)
    ready = "Ready: listening for" if wake else "Ready: waiting for a trigger"
    await asyncio.to_thread(satellite.wait_for, ready, 1, 60)
    await asyncio.sleep(1.0)  # past start-up
    cpu_before, wall_before = _cpu_seconds(satellite.process.pid), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu = _cpu_seconds(satellite.process.pid) - cpu_before
    return 100.0 * cpu / (time.perf_counter() - wall_before), satellite, room


async def satellite_figures(config: BenchConfig) -> list[Figure]:
    """Figures 10c (CPU while listening) and 10d (wake -> first audio)."""
    seconds = 10.0 if config.quick else 60.0
    rounds = 2 if config.quick else 8
    server = _FakeAssist()
    await server.start()
    with tempfile.TemporaryDirectory(prefix="bench-wake-") as scratch:
        folder = Path(scratch)
        try:
            idle, satellite, room = await _listening_cpu(server, folder, False, seconds)
            satellite.stop()
            room.close()
            listening, satellite, room = await _listening_cpu(
                server, folder, True, seconds
            )
            try:
                phrase = piper_16k("Okay Nabu, lock the front door.")
                for number in range(rounds):
                    room.play(np.concatenate([phrase, np.zeros(RATE)]))
                    await asyncio.to_thread(
                        satellite.wait_for, "Ready: listening for", number + 2, 60
                    )
                    await asyncio.sleep(1.2)  # past the refractory period
            finally:
                satellite.stop()
                room.close()
        finally:
            await server.stop()
    satellite_ms = [
        float(match.group(1))
        for line in satellite.lines
        if (match := LATENCY_LINE.search(line))
    ]
    server_ms = [
        1000 * (first - asked) for asked, first in server.runs if first is not None
    ]
    check_ms = [
        float(match.group(1))
        for line in satellite.lines
        if (match := VERIFY_LINE.search(line))
    ]
    if len(satellite_ms) != rounds or len(server_ms) != rounds:
        raise RuntimeError(
            f"{rounds} wake phrases, {len(satellite_ms)} turns:\n"
            + "\n".join(satellite.lines)
        )
    return [
        Figure(
            key="wake_listen_cpu",
            title=(
                f"Satellite CPU while listening for the wake word"
                f" ({seconds:g} s of real-time room noise through ALSA)"
            ),
            unit="%",
            value=listening,
            value_label="--wake-word, listening",
            anchor=idle,
            anchor_label="push-to-talk, waiting",
            goal=5.0,
            goal_on="value",
            notes="percent of one core, the whole satellite process",
        ),
        Figure(
            key="wake_to_command_audio",
            title=(
                "Wake word detected -> first command audio sent"
                f" (median of {rounds} turns)"
            ),
            unit="s",
            value=statistics.median(satellite_ms) / 1000,
            value_label="the satellite's measure",
            anchor=statistics.median(server_ms) / 1000,
            anchor_label="server: run asked -> first audio",
            goal=0.1,
            goal_on="value",
            notes=(
                "against a loopback server answering as Home Assistant does; the"
                " live end-to-end test logs the same line against a real one. With"
                " --wake-verify: Whisper's check runs beside the command (extras:"
                " its time per wake word, this machine, not a Pi)"
            ),
            extras={
                "satellite_ms": satellite_ms,
                "whisper_check_ms": check_ms,
                "server_ms": [round(ms, 2) for ms in server_ms],
            },
        ),
    ]


# --- choosing the satellite's defaults, on development data only ------------------
#
# ``python -m scripts.benchmarks.wake --tune`` (PYTHONPATH=satellite) prints,
# per gain, noise-suppression level and threshold, the misses on development
# wake phrases and the false wake-ups in development speech. None of it is
# held out: other commands, other noise seeds, other sentences. The
# satellite's DEFAULT_WAKE_GAIN_DB, DEFAULT_NOISE_SUPPRESSION_DB and
# DEFAULT_WAKE_THRESHOLD were read off it by the rule in TUNING_RULE; the
# figures above then measure them on held-out data.

DEVELOPMENT_COMMANDS = (
    "switch off the hallway light.",
    "how warm is it in the nursery?",
    "open the living room blinds.",
    "add milk to the shopping list.",
    "start the robot vacuum.",
    "dim the dining room lights to thirty percent.",
    "when is sunset today?",
    "turn on the porch light.",
)
DEVELOPMENT_NOISE_SEED = 20
# Speech without the wake word; the first streams also hear people say
# "Okay, ..." and "OK, ...", the model's nearest misses.
DEVELOPMENT_SENTENCES = (
    *(command.capitalize() for command in DEVELOPMENT_COMMANDS),
    *("The oven has reached two hundred degrees.", "The freezer door is open."),
    *("Your parcel was delivered to the porch.", "The vacuum is stuck."),
    *("Tomorrow will be cloudy with some sun.", "The bathroom window is open."),
    *("The baby monitor lost its connection.", "Dinner is ready in ten minutes."),
    *("Can you pass me the salt, please?", "I think the kettle has boiled."),
    *("Where did I put my keys?", "We need more coffee filters."),
    *("The heating turns on at six in the morning.", "Let's have pasta tonight."),
    *("The plants on the balcony need water.", "The bin goes out on Thursday."),
    *("Oh no, the milk boiled over.", "Call grandma after lunch."),
    *("The smoke alarm battery is low.", "Turn the music down a bit."),
    *("Is anyone using the car today?", "The cat has been fed."),
    *("Remember to water the tomatoes.", "The living room is too warm."),
    *("Put the kettle on, would you?", "I'll be home around seven."),
    *("The hallway light flickers.", "Nobody is home right now."),
    "Let me check the weather first.",
)
NEAR_MISS_SENTENCES = ("Okay, let's eat.", "OK, I'm leaving now.", "Nah, maybe later.")
DEVELOPMENT_STREAMS = ((31, True), (32, True), (33, True), (41, False), (42, False))
"""(seed, with the near misses): 30 minutes each."""
TUNING_FRONT_ENDS: tuple[tuple[float | None, float | None], ...] = (
    (None, None),
    (None, -45.0),
    (None, -60.0),
    (12.0, -60.0),
    (15.6, -60.0),
    (21.0, -60.0),
)
"""(gain dB, noise suppression dB) pairs tried; None: that part left out."""
TUNING_THRESHOLDS = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
TUNING_RULE = (
    "no more false wake-ups in the development streams than the setting it"
    " replaces (no gain, -60 dB, 0.6); then the fewest development misses"
)


def _probabilities(pcm: bytes, gain: float | None, level: float | None) -> np.ndarray:
    """The model's averaged probability after every 30 ms step of ``pcm``.

    One pass gives every threshold its answer: the listener fires where this
    exceeds the threshold (for the first detection of a stream exactly).
    """
    model = MicroWakeWordModel(MODEL, 0.5, level, gain)
    inner = model._model  # the probabilities, not only the decision
    values: list[float] = []
    for start in range(0, len(pcm), CHUNK_BYTES):
        audio = model.front_end(pcm[start : start + CHUNK_BYTES])
        for features in model._features.process_streaming(audio):
            probability = inner.process_streaming_prob(features)
            if not inner._features:  # a new inference ran
                values.append(probability or 0.0)
    return np.asarray(values)


def _fires(probabilities: np.ndarray, threshold: float) -> int:
    """Detections, each followed by the listener's second of deafness."""
    deaf_steps = round(1.0 / 0.03) + 5  # and the 5-window average refilling
    count, step = 0, 0
    while step < len(probabilities):
        if probabilities[step] > threshold:
            count += 1
            step += deaf_steps
        else:
            step += 1
    return count


def tune() -> None:
    """Print the development table the satellite's defaults were read off."""
    speakers: list[Any] = [lambda t, s=s: piper_16k(t, s) for s in PIPER_SPEEDS]
    speakers += [lambda t, v=v: espeak_16k(t, v) for v in ESPEAK_VOICES]
    rng = np.random.default_rng(DEVELOPMENT_NOISE_SEED)
    phrases = []
    for speak in speakers:
        for form in WAKE_FORMS:
            for command in DEVELOPMENT_COMMANDS:
                speech = speak(f"{form}, {command}")
                phrases.append(_pcm(_padded(speech)))
                phrases.append(
                    _pcm(mix_at_snr(_padded(speech, 2.0), NOISE_SNR_DB, rng))
                )
    ordinary = [speak(text) for speak in speakers for text in DEVELOPMENT_SENTENCES]
    near = [speak(text) for speak in speakers for text in NEAR_MISS_SENTENCES]
    streams = []
    for seed, near_misses in DEVELOPMENT_STREAMS:
        utterances = ordinary + near if near_misses else ordinary
        stream = _kitchen_stream(
            utterances, FALSE_ACTIVATION_MINUTES_FULL, np.random.default_rng(seed)
        )
        streams.append(_pcm(stream))
    print(f"{len(phrases)} wake phrases (half noisy), {len(streams)} x 30 min")
    print(f"rule: {TUNING_RULE}")
    for gain, level in TUNING_FRONT_ENDS:
        heard = [_probabilities(pcm, gain, level) for pcm in phrases]
        in_speech = [_probabilities(pcm, gain, level) for pcm in streams]
        for threshold in TUNING_THRESHOLDS:
            missed = sum(not bool(np.any(p > threshold)) for p in heard)
            false = [_fires(p, threshold) for p in in_speech]
            print(
                f"gain {gain if gain is not None else 'off':>4}"
                f"  suppression {level if level is not None else 'off':>5}"
                f"  threshold {threshold:.2f}  missed {missed:3d}/{len(heard)}"
                f"  false wake-ups {sum(false):2d} {false}",
                flush=True,
            )


async def wake_figures(config: BenchConfig) -> list[Figure]:
    """Every wake-word figure."""
    loop = asyncio.get_running_loop()
    figures = [
        await loop.run_in_executor(None, detection_figure, config),
    ]
    figures.extend(await loop.run_in_executor(None, false_activation_figures, config))
    figures.extend(await satellite_figures(config))
    return figures


if __name__ == "__main__":
    if sys.argv[1:] != ["--tune"]:
        raise SystemExit("usage: python -m scripts.benchmarks.wake --tune")
    tune()
