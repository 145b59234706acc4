"""The STT entity, through HA's real /api/stt endpoint."""

from __future__ import annotations

from http import HTTPStatus

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from tests.audio import decode_pcm
from tests.harness.standin import Fault, StandinServer, synthesize_wav

STT_ENTITY = "stt.tts_ai_speech_to_text"
HEADERS = {
    "X-Speech-Content": (
        "format=wav; codec=pcm; sample_rate=16000; bit_rate=16; channel=1;"
        " language=en-US"
    )
}


async def spoken_pcm(text: str) -> bytes:
    """Real speech as HA's Assist sends it: 16 kHz 16-bit mono PCM."""
    return await decode_pcm(await synthesize_wav(text), rate=16000)


async def test_transcribes_speech(
    hass: HomeAssistant,
    hass_client,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """Spoken words come back as text; the upload is WAV and the language `en`."""
    pcm = await spoken_pcm("Turn on the kitchen lights.")
    client = await hass_client()
    response = await client.post(f"/api/stt/{STT_ENTITY}", data=pcm, headers=HEADERS)
    assert response.status == HTTPStatus.OK
    body = await response.json()
    assert body["result"] == "success"
    assert "kitchen lights" in body["text"].lower()

    upload = [r for r in standin.requests if r.path == "stt/"][-1]
    assert upload.form["language"] == "en"
    assert upload.form["model"] == "whisper"
    filename, size = upload.files["file"]
    assert filename.endswith(".wav")
    assert size == len(pcm) + 44  # the PCM under one WAV header


async def test_cloud_error_is_an_stt_error_not_a_crash(
    hass: HomeAssistant,
    hass_client,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    caplog,
) -> None:
    """A failing cloud gives the pipeline an error result and a log line."""
    standin.inject(Fault.INSUFFICIENT_CREDITS, path="stt/")
    pcm = await spoken_pcm("Hello.")
    client = await hass_client()
    response = await client.post(f"/api/stt/{STT_ENTITY}", data=pcm, headers=HEADERS)
    body = await response.json()
    assert body == {"text": None, "result": "error"}
    assert "could not transcribe" in caplog.text


async def test_revoked_key_starts_reauth(
    hass: HomeAssistant,
    hass_client,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A 401 during transcription starts the reauth flow."""
    standin.accounts.pop(config_entry.data["api_key"])
    client = await hass_client()
    response = await client.post(
        f"/api/stt/{STT_ENTITY}", data=await spoken_pcm("Hello."), headers=HEADERS
    )
    assert (await response.json())["result"] == "error"
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress()
    assert [f["context"]["source"] for f in flows] == ["reauth"]
