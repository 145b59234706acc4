"""A real Home Assistant the satellite talks to: on-device speech, an Assist pipeline.

A ``hass`` process (loopback only, started with ``realhass``) runs this
integration in local-only mode: Piper and faster-whisper, downloaded at
set-up from the loopback model server (``model_server.py``, a process of its
own here). An Assist pipeline uses the entry's STT and TTS entities with
Home Assistant's built-in conversation agent.

The satellite's end-to-end test (``tests/test_satellite_e2e.py``) and the
aarch64 check (``scripts/armcheck``) both set it up with
:func:`start_assist_home`, and judge the satellite's reply to
:data:`QUESTION` with :func:`says_the_time` and :func:`assert_speech_of`.
For ``--ha-wake-word`` the end-to-end test adds a wake-word engine, the
microWakeWord add-on's Wyoming server (:func:`start_wake_word_server`,
:func:`add_wake_word_pipeline`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
import json
from pathlib import Path
import re
import subprocess
import sys
import time
from typing import IO, Any

import aiohttp
import numpy as np

from tests.harness import realhass
from tests.harness.standin.engines import synthesize_pcm, transcribe_samples, wav_bytes
from tts_ai_satellite.ha import HomeAssistant

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PIPELINE_NAME = "Satellite test"
QUESTION = "What time is it?"
MODELS_READY_TIMEOUT = 240.0
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


def configuration(tmp: Path, port: int) -> dict[str, Any]:
    """The developer's configuration, on a free port, English (US), no demo."""
    config = realhass.load_configuration(realhass.DEFAULT_CONFIG_DIR)
    # The demo integration's lights are what the live-mode test switches on.
    config["homeassistant"] = {
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
    config["frontend"] = realhass.frontend_stand_in(tmp)
    config["logger"] = {
        "default": "warning",
        "logs": {"custom_components.tts_ai": "info"},
    }
    return config


def start_model_server(log: IO[str]) -> tuple[subprocess.Popen[str], str, str]:
    """Start the model server process; return it and its Piper and HF URLs."""
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


def add_local_only_entry(url: str, token: str, piper_url: str, hf_url: str) -> None:
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


def integration_entity(
    home: AssistHome, domain: str, integration: str = "tts_ai"
) -> str:
    """Return the entity id of ``integration``'s one ``domain`` entity."""
    answer = realhass.http_request(
        "POST",
        f"{home.url}/api/template",
        token=home.token,
        json_body={
            "template": f"{{{{ integration_entities('{integration}')"
            f" | select('match', '{domain}[.]') | list | tojson }}}}"
        },
    )
    assert answer.status == 200, answer
    [entity] = json.loads(answer.body)
    return entity


async def create_pipeline(
    home: AssistHome,
    name: str = PIPELINE_NAME,
    *,
    wake_word_entity: str | None = None,
    wake_word_id: str | None = None,
) -> None:
    """An Assist pipeline: the entry's STT and TTS, HA's own conversation agent.

    With ``wake_word_entity`` Home Assistant can listen for the wake word too.
    """
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
                    "name": name,
                    "language": "en",
                    "conversation_engine": "conversation.home_assistant",
                    "conversation_language": "en",
                    "stt_engine": home.stt_entity,
                    "stt_language": stt_language,
                    "tts_engine": home.tts_entity,
                    "tts_language": tts_language,
                    "tts_voice": None,
                    "wake_word_entity": wake_word_entity,
                    "wake_word_id": wake_word_id,
                }
            )
        finally:
            await ha.close()


def start_assist_home(
    tmp: Path, log: IO[str], piper_url: str, hf_url: str
) -> AssistHome:
    """Start Home Assistant with the local-only entry and the pipeline, running.

    The entry's models come from the model server at ``piper_url`` and
    ``hf_url``; Home Assistant writes to ``log``. A failed start stops the
    process; stop the running one with ``realhass.stop_process(home.hass)``.
    """
    config = configuration(tmp, realhass.free_port())
    config_dir = tmp / "config"
    realhass.write_configuration(config_dir, config)
    realhass.ensure_requirements(config, output=log, frontend=False)
    realhass.prepare_config_dir(config_dir)

    spoken = synthesize_pcm(QUESTION)
    question_wav = tmp / "question.wav"
    question_wav.write_bytes(wav_bytes(spoken.pcm, spoken.sample_rate))

    home = AssistHome(
        config_dir=config_dir,
        url=realhass.hass_url(config),
        token="",
        token_file=tmp / "token",
        question_wav=question_wav,
        log=log,
        log_path=Path(log.name),
        hass=None,  # type: ignore[arg-type]
    )
    try:
        home.start()
        home.token = realhass.onboard_or_log_in(home.url)
        home.token_file.write_text(home.token)
        realhass.wait_until_running(home.url, home.token, home.hass)
        realhass.remove_failed_onboarding_entries(home.url, home.token)
        add_local_only_entry(home.url, home.token, piper_url, hf_url)
        home.wait_until_ready()
        home.stt_entity = integration_entity(home, "stt")
        home.tts_entity = integration_entity(home, "tts")
        asyncio.run(create_pipeline(home))
    except BaseException:
        if home.hass is not None:
            realhass.stop_process(home.hass)
        raise
    return home


# --- Home Assistant doing the wake word --------------------------------------------

WAKE_PIPELINE_NAME = "Satellite test, wake word in Home Assistant"
WAKE_WORD_ID = "okay_nabu"
WAKE_SERVER_TIMEOUT = 30.0


def start_wake_word_server(
    log: IO[str], port: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """The microWakeWord add-on's Wyoming server on loopback; return it and its port.

    The server is the add-on's own code (vendored: ``tests/vendor``); it
    listens on ``port`` (a free one if None).
    """
    port = port or realhass.free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "wyoming_microwakeword"),
            *("--uri", f"tcp://127.0.0.1:{port}", "--debug"),
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, port


def add_wake_word_pipeline(
    home: AssistHome, server: subprocess.Popen[bytes], port: int
) -> str:
    """Add the wake-word server as a user does, and a pipeline that uses it.

    The user adds the server with the wyoming integration's own config flow
    (host and port); Home Assistant makes a ``wake_word`` entity of it. The
    pipeline is the test pipeline with that engine listening for "Okay Nabu".
    Return the wake-word entity.
    """
    flows = f"{home.url}/api/config/config_entries/flow"
    flow = realhass.http_request(
        "POST", flows, token=home.token, json_body={"handler": "wyoming"}
    )
    assert flow.status == 200 and flow.body["step_id"] == "user", flow
    deadline = time.monotonic() + WAKE_SERVER_TIMEOUT
    while True:  # the server may still be starting: the form says so
        created = realhass.http_request(
            "POST",
            f"{flows}/{flow.body['flow_id']}",
            token=home.token,
            json_body={"host": "127.0.0.1", "port": port},
        )
        assert created.status == 200, created
        if created.body["type"] == "create_entry":
            break
        assert created.body["errors"] == {"base": "cannot_connect"}, created.body
        assert server.poll() is None, "the wake-word server exited"
        assert time.monotonic() < deadline, "the wake-word server never answered"
        time.sleep(0.3)
    entity = integration_entity(home, "wake_word", "wyoming")
    asyncio.run(
        create_pipeline(
            home,
            WAKE_PIPELINE_NAME,
            wake_word_entity=entity,
            wake_word_id=WAKE_WORD_ID,
        )
    )
    return entity


# --- The reply ----------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Return the words of ``text``, lower case, without punctuation."""
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


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


def says_the_time(reply: str, asked_at: datetime, answered_at: datetime) -> bool:
    """Whether ``reply`` names a clock time between the two moments (UTC here)."""
    minute = asked_at.replace(second=0, microsecond=0)
    while minute <= answered_at:
        hour12 = minute.hour % 12 or 12
        for spoken in (f"{hour12}:{minute:%M}", f"{minute:%H:%M}"):
            if re.search(rf"\b{spoken}\b", reply):
                return True
        minute += timedelta(minutes=1)
    return False


def transcribe(samples: np.ndarray) -> str:
    """Return what Whisper hears in 16 kHz float samples."""
    return " ".join(segment.text for segment in transcribe_samples(samples))


# How Whisper writes the parts of a spoken clock time that are not digits.
_SPOKEN_DIGITS = {"oh": "0", "o": "0", "zero": "0", "one": "1", "two": "2",
                  "three": "3", "four": "4", "for": "4", "five": "5", "six": "6",
                  "seven": "7", "eight": "8", "nine": "9", "ten": "10",
                  "eleven": "11", "twelve": "12"}  # fmt: skip


def _spelled(text: str) -> str:
    """Words as one string, digits for spoken digits: "For 0 3 p.m." -> "403pm"."""
    return "".join(_SPOKEN_DIGITS.get(word, word) for word in words(text))


def assert_speech_of(path: Path, reply: str) -> None:
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
    heard = _spelled(transcribe(samples))
    said = _spelled(reply)
    numbers = re.findall(r"\d+", reply)
    assert numbers, reply
    assert any(number in heard for number in numbers), (reply, said, heard)
