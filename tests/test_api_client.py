"""The TTS.ai API client, against the stand-in server over real loopback HTTP.

Audio results are decoded with the real ffmpeg and, where it matters, the
speech is transcribed back with faster-whisper to check the words.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
import logging
import socket
import time

import aiohttp
import pytest

from custom_components.tts_ai.api import (
    AuthenticationError,
    BadRequestError,
    FileTooLargeError,
    ForbiddenError,
    ForeignUrlError,
    InsufficientCreditsError,
    InternalServerError,
    ModelLoadingError,
    NotFoundError,
    RateLimitedError,
    TextTooLongError,
    TtsAiClient,
    TtsAiConnectionError,
    TtsAiError,
    TtsAiTimeoutError,
    UploadTooLargeError,
    WebhookEvent,
)
from custom_components.tts_ai.api.errors import error_from_response
from custom_components.tts_ai.speech.audio import join_audio, pcm_to_wav
from custom_components.tts_ai.speech.text import (
    SentenceBuffer,
    chunk_text,
    split_sentences,
)
from tests.audio import decode_pcm, probe
from tests.harness.standin import (
    DEFAULT_API_KEY,
    Fault,
    StandinServer,
    synthesize_wav,
    transcribe_pcm,
)

ENTERPRISE_KEY = "sk-tts-standin-enterprise"
FREE_KEY = "sk-tts-standin-free"
BROKE_KEY = "sk-tts-standin-broke"
MB = 1024 * 1024

GREETING = "Hello there, the kitchen lights are on."


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session, as Home Assistant would share one."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def client(session: aiohttp.ClientSession, standin: StandinServer) -> TtsAiClient:
    """A client for the stand-in's default (Pro) account."""
    return make_client(session, standin)


def make_client(
    session: aiohttp.ClientSession,
    standin: StandinServer,
    api_key: str = DEFAULT_API_KEY,
    **kwargs: object,
) -> TtsAiClient:
    """Build a client pointed at the stand-in, with fast retries."""
    kwargs.setdefault("model_loading_backoff", 0.01)
    return TtsAiClient(session, api_key, base_url=standin.base_url, **kwargs)


def requests_to(standin: StandinServer, path: str) -> list:
    """The requests the stand-in received for ``path`` (e.g. ``"tts/"``)."""
    return [request for request in standin.requests if request.path == path]


async def words_in(audio: bytes) -> str:
    """Transcribe audio with faster-whisper; lower case, no punctuation."""
    text = await transcribe_pcm(await decode_pcm(audio))
    return "".join(c for c in text.lower() if c.isalnum() or c.isspace())


@pytest.fixture
async def speech_wav() -> bytes:
    """A short spoken WAV (Piper) used as upload in many tests."""
    return await synthesize_wav("Please turn off the porch light.")


# --- Catalogue and response headers --------------------------------------------


async def test_models_voices_and_headers(
    client: TtsAiClient, standin: StandinServer
) -> None:
    updates: list[None] = []
    remove = client.add_listener(lambda: updates.append(None))

    models = await client.validate()
    kokoro = next(model for model in models if model.id == "kokoro")
    assert kokoro.type == "tts"
    assert kokoro.supports_streaming
    assert "en" in kokoro.languages
    assert kokoro.credits_per_1k_chars == 2

    voices = await client.list_voices(model="piper", gender="male")
    assert voices
    assert all(v.model == "piper" and v.gender == "male" for v in voices)
    assert requests_to(standin, "voices/")[-1].query == {
        "model": "piper",
        "gender": "male",
    }

    assert client.rate_limit is not None
    assert client.rate_limit.limit == 60
    assert client.rate_limit.remaining == 58  # two requests in this window
    assert client.rate_limit.reset_at is not None
    assert client.rate_limit.reset_at > datetime.now(UTC)
    assert client.plan_limits.name == "pro"
    assert len(updates) == 2

    remove()
    await client.list_models()
    assert len(updates) == 2


async def test_plan_inferred_from_rate_limit_header(
    session: aiohttp.ClientSession, standin: StandinServer
) -> None:
    client = make_client(session, standin, ENTERPRISE_KEY)
    assert client.plan_limits.name == "pro"  # until the service says otherwise
    await client.list_models()
    assert client.plan_limits.name == "enterprise"
    assert client.plan_limits.concurrent_requests == 20
    assert client.max_text_chars == 50_000

    fixed = make_client(session, standin, ENTERPRISE_KEY, plan="pro")
    await fixed.list_models()
    assert fixed.plan_limits.name == "pro"


async def test_base_url_without_trailing_slash(
    session: aiohttp.ClientSession, standin: StandinServer
) -> None:
    client = TtsAiClient(session, DEFAULT_API_KEY, base_url=standin.base_url[:-1])
    assert client.base_url == standin.base_url
    assert await client.list_models()
    assert standin.requests[-1].path == "models/"


# --- Text to speech ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "codec"),
    [("mp3", "mp3"), ("wav", "pcm_s16le"), ("flac", "flac"), ("ogg", "vorbis")],
)
async def test_tts_formats(
    client: TtsAiClient, standin: StandinServer, fmt: str, codec: str
) -> None:
    result = await client.tts(
        GREETING, model="piper", voice="en_US-joe-medium", format=fmt
    )

    assert result.format == fmt
    info = await probe(result.data)
    assert info.codec == codec
    assert 1.0 < info.duration < 6.0
    assert result.credits_used == 1
    assert client.credits is not None
    assert client.credits.remaining == 10_000 - 1
    # Only the fields that were given are sent.
    assert requests_to(standin, "tts/")[-1].json == {
        "model": "piper",
        "voice": "en_US-joe-medium",
        "text": GREETING,
        "format": fmt,
    }


async def test_tts_speaks_the_text(client: TtsAiClient) -> None:
    result = await client.tts(
        "The garage door is open.", model="kokoro", voice="af_bella", speed=1.0
    )
    assert "garage door is open" in await words_in(result.data)


async def test_tts_rejects_bad_parameters_before_sending(
    client: TtsAiClient, standin: StandinServer
) -> None:
    with pytest.raises(BadRequestError, match="format"):
        await client.tts("Hi.", model="piper", voice="en_US-joe-medium", format="aiff")
    with pytest.raises(BadRequestError, match="speed"):
        await client.tts("Hi.", model="piper", voice="en_US-joe-medium", speed=3.0)
    with pytest.raises(BadRequestError, match="text"):
        await client.tts("   ", model="piper", voice="en_US-joe-medium")
    assert requests_to(standin, "tts/") == []


@pytest.mark.parametrize(("fmt", "joined_format"), [("mp3", "mp3"), ("flac", "wav")])
async def test_long_text_is_split_at_sentences_and_joined(
    session: aiohttp.ClientSession,
    standin: StandinServer,
    fmt: str,
    joined_format: str,
) -> None:
    standin.accounts[DEFAULT_API_KEY].max_text = 60
    text = (
        "The front door is locked. The garage door is closed. "
        "All the lights are off. Good night and sleep well."
    )
    client = make_client(session, standin, max_text_chars=60)

    result = await client.tts(text, model="piper", voice="en_US-joe-medium", format=fmt)

    sent = [request.json["text"] for request in requests_to(standin, "tts/")]
    assert len(sent) == 2
    assert all(len(part) <= 60 and part.endswith(".") for part in sent)
    assert " ".join(sorted(sent, key=text.index)) == text
    assert result.format == joined_format
    assert result.credits_used == 2
    first_part = await client.tts(sent[0], model="piper", voice="en_US-joe-medium")
    joined = await probe(result.data)
    assert joined.duration > (await probe(first_part.data)).duration + 1.0
    words = await words_in(result.data)
    assert "front door is locked" in words
    assert "sleep well" in words


async def test_text_over_the_account_limit_is_refused_by_the_service(
    client: TtsAiClient, standin: StandinServer
) -> None:
    # Why the client splits: the service refuses text over the plan's limit.
    standin.accounts[DEFAULT_API_KEY].max_text = 20
    with pytest.raises(BadRequestError, match="20 characters"):
        await client.tts(GREETING, model="piper", voice="en_US-joe-medium")


async def test_tts_stream_yields_audio_before_the_stream_ends(
    client: TtsAiClient, standin: StandinServer
) -> None:
    text = (
        "This is the first sentence. Here comes a second one. "
        "And a third sentence closes the stream."
    )
    chunks: list[bytes] = []
    status_at_first_chunk: int | None = None
    async for chunk in client.tts_stream(text, model="piper", voice="en_US-joe-medium"):
        if not chunks:
            status_at_first_chunk = requests_to(standin, "tts/")[-1].status
        chunks.append(chunk)

    # The service had not finished answering when the first audio arrived.
    assert status_at_first_chunk == 0
    assert len(chunks) > 1
    assert requests_to(standin, "tts/")[-1].json["stream"] is True
    audio = b"".join(chunks)
    assert (await probe(audio)).codec == "mp3"
    assert "third sentence" in await words_in(audio)


async def test_tts_stream_wav_is_playable(client: TtsAiClient) -> None:
    audio = b"".join(
        [
            chunk
            async for chunk in client.tts_stream(
                "Streaming wave audio.", model="piper", voice="en_US-joe-medium",
                format="wav",
            )
        ]
    )  # fmt: skip
    info = await probe(audio)
    assert info.codec == "pcm_s16le"
    assert info.duration > 0.5


async def test_tts_stream_long_text_in_parts(
    session: aiohttp.ClientSession, standin: StandinServer
) -> None:
    standin.accounts[DEFAULT_API_KEY].max_text = 40
    client = make_client(session, standin, max_text_chars=40)
    text = "The washing machine has finished. Please empty it soon."
    audio = b"".join(
        [
            c
            async for c in client.tts_stream(
                text, model="piper", voice="en_US-joe-medium"
            )
        ]
    )
    assert len(requests_to(standin, "tts/")) == 2
    assert "empty it soon" in await words_in(audio)

    with pytest.raises(TextTooLongError, match="40"):
        async for _ in client.tts_stream(
            text, model="piper", voice="en_US-joe-medium", format="wav"
        ):
            pass


async def test_tts_stream_error_before_first_byte(
    client: TtsAiClient, standin: StandinServer
) -> None:
    with pytest.raises(NotFoundError, match="no_such_voice"):
        async for _ in client.tts_stream("Hi.", model="piper", voice="no_such_voice"):
            pass


async def test_concurrent_requests_stay_within_the_plan(
    client: TtsAiClient, standin: StandinServer
) -> None:
    # The stand-in answers 429 beyond 5 concurrent Pro requests.
    results = await asyncio.gather(
        *(
            client.tts(f"Number {n}.", model="piper", voice="en_US-joe-medium")
            for n in range(8)
        )
    )
    assert len(results) == 8
    assert all(request.status == 200 for request in requests_to(standin, "tts/"))


# --- Voice cloning, recognition and audio tools --------------------------------


async def test_clone_tts(
    client: TtsAiClient, standin: StandinServer, speech_wav: bytes
) -> None:
    result = await client.clone_tts(
        "I sound like someone else.",
        speech_wav,
        reference_filename="me.wav",
        format="wav",
    )
    assert (await probe(result.data)).codec == "pcm_s16le"
    assert "sound like someone else" in await words_in(result.data)
    sent = requests_to(standin, "tts/clone/")[-1]
    assert sent.files["reference_audio"] == ("me.wav", len(speech_wav))
    assert sent.form == {"text": "I sound like someone else.", "format": "wav"}


async def test_stt(
    client: TtsAiClient, standin: StandinServer, speech_wav: bytes
) -> None:
    transcription = await client.stt(speech_wav, timestamps=True, diarize=True)

    assert "porch light" in transcription.text.lower()
    assert transcription.language == "en"
    assert transcription.duration is not None
    assert 1.0 < transcription.duration < 5.0
    assert transcription.segments
    assert transcription.segments[0].speaker is not None
    assert transcription.segments[0].words
    sent = requests_to(standin, "stt/")[-1]
    assert sent.form == {"timestamps": "true", "diarize": "true"}
    assert sent.files["file"] == ("audio.wav", len(speech_wav))


async def test_voice_convert_and_speech_to_speech(
    client: TtsAiClient, standin: StandinServer, speech_wav: bytes
) -> None:
    converted = await client.voice_convert(
        speech_wav, filename="in.wav", target_voice="af_bella", format="mp3"
    )
    assert converted.format == "mp3"
    assert (await probe(converted.data)).codec == "mp3"
    assert requests_to(standin, "voice-convert/")[-1].form == {
        "target_voice": "af_bella",
        "format": "mp3",
    }

    restyled = await client.speech_to_speech(
        speech_wav, filename="in.wav", voice="am_adam", emotion="happy", speed=1.25
    )
    info = await probe(restyled.data)
    assert info.duration > 0.5
    assert requests_to(standin, "speech-to-speech/")[-1].form == {
        "voice": "am_adam",
        "emotion": "happy",
        "speed": "1.25",
    }


async def test_enhance_dereverb_and_convert(
    client: TtsAiClient, standin: StandinServer, speech_wav: bytes
) -> None:
    original = await probe(speech_wav)

    enhanced = await client.enhance(
        speech_wav, filename="in.wav", denoise=True, strength=3
    )
    assert abs((await probe(enhanced.data)).duration - original.duration) < 0.3
    assert requests_to(standin, "audio/enhance/")[-1].form == {
        "denoise": "true",
        "strength": "3",
    }

    dry = await client.dereverb(speech_wav, filename="in.wav", type="echo", intensity=2)
    assert abs((await probe(dry.data)).duration - original.duration) < 0.3

    flac = await client.convert(
        speech_wav, filename="in.wav", format="flac", sample_rate=44100
    )
    info = await probe(flac.data)
    assert flac.format == "flac"
    assert (info.codec, info.sample_rate) == ("flac", 44100)
    assert abs(info.duration - original.duration) < 0.3

    with pytest.raises(BadRequestError, match="bitrate"):
        await client.convert(speech_wav, filename="in.wav", format="mp3", bitrate=100)


async def test_analyze(client: TtsAiClient, speech_wav: bytes) -> None:
    analysis = await client.analyze(speech_wav, filename="in.wav")
    assert analysis.key
    assert analysis.scale in ("Major", "Minor")
    assert analysis.bpm is not None
    assert analysis.bpm > 0
    assert analysis.camelot
    assert analysis.compatible_keys


async def test_separate_then_poll_and_download(
    client: TtsAiClient, speech_wav: bytes
) -> None:
    task = await client.separate(speech_wav, filename="song.wav", stems=2)
    assert task.task_id
    assert task.status == "queued"

    deadline = time.monotonic() + 60
    while not (status := await client.get_result(task.task_id)).done:
        assert time.monotonic() < deadline, "separation never finished"
        await asyncio.sleep(0.2)
    assert status.status == "completed"
    assert set(status.urls) == {"vocals", "accompaniment"}
    vocals = await client.download(status.urls["vocals"])
    assert (await probe(vocals.data)).duration > 0.5

    with pytest.raises(BadRequestError, match="task id"):
        await client.get_result("../models")


async def test_translate_and_download(client: TtsAiClient, speech_wav: bytes) -> None:
    translation = await client.translate(
        speech_wav, filename="in.wav", target_language="es"
    )
    assert "porch light" in translation.original_text.lower()
    assert translation.translated_text
    assert translation.target_language == "es"
    assert translation.audio_url is not None
    audio = await client.download(translation.audio_url)
    assert audio.format == "mp3"
    assert (await probe(audio.data)).duration > 0.5


async def test_voice_chat_text_and_audio(
    client: TtsAiClient, standin: StandinServer, speech_wav: bytes
) -> None:
    reply = await client.voice_chat(text="What is the capital of France?")
    assert reply.user_text == "What is the capital of France?"
    assert reply.ai_text
    assert reply.conversation_id
    assert requests_to(standin, "voice-chat/")[-1].json == {
        "text": "What is the capital of France?"
    }
    assert reply.audio_url is not None
    assert (await probe((await client.download(reply.audio_url)).data)).duration > 0.3

    spoken = await client.voice_chat(
        audio=speech_wav, filename="turn.wav", conversation_id=reply.conversation_id
    )
    assert "porch light" in spoken.user_text.lower()
    assert spoken.conversation_id == reply.conversation_id
    assert requests_to(standin, "voice-chat/")[-1].files["audio"][0] == "turn.wav"

    with pytest.raises(BadRequestError, match="exactly one"):
        await client.voice_chat()


async def test_download_refuses_a_foreign_host(
    client: TtsAiClient, standin: StandinServer
) -> None:
    port = int(standin.base_url.split(":")[2].split("/")[0])
    for url in (
        "https://evil.example/v1/results/x.mp3",
        f"http://127.0.0.1:{port + 1}/v1/results/x.mp3",
        f"https://127.0.0.1:{port}/v1/results/x.mp3",
        "//evil.example/v1/results/x.mp3",
    ):
        with pytest.raises(ForeignUrlError):
            await client.download(url)
    assert standin.requests == []


# --- Upload limits -------------------------------------------------------------


async def test_upload_limit_checked_before_sending(
    client: TtsAiClient, standin: StandinServer
) -> None:
    with pytest.raises(UploadTooLargeError, match="100 MB") as raised:
        await client.stt(bytes(100 * MB + 1))
    assert isinstance(raised.value, FileTooLargeError)
    assert raised.value.limit_bytes == 100 * MB

    with pytest.raises(UploadTooLargeError, match="20 MB"):
        await client.clone_tts("Hi.", bytes(20 * MB + 1), reference_filename="r.wav")
    assert standin.requests == []


# --- Error mapping -------------------------------------------------------------


async def test_wrong_key(
    session: aiohttp.ClientSession, standin: StandinServer
) -> None:
    client = make_client(session, standin, "sk-tts-wrong")
    with pytest.raises(AuthenticationError) as raised:
        await client.list_models()
    assert raised.value.status == 401
    assert raised.value.code == "unauthorized"
    assert raised.value.message
    assert client.last_error is raised.value


async def test_plan_without_api_access(
    session: aiohttp.ClientSession, standin: StandinServer
) -> None:
    client = make_client(session, standin, FREE_KEY)
    with pytest.raises(ForbiddenError) as raised:
        await client.tts("Hi.", model="piper", voice="en_US-joe-medium")
    assert raised.value.status == 403
    assert client.rate_limit is not None  # headers are read from errors too


async def test_out_of_credits(
    session: aiohttp.ClientSession, standin: StandinServer
) -> None:
    client = make_client(session, standin, BROKE_KEY)
    with pytest.raises(InsufficientCreditsError) as raised:
        await client.tts(GREETING, model="chatterbox", voice="chatterbox_aria")
    assert raised.value.credits_required == 4
    assert raised.value.credits_available == 0
    assert "credits" in raised.value.message
    assert len(requests_to(standin, "tts/")) == 1  # 4xx is never retried


async def test_unknown_voice_and_server_side_bad_request(
    client: TtsAiClient, standin: StandinServer
) -> None:
    with pytest.raises(NotFoundError, match="no_such_voice"):
        await client.tts("Hi.", model="piper", voice="no_such_voice")
    with pytest.raises(BadRequestError, match="language"):
        await client.tts(
            "Hi.", model="chatterbox", voice="chatterbox_aria", language="ja"
        )
    assert len(requests_to(standin, "tts/")) == 2


async def test_rate_limited(client: TtsAiClient, standin: StandinServer) -> None:
    standin.inject(Fault.RATE_LIMITED, path="tts/", times=1)
    with pytest.raises(RateLimitedError) as raised:
        await client.tts("Hi.", model="piper", voice="en_US-joe-medium")
    error = raised.value
    assert error.status == 429
    assert error.reset_at is not None
    assert error.reset_at > datetime.now(UTC)
    assert error.retry_after is not None
    assert error.retry_after >= 1
    assert len(requests_to(standin, "tts/")) == 1


async def test_internal_error_is_not_retried(
    client: TtsAiClient, standin: StandinServer
) -> None:
    standin.inject(Fault.INTERNAL_ERROR, path="tts/", times=1)
    with pytest.raises(InternalServerError):
        await client.tts("Hi.", model="piper", voice="en_US-joe-medium")
    assert len(requests_to(standin, "tts/")) == 1


async def test_model_loading_is_retried(
    session: aiohttp.ClientSession, standin: StandinServer
) -> None:
    client = make_client(session, standin, model_loading_retries=3)
    standin.inject(Fault.MODEL_LOADING, path="tts/", times=2)
    result = await client.tts("Warming up.", model="piper", voice="en_US-joe-medium")
    assert (await probe(result.data)).duration > 0.3
    assert [r.status for r in requests_to(standin, "tts/")] == [503, 503, 200]


async def test_model_loading_gives_up(
    session: aiohttp.ClientSession, standin: StandinServer
) -> None:
    client = make_client(
        session, standin, model_loading_retries=2, model_loading_max_delay=0.05
    )
    standin.inject(Fault.MODEL_LOADING, path="tts/")
    with pytest.raises(ModelLoadingError) as raised:
        await client.tts("Still cold.", model="piper", voice="en_US-joe-medium")
    assert raised.value.status == 503
    assert len(requests_to(standin, "tts/")) == 3


def test_error_mapping_without_a_documented_body() -> None:
    too_large = error_from_response(
        413,
        {},
        b'{"error": {"code": "file_too_large", "message": "Too big.", '
        b'"limit_bytes": 20971520}}',
    )
    assert isinstance(too_large, FileTooLargeError)
    assert too_large.limit_bytes == 20 * MB
    assert too_large.extra == {"limit_bytes": 20 * MB}

    proxy_page = error_from_response(502, {}, b"<html>Bad gateway</html>")
    assert type(proxy_page) is InternalServerError
    assert "502" in proxy_page.message

    unknown_code = error_from_response(
        418, {}, b'{"error": {"code": "teapot", "message": "I am a teapot."}}'
    )
    assert type(unknown_code) is TtsAiError
    assert (unknown_code.code, unknown_code.message) == ("teapot", "I am a teapot.")


def test_error_text_from_the_cloud_cannot_forge_log_lines() -> None:
    forged = error_from_response(
        500,
        {},
        b'{"error": {"code": "x\\nERROR forged' + b"y" * 5000 + b'", '
        b'"message": "Oops.\\n2026-11-26 ERROR (MainThread) [homeassistant] Fake'
        + b"!" * 10_000
        + b'"}}',
    )

    text = str(forged)
    assert "\n" not in text and "\n" not in (forged.code or "")
    assert len(forged.message) <= 500
    assert len(forged.code or "") <= 64


# --- Network failures ----------------------------------------------------------


async def test_connection_refused(
    session: aiohttp.ClientSession, socket_enabled: None
) -> None:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    client = TtsAiClient(
        session, DEFAULT_API_KEY, base_url=f"http://127.0.0.1:{port}/v1/"
    )
    started = time.monotonic()
    with pytest.raises(TtsAiConnectionError) as raised:
        await client.list_models()
    assert not isinstance(raised.value, TtsAiTimeoutError)
    assert raised.value.code == "cannot_connect"
    assert time.monotonic() - started < 2


async def test_refusing_standin(client: TtsAiClient, standin: StandinServer) -> None:
    standin.inject(Fault.REFUSE)
    with pytest.raises(TtsAiConnectionError):
        await client.list_models()
    standin.clear_faults()
    assert await client.list_models()


async def test_hanging_service_times_out(
    session: aiohttp.ClientSession, standin: StandinServer
) -> None:
    client = make_client(session, standin, first_byte_timeout=0.5)
    standin.inject(Fault.HANG, path="tts/")
    started = time.monotonic()
    with pytest.raises(TtsAiTimeoutError) as raised:
        await client.tts("Hello?", model="piper", voice="en_US-joe-medium")
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 3
    assert raised.value.code == "timeout"
    assert "0.5 s" in raised.value.message


async def test_slow_first_byte(
    session: aiohttp.ClientSession, standin: StandinServer
) -> None:
    client = make_client(session, standin, first_byte_timeout=0.5)
    standin.inject(Fault.SLOW_FIRST_BYTE, path="stt/", delay=2.0, times=1)
    with pytest.raises(TtsAiTimeoutError):
        await client.stt(await synthesize_wav("Slow."))

    patient = make_client(session, standin, first_byte_timeout=5.0)
    standin.inject(Fault.SLOW_FIRST_BYTE, path="models/", delay=0.7, times=1)
    assert await patient.list_models()


async def test_truncated_stream(client: TtsAiClient, standin: StandinServer) -> None:
    standin.inject(Fault.TRUNCATED_STREAM, path="tts/")
    received: list[bytes] = []
    with pytest.raises(TtsAiConnectionError) as raised:
        async for chunk in client.tts_stream(
            "One sentence. Then another sentence. And a last one.",
            model="piper",
            voice="en_US-joe-medium",
        ):
            received.append(chunk)
    assert not isinstance(raised.value, TtsAiTimeoutError)

    with pytest.raises(TtsAiConnectionError):
        await client.tts("Cut short.", model="piper", voice="en_US-joe-medium")


async def test_api_key_never_logged(
    session: aiohttp.ClientSession,
    standin: StandinServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(session, standin)
    await client.tts("Hi.", model="piper", voice="en_US-joe-medium")
    standin.inject(Fault.MODEL_LOADING, path="models/", times=1)
    await client.list_models()
    errors: list[TtsAiError] = []
    for key in (DEFAULT_API_KEY, BROKE_KEY, "sk-tts-wrong"):
        other = make_client(session, standin, key, first_byte_timeout=0.3)
        standin.inject(Fault.HANG, path="voices/", times=1)
        with pytest.raises(TtsAiError) as raised:
            await other.list_voices()
        errors.append(raised.value)
        with pytest.raises(TtsAiError) as raised:
            await other.tts(GREETING, model="chatterbox", voice="nobody")
        errors.append(raised.value)

    assert "tts/ -> 200" in caplog.text  # debug logging did happen
    assert "model loading" in caplog.text
    for key in (DEFAULT_API_KEY, BROKE_KEY, "sk-tts-wrong"):
        assert key not in caplog.text
        assert all(key not in str(e) and key not in repr(e) for e in errors)


# --- Text splitting ------------------------------------------------------------


def test_split_sentences_keeps_abbreviations_and_decimals() -> None:
    text = (
        "Mr. Smith paid 3.5 dollars. Really?! Dr. J. Watson said “Yes.” "
        "Then e.g. this continues.\nA new line starts here… Done"
    )
    assert split_sentences(text) == [
        "Mr. Smith paid 3.5 dollars.",
        "Really?!",
        "Dr. J. Watson said “Yes.”",
        "Then e.g. this continues.",
        "A new line starts here…",
        "Done",
    ]


def test_chunk_text_never_drops_text() -> None:
    text = (
        "Short one. "
        * 6
        + "This single sentence is far longer than the limit, so it is cut at "
        "its clauses; and then, if needed, between words: "
        + "Pneumonoultramicroscopicsilicovolcanoconiosis is long."
    )
    chunks = chunk_text(text, 40)
    assert all(0 < len(chunk) <= 40 for chunk in chunks)
    # Nothing lost: only the word longer than the limit gains a break.
    assert "".join("".join(chunks).split()) == "".join(text.split())
    assert chunks[:2] == ["Short one. Short one. Short one."] * 2
    # The long sentence starts its own chunk and is cut after its clauses.
    assert chunks[2].startswith("This single sentence")
    assert chunks[3].endswith("its clauses;")
    assert chunks[4] == "and then, if needed, between words:"
    assert chunks[5:] == ["Pneumonoultramicroscopicsilicovolcanocon", "iosis is long."]
    assert chunk_text("Fits.", 40) == ["Fits."]


def test_sentence_buffer_releases_whole_sentences() -> None:
    buffer = SentenceBuffer()
    released: list[str] = []
    for piece in [
        "Hel",
        "lo Mr",
        ". Smi",
        "th. How",
        " are you? I",
        " am 3.",
        "5 m",
        ".",
    ]:
        released.extend(buffer.add(piece))
    assert released == ["Hello Mr. Smith.", "How are you?"]
    assert buffer.finish() == "I am 3.5 m."
    assert buffer.finish() is None
    assert buffer.add("Line one\nLine") == ["Line one"]


# --- Audio joining and webhooks ------------------------------------------------


async def test_join_wav_parts() -> None:
    second = pcm_to_wav(bytes(2 * 22050), 22050)  # 1 s of silence
    half = pcm_to_wav(bytes(22050), 22050)  # 0.5 s
    joined = join_audio([second, half], "wav")
    info = await probe(joined)
    assert (info.codec, info.sample_rate) == ("pcm_s16le", 22050)
    assert info.duration == pytest.approx(1.5, abs=0.01)
    with pytest.raises(ValueError, match="flac"):
        join_audio([b"fLaC", b"fLaC"], "flac")
    with pytest.raises(ValueError, match="different"):
        join_audio([second, pcm_to_wav(bytes(100), 16000)], "wav")


def test_webhook_event() -> None:
    event = WebhookEvent.from_dict(
        {
            "event": "task.completed",
            "task_id": "task_abc123",
            "status": "success",
            "result_url": "https://api.tts.ai/v1/results/task_abc123",
            "credits_used": 12,
            "created_at": "2025-01-15T10:30:00Z",
            "completed_at": "2025-01-15T10:30:45Z",
            "unknown_field": True,
        }
    )
    assert event.task_id == "task_abc123"
    assert event.credits_used == 12
    assert event.completed_at is not None
    assert event.created_at is not None
    assert (event.completed_at - event.created_at).total_seconds() == 45
    for bad in (None, [], {"event": "task.completed"}, {"task_id": 5, "event": "x"}):
        with pytest.raises(ValueError, match="webhook"):
            WebhookEvent.from_dict(bad)
