"""Tests of the TTS.ai stand-in server, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import json
import time
from typing import Any

import aiohttp
from aiohttp import web
import pytest

from tests.harness.standin import (
    BROKE_API_KEY,
    DEFAULT_API_KEY,
    FREE_PLAN_API_KEY,
    Account,
    Fault,
    StandinServer,
    synthesize_wav,
    transcribe_pcm,
)

RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
SHORT_TEXT = "The kitchen light is on."
TTS_REQUEST = {"model": "piper", "voice": "en_US-joe-medium", "text": SHORT_TEXT}


def auth(key: str = DEFAULT_API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def standin(socket_enabled: None) -> AsyncIterator[StandinServer]:
    server = StandinServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session(socket_enabled: None) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def ffmpeg(*args: str, stdin: bytes) -> bytes:
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-loglevel", "error", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await process.communicate(stdin)
    assert process.returncode == 0, "ffmpeg could not decode the audio"
    return stdout


async def decode_pcm(data: bytes) -> bytes:
    """Decode any audio to 16 kHz mono 16-bit PCM (fails if it is not audio)."""
    return await ffmpeg(
        "-i", "pipe:0", "-ac", "1", "-ar", "16000", "-f", "s16le", "pipe:1", stdin=data
    )  # fmt: skip


async def duration_of(data: bytes) -> float:
    return len(await decode_pcm(data)) / 32000


async def probe(data: bytes) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_entries",
        "stream=codec_name,sample_rate,channels:format=format_name",
        "-of", "json", "-i", "pipe:0",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await process.communicate(data)
    info = json.loads(stdout)
    return {**info["streams"][0], **info["format"]}


async def speech_form(
    text: str, field: str = "file", **fields: str
) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field(field, await synthesize_wav(text), filename="speech.wav")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


# --- authentication and headers ----------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        (auth("sk-tts-wrong"), 401, "unauthorized"),
        ({"Authorization": DEFAULT_API_KEY}, 401, "unauthorized"),  # no "Bearer"
        (auth(FREE_PLAN_API_KEY), 403, "forbidden"),
    ],
)
async def test_rejects_missing_wrong_and_free_plan_keys(
    standin: StandinServer,
    session: aiohttp.ClientSession,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    async with session.get(f"{standin.base_url}models/", headers=headers) as response:
        assert response.status == status
        assert response.content_type == "application/json"
        assert (await response.json())["error"]["code"] == code
        for header in RATE_LIMIT_HEADERS:
            assert header in response.headers


async def test_rate_limit_headers_count_down_and_reset_is_an_epoch(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    remaining = []
    for _ in range(2):
        async with session.get(
            f"{standin.base_url}models/", headers=auth()
        ) as response:
            assert response.status == 200
            assert response.headers["X-RateLimit-Limit"] == "60"
            remaining.append(int(response.headers["X-RateLimit-Remaining"]))
            reset = int(response.headers["X-RateLimit-Reset"])
    assert remaining == [59, 58]
    assert time.time() < reset <= time.time() + 61


# --- validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"text": None}, "text"),
        ({"model": None}, "model"),
        ({"voice": None}, "voice"),
        ({"speed": 2.5}, "speed"),
        ({"speed": "fast"}, "speed"),
        ({"format": "aiff"}, "format"),
        ({"stream": "yes"}, "stream"),
        ({"language": "de"}, "language"),  # en_US-joe via piper: de is supported
        ({"language": "ja"}, "language"),  # ... but piper has no Japanese
    ],
)
async def test_tts_validation_names_the_field(
    standin: StandinServer,
    session: aiohttp.ClientSession,
    change: dict[str, Any],
    field: str,
) -> None:
    payload = {**TTS_REQUEST, **change}
    payload = {key: value for key, value in payload.items() if value is not None}
    async with session.post(
        f"{standin.base_url}tts/", json=payload, headers=auth()
    ) as response:
        if change == {"language": "de"}:
            assert response.status == 200
            return
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["code"] == "bad_request"
    assert f"'{field}'" in error["message"]


@pytest.mark.parametrize(
    ("path", "fields", "field"),
    [
        ("audio/enhance/", {"strength": "4"}, "strength"),
        ("audio/enhance/", {"denoise": "maybe"}, "denoise"),
        ("audio/dereverb/", {"intensity": "0"}, "intensity"),
        ("audio/dereverb/", {"type": "hall"}, "type"),
        ("audio/separate/", {"stems": "3"}, "stems"),
        ("audio/convert/", {"bitrate": "100"}, "bitrate"),
        ("audio/convert/", {"sample_rate": "16000"}, "sample_rate"),
        ("audio/convert/", {"channels": "quad"}, "channels"),
        ("speech-to-speech/", {"voice": "am_adam", "emotion": "bored"}, "emotion"),
        ("speech-to-speech/", {"emotion": "happy"}, "voice"),
        ("voice-convert/", {"target_voice": "af_bella", "format": "ogg"}, "format"),
        ("translate/", {"target_language": "xx"}, "target_language"),
        ("tts/clone/", {}, "text"),
    ],
)
async def test_multipart_validation_names_the_field(
    standin: StandinServer,
    session: aiohttp.ClientSession,
    path: str,
    fields: dict[str, str],
    field: str,
) -> None:
    form = aiohttp.FormData()
    form.add_field(
        "reference_audio" if path == "tts/clone/" else "file",
        b"not used",
        filename="a.wav",
    )
    for name, value in fields.items():
        form.add_field(name, value)
    async with session.post(
        f"{standin.base_url}{path}", data=form, headers=auth()
    ) as r:
        assert r.status == 400
        assert f"'{field}'" in (await r.json())["error"]["message"]


async def test_missing_upload_and_unreadable_audio_are_400(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData()
    form.add_field("model", "whisper")
    async with session.post(f"{standin.base_url}stt/", data=form, headers=auth()) as r:
        assert r.status == 400
        assert "'file'" in (await r.json())["error"]["message"]
    form = aiohttp.FormData()
    form.add_field("file", b"this is text, not audio" * 50, filename="a.mp3")
    async with session.post(f"{standin.base_url}stt/", data=form, headers=auth()) as r:
        assert r.status == 400
        assert "not readable audio" in (await r.json())["error"]["message"]


@pytest.mark.parametrize(
    "change",
    [{"voice": "no_such_voice"}, {"model": "tortoise-9000"}, {"voice": "af_bella"}],
)
async def test_unknown_voice_or_model_is_404(
    standin: StandinServer, session: aiohttp.ClientSession, change: dict[str, str]
) -> None:
    # af_bella exists, but it is a kokoro voice, not a piper one.
    async with session.post(
        f"{standin.base_url}tts/", json={**TTS_REQUEST, **change}, headers=auth()
    ) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"


async def test_text_over_the_plan_limit_is_400_with_the_limit(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    standin.accounts[DEFAULT_API_KEY].max_text = 10
    async with session.post(
        f"{standin.base_url}tts/", json=TTS_REQUEST, headers=auth()
    ) as response:
        assert response.status == 400
        message = (await response.json())["error"]["message"]
    assert "10 characters" in message


async def test_upload_over_the_endpoint_limit_is_413(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData()
    form.add_field(
        "reference_audio", b"\0" * (20 * 1024 * 1024 + 1), filename="big.wav"
    )
    form.add_field("text", "Hello.")
    async with session.post(
        f"{standin.base_url}tts/clone/", data=form, headers=auth()
    ) as response:
        assert response.status == 413
        error = (await response.json())["error"]
    assert error["code"] == "file_too_large"
    assert "20 MB" in error["message"]
    assert standin.requests[-1].files == {
        "reference_audio": ("big.wav", 20 * 1024 * 1024 + 1)
    }


# --- limits and credits ---------------------------------------------------------


async def test_per_minute_limit_gives_429_with_retry_after(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    standin.accounts[DEFAULT_API_KEY].requests_per_minute = 2
    statuses = []
    for _ in range(3):
        async with session.get(f"{standin.base_url}models/", headers=auth()) as r:
            statuses.append(r.status)
            headers = r.headers
            body = await r.json()
    assert statuses == [200, 200, 429]
    assert body["error"]["code"] == "rate_limited"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(headers["Retry-After"]) <= 60


async def test_concurrent_limit_gives_429(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    standin.accounts[DEFAULT_API_KEY].concurrent = 1
    standin.inject(Fault.SLOW_FIRST_BYTE, path="models/", times=1, delay=1.0)

    async def get_models() -> int:
        async with session.get(f"{standin.base_url}models/", headers=auth()) as r:
            return r.status

    slow = asyncio.create_task(get_models())
    while not standin.requests:
        await asyncio.sleep(0.01)
    assert await get_models() == 429
    assert await slow == 200
    assert await get_models() == 200  # the slot is free again


async def test_billing_headers_and_insufficient_credits(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    # kokoro costs 2 credits per started 1,000 characters.
    request = {"model": "kokoro", "voice": "af_bella", "text": SHORT_TEXT}
    async with session.post(
        f"{standin.base_url}tts/", json=request, headers=auth()
    ) as response:
        assert response.status == 200
        assert response.headers["X-Credits-Used"] == "2"
        assert response.headers["X-Credits-Remaining"] == "9998"
    assert standin.accounts[DEFAULT_API_KEY].credits == 9998

    async with session.post(
        f"{standin.base_url}tts/", json=request, headers=auth(BROKE_API_KEY)
    ) as response:
        assert response.status == 402
        error = (await response.json())["error"]
    assert error["code"] == "insufficient_credits"
    assert error["credits_required"] == 2
    assert error["credits_available"] == 0

    async with session.get(f"{standin.base_url}models/", headers=auth()) as response:
        assert "X-Credits-Used" not in response.headers  # the catalogue is free


# --- text to speech ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type", "codec"),
    [
        ("mp3", "audio/mpeg", "mp3"),
        ("wav", "audio/wav", "pcm_s16le"),
        ("flac", "audio/flac", "flac"),
        ("ogg", "audio/ogg", "vorbis"),
    ],
)
async def test_tts_returns_decodable_audio_in_the_requested_format(
    standin: StandinServer,
    session: aiohttp.ClientSession,
    fmt: str,
    content_type: str,
    codec: str,
) -> None:
    async with session.post(
        f"{standin.base_url}tts/", json={**TTS_REQUEST, "format": fmt}, headers=auth()
    ) as response:
        assert response.status == 200
        assert response.content_type == content_type
        assert response.content_length is not None
        audio = await response.read()
    assert (await probe(audio))["codec_name"] == codec
    assert 0.8 < await duration_of(audio) < 4.0


async def test_tts_defaults_to_mp3_and_speed_shortens_speech(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    durations = {}
    for speed in (1.0, 2.0):
        async with session.post(
            f"{standin.base_url}tts/",
            json={**TTS_REQUEST, "speed": speed},
            headers=auth(),
        ) as response:
            assert response.content_type == "audio/mpeg"
            durations[speed] = await duration_of(await response.read())
    assert durations[2.0] < durations[1.0] * 0.7


@pytest.mark.parametrize(
    ("fmt", "bytes_per_second"),
    [("wav", 44_100), ("mp3", 16_000)],  # 22.05 kHz 16-bit PCM; 128 kbit/s MP3
)
async def test_tts_stream_delivers_speech_before_the_last_sentence_is_ready(
    standin: StandinServer,
    session: aiohttp.ClientSession,
    fmt: str,
    bytes_per_second: int,
) -> None:
    text = " ".join(
        f"This is sentence number {n} of the streaming test." for n in range(1, 6)
    )
    request = {**TTS_REQUEST, "text": text, "stream": True, "format": fmt}
    await synthesize_wav("Warm up.")  # keep the model load out of the timing
    arrivals: list[tuple[float, int]] = []  # (seconds since request, bytes so far)
    body = b""
    start = time.monotonic()
    async with session.post(
        f"{standin.base_url}tts/", json=request, headers=auth()
    ) as response:
        assert response.status == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        async for chunk in response.content.iter_any():
            body += chunk
            arrivals.append((time.monotonic() - start, len(body)))
    # Headers (WAV header, ID3 tag) come at once; what counts is real audio:
    # a full second of it must arrive well before the last sentence does.
    first_second = next(t for t, size in arrivals if size > bytes_per_second + 1024)
    assert first_second < arrivals[-1][0] / 2, arrivals
    assert 8 < await duration_of(body) < 25  # five sentences of speech


async def test_tts_stream_wav_is_playable(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    request = {
        **TTS_REQUEST,
        "text": "One. Two. Three.",
        "stream": True,
        "format": "wav",
    }
    async with session.post(
        f"{standin.base_url}tts/", json=request, headers=auth()
    ) as response:
        assert response.content_type == "audio/wav"
        audio = await response.read()
    assert 1.0 < await duration_of(audio) < 5.0


# --- speech to text and speech in, speech out ---------------------------------------


async def test_stt_transcribes_piper_speech_with_words_and_speakers(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    form = await speech_form(
        "Please turn on the kitchen light.", timestamps="true", diarize="true"
    )
    async with session.post(f"{standin.base_url}stt/", data=form, headers=auth()) as r:
        assert r.status == 200
        assert r.headers["X-Credits-Used"] == "1"
        result = await r.json()
    assert result["text"] == "Please turn on the kitchen light."
    assert result["language"] == "en"
    assert 1.0 < result["duration"] < 5.0
    segment = result["segments"][0]
    assert segment["speaker"] == "SPEAKER_00"
    words = [word["word"].strip(".,").lower() for word in segment["words"]]
    assert "kitchen" in words
    assert all(word["start"] <= word["end"] for word in segment["words"])


async def test_transcribe_pcm_helper_hears_synthesize_wav(socket_enabled: None) -> None:
    wav = await synthesize_wav("Good morning.")
    pcm = wav[44:]  # the helper writes a plain 44-byte header
    assert "good morning" in (await transcribe_pcm(pcm, 22050)).lower()


async def test_translate_returns_text_and_a_downloadable_audio_url(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    form = await speech_form("Good night.", target_language="es")
    async with session.post(
        f"{standin.base_url}translate/", data=form, headers=auth()
    ) as response:
        assert response.status == 200
        result = await response.json()
    assert result["translated_text"] == "Buenas noches."
    assert result["source_language"] == "en"
    assert result["audio_url"].startswith(standin.base_url + "results/")
    async with session.get(result["audio_url"]) as response:
        assert response.status == 401  # result files need the key too
    async with session.get(result["audio_url"], headers=auth()) as response:
        assert response.content_type == "audio/mpeg"
        assert await duration_of(await response.read()) > 0.5


async def test_voice_chat_remembers_the_conversation(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    url = f"{standin.base_url}voice-chat/"
    async with session.post(url, json={"text": "Hello there"}, headers=auth()) as r:
        first = await r.json()
        assert r.headers["X-Credits-Used"] == "3"
    async with session.post(
        url,
        json={"text": "Second question", "conversation_id": first["conversation_id"]},
        headers=auth(),
    ) as response:
        second = await response.json()
    assert second["conversation_id"] == first["conversation_id"]
    assert "turn 2" in second["ai_text"]
    assert "Hello there" in second["ai_text"]
    async with session.get(second["audio_url"], headers=auth()) as response:
        assert await duration_of(await response.read()) > 1.0
    async with session.post(url, json={}, headers=auth()) as response:
        assert response.status == 400


async def test_voice_tools_return_audio_of_plausible_length(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    speech = await synthesize_wav("Dinner is ready in the dining room.")
    source = await duration_of(speech)

    async def run(path: str, **fields: str) -> tuple[dict[str, Any], float]:
        form = aiohttp.FormData()
        form.add_field("file", speech, filename="speech.wav")
        for name, value in fields.items():
            form.add_field(name, value)
        async with session.post(
            f"{standin.base_url}{path}", data=form, headers=auth()
        ) as response:
            assert response.status == 200, await response.text()
            audio = await response.read()
        return await probe(audio), await duration_of(audio)

    info, length = await run("voice-convert/", target_voice="af_bella", format="flac")
    assert info["codec_name"] == "flac"
    assert abs(length - source) < 0.3
    _info, length = await run("speech-to-speech/", voice="am_adam", speed="2.0")
    assert abs(length - source / 2) < 0.3
    info, _length = await run("audio/enhance/", super_resolution="true")
    assert info["sample_rate"] == "48000"
    info, length = await run(
        "audio/convert/", format="m4a", channels="stereo", sample_rate="44100"
    )
    assert (info["codec_name"], info["channels"]) == ("aac", 2)
    assert abs(length - source) < 0.3


async def test_analyze_finds_the_key_of_a_chord(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    # An A major triad (A, C#, E) for three seconds.
    chord = await ffmpeg(
        "-f", "lavfi", "-i",
        "aevalsrc=0.2*sin(2*PI*440*t)+0.2*sin(2*PI*554.37*t)+0.2*sin(2*PI*659.25*t):d=3",
        "-f", "wav", "pipe:1", stdin=b"",
    )  # fmt: skip
    form = aiohttp.FormData()
    form.add_field("file", chord, filename="chord.wav")
    async with session.post(
        f"{standin.base_url}audio/analyze/", data=form, headers=auth()
    ) as response:
        result = await response.json()
        assert "X-Credits-Used" not in response.headers
    assert (result["key"], result["scale"], result["camelot"]) == ("A", "Major", "11B")
    assert result["compatible_keys"][0] == "A Major"
    assert "F# Minor" in result["compatible_keys"]
    assert isinstance(result["bpm"], float)


# --- catalogue ------------------------------------------------------------------


async def test_catalogue_lists_models_and_filters_voices(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    async with session.get(f"{standin.base_url}models/", headers=auth()) as response:
        models = {model["id"]: model for model in (await response.json())["models"]}
    assert models["kokoro"]["credits_per_1k_chars"] == 2
    assert models["chatterbox"]["supports_cloning"] is True
    assert models["whisper"]["type"] == "stt"
    async with session.get(
        f"{standin.base_url}voices/",
        params={"model": "kokoro", "language": "en", "gender": "female"},
        headers=auth(),
    ) as response:
        result = await response.json()
    ids = [voice["id"] for voice in result["voices"]]
    assert "af_bella" in ids
    assert "am_adam" not in ids
    assert result["total"] == len(ids)
    preview = result["voices"][0]["preview_url"]
    async with session.get(preview, headers=auth()) as response:
        assert response.content_type == "audio/mpeg"


# --- faults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (Fault.INTERNAL_ERROR, 500, "internal_error"),
        (Fault.MODEL_LOADING, 503, "model_loading"),
        (Fault.RATE_LIMITED, 429, "rate_limited"),
        (Fault.INSUFFICIENT_CREDITS, 402, "insufficient_credits"),
    ],
)
async def test_error_faults_apply_to_the_path_for_the_given_times(
    standin: StandinServer,
    session: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    code: str,
) -> None:
    standin.inject(fault, path="tts/", times=1)
    async with session.get(f"{standin.base_url}models/", headers=auth()) as response:
        assert response.status == 200  # another path is not affected
    async with session.post(
        f"{standin.base_url}tts/", json=TTS_REQUEST, headers=auth()
    ) as response:
        assert response.status == status
        error = (await response.json())["error"]
        headers = response.headers
    assert error["code"] == code
    for header in RATE_LIMIT_HEADERS:
        assert header in headers
    if fault is Fault.RATE_LIMITED:
        assert int(headers["Retry-After"]) >= 1
        assert headers["X-RateLimit-Remaining"] == "0"
    if fault is Fault.INSUFFICIENT_CREDITS:
        assert error["credits_required"] > error["credits_available"]
    async with session.post(
        f"{standin.base_url}tts/", json=TTS_REQUEST, headers=auth()
    ) as response:
        assert response.status == 200  # times=1 is used up


async def test_refuse_closes_the_port_until_cleared(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    url = f"{standin.base_url}models/"
    async with session.get(url, headers=auth()) as response:
        assert response.status == 200  # leaves a keep-alive connection behind
    standin.inject(Fault.REFUSE)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.get(url, headers=auth()):
            pass
    async with aiohttp.ClientSession() as fresh:
        with pytest.raises(aiohttp.ClientConnectorError):
            async with fresh.get(url, headers=auth()):
                pass
    with pytest.raises(ValueError, match="REFUSE"):
        standin.inject(Fault.REFUSE, times=1)
    standin.clear_faults()
    async with session.get(url, headers=auth()) as response:
        assert response.status == 200
    assert url.startswith(f"http://127.0.0.1:{standin.port}/")


async def test_hang_never_answers_and_does_not_block_the_server(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    standin.inject(Fault.HANG, path="tts/")
    with pytest.raises(TimeoutError):
        async with session.post(
            f"{standin.base_url}tts/",
            json=TTS_REQUEST,
            headers=auth(),
            timeout=aiohttp.ClientTimeout(total=0.5),
        ):
            pass
    async with session.get(f"{standin.base_url}models/", headers=auth()) as response:
        assert response.status == 200
    # A second hanging request is still open when the fixture stops the server.
    pending = asyncio.create_task(
        session.post(f"{standin.base_url}tts/", json=TTS_REQUEST, headers=auth())
    )
    await asyncio.sleep(0.2)
    await standin.stop()
    with pytest.raises(aiohttp.ClientError):
        await pending


async def test_slow_first_byte_waits_then_answers(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    standin.inject(Fault.SLOW_FIRST_BYTE, delay=0.6)
    start = time.monotonic()
    async with session.get(f"{standin.base_url}models/", headers=auth()) as response:
        assert response.status == 200
        await response.json()
    assert time.monotonic() - start >= 0.6


@pytest.mark.parametrize("stream", [False, True])
async def test_truncated_stream_drops_the_connection_mid_body(
    standin: StandinServer, session: aiohttp.ClientSession, stream: bool
) -> None:
    standin.inject(Fault.TRUNCATED_STREAM, path="tts/", times=1)
    request = {
        **TTS_REQUEST,
        "text": "One sentence. And another one.",
        "stream": stream,
    }
    received = b""
    async with session.post(
        f"{standin.base_url}tts/", json=request, headers=auth()
    ) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in response.content.iter_any():
                received += chunk
    assert received  # part of the audio did arrive
    async with session.post(
        f"{standin.base_url}tts/", json=request, headers=auth()
    ) as response:
        assert await duration_of(await response.read()) > 1.0


# --- recording, long tasks, reset ---------------------------------------------------


async def test_requests_are_recorded_in_arrival_order(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        f"{standin.base_url}tts/", json=TTS_REQUEST, headers=auth()
    ) as response:
        await response.read()
    form = await speech_form("Hello.", model="whisper")
    async with session.post(f"{standin.base_url}stt/", data=form, headers=auth()) as r:
        await r.read()
    async with session.get(
        f"{standin.base_url}voices/", params={"model": "piper"}
    ) as response:
        await response.read()
    tts, stt, voices = standin.requests
    assert (tts.method, tts.path, tts.json, tts.status) == (
        "POST",
        "tts/",
        TTS_REQUEST,
        200,
    )
    assert tts.headers["Authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert stt.form == {"model": "whisper"}
    assert stt.files["file"][0] == "speech.wav"
    assert stt.files["file"][1] > 10_000
    assert (voices.path, voices.query, voices.status) == (
        "voices/",
        {"model": "piper"},
        401,
    )
    assert DEFAULT_API_KEY not in repr(tts)


async def test_separate_runs_in_the_background_and_calls_the_webhook(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def webhook(request: web.Request) -> web.Response:
        await received.put(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        form = await speech_form(
            "Music would be here.",
            stems="4",
            format="mp3",
            webhook_url=f"http://127.0.0.1:{port}/hook",
        )
        async with session.post(
            f"{standin.base_url}audio/separate/", data=form, headers=auth()
        ) as response:
            assert response.status == 202
            assert response.headers["X-Credits-Used"] == "4"  # demucs, one minute
            accepted = await response.json()
        assert accepted["status"] == "queued"
        task_id = accepted["task_id"]
        result_url = f"{standin.base_url}results/{task_id}"
        async with session.get(result_url, headers=auth()) as response:
            assert (await response.json())["status"] in {"queued", "processing"}

        event = await asyncio.wait_for(received.get(), timeout=20)
    finally:
        await runner.cleanup()
    assert event["event"] == "task.completed"
    assert event["task_id"] == task_id
    assert event["status"] == "success"
    assert event["result_url"] == result_url
    assert event["credits_used"] == 4
    assert event["created_at"].endswith("Z")

    async with session.get(result_url, headers=auth()) as response:
        result = await response.json()
    assert result["status"] == "completed"
    assert set(result["stems"]) == {"vocals", "drums", "bass", "other"}
    async with session.get(result["stems"]["vocals"], headers=auth()) as response:
        assert response.content_type == "audio/mpeg"
        assert await duration_of(await response.read()) > 0.5
    standin.accounts["sk-other"] = Account()
    async with session.get(result_url, headers=auth("sk-other")) as response:
        assert response.status == 404  # another account's task is invisible


async def test_reset_restores_accounts_and_forgets_requests(
    standin: StandinServer, session: aiohttp.ClientSession
) -> None:
    accounts = standin.accounts
    accounts[DEFAULT_API_KEY].credits = 0
    standin.inject(Fault.INTERNAL_ERROR)
    async with session.get(f"{standin.base_url}models/", headers=auth()) as response:
        assert response.status == 500
    standin.reset()
    assert standin.requests == []
    assert accounts[DEFAULT_API_KEY].credits == 10_000
    async with session.get(f"{standin.base_url}models/", headers=auth()) as response:
        assert response.status == 200
