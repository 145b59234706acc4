"""The tts_ai actions against the stand-in, with real speech in and out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from homeassistant.components import media_source
from homeassistant.components.media_player import (
    ATTR_MEDIA_ANNOUNCE,
    ATTR_MEDIA_CONTENT_ID,
    ATTR_MEDIA_VOLUME_LEVEL,
    DOMAIN as MP_DOMAIN,
    SERVICE_PLAY_MEDIA,
)
from homeassistant.const import SERVICE_VOLUME_SET
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers.service import async_get_all_descriptions
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    async_mock_service,
)

from custom_components.tts_ai.announce import (
    BUILT_IN_CHIME,
    _async_chime_path,
    two_tone_chime,
)
from custom_components.tts_ai.const import DOMAIN
from tests.audio import decode_pcm, probe
from tests.harness.standin import (
    BROKE_API_KEY,
    StandinServer,
    synthesize_wav,
    transcribe_pcm,
)

from .conftest import make_entry

SPOKEN = "Please close the garage door."
PLAYER = "media_player.kitchen"
_speech_cache: dict[str, bytes] = {}


@dataclass(frozen=True)
class Folders:
    """The test's media folder and an extra folder HA may read."""

    media: Path
    allowed: Path
    outside: Path


async def spoken_wav() -> bytes:
    """Piper speech for the inputs, synthesised once per test process."""
    if SPOKEN not in _speech_cache:
        _speech_cache[SPOKEN] = await synthesize_wav(SPOKEN)
    return _speech_cache[SPOKEN]


@pytest.fixture
async def folders(hass: HomeAssistant, tmp_path: Path) -> Folders:
    """Media folder + allowlisted folder, and media_source set up on them."""
    result = Folders(tmp_path / "media", tmp_path / "allowed", tmp_path / "outside")
    for folder in (result.media, result.allowed, result.outside):
        folder.mkdir()
    hass.config.media_dirs = {"local": str(result.media)}
    hass.config.allowlist_external_dirs = {str(result.media), str(result.allowed)}
    assert await async_setup_component(hass, "media_source", {})
    return result


@pytest.fixture
async def speech_file(folders: Folders) -> Path:
    """A WAV of real speech in the allowlisted folder."""
    path = folders.allowed / "speech.wav"
    path.write_bytes(await spoken_wav())
    return path


async def call(
    hass: HomeAssistant, service: str, *, response: bool = True, **data: Any
) -> dict[str, Any] | None:
    """Call a tts_ai action and return its response."""
    return await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=response
    )


def result_files(folders: Folders) -> list[Path]:
    """Every file the actions left in the media folder."""
    return [p for p in (folders.media / "tts_ai").rglob("*") if p.is_file()]


async def test_transcribe_gives_the_words(
    hass: HomeAssistant,
    folders: Folders,
    speech_file: Path,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A file path in an allowed folder is transcribed to its words."""
    response = await call(
        hass, "transcribe", audio=str(speech_file), timestamps=True, language="en"
    )

    assert "garage door" in response["text"].lower()
    assert response["language"] == "en"
    assert response["segments"]
    assert response["segments"][0]["words"]
    assert 1.0 < response["duration"] < 4.0
    assert response["credits_used"] is not None
    sent = next(r for r in standin.requests if r.path == "stt/")
    assert sent.files["file"][0] == "speech.wav"
    assert sent.form["timestamps"] == "true"


async def test_change_voice_from_media_source_plays_result(
    hass: HomeAssistant,
    hass_client,
    folders: Folders,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A media-source input is converted, stored, and played as announcement."""
    (folders.media / "doorbell.wav").write_bytes(await spoken_wav())
    plays = async_mock_service(hass, MP_DOMAIN, SERVICE_PLAY_MEDIA)

    response = await call(
        hass,
        "change_voice",
        audio="media-source://media_source/local/doorbell.wav",
        target_voice="am_adam",
        format="mp3",
        media_player_entity_id=PLAYER,
    )

    path = Path(response["path"])
    assert path.parent == folders.media / "tts_ai" / "change_voice"
    assert path.suffix == ".mp3"
    assert response["media_content_id"] == (
        f"media-source://media_source/local/tts_ai/change_voice/{path.name}"
    )
    info = await probe(path.read_bytes())
    assert info.codec == "mp3"
    assert abs(info.duration - response["duration"]) < 0.3
    assert 1.0 < info.duration < 4.0
    assert response["credits_used"] > 0
    # The result still says the words, in the other voice.
    words = await transcribe_pcm(await decode_pcm(path.read_bytes()))
    assert "garage" in words.lower()
    assert len(plays) == 1
    assert plays[0].data[ATTR_MEDIA_CONTENT_ID] == response["media_content_id"]
    assert plays[0].data[ATTR_MEDIA_ANNOUNCE] is True
    # The player can fetch what it was given.
    media = await media_source.async_resolve_media(
        hass, response["media_content_id"], None
    )
    fetched = await (await hass_client()).get(media.url)
    assert await fetched.read() == path.read_bytes()


@pytest.mark.parametrize(
    ("service", "options", "codec", "duration_factor"),
    [
        ("restyle_speech", {"voice": "af_bella", "speed": 1.5}, None, 1 / 1.5),
        ("enhance_audio", {"strength": 3, "super_resolution": True}, None, 1.0),
        ("remove_echo", {"type": "echo", "intensity": 5}, None, 1.0),
        ("convert_audio", {"format": "flac", "sample_rate": 44100}, "flac", 1.0),
    ],
)
async def test_audio_tools_store_decodable_results(
    hass: HomeAssistant,
    folders: Folders,
    speech_file: Path,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    service: str,
    options: dict[str, Any],
    codec: str | None,
    duration_factor: float,
) -> None:
    """Each audio tool's result decodes and lasts as long as it should."""
    source = await probe(speech_file.read_bytes())

    response = await call(hass, service, audio=str(speech_file), **options)

    path = Path(response["path"])
    assert path.is_file()
    assert path.parent.name == service
    info = await probe(path.read_bytes())
    if codec is not None:
        assert info.codec == codec
        assert info.sample_rate == 44100
    expected = source.duration * duration_factor
    assert abs(info.duration - expected) < 0.25 * expected
    assert response["duration"] == pytest.approx(info.duration, abs=0.3)
    assert response["format"] == path.suffix.lstrip(".")


async def test_translate_speech_stores_the_spoken_translation(
    hass: HomeAssistant,
    folders: Folders,
    speech_file: Path,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """The translation's texts come back and its audio is stored."""
    response = await call(
        hass, "translate_speech", audio=str(speech_file), target_language="es"
    )

    assert "garage" in response["original_text"].lower()
    assert response["translated_text"]
    assert response["target_language"] == "es"
    assert response["credits_used"] > 0
    assert (await probe(Path(response["path"]).read_bytes())).duration > 0.5


async def test_analyze_audio_gives_key_and_tempo(
    hass: HomeAssistant,
    folders: Folders,
    speech_file: Path,
    config_entry: MockConfigEntry,
) -> None:
    """Key, BPM and Camelot code come back; nothing is stored."""
    response = await call(hass, "analyze_audio", audio=str(speech_file))

    assert response["key"]
    assert response["bpm"] > 0
    assert response["camelot"]
    assert isinstance(response["compatible_keys"], list)
    assert not (folders.media / "tts_ai").exists()


@pytest.mark.parametrize(
    "source",
    [
        "outside/speech.wav",  # relative: not a path HA may read
        "{tmp}/outside/speech.wav",  # not allowlisted
        "{tmp}/allowed/../outside/speech.wav",  # traversal
        "{tmp}/allowed/link.wav",  # symlink out of the allowed folder
    ],
)
async def test_paths_outside_allowed_folders_are_refused(
    hass: HomeAssistant,
    tmp_path: Path,
    folders: Folders,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    source: str,
) -> None:
    """Nothing outside the allowlist is read or uploaded."""
    secret = folders.outside / "speech.wav"
    secret.write_bytes(await spoken_wav())
    (folders.allowed / "link.wav").symlink_to(secret)

    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "transcribe", audio=source.format(tmp=tmp_path))

    assert caught.value.translation_key == "path_not_allowed"
    assert not [r for r in standin.requests if r.path == "stt/"]


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ("media-source://tts/tts.example?message=hi", "media_source_not_local"),
        ("media-source://media_source/local/missing.wav", "audio_not_found"),
        (  # traversal out of the media folder
            "media-source://media_source/local/../outside.wav",
            "media_source_unresolvable",
        ),
        (  # a media folder HA does not have
            "media-source://media_source/usb/speech.wav",
            "media_source_unresolvable",
        ),
    ],
)
async def test_media_source_must_be_a_local_file(
    hass: HomeAssistant,
    folders: Folders,
    config_entry: MockConfigEntry,
    source: str,
    key: str,
) -> None:
    """Only existing files of the local media folder can be sent."""
    (folders.media.parent / "outside.wav").write_bytes(await spoken_wav())
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "transcribe", audio=source)
    assert caught.value.translation_key == key


@pytest.mark.parametrize(
    ("name", "key", "says"),
    [
        ("takes", "audio_not_found", "does not exist or is not a file"),
        ("empty.wav", "audio_empty", "empty.wav is empty"),
    ],
)
async def test_unusable_input_is_refused_before_uploading(
    hass: HomeAssistant,
    folders: Folders,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    name: str,
    key: str,
    says: str,
) -> None:
    """A folder or an empty file in an allowed place: a clear error, no request."""
    (folders.allowed / "takes").mkdir()
    (folders.allowed / "empty.wav").touch()

    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "transcribe", audio=str(folders.allowed / name))

    assert caught.value.translation_key == key
    assert says in str(caught.value)
    assert not [r for r in standin.requests if r.path == "stt/"]


async def test_result_that_cannot_be_stored_is_a_translated_error(
    hass: HomeAssistant,
    folders: Folders,
    speech_file: Path,
    config_entry: MockConfigEntry,
) -> None:
    """The results folder cannot be made (a file is in the way): the error says
    where, and nothing is left half-written."""
    blocker = folders.media / "tts_ai"
    blocker.write_bytes(b"not a folder")

    with pytest.raises(HomeAssistantError) as caught:
        await call(hass, "convert_audio", audio=str(speech_file), format="mp3")

    assert caught.value.translation_key == "result_write_failed"
    assert str(blocker / "convert_audio") in str(caught.value)
    assert blocker.read_bytes() == b"not a folder"
    assert sorted(p.name for p in folders.media.iterdir()) == ["tts_ai"]


async def test_media_source_link_to_secrets_is_not_uploaded(
    hass: HomeAssistant,
    folders: Folders,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A link in the media folder to secrets.yaml is refused like the path route.

    The link's name looks like audio, so only resolving it shows what it is.
    """
    secrets_file = Path(hass.config.path("secrets.yaml"))
    secrets_file.parent.mkdir(parents=True, exist_ok=True)
    secrets_file.write_text("alarm_code: '4711'\n")
    (folders.media / "alarm.wav").symlink_to(secrets_file)
    (folders.media / "nested").mkdir()
    (folders.media / "nested" / "alarm.mp3").symlink_to(secrets_file)

    for source in (
        "media-source://media_source/local/alarm.wav",
        "media-source://media_source/local/nested/alarm.mp3",
    ):
        with pytest.raises(ServiceValidationError) as caught:
            await call(hass, "transcribe", audio=source)
        assert caught.value.translation_key == "media_source_not_allowed"
        assert "secrets" not in str(caught.value)
    assert not [r for r in standin.requests if r.files]


@pytest.mark.parametrize(
    "source",
    [
        "media-source://media_source/local/recordings",
        "media-source://media_source/local/",
        "media-source://media_source/local",
    ],
)
async def test_media_source_folder_gives_translated_error(
    hass: HomeAssistant,
    folders: Folders,
    config_entry: MockConfigEntry,
    standin: StandinServer,
    source: str,
) -> None:
    """A folder's id is refused with a translated error, not a raw AssertionError."""
    (folders.media / "recordings").mkdir()
    (folders.media / "recordings" / "speech.wav").write_bytes(await spoken_wav())

    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "transcribe", audio=source)

    assert caught.value.translation_key == "audio_not_found"
    assert not [r for r in standin.requests if r.path == "stt/"]


async def test_media_source_links_within_the_media_folder_still_work(
    hass: HomeAssistant,
    tmp_path: Path,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A media folder that is a link (a USB disk) and links inside it are fine."""
    disk = tmp_path / "usb"
    (disk / "takes").mkdir(parents=True)
    (disk / "takes" / "speech.wav").write_bytes(await spoken_wav())
    (disk / "latest.wav").symlink_to(disk / "takes" / "speech.wav")
    media = tmp_path / "media"
    media.symlink_to(disk, target_is_directory=True)
    hass.config.media_dirs = {"local": str(media)}
    hass.config.allowlist_external_dirs = {str(media)}
    assert await async_setup_component(hass, "media_source", {})

    response = await call(
        hass,
        "transcribe",
        audio="media-source://media_source/local/latest.wav",
        language="en",
    )

    assert "garage door" in response["text"].lower()


async def test_upload_limit_checked_before_uploading(
    hass: HomeAssistant,
    folders: Folders,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """A file over the voice changer's 50 MB is refused, naming the limit."""
    big = folders.allowed / "big.wav"
    with big.open("wb") as file:
        file.truncate(51 * 1024 * 1024)  # sparse: no 51 MB written to disk

    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "change_voice", audio=str(big), target_voice="am_adam")

    assert caught.value.translation_key == "audio_too_large"
    assert caught.value.translation_placeholders["limit"] == "50"
    assert "at most 50 MB" in str(caught.value)
    assert not [r for r in standin.requests if r.path == "voice-convert/"]


async def test_out_of_credits_is_translated_and_leaves_nothing(
    hass: HomeAssistant,
    folders: Folders,
    speech_file: Path,
    standin: StandinServer,
) -> None:
    """A 402 becomes the translated credits error; no file is left behind."""
    entry = make_entry(standin, api_key=BROKE_API_KEY)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)

    with pytest.raises(HomeAssistantError) as caught:
        await call(hass, "enhance_audio", audio=str(speech_file))

    assert caught.value.translation_key == "insufficient_credits"
    assert not (folders.media / "tts_ai").exists()


async def test_bad_request_is_a_validation_error(
    hass: HomeAssistant,
    folders: Folders,
    speech_file: Path,
    config_entry: MockConfigEntry,
) -> None:
    """The service's 400 (unsupported language) names the field."""
    with pytest.raises(ServiceValidationError) as caught:
        await call(
            hass, "translate_speech", audio=str(speech_file), target_language="xx"
        )
    assert caught.value.translation_key == "bad_request"
    assert "target_language" in caught.value.translation_placeholders["message"]
    assert not (folders.media / "tts_ai").exists()


async def test_entry_must_be_named_when_ambiguous(
    hass: HomeAssistant,
    folders: Folders,
    speech_file: Path,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """With two cloud entries the call must say which; naming one works."""
    second = make_entry(standin, api_key="sk-tts-standin-enterprise")
    second.add_to_hass(hass)
    assert await hass.config_entries.async_setup(second.entry_id)

    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "analyze_audio", audio=str(speech_file))
    assert caught.value.translation_key == "entry_required"

    response = await call(
        hass,
        "analyze_audio",
        audio=str(speech_file),
        config_entry_id=second.entry_id,
    )
    assert response["bpm"] > 0


async def test_announce_sets_and_restores_volume(
    hass: HomeAssistant,
    hass_client,
    folders: Folders,
    config_entry: MockConfigEntry,
    standin: StandinServer,
) -> None:
    """The announcement plays at its volume; the old volume comes back after."""
    hass.states.async_set(PLAYER, "idle", {ATTR_MEDIA_VOLUME_LEVEL: 0.3})
    plays = async_mock_service(hass, MP_DOMAIN, SERVICE_PLAY_MEDIA)
    volumes = async_mock_service(hass, MP_DOMAIN, SERVICE_VOLUME_SET)

    response = await call(
        hass,
        "announce",
        message="Dinner is ready.",
        media_player_entity_id=PLAYER,
        volume=0.8,
        voice="am_adam",
    )

    assert [c.data[ATTR_MEDIA_VOLUME_LEVEL] for c in volumes] == [0.8]
    assert len(plays) == 1
    assert plays[0].data[ATTR_MEDIA_ANNOUNCE] is True
    assert plays[0].data[ATTR_MEDIA_CONTENT_ID] == response["media_content_id"]
    assert [r.json["voice"] for r in standin.requests if r.path == "tts/"] == [
        "am_adam"
    ]
    media = await media_source.async_resolve_media(
        hass, response["media_content_id"], None
    )
    audio = await (await (await hass_client()).get(media.url)).read()
    assert "dinner" in (await transcribe_pcm(await decode_pcm(audio))).lower()

    async_fire_time_changed(
        hass, dt_util.utcnow() + timedelta(seconds=response["duration"] + 5)
    )
    await hass.async_block_till_done()
    assert [c.data[ATTR_MEDIA_VOLUME_LEVEL] for c in volumes] == [0.8, 0.3]
    assert volumes[-1].data["entity_id"] == [PLAYER]


async def test_announce_with_built_in_chime(
    hass: HomeAssistant,
    folders: Folders,
    config_entry: MockConfigEntry,
) -> None:
    """The chime is joined in front of the speech in one stored MP3."""
    plays = async_mock_service(hass, MP_DOMAIN, SERVICE_PLAY_MEDIA)

    response = await call(
        hass,
        "announce",
        message="Dinner is ready.",
        media_player_entity_id=[PLAYER, "media_player.hall"],
        chime="built_in",
    )

    played = plays[0].data[ATTR_MEDIA_CONTENT_ID]
    assert played.startswith("media-source://media_source/local/tts_ai/announce/")
    assert plays[0].data["entity_id"] == [PLAYER, "media_player.hall"]
    stored = folders.media / played.removeprefix("media-source://media_source/local/")
    data = stored.read_bytes()
    info = await probe(data)
    assert info.codec == "mp3"
    # 0.7 s of chime, then the words.
    pcm = await decode_pcm(data)
    chime_bytes = int(0.7 * 16000) * 2
    assert "dinner" in (await transcribe_pcm(pcm[chime_bytes:])).lower()
    assert info.duration > 1.2
    assert response["duration"] == pytest.approx(info.duration, abs=0.3)


async def test_concurrent_first_uses_of_built_in_chime(
    hass: HomeAssistant, folders: Folders
) -> None:
    """Many announcements reaching the chime together, before it exists, all get it.

    Each one creates the chime file at the same time in HA's executor (as many
    announcements fired by one automation do); none may fail, the chime is one
    whole file, and no temporary file stays in the media folder. Several rounds
    (the chime deleted in between) because a race shows only some of the time.
    """
    count = 64
    chime = folders.media / "tts_ai" / "chimes" / "two_tone.wav"

    for _ in range(5):
        chime.unlink(missing_ok=True)
        outcomes = await asyncio.gather(
            *(_async_chime_path(hass, BUILT_IN_CHIME) for _ in range(count)),
            return_exceptions=True,
        )

        assert [o for o in outcomes if isinstance(o, BaseException)] == []
        assert outcomes == [chime] * count
        assert [p.name for p in chime.parent.iterdir()] == ["two_tone.wav"]
        assert chime.read_bytes() == two_tone_chime()


async def test_failed_playback_leaves_no_file(
    hass: HomeAssistant,
    folders: Folders,
    speech_file: Path,
    config_entry: MockConfigEntry,
) -> None:
    """When the player refuses the result, the call fails and the file goes."""

    async def refuse(_call: Any) -> None:
        raise HomeAssistantError("player is off")

    hass.services.async_register(MP_DOMAIN, SERVICE_PLAY_MEDIA, refuse)

    with pytest.raises(HomeAssistantError, match="player is off"):
        await call(
            hass,
            "convert_audio",
            audio=str(speech_file),
            format="mp3",
            media_player_entity_id=PLAYER,
        )
    assert result_files(folders) == []


async def test_action_forms_offer_the_catalogue(
    hass: HomeAssistant, config_entry: MockConfigEntry
) -> None:
    """Voice and model fields list the catalogue by name, not as free text."""
    descriptions = (await async_get_all_descriptions(hass))[DOMAIN]
    announce = descriptions["announce"]["fields"]
    voices = announce["voice"]["selector"]["select"]
    assert {"value": "af_bella", "label": "Bella (Kokoro)"} in voices["options"]
    assert {"value": "fr_FR-siwis-medium", "label": "Siwis (Piper) (Piper)"} in (
        voices["options"]
    )
    assert voices["custom_value"] is True  # any id still works
    models = announce["model"]["selector"]["select"]["options"]
    assert {"value": "kokoro", "label": "Kokoro"} in models
    assert all(m["value"] != "whisper" for m in models)  # speech-to-text
    for service, field in (
        ("change_voice", "target_voice"),
        ("restyle_speech", "voice"),
        ("translate_speech", "voice"),
    ):
        options = descriptions[service]["fields"][field]["selector"]["select"]
        assert {"value": "am_adam", "label": "Adam (Kokoro)"} in options["options"]
    # The chime: the built-in one as a choice, or a sound picked from media.
    chime = announce["chime"]["selector"]["choose"]["choices"]
    assert chime["built_in"]["selector"] == {
        "constant": {"value": "built_in", "translation_key": "built_in_chime"}
    }
    assert chime["media"]["selector"] == {"media": {"accept": ["audio/*"]}}

    assert await hass.config_entries.async_unload(config_entry.entry_id)
    await hass.async_block_till_done()
    descriptions = (await async_get_all_descriptions(hass))[DOMAIN]
    assert (
        descriptions["announce"]["fields"]["voice"]["selector"]["select"]["options"]
        == []
    )


async def test_announce_chime_picked_in_the_form(
    hass: HomeAssistant,
    folders: Folders,
    config_entry: MockConfigEntry,
) -> None:
    """A chime chosen with the media picker plays before the message."""
    chime = folders.media / "ding.wav"
    chime.write_bytes(two_tone_chime())
    plays = async_mock_service(hass, MP_DOMAIN, SERVICE_PLAY_MEDIA)

    response = await call(
        hass,
        "announce",
        message="Dinner is ready.",
        media_player_entity_id=PLAYER,
        chime={
            "media_content_id": "media-source://media_source/local/ding.wav",
            "media_content_type": "audio/x-wav",
            "metadata": {"title": "ding.wav"},
        },
    )

    assert len(plays) == 1
    assert response["duration"] > 1.2  # 0.7 s of chime, then the words
