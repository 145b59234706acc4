"""The satellite's command line and the logic around Home Assistant, offline.

Bad input that needs no Home Assistant (no token, unreadable WAV, nowhere to
connect), pipeline choice, reconnection delays. What needs a real Home
Assistant (a wrong token, an unknown pipeline, whole turns) is in
``test_satellite_e2e.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
import socket
import subprocess
import sys
import time
import wave

import pytest

from tts_ai_satellite.ha import (
    Backoff,
    Pipeline,
    PipelineNotFoundError,
    choose_pipeline,
    websocket_url,
)

# The satellite as its command runs it, from this package's folder (which puts
# the package on the path without installing it).
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SATELLITE = (sys.executable, "-m", "tts_ai_satellite")
TOKEN = "eyJhbGciOiJIUzI1NiJ9.satellite-test-token.c2VjcmV0"


def _satellite(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    url_from_environment: bool = True,
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if k not in {"HA_TOKEN", "HA_URL"}
    }
    if url_from_environment:
        # An address, so each test reaches the check it is about.
        environment["HA_URL"] = "http://127.0.0.1:9"  # discard: never reached
    return subprocess.run(
        [*SATELLITE, *args],
        cwd=PACKAGE_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**environment, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    """A valid (silent) WAV: these tests never get as far as sending it."""
    path = tmp_path / "question.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(16000))
    return path


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_token_is_a_usage_error(speech_wav: Path, tmp_path: Path) -> None:
    result = _satellite("--input", str(speech_wav), "--output", str(tmp_path / "o.wav"))
    assert result.returncode == 2
    assert "no access token: pass --token-file or set HA_TOKEN" in result.stderr
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    result = _satellite("--token-file", str(empty), "--input", str(speech_wav))
    assert result.returncode == 2
    assert f"the token file {empty} is empty" in result.stderr
    result = _satellite("--token-file", str(tmp_path / "nope"), "--input", "x.wav")
    assert result.returncode == 2
    assert "cannot read the token file" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"what time is it", "not a WAV file"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00", "WAV format chunk is too"),
    ],
)
def test_unreadable_input_wav_is_a_usage_error(
    tmp_path: Path, token_file: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "question.wav"
    if content is not None:
        path.write_bytes(content)
    result = _satellite(
        *("--token-file", str(token_file), "--input", str(path)),
        *("--output", str(tmp_path / "reply.wav")),
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        (f"satellite: --input: {path}: ", f"satellite: --input: cannot read {path}")
    )
    assert message in line


def test_output_folder_must_exist(speech_wav: Path, token_file: Path) -> None:
    result = _satellite(
        *("--token-file", str(token_file), "--input", str(speech_wav)),
        *("--output", "/nonexistent/folder/reply.wav"),
    )
    assert result.returncode == 2
    assert "--output: the folder /nonexistent/folder does not exist" in result.stderr


def test_unreachable_home_assistant_gives_up_in_one_turn_mode(
    socket_enabled: None, speech_wav: Path, tmp_path: Path
) -> None:
    """A scripted turn retries for --connect-timeout, then fails clearly."""
    port = _closed_port()
    started = time.monotonic()
    result = _satellite(
        *("--url", f"http://127.0.0.1:{port}", "--input", str(speech_wav)),
        *("--output", str(tmp_path / "reply.wav"), "--connect-timeout", "2"),
        *("--max-reconnect-delay", "0.5", "--debug"),
        env={"HA_TOKEN": TOKEN},
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert f"cannot reach Home Assistant at http://127.0.0.1:{port}" in result.stderr
    assert "reconnecting in" in result.stderr  # it did retry...
    assert elapsed < 30  # ...and then gave up
    assert TOKEN not in result.stdout + result.stderr
    assert not (tmp_path / "reply.wav").exists()


def test_bad_url_is_a_usage_error(token_file: Path, speech_wav: Path) -> None:
    result = _satellite(
        *("--url", "homeassistant.local:8123", "--token-file", str(token_file)),
        *("--input", str(speech_wav), "--output", str(speech_wav.with_name("r.wav"))),
    )
    assert result.returncode == 2
    assert "--url: not an http(s) URL" in result.stderr


def test_websocket_url() -> None:
    assert websocket_url("http://ha.local:8123/") == "ws://ha.local:8123/api/websocket"
    assert websocket_url("https://ha.example") == "wss://ha.example/api/websocket"


def _pipeline(ident: str, name: str) -> Pipeline:
    return Pipeline(ident, name, "en", "stt.x", "tts.x", "en", None, None)


def test_pipeline_by_name_id_or_preferred() -> None:
    pipelines = [_pipeline("01a", "Home Assistant"), _pipeline("01b", "Kitchen")]
    assert choose_pipeline(pipelines, "01b", None).name == "Kitchen"
    assert choose_pipeline(pipelines, "01b", "home assistant").id == "01a"
    assert choose_pipeline(pipelines, None, "01b").name == "Kitchen"
    with pytest.raises(PipelineNotFoundError) as err:
        choose_pipeline(pipelines, "01a", "Bedroom")
    assert str(err.value) == (
        "Home Assistant has no Assist pipeline named 'Bedroom';"
        " it has: 'Home Assistant', 'Kitchen'"
    )


def test_backoff_doubles_to_a_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(first=1.0, cap=10.0)
    delays = [backoff.next_delay() for _ in range(7)]
    for delay, base in zip(delays, [1, 2, 4, 8, 10, 10, 10], strict=True):
        assert base * 0.9 <= delay <= min(10.0, base * 1.1)
    backoff.reset()
    assert backoff.next_delay() <= 1.1


def test_without_url_it_stops_at_once_and_says_why(
    speech_wav: Path, tmp_path: Path
) -> None:
    """No --url and no $HA_URL: a usage error, not retries."""
    result = _satellite(
        *("--input", str(speech_wav), "--output", str(tmp_path / "reply.wav")),
        env={"HA_TOKEN": TOKEN},
        url_from_environment=False,
        timeout=20,
    )
    assert result.returncode == 2, result.stderr
    assert "no Home Assistant address: pass --url http://HOST:8123" in result.stderr
    assert "homeassistant.local" not in result.stderr


def test_wake_verify_needs_the_on_device_wake_word_and_a_model(
    token_file: Path, tmp_path: Path
) -> None:
    result = _satellite("--token-file", str(token_file), "--wake-verify")
    assert result.returncode == 2
    assert "--wake-verify checks the on-device --wake-word" in result.stderr
    no_model = tmp_path / "empty"
    no_model.mkdir()
    result = _satellite(
        *("--token-file", str(token_file), "--wake-word"),
        *("--wake-verify", str(no_model)),
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"satellite: --wake-verify: cannot load the Whisper model '{no_model}'"
    )
