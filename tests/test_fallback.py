"""On-device fallback inside Home Assistant: speech never stops with the cloud."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
import os
from pathlib import Path
import signal
import time
from typing import Any
from unittest.mock import patch

from homeassistant.components import media_source, stt
from homeassistant.core import HomeAssistant, State
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from homeassistant.requirements import RequirementsNotFound
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    mock_restore_cache_with_extra_data,
)

from custom_components.tts_ai import local_speech, stt as tts_ai_stt
from custom_components.tts_ai.local_speech import ModelStatus
from tests.audio import decode_pcm
from tests.harness.model_server import FAKE_WHISPER_MODEL, FileFault, ModelServer
from tests.harness.standin import Fault, StandinServer, synthesize_wav, transcribe_pcm

from .conftest import make_entry, make_local_only_entry
from .test_stt import HEADERS, STT_ENTITY
from .test_tts import TTS_ENTITY, speak

ACTIVE_ENGINE = "sensor.tts_ai_active_engine"
CLOUD_REACHABLE = "binary_sensor.tts_ai_cloud_reachable"
LOCAL_MODELS = "sensor.tts_ai_local_models"
ANNOUNCEMENT = "The garage door is open. Please close it."


@pytest.fixture(scope="session")
def shared_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config dir whose models are downloaded once for the whole session."""
    return tmp_path_factory.mktemp("config")


@pytest.fixture
async def model_server(socket_enabled: None) -> AsyncGenerator[ModelServer]:
    """Piper voices and Whisper models, served like their real hosts."""
    async with ModelServer() as server:
        yield server


async def wait_for_models(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Wait until the on-device models are downloaded and loaded."""
    local = entry.runtime_data.local
    async with asyncio.timeout(120):
        while local.status != ModelStatus.READY:
            assert local.status != ModelStatus.FAILED, local.error
            await asyncio.sleep(0.05)
    await hass.async_block_till_done()


def use_config_dir(hass: HomeAssistant, config_dir: Path) -> None:
    """Keep the models in ``config_dir``; speak and listen in US English."""
    hass.config.config_dir = str(config_dir)
    hass.config.language = "en"
    hass.config.country = "US"


def local_only_entry(model_server: ModelServer) -> MockConfigEntry:
    """Return a device-only entry whose models come from the model server."""
    return make_local_only_entry(
        local_engine="built_in",
        piper_voices_url=model_server.piper_base_url,
        whisper_models_url=model_server.hf_base_url,
        whisper_model="tiny.en",
    )


def packages_missing() -> AbstractContextManager[Any]:
    """The engines' packages cannot be installed here (onnxruntime is missing)."""
    return patch(
        "custom_components.tts_ai.local_speech.missing_packages",
        return_value=["onnxruntime"],
    )


async def setup_fallback_entry(
    hass: HomeAssistant,
    standin: StandinServer,
    model_server: ModelServer,
    config_dir: Path,
    **options: Any,
) -> MockConfigEntry:
    """Set up a cloud-first entry whose device models come from loopback."""
    use_config_dir(hass, config_dir)
    assert await async_setup_component(hass, "homeassistant", {})
    entry = make_entry(
        standin,
        mode="cloud_first",
        piper_voices_url=model_server.piper_base_url,
        whisper_models_url=model_server.hf_base_url,
        hedge_deadline=0.5,
        # The model server has tiny.en (x86 would pick base).
        whisper_model="tiny.en",
        **options,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_for_models(hass, entry)
    return entry


async def setup_local_only_entry(
    hass: HomeAssistant, model_server: ModelServer, config_dir: Path
) -> MockConfigEntry:
    """Set up a key-less, device-only entry with its models ready."""
    use_config_dir(hass, config_dir)
    entry = local_only_entry(model_server)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_for_models(hass, entry)
    return entry


async def setup_another_engine_entry(
    hass: HomeAssistant, standin: StandinServer, **entities: str
) -> MockConfigEntry:
    """Set up a cloud-first entry whose fallback is "another engine": the TTS
    and STT entities in ``entities`` (``local_tts_entity``, ``local_stt_entity``)."""
    entry = make_entry(
        standin,
        mode="cloud_first",
        local_engine="entity",
        hedge_deadline=0.5,
        **entities,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def transcribed(hass_client, entity_id: str, text: str) -> dict[str, Any]:
    """Say ``text`` (Piper speech) to ``entity_id`` through HA's STT API;
    return HA's answer."""
    pcm = await decode_pcm(await synthesize_wav(text))
    client = await hass_client()
    response = await client.post(f"/api/stt/{entity_id}", data=pcm, headers=HEADERS)
    return await response.json()


@pytest.fixture
async def fallback_entry(
    hass: HomeAssistant,
    standin: StandinServer,
    model_server: ModelServer,
    shared_config_dir: Path,
) -> MockConfigEntry:
    """A cloud-first entry with its device models ready."""
    assert await async_setup_component(hass, "media_source", {})
    return await setup_fallback_entry(hass, standin, model_server, shared_config_dir)


async def heard(audio: bytes) -> str:
    """Return what Whisper hears in audio, lower-cased."""
    return (await transcribe_pcm(await decode_pcm(audio))).lower()


async def test_models_are_fetched_at_setup(
    hass: HomeAssistant,
    standin: StandinServer,
    model_server: ModelServer,
    tmp_path: Path,
) -> None:
    """Setting up fetches the voice and the speech model before any outage."""
    entry = await setup_fallback_entry(hass, standin, model_server, tmp_path)

    assert hass.states.get(LOCAL_MODELS).state == "ready"
    assert hass.states.get(LOCAL_MODELS).attributes["progress"] == {
        "en_US-joe-medium": 100,
        "tiny.en": 100,
    }
    assert model_server.requests_for("*en_US-joe-medium.onnx")
    assert model_server.requests_for("*faster-whisper-tiny.en/resolve/main/model.bin")
    models = tmp_path / "tts_ai" / "models"
    assert (models / "piper" / "en_US-joe-medium" / "en_US-joe-medium.onnx").is_file()
    assert not list(models.rglob("*.part"))
    assert entry.runtime_data.local.piper.loaded_voices == ["en_US-joe-medium"]


async def test_two_entries_on_one_models_folder_share_the_downloads(
    hass: HomeAssistant,
    standin: StandinServer,
    model_server: ModelServer,
    tmp_path: Path,
) -> None:
    """A cloud entry and a device-only entry set up together both get ready."""
    use_config_dir(hass, tmp_path)
    assert await async_setup_component(hass, "homeassistant", {})
    # Slow answers, so both entries surely want the models at the same time.
    model_server.add_fault("*joe-medium*", FileFault.SLOW, delay=0.3, times=None)
    cloud = make_entry(
        standin,
        mode="cloud_first",
        piper_voices_url=model_server.piper_base_url,
        whisper_models_url=model_server.hf_base_url,
        whisper_model="tiny.en",
    )
    device = local_only_entry(model_server)
    cloud.add_to_hass(hass)
    device.add_to_hass(hass)

    # Loading the integration sets up both entries, their downloads at once.
    assert await async_setup_component(hass, "tts_ai", {})
    await asyncio.gather(wait_for_models(hass, cloud), wait_for_models(hass, device))

    # One download per file, however many entries wanted it.
    assert len(model_server.requests_for("*en_US-joe-medium.onnx")) == 1
    assert len(model_server.requests_for("*tiny.en/resolve/main/model.bin")) == 1
    assert not list((tmp_path / "tts_ai" / "models").rglob("*.part"))
    for entry in (cloud, device):
        assert entry.runtime_data.local.piper.loaded_voices == ["en_US-joe-medium"]


async def test_active_engine_is_known_from_the_start_and_after_a_restart(
    hass: HomeAssistant,
    standin: StandinServer,
    model_server: ModelServer,
    tmp_path: Path,
) -> None:
    """A new entry shows where the next request goes; a restart keeps the last."""
    entry = await setup_fallback_entry(hass, standin, model_server, tmp_path)
    assert hass.states.get(ACTIVE_ENGINE).state == "cloud"  # not "unknown"
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()

    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State(ACTIVE_ENGINE, "local"),
                {"native_value": "local", "native_unit_of_measurement": None},
            )
        ],
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_for_models(hass, entry)  # the set-up's loading done before unload
    assert hass.states.get(ACTIVE_ENGINE).state == "local"
    assert await hass.config_entries.async_unload(entry.entry_id)


CLOUD_FAULTS = [
    pytest.param(Fault.REFUSE, {}, id="refuse"),
    pytest.param(Fault.HANG, {}, id="hang"),
    pytest.param(Fault.SLOW_FIRST_BYTE, {"delay": 20.0}, id="slow_first_byte"),
    pytest.param(Fault.INTERNAL_ERROR, {}, id="500"),
    pytest.param(Fault.MODEL_LOADING, {}, id="503"),
    pytest.param(Fault.RATE_LIMITED, {}, id="429"),
    pytest.param(Fault.INSUFFICIENT_CREDITS, {}, id="402"),
]


@pytest.mark.parametrize(("fault", "kwargs"), CLOUD_FAULTS)
async def test_speech_survives_cloud_fault(
    hass: HomeAssistant,
    hass_client,
    fallback_entry: MockConfigEntry,
    standin: StandinServer,
    fault: Fault,
    kwargs: dict[str, Any],
) -> None:
    """Whatever the cloud does, tts.speak plays the whole announcement."""
    standin.inject(fault, **kwargs)
    started = time.monotonic()
    audio = await speak(hass, hass_client, ANNOUNCEMENT)
    # Hedging: a silent cloud does not make the house wait for a timeout.
    assert time.monotonic() - started < 15
    words = await heard(audio)
    assert "garage door is open" in words
    assert "close it" in words
    assert hass.states.get(ACTIVE_ENGINE).state == "local"


@pytest.mark.parametrize(("fault", "kwargs"), CLOUD_FAULTS)
async def test_transcription_survives_cloud_fault(
    hass: HomeAssistant,
    hass_client,
    fallback_entry: MockConfigEntry,
    standin: StandinServer,
    fault: Fault,
    kwargs: dict[str, Any],
) -> None:
    """Whatever the cloud does, Assist still gets the words."""
    standin.inject(fault, **kwargs)
    pcm = await decode_pcm(await synthesize_wav("Turn off the bedroom lights."))
    client = await hass_client()
    response = await client.post(f"/api/stt/{STT_ENTITY}", data=pcm, headers=HEADERS)
    assert response.status == HTTPStatus.OK
    body = await response.json()
    assert body["result"] == "success"
    assert "bedroom lights" in body["text"].lower()


async def test_broken_stream_is_finished_on_the_device(
    hass: HomeAssistant,
    hass_client,
    fallback_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A cloud stream that breaks off is continued by the device, not cut off."""
    standin.inject(Fault.TRUNCATED_STREAM, path="tts/", times=1)
    audio = await speak(
        hass,
        hass_client,
        "Good evening. The alarm is now armed. All windows are closed.",
    )
    words = await heard(audio)
    assert "is now armed" in words
    assert "windows are closed" in words
    # The first sentence went to the cloud and broke; the rest never asked it.
    assert [r.path for r in standin.requests if r.path == "tts/"] == ["tts/"]
    assert hass.states.get(CLOUD_REACHABLE).state == "off"


async def test_recovery_uses_the_cloud_and_not_cached_fallback_audio(
    hass: HomeAssistant,
    hass_client,
    fallback_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """After an outage the next identical announcement is the cloud's again."""
    await speak(hass, hass_client, "Dinner is ready.")
    assert hass.states.get(ACTIVE_ENGINE).state == "cloud"

    standin.inject(Fault.REFUSE)
    await speak(hass, hass_client, "The post has arrived.")
    assert hass.states.get(ACTIVE_ENGINE).state == "local"
    assert hass.states.get(CLOUD_REACHABLE).state == "off"

    # While the cloud is down, the breaker spares it the same announcement.
    standin.clear_faults()
    before = len(standin.requests)
    await speak(hass, hass_client, "The post has arrived.")
    assert len(standin.requests) == before

    # The probe back-off has passed: the cloud is asked and speaks again, and
    # the announcement made on the device during the outage is not replayed.
    breaker = fallback_entry.runtime_data.policy.breaker
    breaker.clock = lambda: time.monotonic() + 3600
    audio = await speak(hass, hass_client, "The post has arrived.")
    sent = [r.json["text"] for r in standin.requests[before:] if r.path == "tts/"]
    assert sent == ["The post has arrived."]
    assert "post has arrived" in await heard(audio)
    assert hass.states.get(ACTIVE_ENGINE).state == "cloud"
    assert hass.states.get(CLOUD_REACHABLE).state == "on"

    # Cloud audio made before the outage is still served from the cache.
    before = len(standin.requests)
    await speak(hass, hass_client, "The post has arrived.")
    assert len(standin.requests) == before


async def test_caller_mistakes_are_reported_not_masked(
    hass: HomeAssistant,
    hass_client,
    fallback_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A voice the model does not have (404) is an error, not device speech."""
    from homeassistant.components import tts

    stream = tts.async_create_stream(
        hass, TTS_ENTITY, "en", {"voice": "af_bella", "model": "piper"}
    )
    stream.async_set_message("Hello.")
    with pytest.raises(HomeAssistantError) as err:
        b"".join([c async for c in stream.async_stream_result()])
    assert err.value.translation_key == "not_found"
    assert hass.states.get(CLOUD_REACHABLE).state == "on"


@pytest.fixture
def cloud_first_entry(hass: HomeAssistant, standin: StandinServer) -> MockConfigEntry:
    """A cloud-first entry added to HA; each test sets it up its own way."""
    entry = make_entry(standin, mode="cloud_first")
    entry.add_to_hass(hass)
    return entry


async def test_missing_packages_raise_a_repair_issue(
    hass: HomeAssistant,
    cloud_first_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """Where the engines cannot be installed, the cloud works and a repair says why."""
    with packages_missing():
        assert await hass.config_entries.async_setup(cloud_first_entry.entry_id)
    await hass.async_block_till_done()
    issue = issue_registry.async_get_issue(
        "tts_ai", f"local_packages_{cloud_first_entry.entry_id}"
    )
    assert issue is not None
    assert issue.translation_placeholders["packages"] == "onnxruntime"
    assert hass.states.get(LOCAL_MODELS).state == "unavailable"
    assert hass.states.get(TTS_ENTITY) is not None


async def test_the_repair_says_why_the_packages_could_not_be_installed(
    hass: HomeAssistant,
    cloud_first_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """When installing the packages fails, the repair gives the installer's reason."""
    refused = RequirementsNotFound("tts_ai", ["onnxruntime==1.20.0"])
    with (
        packages_missing(),
        patch(
            "custom_components.tts_ai.local_speech.async_process_requirements",
            side_effect=refused,
        ),
    ):
        assert await hass.config_entries.async_setup(cloud_first_entry.entry_id)
    await hass.async_block_till_done()

    issue = issue_registry.async_get_issue(
        "tts_ai", f"local_packages_{cloud_first_entry.entry_id}"
    )
    assert issue is not None
    assert issue.translation_placeholders["error"] == str(refused)
    assert "onnxruntime==1.20.0" in issue.translation_placeholders["error"]
    assert hass.states.get(LOCAL_MODELS).state == "unavailable"


async def test_packages_repair_goes_when_the_entry_turns_cloud_only(
    hass: HomeAssistant,
    cloud_first_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """Without an on-device engine, the missing-packages repair no longer applies."""
    with packages_missing():
        assert await hass.config_entries.async_setup(cloud_first_entry.entry_id)
        await hass.async_block_till_done()
        issue_id = f"local_packages_{cloud_first_entry.entry_id}"
        assert issue_registry.async_get_issue("tts_ai", issue_id) is not None

        hass.config_entries.async_update_entry(
            cloud_first_entry,
            options={**cloud_first_entry.options, "mode": "cloud_only"},
        )
        assert await hass.config_entries.async_reload(cloud_first_entry.entry_id)
        await hass.async_block_till_done()

    assert issue_registry.async_get_issue("tts_ai", issue_id) is None
    assert hass.states.get(TTS_ENTITY) is not None


async def test_another_engine_speaks_and_listens_in_the_clouds_place(
    hass: HomeAssistant,
    hass_client,
    standin: StandinServer,
    model_server: ModelServer,
    shared_config_dir: Path,
) -> None:
    """With "another engine", the fallback is a second TTS/STT entity."""
    assert await async_setup_component(hass, "media_source", {})
    await setup_local_only_entry(hass, model_server, shared_config_dir)
    await setup_another_engine_entry(
        hass,
        standin,
        local_tts_entity="tts.tts_ai_on_device_text_to_speech",
        local_stt_entity="stt.tts_ai_on_device_speech_to_text",
    )

    standin.inject(Fault.REFUSE)
    audio = await speak(hass, hass_client, ANNOUNCEMENT)
    assert "garage door is open" in await heard(audio)

    answer = await transcribed(hass_client, STT_ENTITY, "Open the blinds.")
    assert "blinds" in answer["text"].lower()


async def test_local_only_entry_works_without_any_cloud(
    hass: HomeAssistant,
    hass_client,
    model_server: ModelServer,
    shared_config_dir: Path,
) -> None:
    """A key-less entry speaks and transcribes on the device alone."""
    assert await async_setup_component(hass, "media_source", {})
    await setup_local_only_entry(hass, model_server, shared_config_dir)
    local_tts = "tts.tts_ai_on_device_text_to_speech"
    assert hass.states.get(CLOUD_REACHABLE) is None

    calls_audio = await speak_with(hass, hass_client, local_tts, ANNOUNCEMENT)
    assert "garage door is open" in await heard(calls_audio)

    pcm = await decode_pcm(await synthesize_wav("Set the heating to twenty degrees."))
    client = await hass_client()
    response = await client.post(
        "/api/stt/stt.tts_ai_on_device_speech_to_text", data=pcm, headers=HEADERS
    )
    assert "heating" in (await response.json())["text"].lower()


@dataclass
class _PartialResult:
    """Home Assistant 2026.11's stt.PartialSpeechResult, where HA lacks it."""

    text: str
    speaker_id: str | None = None


@pytest.fixture
def partial_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Partial STT results, as Home Assistant 2026.11 takes them (also on 2026.10)."""
    if tts_ai_stt.PARTIAL_SPEECH_RESULT is None:  # Home Assistant 2026.10
        monkeypatch.setattr(tts_ai_stt, "PARTIAL_SPEECH_RESULT", _PartialResult)


# What Assist sends: 16 kHz 16-bit mono PCM.
ASSIST_AUDIO = stt.SpeechMetadata(
    language="en-US",
    format=stt.AudioFormats.WAV,
    codec=stt.AudioCodecs.PCM,
    bit_rate=stt.AudioBitRates.BITRATE_16,
    sample_rate=stt.AudioSampleRates.SAMPLERATE_16000,
    channel=stt.AudioChannels.CHANNEL_MONO,
)


def on_device_stt(hass: HomeAssistant) -> tts_ai_stt.TtsAiSTTEntity:
    """The STT entity of the device-only entry."""
    entity = stt.async_get_speech_to_text_entity(
        hass, "stt.tts_ai_on_device_speech_to_text"
    )
    assert isinstance(entity, tts_ai_stt.TtsAiSTTEntity)
    return entity


async def in_chunks(audio: bytes) -> AsyncIterator[bytes]:
    """``audio`` in Assist's 20 ms chunks, as fast as they are taken."""
    for offset in range(0, len(audio), 640):
        yield audio[offset : offset + 640]


@pytest.mark.usefixtures("partial_results")
async def test_local_stt_decodes_while_the_user_speaks(
    hass: HomeAssistant,
    model_server: ModelServer,
    shared_config_dir: Path,
) -> None:
    """Assist audio arriving in real time: what was said before a pause is
    heard (a partial result, HA 2026.11) while the user still speaks, and the
    final result is the whole command."""
    entry = await setup_local_only_entry(hass, model_server, shared_config_dir)
    # The model loaded, as for every command but the first after a quiet spell
    # (the engine process then starts and loads it while the user speaks): on
    # a busy machine that start could outlast the first sentence, and this
    # test is about decoding while the user speaks.
    whisper = entry.runtime_data.local.whisper
    assert whisper is not None
    await whisper.load()
    first = await decode_pcm(await synthesize_wav("Turn on the kitchen lights."))
    second = await decode_pcm(await synthesize_wav("Then lock the front door."))
    pause = bytes(2 * 16000 * 6 // 10)
    ended = False

    async def microphone() -> AsyncIterator[bytes]:
        nonlocal ended
        audio = first + pause + second
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, offset in enumerate(range(0, len(audio), 640), start=1):
            await asyncio.sleep(max(start + index * 0.02 - loop.time(), 0))
            yield audio[offset : offset + 640]
        ended = True

    heard_while_speaking: list[str] = []
    finals: list[stt.SpeechResult] = []
    async for result in on_device_stt(hass).async_process_audio_stream_with_progress(
        ASSIST_AUDIO, microphone()
    ):
        if isinstance(result, stt.SpeechResult):
            finals.append(result)
        else:
            assert not finals, "a partial result came after the final one"
            if not ended:
                heard_while_speaking.append(result.text)

    assert len(finals) == 1
    assert finals[0].result is stt.SpeechResultState.SUCCESS
    said = [
        "turn",
        "on",
        "the",
        "kitchen",
        "lights",
        "then",
        "lock",
        "the",
        "front",
        "door",
    ]
    heard = [w.strip(".,") for w in (finals[0].text or "").lower().split()]
    assert heard == said
    # The first breath was heard while the second was still being said.
    assert any(
        "turn on the kitchen" in text.lower() for text in heard_while_speaking
    ), heard_while_speaking


async def test_engine_process_killed_mid_announcement_then_the_next_is_spoken(
    hass: HomeAssistant,
    hass_client,
    model_server: ModelServer,
    shared_config_dir: Path,
) -> None:
    """The engines' process dies mid-announcement (OOM killer, a crash): that
    announcement ends with the translated device error, not a stack trace or
    a hang, and the next one is spoken by a fresh process."""
    assert await async_setup_component(hass, "media_source", {})
    entry = await setup_local_only_entry(hass, model_server, shared_config_dir)
    local = entry.runtime_data.local
    story = " ".join(f"This is sentence number {n} of the story." for n in range(40))

    speech = local.speak(story, "en", 1.0)
    assert await anext(speech)  # the first MP3 bytes are out
    pid = local.engines.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(HomeAssistantError) as caught:
        async with asyncio.timeout(60):
            async for _data in speech:
                pass

    assert caught.value.translation_key == "local_not_ready"
    assert "SIGKILL" in caught.value.translation_placeholders["reason"]
    audio = await speak_with(
        hass, hass_client, "tts.tts_ai_on_device_text_to_speech", ANNOUNCEMENT
    )
    assert "garage door is open" in await heard(audio)
    assert local.engines.pid not in (None, pid)


@pytest.mark.usefixtures("partial_results")
async def test_final_result_alone_when_nothing_was_decoded_early(
    hass: HomeAssistant,
    model_server: ModelServer,
    shared_config_dir: Path,
) -> None:
    """A command without a pause is heard whole at its end: no partial result,
    and Home Assistant 2026.10's call (final result only) gets the same words."""
    await setup_local_only_entry(hass, model_server, shared_config_dir)
    command = await decode_pcm(await synthesize_wav("Open the garage door."))
    entity = on_device_stt(hass)
    results = [
        result
        async for result in entity.async_process_audio_stream_with_progress(
            ASSIST_AUDIO, in_chunks(command)
        )
    ]
    final = await entity.internal_async_process_audio_stream(
        ASSIST_AUDIO, in_chunks(command)
    )

    assert len(results) == 1
    assert isinstance(results[0], stt.SpeechResult)
    assert "garage door" in (results[0].text or "").lower()
    assert final.text == results[0].text


@pytest.mark.usefixtures("partial_results")
async def test_long_command_and_silence_on_the_device(
    hass: HomeAssistant,
    model_server: ModelServer,
    shared_config_dir: Path,
) -> None:
    """A command longer than one Whisper window is heard whole at its end, and a
    stream that ends before any audio is an STT error, not a crash."""
    await setup_local_only_entry(hass, model_server, shared_config_dir)
    command = await decode_pcm(
        await synthesize_wav(
            "Set the living room lights to fifty percent, then close the blinds in"
            " the bedroom, turn off the television in the kitchen, lock the front"
            " door, and arm the alarm system for the night."
        )
    )
    pause = bytes(2 * 16000)
    # Said three times: past the ~29 s one Whisper window takes.
    long_speech = (command + pause) * 3
    assert len(long_speech) > tts_ai_stt.STREAMED_PCM_MAX_BYTES
    entity = on_device_stt(hass)
    long_results = [
        result
        async for result in entity.async_process_audio_stream_with_progress(
            ASSIST_AUDIO, in_chunks(long_speech)
        )
    ]
    silent_results = [
        result
        async for result in entity.async_process_audio_stream_with_progress(
            ASSIST_AUDIO, in_chunks(b"")
        )
    ]

    final = long_results[-1]
    assert isinstance(final, stt.SpeechResult)
    assert final.result is stt.SpeechResultState.SUCCESS
    words = final.text.lower()
    assert "living room" in words
    assert "alarm" in words
    assert silent_results == [stt.SpeechResult(None, stt.SpeechResultState.ERROR)]


async def speak_with(
    hass: HomeAssistant, hass_client, entity_id: str, message: str
) -> bytes:
    """Like `speak`, for another TTS entity."""
    from pytest_homeassistant_custom_component.common import async_mock_service

    calls = async_mock_service(hass, "media_player", "play_media")
    await hass.services.async_call(
        "tts",
        "speak",
        {
            "entity_id": entity_id,
            "media_player_entity_id": "media_player.kitchen",
            "message": message,
        },
        blocking=True,
    )
    media = await media_source.async_resolve_media(
        hass, calls[0].data["media_content_id"], None
    )
    response = await (await hass_client()).get(media.url)
    assert response.status == HTTPStatus.OK
    return await response.read()


async def test_diagnostics_of_a_fallback_entry(
    hass: HomeAssistant, hass_client, fallback_entry: MockConfigEntry, standin
) -> None:
    """Diagnostics show the engines' state, never the key."""
    from pytest_homeassistant_custom_component.components.diagnostics import (
        get_diagnostics_for_config_entry,
    )

    assert await async_setup_component(hass, "diagnostics", {})
    standin.inject(Fault.INSUFFICIENT_CREDITS)
    await speak(hass, hass_client, "Hello.")
    diagnostics = await get_diagnostics_for_config_entry(
        hass, hass_client, fallback_entry
    )
    assert fallback_entry.data["api_key"] not in str(diagnostics)
    assert diagnostics["mode"] == "cloud_first"
    assert diagnostics["fallback"]["active_engine"] == "local"
    assert diagnostics["fallback"]["last_cloud_error"]["code"] == (
        "insufficient_credits"
    )
    assert diagnostics["local_models"]["status"] == "ready"
    assert diagnostics["local_models"]["loaded_voices"] == ["en_US-joe-medium"]
    assert diagnostics["local_models"]["keep_loaded"] is False  # the default
    assert diagnostics["local_models"]["engine_process_running"] is True
    assert diagnostics["local_models"]["engine_process_starts"] == 1


async def test_local_only_options_skip_the_cloud_step(
    hass: HomeAssistant, model_server: ModelServer, shared_config_dir: Path
) -> None:
    """A device-only entry's options open at the fallback step and keep it local."""
    entry = await setup_local_only_entry(hass, model_server, shared_config_dir)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "fallback"
    assert "mode" not in result["data_schema"].schema
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            "local_engine": "built_in",
            "model_downloads": {
                "piper_voices_url": model_server.piper_base_url,
                "whisper_models_url": model_server.hf_base_url,
                "local_voices": ["en_US-joe-medium"],
                "whisper_model": "tiny.en",
            },
        },
    )
    assert result["type"] == "create_entry"
    assert entry.options["mode"] == "local_only"
    assert entry.options["local_voices"] == ["en_US-joe-medium"]
    await hass.async_block_till_done()
    await wait_for_models(hass, entry)


# A quiet spell in these tests: the engines' process would end after this.
SHORT_IDLE_SECONDS = 0.3


async def wait_past_quiet_spell(local: Any) -> None:
    """Wait until an idle process would surely have ended (or has ended)."""
    for _ in range(40):  # ten quiet spells at most
        if local.engines.pid is None:
            return
        await asyncio.sleep(SHORT_IDLE_SECONDS / 4)


async def test_engines_end_after_a_quiet_spell_by_default(
    hass: HomeAssistant,
    hass_client,
    model_server: ModelServer,
    shared_config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without "keep loaded" the engines' process ends when unused, giving its
    memory back; the next announcement starts it again and is spoken."""
    monkeypatch.setattr(local_speech, "ENGINE_IDLE_EXIT_SECONDS", SHORT_IDLE_SECONDS)
    assert await async_setup_component(hass, "media_source", {})
    entry = await setup_local_only_entry(hass, model_server, shared_config_dir)
    local = entry.runtime_data.local
    assert not local.whisper.is_loaded  # loaded on first use only

    await wait_past_quiet_spell(local)

    assert local.engines.pid is None
    audio = await speak_with(
        hass, hass_client, "tts.tts_ai_on_device_text_to_speech", ANNOUNCEMENT
    )
    assert "garage door is open" in await heard(audio)
    assert local.engines.starts == 2


async def test_kept_engines_stay_loaded_through_a_quiet_spell(
    hass: HomeAssistant,
    hass_client,
    model_server: ModelServer,
    shared_config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Turned on in the options, "keep the on-device engines loaded" applies
    at once (the entry reloads): the voice and Whisper are loaded at start-up,
    and after a quiet spell the same process speaks, nothing is started again."""
    monkeypatch.setattr(local_speech, "ENGINE_IDLE_EXIT_SECONDS", SHORT_IDLE_SECONDS)
    assert await async_setup_component(hass, "media_source", {})
    entry = await setup_local_only_entry(hass, model_server, shared_config_dir)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            "local_engine": "built_in",
            "model_downloads": {
                "piper_voices_url": model_server.piper_base_url,
                "whisper_models_url": model_server.hf_base_url,
                "whisper_model": "tiny.en",
                "keep_engines_loaded": True,
            },
        },
    )
    assert result["type"] == "create_entry"
    assert entry.options["keep_engines_loaded"] is True
    await hass.async_block_till_done()
    await wait_for_models(hass, entry)
    local = entry.runtime_data.local
    assert local.whisper.is_loaded  # warm before the first command
    assert local.piper.loaded_voices == ["en_US-joe-medium"]
    pid = local.engines.pid
    assert pid is not None

    await wait_past_quiet_spell(local)

    assert local.engines.pid == pid
    audio = await speak_with(
        hass, hass_client, "tts.tts_ai_on_device_text_to_speech", ANNOUNCEMENT
    )
    assert "garage door is open" in await heard(audio)
    await wait_past_quiet_spell(local)
    assert local.engines.pid == pid
    assert local.engines.starts == 1
    assert local.whisper.is_loaded


async def wait_for_status(local: Any, status: str) -> None:
    """Wait until the on-device models reach ``status``."""
    async with asyncio.timeout(120):
        while local.status != status:
            await asyncio.sleep(0.05)


async def setup_until_models_fail(hass: HomeAssistant, entry: MockConfigEntry) -> State:
    """Set up ``entry``, wait until its on-device models have failed; return the
    state of its models sensor."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_for_status(entry.runtime_data.local, ModelStatus.FAILED)
    await hass.async_block_till_done()
    state = hass.states.get("sensor.tts_ai_on_device_local_models")
    assert state is not None
    return state


async def on_device_error(hass: HomeAssistant, entity_id: str) -> HomeAssistantError:
    """Ask ``entity_id`` for speech; return the error it raises."""
    from homeassistant.components import tts

    stream = tts.async_create_stream(hass, entity_id, None)  # its own language
    stream.async_set_message("Hello.")
    with pytest.raises(HomeAssistantError) as err:
        b"".join([c async for c in stream.async_stream_result()])
    return err.value


async def test_models_that_could_not_be_fetched_are_tried_again_later(
    hass: HomeAssistant,
    hass_client,
    model_server: ModelServer,
    shared_config_dir: Path,
) -> None:
    """No voice for HA's language: the sensor and requests say why; a later try
    (the language now has a voice) makes the device ready without a reload."""
    use_config_dir(hass, shared_config_dir)
    hass.config.language = "pt-BR"  # the model server has no Portuguese voice
    entry = local_only_entry(model_server)
    state = await setup_until_models_fail(hass, entry)
    local = entry.runtime_data.local

    assert state.state == "failed"
    assert state.attributes["error"] == "no Piper voice speaks pt-BR"
    error = await on_device_error(hass, "tts.tts_ai_on_device_text_to_speech")
    assert error.translation_key == "local_not_ready"
    assert "no Piper voice speaks pt-BR" in str(error)
    answer = await transcribed(
        hass_client, "stt.tts_ai_on_device_speech_to_text", "Open the blinds."
    )
    assert answer["result"] == "error"

    hass.config.language = "en"
    async_fire_time_changed(
        hass, dt_util.utcnow() + timedelta(seconds=local_speech.PREFETCH_RETRY_SECONDS)
    )
    await wait_for_models(hass, entry)

    assert hass.states.get("sensor.tts_ai_on_device_local_models").state == "ready"
    assert local.error is None
    assert local.voices()[0].voice_id == "en_US-joe-medium"


async def test_a_speech_model_that_will_not_load_is_reported(
    hass: HomeAssistant,
    model_server: ModelServer,
    shared_config_dir: Path,
) -> None:
    """Whisper files that download but do not load: failed, with the reason."""
    use_config_dir(hass, shared_config_dir)
    entry = make_local_only_entry(
        local_engine="built_in",
        piper_voices_url=model_server.piper_base_url,
        whisper_models_url=model_server.hf_base_url,
        whisper_model=FAKE_WHISPER_MODEL,  # the right files, not a model
        keep_engines_loaded=True,  # so Whisper is loaded at start-up
    )
    state = await setup_until_models_fail(hass, entry)

    assert state.state == "failed"
    # CTranslate2's own words: the model file is not one it can load.
    assert "model" in state.attributes["error"]
    assert state.attributes["error"] == entry.runtime_data.local.error
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_another_engine_that_is_missing_is_a_clear_error(
    hass: HomeAssistant,
    hass_client,
    standin: StandinServer,
) -> None:
    """ "Another engine" whose entity is gone (or never chosen): the device's
    speech and transcription say so instead of failing obscurely."""
    assert await async_setup_component(hass, "homeassistant", {})
    gone = await setup_another_engine_entry(
        hass, standin, local_tts_entity="tts.removed_engine"
    )
    standin.inject(Fault.REFUSE)

    error = await on_device_error(hass, TTS_ENTITY)
    assert error.translation_key == "local_not_ready"
    assert "tts.removed_engine is not available" in str(error)
    answer = await transcribed(hass_client, STT_ENTITY, "Open the blinds.")
    assert answer["result"] == "error"

    hass.config_entries.async_update_entry(
        gone, options={**gone.options, "local_tts_entity": None}
    )
    assert await hass.config_entries.async_reload(gone.entry_id)
    await hass.async_block_till_done()
    error = await on_device_error(hass, TTS_ENTITY)
    assert "no text-to-speech entity chosen" in str(error)
