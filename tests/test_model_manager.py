"""The model manager against the loopback model hosts, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
import errno
import hashlib
import json
from pathlib import Path
import shutil
from typing import Any

import aiohttp
import pytest

from custom_components.tts_ai.local import downloads
from custom_components.tts_ai.local.model_manager import (
    MANIFEST_NAME,
    PART_SUFFIX,
    DownloadProgress,
    ModelDownloadError,
    ModelIntegrityError,
    ModelManager,
    ModelNotFoundError,
    ModelStorageError,
)
from tests.harness.model_server import (
    FAKE_WHISPER_MODEL,
    PIPER_PREFIX,
    REAL_PIPER_VOICE,
    REAL_WHISPER_MODEL,
    FileFault,
    ModelServer,
)

FAKE_VOICE = "de_DE-fakekarl-high"
FAKE_ONNX = f"*/{FAKE_VOICE}.onnx"


@pytest.fixture
async def model_server(socket_enabled: None) -> AsyncGenerator[ModelServer]:
    """The model hosts on loopback."""
    async with ModelServer() as server:
        yield server


@pytest.fixture
async def session(socket_enabled: None) -> AsyncGenerator[aiohttp.ClientSession]:
    """A plain aiohttp session, as HA's shared one would be."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def make_manager(
    session: aiohttp.ClientSession, root: Path, server: ModelServer, **kw: Any
) -> ModelManager:
    """A manager pointed at the loopback hosts, with short retry pauses."""
    kw.setdefault("retry_backoff", 0.01)
    return ModelManager(
        session,
        root,
        piper_base_url=server.piper_base_url,
        hf_base_url=server.hf_base_url,
        **kw,
    )


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def leftovers(directory: Path) -> list[str]:
    """Every file under ``directory`` (names relative to it)."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# --- happy paths with the real models ----------------------------------------


async def test_real_piper_voice_is_downloaded_verified_and_usable(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server)
    assert manager.installed_piper_voice(REAL_PIPER_VOICE) is None

    voice = await manager.ensure_piper_voice(REAL_PIPER_VOICE)

    served = model_server.piper_voice_files(REAL_PIPER_VOICE)
    assert voice.key == REAL_PIPER_VOICE
    assert voice.model_path == tmp_path / "piper" / REAL_PIPER_VOICE / (
        f"{REAL_PIPER_VOICE}.onnx"
    )
    assert voice.model_path.stat().st_size == served[voice.model_path.name].size
    assert md5_of(voice.model_path) == served[voice.model_path.name].md5
    config = json.loads(voice.config_path.read_text())
    assert config["audio"]["sample_rate"] == 22050
    assert manager.installed_piper_voice(REAL_PIPER_VOICE) == voice
    # Only what speaking needs: no MODEL_CARD, and no temporary files left.
    assert model_server.requests_for("*MODEL_CARD") == []
    assert leftovers(tmp_path / "piper" / REAL_PIPER_VOICE) == sorted(
        [MANIFEST_NAME, voice.model_path.name, voice.config_path.name]
    )


async def test_real_whisper_model_is_downloaded_and_loads(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server)

    directory = await manager.ensure_whisper_model(REAL_WHISPER_MODEL)

    assert directory == tmp_path / "whisper" / REAL_WHISPER_MODEL
    served = model_server.whisper_files(REAL_WHISPER_MODEL)
    assert set(served) == {
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    }
    for name, file in served.items():
        assert (directory / name).stat().st_size == file.size, name
    # README.md and .gitattributes are in the repo but not needed.
    assert leftovers(directory) == sorted([*served, MANIFEST_NAME])
    assert manager.installed_whisper_model(REAL_WHISPER_MODEL) == directory

    from faster_whisper import WhisperModel

    loop = asyncio.get_running_loop()
    model = await loop.run_in_executor(
        None,
        lambda: WhisperModel(
            str(directory), device="cpu", compute_type="int8", cpu_threads=1
        ),
    )
    assert model.model.is_multilingual is False  # tiny.en, as downloaded


# --- integrity -----------------------------------------------------------------


async def test_md5_mismatch_is_rejected_and_nothing_kept(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server)
    model_server.add_fault(FAKE_ONNX, FileFault.CORRUPT)

    with pytest.raises(ModelIntegrityError) as caught:
        await manager.ensure_piper_voice(FAKE_VOICE)

    assert f"{FAKE_VOICE}.onnx" in str(caught.value)
    assert "md5" in str(caught.value)
    assert FAKE_VOICE in str(caught.value)
    assert not any(
        name.endswith((".onnx", PART_SUFFIX, MANIFEST_NAME))
        for name in leftovers(tmp_path / "piper" / FAKE_VOICE)
    )
    assert manager.installed_piper_voice(FAKE_VOICE) is None
    # A clean fresh download that hashes wrong is not worth repeating.
    assert len(model_server.requests_for(FAKE_ONNX)) == 1

    # Once the host serves the right bytes, the install succeeds.
    voice = await manager.ensure_piper_voice(FAKE_VOICE)
    expected = model_server.piper_voice_files(FAKE_VOICE)[f"{FAKE_VOICE}.onnx"]
    assert md5_of(voice.model_path) == expected.md5


async def test_size_mismatch_is_rejected_and_nothing_kept(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server)
    model_server.add_fault(FAKE_ONNX, FileFault.WRONG_SIZE, extra_bytes=100)

    with pytest.raises(ModelIntegrityError, match=rf"{FAKE_VOICE}\.onnx .*bytes"):
        await manager.ensure_piper_voice(FAKE_VOICE)

    assert not any(
        name.endswith((".onnx", PART_SUFFIX, MANIFEST_NAME))
        for name in leftovers(tmp_path / "piper" / FAKE_VOICE)
    )
    assert manager.installed_piper_voice(FAKE_VOICE) is None


async def test_bad_file_left_under_final_name_is_replaced(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """An installed voice whose file was damaged is repaired, not used."""
    manager = make_manager(session, tmp_path, model_server)
    voice = await manager.ensure_piper_voice(FAKE_VOICE)
    good = voice.model_path.read_bytes()
    voice.model_path.write_bytes(good[:1000])  # e.g. a disk that filled up
    assert manager.installed_piper_voice(FAKE_VOICE) is None

    repaired = await manager.ensure_piper_voice(FAKE_VOICE)

    assert repaired.model_path.read_bytes() == good
    # Only the damaged file was fetched again; the intact config was reused.
    assert len(model_server.requests_for(FAKE_ONNX)) == 2
    assert len(model_server.requests_for(f"*/{FAKE_VOICE}.onnx.json")) == 1


# --- resuming and retrying -------------------------------------------------------


async def test_truncated_download_resumes_with_range_request(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server)
    model_server.add_fault(FAKE_ONNX, FileFault.DROP_AFTER, after_bytes=100_000)

    voice = await manager.ensure_piper_voice(FAKE_VOICE)

    first, second = model_server.requests_for(FAKE_ONNX)
    assert first.range is None
    # Every byte that arrived was kept: the resume starts right after them.
    assert second.range == "bytes=100000-"
    assert second.status == 206
    expected = model_server.piper_voice_files(FAKE_VOICE)[f"{FAKE_VOICE}.onnx"]
    assert md5_of(voice.model_path) == expected.md5


async def test_half_body_then_close_resumes(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server)
    model_server.add_fault(
        "*faster-whisper-fake/resolve/main/model.bin", FileFault.TRUNCATE
    )

    directory = await manager.ensure_whisper_model(FAKE_WHISPER_MODEL)

    requests = model_server.requests_for("*faster-whisper-fake/resolve/main/model.bin")
    assert [r.range is not None for r in requests] == [False, True]
    expected = model_server.whisper_files(FAKE_WHISPER_MODEL)["model.bin"]
    model = (directory / "model.bin").read_bytes()
    assert hashlib.sha256(model).hexdigest() == expected.sha256


async def test_stale_part_that_does_not_verify_is_fetched_again_whole(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A .part from another copy of the file resumes, fails md5, then restarts."""
    directory = tmp_path / "piper" / FAKE_VOICE
    directory.mkdir(parents=True)
    (directory / f"{FAKE_VOICE}.onnx{PART_SUFFIX}").write_bytes(bytes(1000))
    manager = make_manager(session, tmp_path, model_server)

    voice = await manager.ensure_piper_voice(FAKE_VOICE)

    assert [r.range for r in model_server.requests_for(FAKE_ONNX)] == [
        "bytes=1000-",
        None,
    ]
    expected = model_server.piper_voice_files(FAKE_VOICE)[f"{FAKE_VOICE}.onnx"]
    assert md5_of(voice.model_path) == expected.md5


async def test_server_errors_are_retried_until_success(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server, retries=3)
    model_server.add_fault(FAKE_ONNX, FileFault.STATUS, status=500, times=2)
    model_server.add_fault("*voices.json", FileFault.STATUS, status=503, times=1)

    voice = await manager.ensure_piper_voice(FAKE_VOICE)

    assert [r.status for r in model_server.requests_for(FAKE_ONNX)] == [500, 500, 200]
    assert [r.status for r in model_server.requests_for("*voices.json")] == [503, 200]
    assert manager.installed_piper_voice(FAKE_VOICE) == voice


async def test_server_errors_exhaust_the_retries(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server, retries=2)
    model_server.add_fault(FAKE_ONNX, FileFault.STATUS, status=500, times=None)

    with pytest.raises(ModelDownloadError) as caught:
        await manager.ensure_piper_voice(FAKE_VOICE)

    assert not isinstance(caught.value, ModelNotFoundError | ModelIntegrityError)
    assert f"{FAKE_VOICE}.onnx" in str(caught.value)
    assert "500" in str(caught.value)
    assert len(model_server.requests_for(FAKE_ONNX)) == 3  # 1 try + 2 retries
    assert manager.installed_piper_voice(FAKE_VOICE) is None
    assert not (tmp_path / "piper" / FAKE_VOICE / f"{FAKE_VOICE}.onnx").exists()


async def test_not_found_is_final(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server, retries=3)
    model_server.add_fault(FAKE_ONNX, FileFault.STATUS, status=404, times=None)

    with pytest.raises(ModelNotFoundError, match=rf"{FAKE_VOICE}\.onnx.*404"):
        await manager.ensure_piper_voice(FAKE_VOICE)
    assert len(model_server.requests_for(FAKE_ONNX)) == 1

    with pytest.raises(ModelNotFoundError, match="xx_XX-nobody-low"):
        await manager.ensure_piper_voice("xx_XX-nobody-low")
    # An unknown voice makes the manager look at a fresh catalogue once.
    assert len(model_server.requests_for("*voices.json")) == 2
    with pytest.raises(ModelNotFoundError, match="large-v9"):
        await manager.ensure_whisper_model("large-v9")
    with pytest.raises(ModelNotFoundError):
        await manager.ensure_piper_voice("../../etc")


# --- the Piper voice catalogue -------------------------------------------------------

CATALOGUE_PATH = f"{PIPER_PREFIX}voices.json"


async def served_catalogue(
    session: aiohttp.ClientSession, server: ModelServer
) -> dict[str, Any]:
    """The model server's own voices.json."""
    async with session.get(server.piper_base_url + "voices.json") as response:
        response.raise_for_status()
        catalogue: dict[str, Any] = json.loads(await response.read())
        return catalogue


@pytest.mark.parametrize(
    "served", [b"<html>Hugging Face is down</html>", b'["en_US-joe-medium"]']
)
async def test_piper_catalogue_that_is_not_valid_is_a_clear_error(
    model_server: ModelServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    served: bytes,
) -> None:
    """A voices.json the manager cannot read: a download error, and not cached."""
    model_server.serve_bytes(CATALOGUE_PATH, served)
    manager = make_manager(session, tmp_path, model_server)

    with pytest.raises(ModelDownloadError, match=r"voice catalogue .* is not valid"):
        await manager.ensure_piper_voice(FAKE_VOICE)

    assert leftovers(tmp_path / "piper") == []
    assert model_server.requests_for(FAKE_ONNX) == []


async def test_piper_catalogue_unreachable_without_a_cached_copy_fails(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """No catalogue from the host and none on disk: the error says so."""
    model_server.add_fault("*voices.json", FileFault.STATUS, status=500, times=None)
    manager = make_manager(session, tmp_path, model_server, retries=2)

    with pytest.raises(ModelDownloadError, match="Piper voice catalogue"):
        await manager.piper_catalogue()

    assert len(model_server.requests_for("*voices.json")) == 3  # 2 retries
    assert leftovers(tmp_path / "piper") == []


async def test_malformed_catalogue_entries_are_skipped(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Broken voices in voices.json are left out; the good ones still download."""
    catalogue = await served_catalogue(session, model_server)
    good = catalogue[FAKE_VOICE]
    catalogue = {
        FAKE_VOICE: good,
        "xx_XX-nolanguage-low": {**good, "language": None},
        "xx_XX-nosize-low": {
            **good,
            "files": {"a.onnx": {"md5_digest": "00"}},
        },
        "xx_XX-notanobject-low": ["a list"],
        "xx_XX-fileslist-low": {**good, "files": ["xx_XX-fileslist-low.onnx"]},
        "xx_XX-codenumber-low": {**good, "language": {"code": 7}},
        "xx_XX-badquality-low": {**good, "num_speakers": "many"},
    }
    model_server.serve_bytes(CATALOGUE_PATH, json.dumps(catalogue).encode())
    manager = make_manager(session, tmp_path, model_server)

    assert set(await manager.piper_catalogue()) == {FAKE_VOICE}
    voice = await manager.ensure_piper_voice(FAKE_VOICE)
    assert voice.model_path.is_file()
    with pytest.raises(ModelNotFoundError, match="xx_XX-nosize-low"):
        await manager.ensure_piper_voice("xx_XX-nosize-low")


async def test_voice_listed_without_its_config_is_not_found(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A voice Piper could not load (no .onnx.json listed): nothing fetched."""
    catalogue = await served_catalogue(session, model_server)
    files = catalogue[FAKE_VOICE]["files"]
    catalogue[FAKE_VOICE]["files"] = {
        path: info for path, info in files.items() if not path.endswith(".onnx.json")
    }
    model_server.serve_bytes(CATALOGUE_PATH, json.dumps(catalogue).encode())
    manager = make_manager(session, tmp_path, model_server)

    with pytest.raises(ModelNotFoundError, match=rf"no {FAKE_VOICE}\.onnx\.json"):
        await manager.ensure_piper_voice(FAKE_VOICE)

    assert model_server.requests_for(FAKE_ONNX) == []
    assert manager.installed_piper_voice(FAKE_VOICE) is None


async def test_unreadable_cached_catalogue_is_fetched_again(
    model_server: ModelServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A damaged voices.json on disk is replaced by the host's, with a warning."""
    cache = tmp_path / "piper" / "voices.json"
    cache.parent.mkdir()
    cache.write_bytes(b'{"en_US-joe-medium": {"language": ')  # cut short
    manager = make_manager(session, tmp_path, model_server)

    catalogue = await manager.piper_catalogue()

    assert REAL_PIPER_VOICE in catalogue
    assert "unreadable cached catalogue" in caplog.text
    assert len(model_server.requests_for("*voices.json")) == 1
    assert set(json.loads(cache.read_bytes())) == set(catalogue)


# --- Whisper models named by their Hugging Face repo --------------------------------

FAKE_WHISPER_FILES = {
    "config.json": b'{"fake": true}\n',
    "model.bin": bytes(range(256)) * 1024,
    "tokenizer.json": b'{"tokens": []}\n',
    "vocabulary.json": b'["a", "b"]\n',
}


async def test_whisper_model_named_by_its_repo_id_is_downloaded(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """``owner/repo`` is fetched from that repo, into a folder of its own."""
    model_server.add_whisper_repo("someone/whisper-small-ct2", FAKE_WHISPER_FILES)
    manager = make_manager(session, tmp_path, model_server)

    directory = await manager.ensure_whisper_model("someone/whisper-small-ct2")

    assert directory == tmp_path / "whisper" / "someone--whisper-small-ct2"
    for name, data in FAKE_WHISPER_FILES.items():
        assert (directory / name).read_bytes() == data, name
    assert manager.installed_whisper_model("someone/whisper-small-ct2") == directory
    assert model_server.requests_for("Systran/*") == []


@pytest.mark.parametrize(
    "name", ["someone/../../etc", "../someone/repo", "someone/repo/extra", "/repo"]
)
async def test_whisper_repo_ids_that_would_escape_are_refused(
    model_server: ModelServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    name: str,
) -> None:
    """A repo id with a path in it: refused before any request, nothing written."""
    manager = make_manager(session, tmp_path, model_server)

    with pytest.raises(ModelNotFoundError, match="is not valid"):
        await manager.ensure_whisper_model(name)

    assert model_server.requests == []
    assert leftovers(tmp_path.parent / "etc") == []
    assert leftovers(tmp_path / "whisper") == []


@pytest.mark.parametrize(
    ("absent", "named"),
    [
        (("tokenizer.json",), "tokenizer.json"),
        (("vocabulary.json",), "vocabulary.txt or vocabulary.json"),
        (("model.bin", "vocabulary.json"), "model.bin, vocabulary.txt or vocab"),
    ],
)
async def test_whisper_repo_lacking_needed_files_is_not_found(
    model_server: ModelServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    absent: tuple[str, ...],
    named: str,
) -> None:
    """A repo that is no faster-whisper model says what it lacks; nothing fetched."""
    files = {k: v for k, v in FAKE_WHISPER_FILES.items() if k not in absent}
    model_server.add_whisper_repo("someone/not-whisper", files)
    manager = make_manager(session, tmp_path, model_server)

    with pytest.raises(ModelNotFoundError, match=f"lacks {named}"):
        await manager.ensure_whisper_model("someone/not-whisper")

    assert model_server.requests_for("*/resolve/*") == []
    assert leftovers(tmp_path / "whisper") == []


@pytest.mark.parametrize(
    "listing",
    [
        b"<html>Hugging Face is down</html>",
        b'{"error": "Repository not found"}',
        b'[{"type": "file", "oid": "0123"}]',
        b'[{"type": "file", "path": "model.bin", "size": null, "oid": "0123"}]',
        b'[{"type": "file", "path": "model.bin", "lfs": {"oid": "ab"}}]',
    ],
)
async def test_whisper_file_list_that_is_not_valid_is_a_clear_error(
    model_server: ModelServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    listing: bytes,
) -> None:
    """A file list the manager cannot read: a download error, nothing fetched."""
    model_server.serve_bytes(
        f"api/models/Systran/faster-whisper-{FAKE_WHISPER_MODEL}/tree/main", listing
    )
    manager = make_manager(session, tmp_path, model_server)

    with pytest.raises(ModelDownloadError, match="file list of Whisper model") as err:
        await manager.ensure_whisper_model(FAKE_WHISPER_MODEL)

    assert "is not valid" in str(err.value)
    assert model_server.requests_for("*/resolve/*") == []
    assert leftovers(tmp_path / "whisper") == []


# --- sharing, disk failures, life cycle ---------------------------------------------


async def test_concurrent_requests_share_one_download(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server)
    # Slow answers so that both callers are surely waiting at the same time.
    model_server.add_fault("*fakekarl*", FileFault.SLOW, delay=0.2, times=None)
    model_server.add_fault("*faster-whisper-fake*", FileFault.SLOW, delay=0.2)
    first_seen: list[DownloadProgress] = []
    second_seen: list[DownloadProgress] = []

    voices = await asyncio.gather(
        manager.ensure_piper_voice(FAKE_VOICE, progress=first_seen.append),
        manager.ensure_piper_voice(FAKE_VOICE, progress=second_seen.append),
        manager.ensure_whisper_model(FAKE_WHISPER_MODEL),
        manager.ensure_whisper_model(FAKE_WHISPER_MODEL),
    )

    assert voices[0] == voices[1]
    assert voices[2] == voices[3]
    assert len(model_server.requests_for(FAKE_ONNX)) == 1
    assert len(model_server.requests_for(f"*/{FAKE_VOICE}.onnx.json")) == 1
    assert len(model_server.requests_for("*voices.json")) == 1
    for name in model_server.whisper_files(FAKE_WHISPER_MODEL):
        assert len(model_server.requests_for(f"*faster-whisper-fake/*/{name}")) == 1
    assert len(model_server.requests_for("api/models/*")) == 1
    # Both callers saw the download finish.
    assert first_seen[-1] == second_seen[-1]
    assert first_seen[-1].downloaded_bytes == first_seen[-1].total_bytes


async def test_disk_write_failure_is_clear_and_leaves_nothing(
    model_server: ModelServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def disk_full(handle: Any, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(downloads, "_write_all", disk_full)
    manager = make_manager(session, tmp_path, model_server)

    with pytest.raises(ModelStorageError, match=rf"{FAKE_VOICE}\.onnx.*No space left"):
        await manager.ensure_piper_voice(FAKE_VOICE)

    assert not any(
        name.endswith((".onnx", PART_SUFFIX, MANIFEST_NAME))
        for name in leftovers(tmp_path / "piper" / FAKE_VOICE)
    )
    assert manager.installed_piper_voice(FAKE_VOICE) is None
    assert len(model_server.requests_for(FAKE_ONNX)) == 1  # not retried


async def test_too_little_free_space_fails_before_downloading(
    model_server: ModelServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        downloads.shutil,
        "disk_usage",
        lambda _path: usage._replace(free=1000),
    )
    manager = make_manager(session, tmp_path, model_server)

    with pytest.raises(ModelStorageError, match="Not enough disk space"):
        await manager.ensure_piper_voice(FAKE_VOICE)
    assert model_server.requests_for(FAKE_ONNX) == []


async def test_not_installed_until_every_file_is_verified(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server)
    # The model file arrives quickly; the config (fetched after it) is slow.
    model_server.add_fault(f"*/{FAKE_VOICE}.onnx.json", FileFault.SLOW, delay=0.5)
    download = asyncio.create_task(manager.ensure_piper_voice(FAKE_VOICE))
    model_file = tmp_path / "piper" / FAKE_VOICE / f"{FAKE_VOICE}.onnx"
    async with asyncio.timeout(10):
        while not model_file.exists():
            await asyncio.sleep(0.02)

    assert manager.installed_piper_voice(FAKE_VOICE) is None
    assert not (model_file.parent / MANIFEST_NAME).exists()

    voice = await download
    assert manager.installed_piper_voice(FAKE_VOICE) == voice

    # Without its manifest a complete-looking directory is not installed.
    (model_file.parent / MANIFEST_NAME).unlink()
    assert manager.installed_piper_voice(FAKE_VOICE) is None


async def test_installed_models_are_found_offline(
    model_server: ModelServer, tmp_path: Path, socket_enabled: None
) -> None:
    async with aiohttp.ClientSession() as first_session:
        first = make_manager(first_session, tmp_path, model_server)
        voice = await first.ensure_piper_voice(FAKE_VOICE)
        whisper_dir = await first.ensure_whisper_model(FAKE_WHISPER_MODEL)
    piper_base, hf_base = model_server.piper_base_url, model_server.hf_base_url
    await model_server.stop()  # the internet is gone

    async with aiohttp.ClientSession() as offline_session:
        second = ModelManager(
            offline_session,
            tmp_path,
            piper_base_url=piper_base,
            hf_base_url=hf_base,
            retries=1,
            retry_backoff=0.01,
        )
        assert second.installed_piper_voice(FAKE_VOICE) == voice
        assert second.installed_whisper_model(FAKE_WHISPER_MODEL) == whisper_dir
        assert await second.ensure_piper_voice(FAKE_VOICE) == voice
        assert await second.ensure_whisper_model(FAKE_WHISPER_MODEL) == whisper_dir
        catalogue = await second.piper_catalogue()
        assert REAL_PIPER_VOICE in catalogue
        # A refresh that cannot reach the host keeps the cached catalogue.
        assert set(await second.piper_catalogue(refresh=True)) == set(catalogue)
        # What was never downloaded cannot appear from nowhere.
        with pytest.raises(ModelDownloadError):
            await second.ensure_piper_voice("fr_FR-fakesiwis-low")


async def test_progress_grows_to_the_total(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server, chunk_size=16 * 1024)
    model_server.add_fault(FAKE_ONNX, FileFault.DROP_AFTER, after_bytes=50_000)
    seen: list[DownloadProgress] = []

    await manager.ensure_piper_voice(FAKE_VOICE, progress=seen.append)

    total = sum(
        file.size
        for name, file in model_server.piper_voice_files(FAKE_VOICE).items()
        if name != "MODEL_CARD"
    )
    assert len(seen) > 5
    assert {p.item for p in seen} == {FAKE_VOICE}
    assert {p.total_bytes for p in seen} == {total}
    downloaded = [p.downloaded_bytes for p in seen]
    assert downloaded == sorted(set(downloaded))  # strictly increasing
    assert downloaded[-1] == total


async def test_cancelled_caller_stops_the_download(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server)
    model_server.add_fault(FAKE_ONNX, FileFault.SLOW, delay=5)
    download = asyncio.create_task(manager.ensure_piper_voice(FAKE_VOICE))
    async with asyncio.timeout(5):
        while not model_server.requests_for(FAKE_ONNX):
            await asyncio.sleep(0.02)

    download.cancel()
    with pytest.raises(asyncio.CancelledError):
        await download
    model_server.clear_faults()

    # Nothing half-done blocks a later attempt, which starts a new download:
    # the abandoned request was never answered (its connection was closed).
    voice = await manager.ensure_piper_voice(FAKE_VOICE)
    assert manager.installed_piper_voice(FAKE_VOICE) == voice
    assert [r.status for r in model_server.requests_for(FAKE_ONNX)] == [None, 200]


async def test_remove_uninstalls(
    model_server: ModelServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    manager = make_manager(session, tmp_path, model_server)
    await manager.ensure_piper_voice(FAKE_VOICE)
    await manager.ensure_whisper_model(FAKE_WHISPER_MODEL)

    await manager.remove_piper_voice(FAKE_VOICE)
    await manager.remove_whisper_model(FAKE_WHISPER_MODEL)

    assert manager.installed_piper_voice(FAKE_VOICE) is None
    assert manager.installed_whisper_model(FAKE_WHISPER_MODEL) is None
    assert not (tmp_path / "piper" / FAKE_VOICE).exists()


# --- choosing a voice --------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "quality", "expected"),
    [
        ("en-US", "medium", "en_US-joe-medium"),
        ("en_US", "high", "en_US-joe-medium"),  # nearest lower
        ("en-US", "x_low", "en_US-fakeamy-low"),  # nothing lower: nearest higher
        ("en-GB", "low", "en_GB-fakealan-medium"),
        ("de-DE", "medium", "de_DE-fakeeva-x_low"),  # lower beats higher
        ("de-DE", "high", "de_DE-fakekarl-high"),
        ("de-AT", "high", "de_AT-fakehans-medium"),  # the exact region wins
        ("de-CH", "high", "de_DE-fakekarl-high"),  # family fallback, home region
        ("de", "medium", "de_DE-fakeeva-x_low"),
        ("fr", "medium", "fr_FR-fakesiwis-low"),
        ("pt-BR", "medium", None),
        ("en-US", "ultra", "en_US-joe-medium"),  # unknown quality: medium
    ],
)
async def test_best_piper_voice(
    model_server: ModelServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    *,
    language: str,
    quality: str,
    expected: str | None,
) -> None:
    manager = make_manager(session, tmp_path, model_server)
    catalogue = await manager.piper_catalogue()
    assert manager.best_piper_voice(catalogue, language, quality) == expected
