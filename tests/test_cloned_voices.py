"""Cloned voices: the subentry flow, the stored recording, speaking with it."""

from __future__ import annotations

from collections.abc import Generator
import math
from pathlib import Path
import struct
from typing import Any
from unittest.mock import patch
import wave

from homeassistant.components import tts
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.tts_ai.cloned_voices import voices_dir
from tests.audio import decode_pcm, probe
from tests.harness.standin import StandinServer, transcribe_pcm
from tests.test_tts import TTS_ENTITY, speak

from .conftest import make_entry

SUBENTRY_TYPE = "cloned_voice"


def write_tone(path: Path, seconds: float, rate: int = 16000) -> Path:
    """Write a mono 16-bit WAV tone of the given length (a stand-in "voice")."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 220 * i / rate)))
        for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(frames)
    return path


@pytest.fixture
def config_dir(hass: HomeAssistant, tmp_path: Path) -> Generator[Path]:
    """Give HA a config folder of the test's own, where recordings go."""
    folder = tmp_path / "config"
    folder.mkdir()
    original = hass.config.config_dir
    hass.config.config_dir = str(folder)
    yield folder
    hass.config.config_dir = original


@pytest.fixture
def media_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """A local media folder that HA may read, as a real installation has."""
    folder = tmp_path / "media"
    folder.mkdir()
    hass.config.media_dirs = {"local": str(folder)}
    hass.config.allowlist_external_dirs = {str(folder)}
    return folder


@pytest.fixture
async def media_ready(hass: HomeAssistant) -> None:
    """Set up HA's media source and file upload, as the frontend has them."""
    assert await async_setup_component(hass, "media_source", {})
    assert await async_setup_component(hass, "file_upload", {})


async def upload(hass_client, path: Path) -> str:
    """Upload a file as the form's file selector does; return its file id."""
    client = await hass_client()
    with path.open("rb") as handle:
        response = await client.post("/api/file_upload", data={"file": handle})
    assert response.status == 200, await response.text()
    return (await response.json())["file_id"]


async def add_voice(
    hass: HomeAssistant, entry: MockConfigEntry, **user_input: Any
) -> dict[str, Any]:
    """Run the "Cloned voice" flow with one form submission."""
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_TYPE), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    return await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {"model": "chatterbox", "language": "en", **user_input},
    )


def stored_files(hass: HomeAssistant, entry: MockConfigEntry) -> list[Path]:
    """The recordings kept for an entry."""
    folder = voices_dir(hass, entry.entry_id)
    return sorted(folder.iterdir()) if folder.is_dir() else []


async def test_create_speak_reconfigure_remove(
    hass: HomeAssistant,
    hass_client,
    hass_ws_client,
    config_dir: Path,
    media_dir: Path,
    media_ready: None,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A voice from the media folder is stored, listed, spoken, replaced, removed."""
    write_tone(media_dir / "grandma.wav", 12.0)
    result = await add_voice(
        hass,
        config_entry,
        name="Grandma",
        recording_source="media-source://media_source/local/grandma.wav",
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    subentry_id = next(iter(config_entry.subentries))
    [recording] = stored_files(hass, config_entry)
    assert recording.suffix == ".wav"
    assert recording.read_bytes() == (media_dir / "grandma.wav").read_bytes()
    assert recording.is_relative_to(config_dir / "tts_ai" / "voices")

    # Listed for its language only, under its name.
    client = await hass_ws_client(hass)
    for language, listed in (("en-US", True), ("de-DE", False)):
        await client.send_json_auto_id(
            {"type": "tts/engine/voices", "engine_id": TTS_ENTITY, "language": language}
        )
        msg = await client.receive_json()
        assert msg["success"], msg
        voices = {v["voice_id"]: v["name"] for v in msg["result"]["voices"]}
        assert (voices.get(f"clone:{subentry_id}") == "Grandma") is listed

    # Speaking with it sends the stored recording to tts/clone/.
    audio = await speak(
        hass,
        hass_client,
        "The garage door is open.",
        options={"voice": f"clone:{subentry_id}"},
    )
    assert (await probe(audio)).duration > 0.5
    assert "garage" in (await transcribe_pcm(await decode_pcm(audio))).lower()
    [clone_request] = [r for r in standin.requests if r.path == "tts/clone/"]
    assert clone_request.files["reference_audio"] == (
        recording.name,
        recording.stat().st_size,
    )
    assert clone_request.form["model"] == "chatterbox"
    assert clone_request.form["text"] == "The garage door is open."
    assert not [r for r in standin.requests if r.path == "tts/"]

    # Reconfigure with an uploaded recording: the old file goes.
    result = await hass.config_entries.subentries.async_init(
        (config_entry.entry_id, SUBENTRY_TYPE),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry_id},
    )
    assert result["type"] is FlowResultType.FORM
    file_id = await upload(hass_client, write_tone(media_dir / "newer.wav", 15.0))
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            "name": "Grandma (2025)",
            "recording": file_id,
            "model": "cosyvoice2",
            "language": "en",
        },
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    subentry = config_entry.subentries[subentry_id]
    assert subentry.title == "Grandma (2025)"
    assert subentry.data["model"] == "cosyvoice2"
    [replacement] = stored_files(hass, config_entry)
    assert replacement != recording
    assert replacement.stat().st_size == (media_dir / "newer.wav").stat().st_size

    # The same sentence again is not replayed from HA's cache: it is spoken
    # with the new recording and model.
    await speak(
        hass,
        hass_client,
        "The garage door is open.",
        options={"voice": f"clone:{subentry_id}"},
    )
    clone_requests = [r for r in standin.requests if r.path == "tts/clone/"]
    assert len(clone_requests) == 2
    assert clone_requests[1].files["reference_audio"] == (
        replacement.name,
        replacement.stat().st_size,
    )
    assert clone_requests[1].form["model"] == "cosyvoice2"

    # Removal deletes the recording and the voice, without an error on the way.
    caplog.clear()
    assert hass.config_entries.async_remove_subentry(config_entry, subentry_id)
    await hass.async_block_till_done()
    assert stored_files(hass, config_entry) == []
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
    stream = tts.async_create_stream(
        hass, TTS_ENTITY, "en", {"voice": f"clone:{subentry_id}"}
    )
    stream.async_set_message("Hello.")
    with pytest.raises(HomeAssistantError) as err:
        b"".join([c async for c in stream.async_stream_result()])
    assert err.value.translation_key == "unknown_voice"


async def test_reconfigure_keeps_the_recording(
    hass: HomeAssistant,
    config_dir: Path,
    media_dir: Path,
    media_ready: None,
    config_entry: MockConfigEntry,
) -> None:
    """Renaming without a new recording keeps the stored file."""
    write_tone(media_dir / "voice.wav", 10.5)
    await add_voice(
        hass, config_entry, name="Me", recording_source=str(media_dir / "voice.wav")
    )
    subentry_id = next(iter(config_entry.subentries))
    before = stored_files(hass, config_entry)
    result = await hass.config_entries.subentries.async_init(
        (config_entry.entry_id, SUBENTRY_TYPE),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry_id},
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"name": "Still me", "model": "chatterbox", "language": "en"}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert config_entry.subentries[subentry_id].title == "Still me"
    assert stored_files(hass, config_entry) == before
    assert before[0].exists()


def _too_short(folder: Path) -> Path:
    return write_tone(folder / "short.wav", 3.0)


def _too_long(folder: Path) -> Path:
    return write_tone(folder / "long.wav", 31.0)


def _too_big(folder: Path) -> Path:
    path = folder / "big.wav"
    path.write_bytes(b"RIFF" + bytes(21 * 1024 * 1024))
    return path


def _not_audio(folder: Path) -> Path:
    path = folder / "notes.wav"
    path.write_text("These are my shopping notes, not a recording.\n" * 200)
    return path


@pytest.mark.parametrize(
    ("make_file", "error", "words"),
    [
        (_too_short, "recording_duration", "3.0"),
        (_too_long, "recording_duration", "31.0"),
        (_too_big, "recording_too_large", "20"),
        (_not_audio, "recording_unreadable", None),
    ],
)
async def test_bad_recordings_are_refused(
    hass: HomeAssistant,
    hass_client,
    config_dir: Path,
    media_dir: Path,
    media_ready: None,
    config_entry: MockConfigEntry,
    make_file,
    error: str,
    words: str | None,
) -> None:
    """Too short, too long, too big and non-audio uploads give form errors."""
    file_id = await upload(hass_client, make_file(media_dir))
    result = await add_voice(hass, config_entry, name="Bad", recording=file_id)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}
    if words is not None:
        assert words in result["description_placeholders"].values()
    assert stored_files(hass, config_entry) == []
    assert not config_entry.subentries


@pytest.mark.parametrize(
    ("user_input", "errors"),
    [
        ({}, {"base": "recording_required"}),
        ({"recording_source": "/etc/passwd"}, {"base": "recording_not_allowed"}),
        ({"recording_source": "voice.wav"}, {"base": "recording_not_allowed"}),
        (
            {"recording_source": "media-source://media_source/local/none.wav"},
            {"base": "recording_not_found"},
        ),
        (
            {
                "recording_source": "media-source://media_source/local/voice.wav",
                "language": "de",
            },
            {"language": "language_not_supported"},
        ),
    ],
)
async def test_bad_sources_are_refused(
    hass: HomeAssistant,
    config_dir: Path,
    media_dir: Path,
    media_ready: None,
    config_entry: MockConfigEntry,
    user_input: dict[str, str],
    errors: dict[str, str],
) -> None:
    """No recording, a path HA may not read, a missing file, a wrong language."""
    write_tone(media_dir / "voice.wav", 12.0)
    result = await add_voice(hass, config_entry, name="Bad", **user_input)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    assert stored_files(hass, config_entry) == []


async def test_an_upload_and_a_source_together_are_refused(
    hass: HomeAssistant,
    hass_client,
    config_dir: Path,
    media_dir: Path,
    media_ready: None,
    config_entry: MockConfigEntry,
) -> None:
    """One recording per voice: the form says to give only one of the two."""
    file_id = await upload(hass_client, write_tone(media_dir / "upload.wav", 12.0))
    write_tone(media_dir / "voice.wav", 12.0)
    result = await add_voice(
        hass,
        config_entry,
        name="Twice",
        recording=file_id,
        recording_source="media-source://media_source/local/voice.wav",
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "recording_twice"}
    assert stored_files(hass, config_entry) == []
    assert not config_entry.subentries


async def test_a_voice_can_be_added_while_the_entry_is_not_loaded(
    hass: HomeAssistant,
    config_dir: Path,
    media_dir: Path,
    media_ready: None,
    standin: StandinServer,
) -> None:
    """Without a catalogue (cloud away at start-up) every language is offered."""
    entry = make_entry(standin)
    entry.add_to_hass(hass)
    write_tone(media_dir / "voice.wav", 12.0)

    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_TYPE), context={"source": SOURCE_USER}
    )
    language = next(
        value
        for key, value in result["data_schema"].schema.items()
        if str(key) == "language"
    )
    assert "languages" not in language.config  # no list: any language
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            "name": "Oma",
            "recording_source": "media-source://media_source/local/voice.wav",
            "model": "chatterbox",
            "language": "de",
        },
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    [subentry] = entry.subentries.values()
    assert subentry.title == "Oma"
    assert subentry.data["language"] == "de"
    assert len(stored_files(hass, entry)) == 1


async def test_local_only_entries_offer_no_cloned_voices(
    hass: HomeAssistant,
) -> None:
    """Cloning needs the cloud: a device-only entry has no such subentry type."""
    from custom_components.tts_ai.config_flow import TtsAiConfigFlow

    entry = MockConfigEntry(domain="tts_ai", data={}, options={"mode": "local_only"})
    assert TtsAiConfigFlow.async_get_supported_subentry_types(entry) == {}


async def test_recording_of_voice_removed_while_unloaded_goes_at_setup(
    hass: HomeAssistant,
    config_dir: Path,
    media_dir: Path,
    media_ready: None,
    config_entry: MockConfigEntry,
) -> None:
    """A voice removed while the entry was not loaded loses its file at next set-up."""
    for name in ("Kept", "Dropped"):
        write_tone(media_dir / f"{name}.wav", 11.0)
        await add_voice(
            hass,
            config_entry,
            name=name,
            recording_source=str(media_dir / f"{name}.wav"),
        )
    by_title = {s.title: s for s in config_entry.subentries.values()}
    folder = voices_dir(hass, config_entry.entry_id)
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    hass.config_entries.async_remove_subentry(
        config_entry, by_title["Dropped"].subentry_id
    )
    await hass.async_block_till_done()
    assert len(stored_files(hass, config_entry)) == 2  # nobody was listening

    # A file younger than the grace period may belong to a flow that is
    # finishing; pretend both are old.
    with patch("custom_components.tts_ai.cloned_voices.ORPHAN_GRACE_SECONDS", -60):
        assert await hass.config_entries.async_setup(config_entry.entry_id)
        await hass.async_block_till_done()
    assert stored_files(hass, config_entry) == [
        folder / by_title["Kept"].data["recording_file"]
    ]

    # Removing the whole entry removes its recordings.
    assert await hass.config_entries.async_remove(config_entry.entry_id)
    await hass.async_block_till_done()
    assert not folder.exists()
