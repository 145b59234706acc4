"""``scripts/satellite``: the development wrapper around the satellite package.

In a checkout it runs ``satellite/`` without installing it, with the
checkout's ``.venv`` when started by the system's Python, and talks to the
``scripts/develop`` instance when nothing else is given. The package's own
command line is tested in ``satellite/tests/``.
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import wave

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SATELLITE = REPO_ROOT / "scripts" / "satellite"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.satellite-test-token.c2VjcmV0"


def _satellite(
    *args: str,
    launcher: Path = SATELLITE,
    python: str = sys.executable,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if k not in {"HA_TOKEN", "HA_URL"}
    }
    return subprocess.run(
        [python, str(launcher), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=environment,
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


def _checkout(tmp_path: Path, *, dev_token: bool) -> Path:
    """A copy of this checkout's layout (linked), with or without a dev token.

    Returns its `scripts/satellite`: a copy, so it sees the new checkout as
    its own, while everything else (the package, .venv) is the real one.
    """
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    for item in REPO_ROOT.iterdir():
        if item.name not in {"scripts", "config", ".git"}:
            (root / item.name).symlink_to(item)
    for item in SATELLITE.parent.iterdir():
        if item != SATELLITE:
            (root / "scripts" / item.name).symlink_to(item)
    launcher = root / "scripts" / "satellite"
    launcher.write_bytes(SATELLITE.read_bytes())
    if dev_token:
        (root / "config").mkdir()
        (root / "config" / "satellite-token").write_text(TOKEN + "\n")
    return launcher


def test_without_a_develop_instance_it_asks_for_an_address(
    token_file: Path, speech_wav: Path, tmp_path: Path
) -> None:
    """No --url, no $HA_URL, no develop token: the package's usage error."""
    result = _satellite(
        *("--token-file", str(token_file)),
        *("--input", str(speech_wav), "--output", str(tmp_path / "reply.wav")),
        launcher=_checkout(tmp_path, dev_token=False),
        timeout=20,
    )
    assert result.returncode == 2, result.stderr
    assert "no Home Assistant address: pass --url http://HOST:8123" in result.stderr


def test_without_url_it_uses_the_develop_instance(
    socket_enabled: None, speech_wav: Path, tmp_path: Path
) -> None:
    """In a checkout where scripts/develop ran: its address and its token."""
    result = _satellite(
        *("--input", str(speech_wav), "--output", str(tmp_path / "reply.wav")),
        *("--connect-timeout", "1", "--max-reconnect-delay", "0.5"),
        launcher=_checkout(tmp_path, dev_token=True),
    )
    assert "using the development Home Assistant at http://127.0.0.1:8123" in (
        result.stderr
    )
    # Nothing listens there in the test (or a develop instance refuses the
    # test's token): either way that is where it went, with the dev token.
    assert result.returncode in {1, 3}, result.stderr
    assert "no access token" not in result.stderr
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.skipif(
    not Path("/usr/bin/python3").exists()
    or subprocess.run(
        ["/usr/bin/python3", "-c", "import aiohttp"], capture_output=True, check=False
    ).returncode
    == 0,
    reason="needs a system Python without the satellite's packages",
)
def test_run_with_the_system_python_it_uses_the_project_venv(
    token_file: Path, speech_wav: Path
) -> None:
    """`scripts/satellite …` as the README shows: `env python3` is the system's."""
    result = _satellite(
        *("--url", "homeassistant.local:8123", "--token-file", str(token_file)),
        *("--input", str(speech_wav), "--output", str(speech_wav.with_name("r.wav"))),
        python="/usr/bin/python3",
    )
    # The package itself answered (a usage error about the URL), not an ImportError.
    assert result.returncode == 2, result.stderr
    assert "--url: not an http(s) URL" in result.stderr
