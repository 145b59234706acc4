"""Figures 12-14: a spoken command's turn through a real Home Assistant.

What a voice user feels is the time from the moment they stop speaking to the
moment the reply starts playing. This runs a real ``hass`` (as ``scripts/develop``
does, ``tests/harness/realhass.py``) with three Assist pipelines:

* **device**: a device-only TTS.ai entry (built-in Piper and Whisper);
* **cloud_first**: a TTS.ai cloud entry whose cloud refuses connections (the
  stand-in is stopped once everything is set up), so the device answers;
* **wyoming** (the anchor): Home Assistant's own ``wyoming`` integration
  pointed at ``wyoming-faster-whisper`` and ``wyoming-piper`` from PyPI,
  started as loopback subprocesses, as the Whisper and Piper add-ons run;
  the same model files, the same thread counts, greedy decoding like ours.

Each turn is what a satellite does: ``assist_pipeline/run`` over the websocket
API from ``stt`` to ``tts``, the command's audio sent in 20 ms chunks at
real-time pace, then the end of the stream; when ``tts-end`` names the reply's
URL, it is fetched. The time is from sending the last audio chunk to the first
byte of the reply audio; ``stt-end``, ``intent-end`` and ``tts-end`` are kept
per turn. The commands (1, 3 and 6 s) are held out from every other test and
are synthesised with Piper at run time (the same audio for all three
pipelines). Home Assistant's TTS cache is cleared before every turn, so no
reply comes from it. The pipelines take turns in a rotating order, round by
round; medians are reported and every round is in the JSON.

Figure 14 is an announcement the same way: ``tts.speak`` to a demo media
player, then the player's media resolved and fetched, to its first byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import contextlib
from dataclasses import dataclass, field
import json
from pathlib import Path
import statistics
import subprocess
import tempfile
import time
from typing import IO, Any

import aiohttp

from tests.harness import realhass

from .common import (
    THREE_SENTENCE_ANNOUNCEMENT,
    VOICE_KEY,
    BenchConfig,
    Figure,
    device_profile,
    joe_voice,
    rounded,
    run_blocking,
    whisper_dir,
)
from .wyoming_server import WyomingPiperServer, WyomingWhisperServer

# Held out: in no other test or benchmark. Lengths are the targets; the
# speech is stretched or squeezed (Piper's length scale) to within 10 %.
COMMANDS = {
    1: "Turn on the bed light.",
    3: "Set the brightness of the office lights to thirty percent.",
    6: (
        "Please close the garage door, then turn off the ceiling lights, "
        "and open the kitchen window a little."
    ),
}
LENGTH_SCALE_RANGE = (0.7, 1.4)
CHUNK_SECONDS = 0.02
SAMPLE_RATE = 16000
STACKS = ("device", "cloud_first", "wyoming")
ANCHOR = "wyoming"
LANGUAGE = "en"
TURN_TIMEOUT = 60.0
MODELS_READY_TIMEOUT = 300.0
FIRST_AUDIO_GOAL = 0.5
STT_GROWTH_GOAL = 1.2
ANNOUNCE_GOAL = 0.6


@dataclass
class Turn:
    """One measured turn; times in seconds after the last audio chunk was sent."""

    stack: str
    seconds: int
    first_audio: float = float("nan")
    stages: dict[str, float] = field(default_factory=dict)
    heard: str = ""
    reply: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "first_audio": round(self.first_audio, 4),
            **{stage: round(value, 4) for stage, value in self.stages.items()},
            "heard": self.heard,
            "reply": self.reply,
        }


@dataclass
class Instance:
    """The running Home Assistant and what the turns need of it."""

    dev: realhass.DevInstance
    pipelines: dict[str, str]  # stack -> pipeline id
    tts_entities: dict[str, str]  # stack -> tts entity id
    player: str = ""


# --- audio ------------------------------------------------------------------------


def speak_16k(voice: Any, text: str, length_scale: float) -> bytes:
    """Piper's speech for ``text`` at 16 kHz (ffmpeg resamples), int16 PCM."""
    from piper import SynthesisConfig  # noqa: PLC0415 - heavy

    config = SynthesisConfig(length_scale=length_scale)
    pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize(text, config))
    return subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "s16le",
            "-ar",
            str(voice.config.sample_rate),
            "-ac",
            "1",
            "-i",
            "pipe:0",
            "-f",
            "s16le",
            "-ar",
            str(SAMPLE_RATE),
            "-ac",
            "1",
            "pipe:1",
        ],
        input=pcm,
        capture_output=True,
        check=True,
    ).stdout


def command_audio() -> dict[int, bytes]:
    """Each command spoken by Piper's joe voice, stretched to its target length."""
    from piper import PiperVoice  # noqa: PLC0415 - heavy

    local_voice = joe_voice()
    voice = PiperVoice.load(str(local_voice.model_path))
    audio: dict[int, bytes] = {}
    low, high = LENGTH_SCALE_RANGE
    for seconds, text in COMMANDS.items():
        scale = 1.0
        pcm = speak_16k(voice, text, scale)
        for _ in range(3):
            spoken = len(pcm) / 2 / SAMPLE_RATE
            if abs(spoken - seconds) <= 0.1 * seconds:
                break
            scale = min(max(scale * seconds / spoken, low), high)
            pcm = speak_16k(voice, text, scale)
        audio[seconds] = pcm
    return audio


# --- Home Assistant set-up (blocking: run in a thread) ------------------------


def _flow(dev: realhass.DevInstance, path: str, body: dict[str, Any]) -> Any:
    answer = realhass.http_request(
        "POST", f"{dev.hass_url}{path}", token=dev.token, json_body=body
    )
    if answer.status != 200:
        raise RuntimeError(f"{path}: HTTP {answer.status}: {answer.body!r}")
    return answer.body


def add_device_entry(dev: realhass.DevInstance) -> str:
    """A device-only TTS.ai entry with the joe voice and Whisper tiny.en."""
    flow = _flow(
        dev,
        "/api/config/config_entries/flow",
        {"handler": "tts_ai", "show_advanced_options": True},
    )
    _flow(
        dev,
        f"/api/config/config_entries/flow/{flow['flow_id']}",
        {"next_step_id": "local"},
    )
    # Where the models come from, and the ones the model server has.
    created = _flow(
        dev,
        f"/api/config/config_entries/flow/{flow['flow_id']}",
        {
            "local_engine": "built_in",
            "model_downloads": {
                "piper_voices_url": (
                    f"{dev.models_url}/rhasspy/piper-voices/resolve/main/"
                ),
                "whisper_models_url": dev.models_url,
                "local_voices": [VOICE_KEY],
                "whisper_model": "tiny.en",
            },
        },
    )
    if created.get("type") != "create_entry":
        raise RuntimeError(f"TTS.ai device-only config flow: {created}")
    entry_id = created["result"]["entry_id"]
    return str(entry_id)


def _add_wyoming_entry(dev: realhass.DevInstance, port: int) -> str:
    flow = _flow(dev, "/api/config/config_entries/flow", {"handler": "wyoming"})
    created = _flow(
        dev,
        f"/api/config/config_entries/flow/{flow['flow_id']}",
        {"host": "127.0.0.1", "port": port},
    )
    if created.get("type") != "create_entry":
        raise RuntimeError(f"wyoming config flow: {created}")
    return str(created["result"]["entry_id"])


def entry_entity(dev: realhass.DevInstance, entry_id: str, domain: str) -> str:
    """The entity of an entry on a platform, once it is registered."""
    deadline = time.monotonic() + 60
    while True:
        listed = realhass.websocket_command(
            dev.hass_url, dev.token, {"type": "config/entity_registry/list"}
        )
        found = [
            e["entity_id"]
            for e in listed
            if e["config_entry_id"] == entry_id
            and e["entity_id"].startswith(f"{domain}.")
        ]
        if found:
            return str(found[0])
        if time.monotonic() > deadline:
            raise RuntimeError(f"entry {entry_id} has no {domain} entity")
        time.sleep(0.5)


def _template(dev: realhass.DevInstance, template: str) -> Any:
    answer = realhass.http_request(
        "POST",
        f"{dev.hass_url}/api/template",
        token=dev.token,
        json_body={"template": template},
    )
    return json.loads(answer.body) if answer.status == 200 else None


def wait_models_ready(dev: realhass.DevInstance, entries: int) -> None:
    """Wait until ``entries`` TTS.ai entries have their on-device models ready."""
    template = (
        "{{ integration_entities('tts_ai') | select('search', 'local_models')"
        " | map('states') | list | tojson }}"
    )
    deadline = time.monotonic() + MODELS_READY_TIMEOUT
    while True:
        states = _template(dev, template) or []
        if len(states) >= entries and all(state == "ready" for state in states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"on-device models not ready: {states}")
        time.sleep(1.0)


def _language(dev: realhass.DevInstance, kind: str, entity: str) -> str:
    """The engine's own tag for English (wyoming-piper says en_US, we say en)."""
    engines = realhass.websocket_command(
        dev.hass_url, dev.token, {"type": f"{kind}/engine/list", "language": LANGUAGE}
    )
    for provider in engines["providers"]:
        if provider["engine_id"] == entity and provider["supported_languages"]:
            return str(provider["supported_languages"][0])
    return LANGUAGE


def create_pipeline(
    dev: realhass.DevInstance, name: str, stt: str, tts: str, voice: str | None
) -> str:
    created = realhass.websocket_command(
        dev.hass_url,
        dev.token,
        {
            "type": "assist_pipeline/pipeline/create",
            "name": name,
            "language": LANGUAGE,
            "conversation_engine": "conversation.home_assistant",
            "conversation_language": LANGUAGE,
            "stt_engine": stt,
            "stt_language": _language(dev, "stt", stt),
            "tts_engine": tts,
            "tts_language": _language(dev, "tts", tts),
            "tts_voice": voice,
            "wake_word_entity": None,
            "wake_word_id": None,
        },
    )
    return str(created["id"])


def _player(dev: realhass.DevInstance) -> str:
    """A demo media player that plays media (demo loads late)."""
    from homeassistant.components.media_player import (  # noqa: PLC0415
        MediaPlayerEntityFeature,
    )

    for _ in range(240):
        players = _template(
            dev,
            "{{ integration_entities('demo') | select('match', 'media_player[.]')"
            " | list | tojson }}",
        )
        for player in players or []:
            state = realhass.http_request(
                "GET", f"{dev.hass_url}/api/states/{player}", token=dev.token
            ).body
            if state["attributes"]["supported_features"] & (
                MediaPlayerEntityFeature.PLAY_MEDIA
            ):
                return str(player)
        time.sleep(0.25)
    raise RuntimeError("no demo media player that plays media")


@contextlib.contextmanager
def running_home_assistant(
    output: IO[str], logs: dict[str, str] | None = None
) -> Iterator[realhass.DevInstance]:
    """A throw-away ``hass`` with the develop config and a TTS.ai cloud entry."""
    with tempfile.TemporaryDirectory(prefix="bench-turn-") as scratch:
        config_dir = realhass.throwaway_config_dir(
            Path(scratch), {"default": "warning", "logs": logs or {}}
        )
        with realhass.running_instance(
            config_dir, ports=realhass.ServerPorts.free(), output=output
        ) as dev:
            yield dev


# --- one turn -------------------------------------------------------------------


class HomeAssistantSocket:
    """One websocket connection to Home Assistant, as a satellite keeps it."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self._session = session
        self._url = url
        self._token = token
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._next_id = 0

    async def __aenter__(self) -> HomeAssistantSocket:
        self._socket = await self._session.ws_connect(
            f"{self._url}/api/websocket", max_msg_size=0
        )
        await self._socket.receive_json()
        await self._socket.send_json({"type": "auth", "access_token": self._token})
        if (await self._socket.receive_json())["type"] != "auth_ok":
            raise RuntimeError("websocket login refused")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._socket is not None:
            await self._socket.close()

    @property
    def socket(self) -> aiohttp.ClientWebSocketResponse:
        assert self._socket is not None
        return self._socket

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def command(self, message: dict[str, Any]) -> Any:
        """Send a command and return its result."""
        message_id = self.new_id()
        await self.socket.send_json({"id": message_id, **message})
        while (answer := await self.socket.receive_json()).get("id") != message_id:
            pass
        if not answer.get("success"):
            raise RuntimeError(f"{message['type']}: {answer.get('error')}")
        return answer.get("result")

    async def clear_tts_cache(self) -> None:
        """Empty HA's TTS caches, so a reply is never served from them."""
        await self.command(
            {"type": "call_service", "domain": "tts", "service": "clear_cache"}
        )


async def _first_byte(session: aiohttp.ClientSession, url: str) -> float:
    """Fetch ``url``; return when its first body byte arrived (read the rest)."""
    async with session.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"reply audio: HTTP {response.status}")
        while not await response.content.readany():
            if response.content.at_eof():
                raise RuntimeError("reply audio is empty")
        arrived = time.perf_counter()
        while await response.content.readany():
            pass
    return arrived


async def run_turn(
    ws: HomeAssistantSocket,
    session: aiohttp.ClientSession,
    *,
    hass_url: str,
    pipeline: str,
    pcm: bytes,
    turn: Turn,
) -> Turn:
    """One satellite turn: stream ``pcm`` in real time, fetch the reply."""
    await ws.clear_tts_cache()
    run_id = ws.new_id()
    socket = ws.socket
    await socket.send_json(
        {
            "id": run_id,
            "type": "assist_pipeline/run",
            "start_stage": "stt",
            "end_stage": "tts",
            "pipeline": pipeline,
            "input": {"sample_rate": SAMPLE_RATE},
        }
    )
    handler: int | None = None
    while handler is None:
        message = await socket.receive_json()
        if message.get("id") != run_id:
            continue
        if message["type"] == "result" and not message["success"]:
            raise RuntimeError(f"assist_pipeline/run: {message}")
        event = message.get("event") or {}
        if event.get("type") == "run-start":
            handler = event["data"]["runner_data"]["stt_binary_handler_id"]
    prefix = bytes([handler])
    ended = asyncio.Event()
    marks: dict[str, float] = {}
    fetch: asyncio.Task[float] | None = None
    errors: list[str] = []

    async def receive() -> None:
        nonlocal fetch
        while True:
            message = await socket.receive_json()
            if message.get("id") != run_id or message["type"] != "event":
                continue
            event = message["event"]
            kind, data = event["type"], event.get("data") or {}
            marks[kind] = time.perf_counter()
            if kind == "stt-end":
                turn.heard = data["stt_output"]["text"]
            elif kind == "intent-end":
                response = data["intent_output"]["response"]
                turn.reply = response["speech"].get("plain", {}).get("speech", "")
            elif kind == "tts-end":
                url = data["tts_output"]["url"]
                fetch = asyncio.create_task(_first_byte(session, f"{hass_url}{url}"))
            elif kind == "error":
                errors.append(f"{data.get('code')}: {data.get('message')}")
            if kind in {"run-end", "error"}:
                ended.set()
                return

    receiver = asyncio.create_task(receive())
    chunk_bytes = int(CHUNK_SECONDS * SAMPLE_RATE) * 2
    start = time.perf_counter()
    for count, offset in enumerate(range(0, len(pcm), chunk_bytes), start=1):
        # A microphone has a chunk only once its 20 ms have been recorded.
        await asyncio.sleep(max(start + count * CHUNK_SECONDS - time.perf_counter(), 0))
        await socket.send_bytes(prefix + pcm[offset : offset + chunk_bytes])
    last_chunk = time.perf_counter()
    await socket.send_bytes(prefix)  # the end of the audio
    async with asyncio.timeout(TURN_TIMEOUT):
        await ended.wait()
        await receiver
        if errors:
            raise RuntimeError(f"{turn.stack}: pipeline error {errors}")
        if fetch is None:
            raise RuntimeError(f"{turn.stack}: no tts-end")
        first = await fetch
    turn.first_audio = first - last_chunk
    for stage in ("stt-end", "intent-end", "tts-end"):
        turn.stages[stage] = marks[stage] - last_chunk
    return turn


async def announce(
    ws: HomeAssistantSocket,
    session: aiohttp.ClientSession,
    instance: Instance,
    stack: str,
) -> float:
    """``tts.speak`` to the demo player, then its media to the first byte."""
    await ws.clear_tts_cache()
    dev = instance.dev
    start = time.perf_counter()
    await ws.command(
        {
            "type": "call_service",
            "domain": "tts",
            "service": "speak",
            "target": {"entity_id": instance.tts_entities[stack]},
            "service_data": {
                "media_player_entity_id": instance.player,
                "message": THREE_SENTENCE_ANNOUNCEMENT,
                "cache": False,
                **({"options": {"voice": VOICE_KEY}} if stack == ANCHOR else {}),
            },
        }
    )
    states = await ws.command({"type": "get_states"})
    [player] = [s for s in states if s["entity_id"] == instance.player]
    media = await ws.command(
        {
            "type": "media_source/resolve_media",
            "media_content_id": player["attributes"]["media_content_id"],
        }
    )
    first = await _first_byte(session, f"{dev.hass_url}{media['url']}")
    return first - start


# --- the suite --------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def turn_figures(config: BenchConfig) -> list[Figure]:
    """Figures 12-14 (blocking: call it from a thread, it runs its own loop)."""
    audio = command_audio()
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept for the error tail
        "w+", prefix="bench-turn-", suffix=".log", delete=False
    )
    try:
        with log, running_home_assistant(log) as dev:
            return asyncio.run(_measure(dev, audio, config))
    except BaseException:
        tail = Path(log.name).read_text(errors="replace")[-6000:]
        print(f"bench turn: servers' log (tail):\n{tail}", flush=True)
        raise
    finally:
        Path(log.name).unlink(missing_ok=True)


async def _measure(
    dev: realhass.DevInstance, audio: dict[int, bytes], config: BenchConfig
) -> list[Figure]:
    profile = device_profile(config)
    threads = profile.intra_op_threads
    # One entry after the other: both fetch the same models into one folder.
    await run_blocking(wait_models_ready, dev, 1)
    device_entry = await run_blocking(add_device_entry, dev)
    cloud_entry = str(dev.entry["entry_id"])
    await run_blocking(wait_models_ready, dev, 2)
    async with (
        WyomingWhisperServer(whisper_dir(), threads=threads) as whisper_server,
        WyomingPiperServer(joe_voice(), board_cores=threads) as piper_server,
    ):
        stt_entry = await run_blocking(_add_wyoming_entry, dev, whisper_server.port)
        tts_entry = await run_blocking(_add_wyoming_entry, dev, piper_server.port)
        entries = {
            "device": (device_entry, device_entry),
            "cloud_first": (cloud_entry, cloud_entry),
            ANCHOR: (stt_entry, tts_entry),
        }
        pipelines: dict[str, str] = {}
        tts_entities: dict[str, str] = {}
        for stack, (stt_id, tts_id) in entries.items():
            stt = await run_blocking(entry_entity, dev, stt_id, "stt")
            tts = await run_blocking(entry_entity, dev, tts_id, "tts")
            voice = VOICE_KEY if stack == ANCHOR else None
            pipelines[stack] = await run_blocking(
                create_pipeline, dev, f"bench {stack}", stt, tts, voice
            )
            tts_entities[stack] = tts
        instance = Instance(dev, pipelines, tts_entities)
        instance.player = await run_blocking(_player, dev)
        # The cloud goes away: from now on it refuses connections.
        await run_blocking(realhass.stop_process, dev.standin)
        async with (
            aiohttp.ClientSession() as session,
            HomeAssistantSocket(session, dev.hass_url, dev.token) as ws,
        ):
            turns = await _turn_rounds(ws, session, instance, audio, config)
            announcements = await _announce_rounds(ws, session, instance, config)
    return _figures(
        turns, announcements, audio, config, threads, whisper_server, piper_server
    )


def _rounds(config: BenchConfig) -> tuple[int, int]:
    """Warm-up and timed rounds: the quick run does one short round of each."""
    return (1, 1) if config.quick else (config.warmups, config.repeats)


async def _turn_rounds(
    ws: HomeAssistantSocket,
    session: aiohttp.ClientSession,
    instance: Instance,
    audio: dict[int, bytes],
    config: BenchConfig,
) -> list[Turn]:
    warmups, repeats = _rounds(config)
    turns: list[Turn] = []
    for round_index in range(warmups + repeats):
        # Rotate who goes first, so drift spreads over all three.
        order = STACKS[round_index % 3 :] + STACKS[: round_index % 3]
        for seconds, pcm in audio.items():
            for stack in order:
                turn = await run_turn(
                    ws,
                    session,
                    hass_url=instance.dev.hass_url,
                    pipeline=instance.pipelines[stack],
                    pcm=pcm,
                    turn=Turn(stack, seconds),
                )
                if round_index >= warmups:
                    turns.append(turn)
    return turns


async def _announce_rounds(
    ws: HomeAssistantSocket,
    session: aiohttp.ClientSession,
    instance: Instance,
    config: BenchConfig,
) -> dict[str, list[float]]:
    warmups, repeats = _rounds(config)
    samples: dict[str, list[float]] = {stack: [] for stack in STACKS}
    for round_index in range(warmups + repeats):
        order = STACKS[round_index % 3 :] + STACKS[: round_index % 3]
        for stack in order:
            elapsed = await announce(ws, session, instance, stack)
            if round_index >= warmups:
                samples[stack].append(elapsed)
    return samples


def _figures(  # noqa: PLR0917 - all of one run's results
    turns: list[Turn],
    announcements: dict[str, list[float]],
    audio: dict[int, bytes],
    config: BenchConfig,
    threads: int,
    whisper_server: WyomingWhisperServer,
    piper_server: WyomingPiperServer,
) -> list[Figure]:
    def of(stack: str, seconds: int) -> list[Turn]:
        return [t for t in turns if t.stack == stack and t.seconds == seconds]

    def stage(stack: str, seconds: int, name: str) -> float:
        return _median([t.stages[name] for t in of(stack, seconds)])

    warmups, repeats = _rounds(config)
    how = f"median of {repeats} rotating rounds after {warmups} warm-up"
    anchor_label = (
        f"HA wyoming + wyoming-faster-whisper {whisper_server.version}"
        f" + wyoming-piper {piper_server.version}"
    )
    setup = (
        f"real hass over the websocket API, 20 ms chunks in real time; tiny.en int8"
        f" and {VOICE_KEY} on {threads} threads on both sides; {how}"
    )
    figures: list[Figure] = []
    for stack in ("device", "cloud_first"):
        for seconds, pcm in audio.items():
            ours = of(stack, seconds)
            anchor = of(ANCHOR, seconds)
            spoken = len(pcm) / 2 / SAMPLE_RATE
            suffix = "" if stack == "device" else "_cloud_first"
            label = (
                "device-only TTS.ai entry"
                if stack == "device"
                else "cloud_first TTS.ai entry, cloud refusing connections"
            )
            figures.append(
                Figure(
                    key=f"turn_first_audio_{seconds}s{suffix}",
                    title=(
                        f"End of speech → first reply audio, {seconds} s command"
                        + ("" if stack == "device" else " (cloud_first, cloud down)")
                    ),
                    unit="s",
                    value=_median([t.first_audio for t in ours]),
                    value_label=label,
                    anchor=_median([t.first_audio for t in anchor]),
                    anchor_label=anchor_label,
                    goal=FIRST_AUDIO_GOAL,
                    goal_on="ratio",
                    notes=f"{spoken:.1f} s of speech; {setup}",
                    extras={
                        "command": COMMANDS[seconds],
                        "speech_seconds": round(spoken, 2),
                        "stages_median": {
                            side: {
                                name: round(stage(side, seconds, name), 4)
                                for name in ("stt-end", "intent-end", "tts-end")
                            }
                            for side in (stack, ANCHOR)
                        },
                        "rounds": [t.to_json() for t in ours + anchor],
                    },
                )
            )
    shortest, longest = min(audio), max(audio)
    growth = {
        side: (stage(side, shortest, "stt-end"), stage(side, longest, "stt-end"))
        for side in STACKS
    }
    figures.append(
        Figure(
            key="turn_stt_growth",
            title=(
                f"STT finalisation after end of speech, {longest} s vs {shortest} s"
                " command"
            ),
            unit="s",
            value=growth["device"][1],
            value_label=f"device-only entry, stt-end after {longest} s of speech",
            anchor=growth["device"][0],
            anchor_label=f"the same after {shortest} s of speech",
            goal=STT_GROWTH_GOAL,
            goal_on="ratio",
            notes=(
                "stt-end after the last audio chunk, median per length; "
                + ", ".join(
                    f"{side}: {low:.3f} s → {high:.3f} s"
                    for side, (low, high) in growth.items()
                )
            ),
            extras={
                side: {f"{shortest}s": round(low, 4), f"{longest}s": round(high, 4)}
                for side, (low, high) in growth.items()
            },
        )
    )
    figures.append(
        Figure(
            key="announce_first_audio",
            title="Announcement first audio through hass (tts.speak → first byte)",
            unit="s",
            value=_median(announcements["device"]),
            value_label="device-only TTS.ai entry",
            anchor=_median(announcements[ANCHOR]),
            anchor_label=f"HA wyoming + wyoming-piper {piper_server.version}",
            goal=ANNOUNCE_GOAL,
            goal_on="ratio",
            notes=(
                "tts.speak to a demo player, its media resolved and fetched; "
                f"three-sentence announcement, long first sentence; {how}; "
                f"cloud_first entry (cloud down): "
                f"{_median(announcements['cloud_first']):.3f} s"
            ),
            extras={
                "text": THREE_SENTENCE_ANNOUNCEMENT,
                **{
                    f"{stack}_samples": rounded(announcements[stack])
                    for stack in STACKS
                },
            },
        )
    )
    return figures
