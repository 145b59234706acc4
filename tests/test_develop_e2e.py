"""End to end: the `scripts/develop` environment speaks through a real Home Assistant.

This runs the code path of ``scripts/develop`` (``tests/harness/realhass.py``): a real
``hass`` process on the repository's development configuration (on a free port,
in a temporary directory) and the TTS.ai stand-in as a process. It onboards,
adds the TTS.ai entry through the config flow, calls ``tts.speak`` over the
REST API and checks that what Home Assistant serves is speech of the message,
synthesised by the stand-in. The test is synchronous on purpose: it only waits
on other processes.
"""

from collections.abc import Iterator
import ipaddress
import json
from pathlib import Path
import shlex
import socket
import subprocess
import sys
import time
from typing import Any

from homeassistant.components.media_player import MediaPlayerEntityFeature
import numpy as np
import pytest

from tests.harness import realhass
from tests.harness.standin.engines import synthesize_pcm, transcribe_samples, wav_bytes

OUTAGE_MESSAGE = "Attention. The back door is open."
MESSAGE = "The garage door is open."
QUESTION = "What time is it?"
SATELLITE_TURN_TIMEOUT = 120
WHISPER_RATE = 16000
FFPROBE_JSON = ("ffprobe", "-v", "error", "-print_format", "json")
FFMPEG_FROM_STDIN = ("ffmpeg", "-v", "error", "-i", "-")


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The developer's configuration.yaml, on a free port, without the web UI."""
    return realhass.throwaway_config_dir(tmp_path)


@pytest.fixture
def server_log(tmp_path: Path) -> Iterator[Path]:
    """Both servers' output; its tail is shown when the test fails."""
    path = tmp_path / "servers.log"
    yield path
    # pytest shows this only for a failing test.
    print(path.read_text(errors="replace")[-6000:] if path.exists() else "")


def _template(dev: Any, template: str) -> Any:
    """Render a template in Home Assistant; the templates here render JSON."""
    answer = realhass.http_request(
        "POST",
        f"{dev.hass_url}/api/template",
        token=dev.token,
        json_body={"template": template},
    )
    assert answer.status == 200, answer
    return json.loads(answer.body)


def _entity(dev: Any, name_part: str) -> str | None:
    """Return the TTS.ai entity whose id contains `name_part`, if there is one."""
    found = _template(
        dev,
        f"{{{{ integration_entities('tts_ai') | select('search', '{name_part}')"
        " | list | tojson }}",
    )
    return found[0] if found else None


def _state(dev: Any, entity_id: str) -> dict[str, Any]:
    answer = realhass.http_request(
        "GET", f"{dev.hass_url}/api/states/{entity_id}", token=dev.token
    )
    assert answer.status == 200, answer
    return answer.body


def _player_that_plays_media(dev: Any) -> str:
    """The first demo media player that accepts play_media (demo loads late)."""
    for _ in range(120):
        players = _template(
            dev,
            "{{ integration_entities('demo') | select('match', 'media_player[.]')"
            " | list | tojson }}",
        )
        for player in players:
            features = _state(dev, player)["attributes"]["supported_features"]
            if features & MediaPlayerEntityFeature.PLAY_MEDIA:
                return player
        time.sleep(0.25)
    pytest.fail("no demo media player that plays media")


def _audio_format(audio: bytes) -> tuple[str, str]:
    """The container and the codec of the only stream, as ffprobe reads them."""
    result = subprocess.run(
        [*FFPROBE_JSON, "-show_format", "-show_streams", "-"],
        input=audio,
        capture_output=True,
        check=True,
    )
    probe = json.loads(result.stdout)
    [stream] = probe["streams"]
    assert stream["codec_type"] == "audio"
    return probe["format"]["format_name"], stream["codec_name"]


def _decode(audio: bytes) -> np.ndarray:
    """Decode with ffmpeg to 16 kHz mono float32, what faster-whisper takes."""
    decoded = subprocess.run(
        [*FFMPEG_FROM_STDIN, "-ac", "1", "-ar", str(WHISPER_RATE), "-f", "f32le", "-"],
        input=audio,
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(decoded, dtype=np.float32)


def _words(text: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


def _listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on `port`, from /proc."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in the machine's byte order.
            words = [raw[i : i + 4] for i in range(0, len(raw), 4)]
            if sys.byteorder == "little":
                words = [word[::-1] for word in words]
            found.add(socket.inet_ntop(family, b"".join(words)))
    return found


def _assert_loopback_only(dev: Any) -> None:
    """HA runs the confirmed HTTP config (no trial to revert), on loopback only."""
    state = realhass.websocket_command(dev.hass_url, dev.token, {"type": "http/config"})
    assert state["pending"] is None, state
    assert state["revert_at"] is None, state
    assert state["active_config_type"] == "stable", state
    assert state["stable"]["server_host"] == ["127.0.0.1"], state
    port = int(dev.hass_url.rsplit(":", 1)[1])
    listening = _listening_addresses(port)
    assert listening, f"nothing listens on {port}"
    assert all(ipaddress.ip_address(a).is_loopback for a in listening), listening


def _preferred_pipeline(dev: Any) -> dict[str, Any]:
    listed = realhass.websocket_command(
        dev.hass_url, dev.token, {"type": "assist_pipeline/pipeline/list"}
    )
    [preferred] = [
        p for p in listed["pipelines"] if p["id"] == listed["preferred_pipeline"]
    ]
    assert [p["name"] for p in listed["pipelines"]].count("TTS.ai") == 1, listed
    return preferred


def test_develop_environment_speaks_through_home_assistant(
    socket_enabled: None, config_dir: Path, server_log: Path, tmp_path: Path
) -> None:
    """Fresh config: onboarded, entry added, tts.speak plays stand-in speech."""
    with (
        server_log.open("w") as output,
        realhass.running_instance(
            config_dir, ports=realhass.ServerPorts.free(), output=output
        ) as dev,
    ):
        assert dev.entry["domain"] == "tts_ai"
        assert dev.entry["state"] == "loaded"
        # Nothing shows as failed on the Integrations page of the fresh instance.
        entries = realhass.http_request(
            "GET", f"{dev.hass_url}/api/config/config_entries/entry", token=dev.token
        ).body
        assert [e["domain"] for e in entries if e["state"] == "setup_error"] == []
        [tts_entity] = _template(
            dev,
            "{{ integration_entities('tts_ai') | select('match', 'tts[.]')"
            " | list | tojson }}",
        )
        player = _player_that_plays_media(dev)
        _assert_loopback_only(dev)

        # The preferred pipeline speaks and listens with TTS.ai...
        pipeline = _preferred_pipeline(dev)
        assert pipeline["name"] == "TTS.ai"
        assert pipeline["tts_engine"] == tts_entity
        assert pipeline["stt_engine"] == _entity(dev, "^stt[.]")
        # ...and the satellite command develop prints runs a turn through it.
        question = tmp_path / "question.wav"
        spoken_question = synthesize_pcm(QUESTION)
        question.write_bytes(
            wav_bytes(spoken_question.pcm, spoken_question.sample_rate)
        )
        turn = subprocess.run(
            [
                *shlex.split(realhass.satellite_command(dev)),
                *("--input", str(question), "--output", str(tmp_path / "reply.wav")),
            ],
            cwd=realhass.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=SATELLITE_TURN_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert turn.returncode == 0, turn.stderr[-3000:]
        heard = next(
            line.split(": ", 1)[1]
            for line in turn.stdout.splitlines()
            if line.startswith("heard: ")
        )
        assert _words(heard) == ["what", "time", "is", "it"], turn.stdout
        assert (tmp_path / "reply.wav").stat().st_size > 1000

        spoken = realhass.http_request(
            "POST",
            f"{dev.hass_url}/api/services/tts/speak",
            token=dev.token,
            json_body={
                "entity_id": tts_entity,
                "media_player_entity_id": player,
                "message": MESSAGE,
            },
        )
        assert spoken.status == 200, spoken
        played = _state(dev, player)["attributes"]["media_content_id"]
        assert tts_entity in played

        # The same message from the same engine: the audio the player was given.
        url = realhass.http_request(
            "POST",
            f"{dev.hass_url}/api/tts_get_url",
            token=dev.token,
            json_body={"engine_id": tts_entity, "message": MESSAGE},
        )
        assert url.status == 200, url
        # The URL HA hands out is the dev instance's own (its internal_url).
        assert url.body["url"].startswith(f"{dev.hass_url}/api/tts_proxy/"), url
        audio = realhass.http_request("GET", f"{dev.hass_url}{url.body['path']}")
        assert audio.status == 200

        # The cloud goes away: the device speaks with the models the entry
        # fetched at set-up from the (loopback) model host.
        # They may still be downloading.
        deadline = time.monotonic() + 90
        while not (models_sensor := _entity(dev, "local_models")) or (
            _state(dev, models_sensor)["state"] != "ready"
        ):
            assert time.monotonic() < deadline, models_sensor
            time.sleep(0.5)
        realhass.stop_process(dev.standin)
        outage_url = realhass.http_request(
            "POST",
            f"{dev.hass_url}/api/tts_get_url",
            token=dev.token,
            json_body={"engine_id": tts_entity, "message": OUTAGE_MESSAGE},
        )
        assert outage_url.status == 200, outage_url
        outage_audio = realhass.http_request(
            "GET", f"{dev.hass_url}{outage_url.body['path']}"
        )
        assert outage_audio.status == 200
        assert _state(dev, _entity(dev, "active_engine"))["state"] == "local"

    outage_heard = " ".join(
        segment.text for segment in transcribe_samples(_decode(outage_audio.body))
    )
    assert _words(outage_heard)[-4:] == ["back", "door", "is", "open"], outage_heard

    # HA hands players MP3 (it transcodes whatever the engine returned).
    assert _audio_format(audio.body) == ("mp3", "mp3")
    samples = _decode(audio.body)
    assert len(samples) / WHISPER_RATE > 1.0  # a short sentence, not a click
    heard = " ".join(segment.text for segment in transcribe_samples(samples))
    assert _words(heard)[-4:] == ["garage", "door", "is", "open"], heard
    log = server_log.read_text()
    # The stand-in spoke it (not the integration's on-device fallback voice).
    assert '"POST /v1/tts/ HTTP/1.1" 200' in log
    # The entry fetched its models from the model server from the start: no
    # failed try at the (offline) default hosts first.
    assert "Could not fetch the on-device models" not in log
    assert "huggingface.co" not in log


def test_develop_second_run_skips_onboarding(
    socket_enabled: None, config_dir: Path, server_log: Path
) -> None:
    """On an existing config, develop logs in and keeps the entry it made."""
    ports = realhass.ServerPorts.free()  # develop always uses the same ones
    with server_log.open("w") as output:
        with realhass.running_instance(config_dir, ports=ports, output=output) as first:
            first_entry = first.entry["entry_id"]
            first_pipeline = first.pipeline["id"]
            satellite_token = first.satellite_token_file.read_text()
        _as_after_an_unconfirmed_trial(config_dir)
        with realhass.running_instance(
            config_dir, ports=ports, output=output
        ) as second:
            onboarding = realhass.http_request(
                "GET", f"{second.hass_url}/api/onboarding"
            )
            assert onboarding.status == 404  # HA drops the views once onboarded
            assert second.entry["entry_id"] == first_entry
            assert second.entry["state"] == "loaded"
            # Still loopback only, though HA was left to serve everywhere.
            _assert_loopback_only(second)
            # The same pipeline, still preferred; the same token, still valid.
            assert _preferred_pipeline(second)["id"] == first_pipeline
            assert second.satellite_token_file.read_text() == satellite_token
            assert second.satellite_token_file.stat().st_mode & 0o077 == 0
            api = realhass.http_request(
                "GET", f"{second.hass_url}/api/", token=satellite_token.strip()
            )
            assert api.status == 200


def _as_after_an_unconfirmed_trial(config_dir: Path) -> None:
    """Leave HA's HTTP store as HA 2026.10 does when a trial was not confirmed.

    The loopback config failed its trial ("not_promoted") and the confirmed one
    is HA's default: every interface. This is where an earlier develop left a
    developer's config/ after 5 minutes.
    """
    path = config_dir / ".storage" / "http"
    document = json.loads(path.read_text())
    loopback = document["data"]["stable"]
    everywhere = {k: v for k, v in loopback.items() if k != "server_host"}
    document["data"] = {
        "stable": everywhere,
        "pending": {**loopback, "error": "not_promoted"},
        "yaml_migration_done": True,
    }
    path.write_text(json.dumps(document))
