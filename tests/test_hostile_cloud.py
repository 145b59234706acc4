"""A hostile or broken cloud never gets past the client.

The cloud here is the stand-in behind a tampering proxy (tests/hostile_cloud):
real answers, rewritten the ways a broken or malicious service would. Every
case asserts the safe outcome: one typed error that sends the work to the
device, a bounded read, a deadline that holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
import json
import math
import threading
import time
from typing import Any

import aiohttp
import pytest

from custom_components.tts_ai.api import (
    ForeignUrlError,
    InternalServerError,
    InvalidResponseError,
    RateLimitedError,
    ResponseTooLargeError,
    TtsAiClient,
    TtsAiTimeoutError,
    endpoints as ep,
    synthesis as synthesis_module,
)
from custom_components.tts_ai.fallback import CircuitBreaker, falls_back
from custom_components.tts_ai.speech.audio import pcm_to_wav
from tests.harness.hostile_cloud import (
    MB,
    HostileCloud,
    gzip_bomb,
    headers,
    huge,
    json_body,
    raw_body,
    result_url,
    status,
    stems,
    trickle,
)
from tests.harness.standin import DEFAULT_API_KEY, StandinServer, synthesize_wav

GREETING = "Hello there, the kitchen lights are on."
ONE_HOUR = timedelta(seconds=ep.MAX_RETRY_AFTER_SECONDS)


@pytest.fixture
async def cloud(standin: StandinServer) -> AsyncIterator[HostileCloud]:
    """The stand-in behind a tampering proxy."""
    async with HostileCloud(standin.base_url) as hostile:
        yield hostile


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session, as Home Assistant would share one."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def make_client(
    session: aiohttp.ClientSession, cloud: HostileCloud, **kwargs: Any
) -> TtsAiClient:
    """A client of the hostile cloud, with fast retries."""
    kwargs.setdefault("model_loading_backoff", 0.01)
    return TtsAiClient(session, DEFAULT_API_KEY, base_url=cloud.base_url, **kwargs)


@pytest.fixture
def client(session: aiohttp.ClientSession, cloud: HostileCloud) -> TtsAiClient:
    """A client of the hostile cloud."""
    return make_client(session, cloud)


async def speech_wav() -> bytes:
    """A short real recording to upload."""
    return await synthesize_wav(GREETING)


def unreadable(err: BaseException) -> bool:
    """The one outcome for an unusable answer: typed, and the device takes over."""
    return isinstance(err, InvalidResponseError) and falls_back(err)


# --- Headers ---------------------------------------------------------------------

NOW_MS = str(int(time.time() * 1000) + 30_000)


@pytest.mark.parametrize(
    ("header_values", "reset_within"),
    [
        ({"X-RateLimit-Reset": NOW_MS}, timedelta(seconds=60)),  # epoch ms
        ({"X-RateLimit-Reset": "inf"}, ONE_HOUR),
        ({"X-RateLimit-Reset": "nan"}, None),
        ({"X-RateLimit-Reset": "1e400"}, None),
        ({"X-RateLimit-Reset": "99999999999999999999"}, ONE_HOUR),
        ({"X-RateLimit-Reset": "-5"}, timedelta(0)),
        ({"X-RateLimit-Reset": "9999-12-31T23:59:59+00:00"}, ONE_HOUR),
        ({"X-RateLimit-Reset": "Fri, 31 Dec 9999 23:59:59 GMT"}, ONE_HOUR),
        ({"X-RateLimit-Reset": "tomorrow-ish"}, None),
        ({"X-RateLimit-Limit": "inf"}, timedelta(seconds=60)),
        ({"X-RateLimit-Limit": "nan", "X-RateLimit-Remaining": "-inf"}, None),
        ({"X-RateLimit-Limit": "1e400", "X-RateLimit-Remaining": "1e30"}, None),
        ({"X-RateLimit-Limit": "-60"}, None),
        ({"X-Credits-Used": "nan", "X-Credits-Remaining": "inf"}, None),
    ],
)
async def test_bad_header_values_never_fail_a_request(
    client: TtsAiClient,
    cloud: HostileCloud,
    header_values: dict[str, str],
    reset_within: timedelta | None,
) -> None:
    """Any header value leaves a working request and sane, finite figures."""
    cloud.tamper("*", headers(**header_values))

    models = await client.list_models()
    assert models

    now = datetime.now(UTC)
    if client.rate_limit is not None:
        assert 0 <= client.rate_limit.limit <= 1_000_000_000
        assert client.rate_limit.remaining is None or (
            0 <= client.rate_limit.remaining <= 1_000_000_000
        )
        reset = client.rate_limit.reset_at
        if reset is not None:
            assert now - timedelta(seconds=5) <= reset <= now + ONE_HOUR
            if reset_within is not None:
                assert reset <= now + reset_within + timedelta(seconds=5)
    if client.credits is not None:
        for figure in (client.credits.used, client.credits.remaining):
            assert figure is None or math.isfinite(figure)


@pytest.mark.parametrize(
    "retry_after", ["inf", "1e400", "99999999999", "Fri, 31 Dec 9999 23:59:59 GMT"]
)
async def test_retry_after_is_capped_at_an_hour(
    client: TtsAiClient, cloud: HostileCloud, retry_after: str
) -> None:
    """A 429 asking to wait forever opens the breaker for at most an hour."""
    cloud.tamper(
        "models/",
        status(
            429,
            {"error": {"code": "rate_limited", "message": "Slow down."}},
            Retry_After=retry_after,
            X_RateLimit_Reset=retry_after,
        ),
    )
    with pytest.raises(RateLimitedError) as caught:
        await client.list_models()
    assert caught.value.retry_after is not None
    assert caught.value.retry_after <= ep.MAX_RETRY_AFTER_SECONDS
    breaker = CircuitBreaker()
    breaker.record_failure(caught.value)
    assert breaker.open_until - breaker.clock() <= ep.MAX_RETRY_AFTER_SECONDS + 1


async def test_error_message_is_capped(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """A server error's message cannot flood the log or a translated error."""
    cloud.tamper(
        "stt/",
        status(500, {"error": {"code": "internal_error", "message": "x" * 100_000}}),
    )
    with pytest.raises(InternalServerError) as caught:
        await client.stt(await speech_wav())
    assert len(caught.value.message) <= 500


# --- Malformed JSON -------------------------------------------------------------

MALFORMED_TRANSCRIPTS: list[bytes] = [
    json.dumps({"text": "hi", "segments": [{"start": "soon", "end": 1}]}).encode(),
    json.dumps({"text": "hi", "segments": [{"start": [1], "end": 1}]}).encode(),
    json.dumps({"text": "hi", "segments": {"start": 0}}).encode(),
    json.dumps({"text": "hi", "segments": ["not a segment"]}).encode(),
    json.dumps({"text": {"nested": "object"}}).encode(),
    json.dumps(
        {"text": "hi", "segments": [{"start": 0, "words": [{"start": {}}]}]}
    ).encode(),
    b'{"text": "hi", "duration": NaN, "segments": [{"start": Infinity}]}',
    b'{"text": "hi", "segments": [{"start": 1e400}]}',
    b"[" * 100_000 + b"]" * 100_000,
    b'["a list, not an object"]',
    b'{"text": "truncated',
    b"\xff\xfe\x00garbage",
    b"<html>502 Bad Gateway</html>",
    b"",
]


@pytest.mark.parametrize(
    "body", MALFORMED_TRANSCRIPTS, ids=lambda body: repr(body[:24])
)
async def test_malformed_json_is_one_typed_error(
    client: TtsAiClient, cloud: HostileCloud, body: bytes
) -> None:
    """Every unreadable transcript is InvalidResponseError, which falls back."""
    cloud.tamper("stt/", raw_body(body))
    with pytest.raises(InvalidResponseError) as caught:
        await client.stt(await speech_wav())
    assert unreadable(caught.value)
    assert client.last_error is caught.value


@pytest.mark.parametrize(
    "document",
    [
        {"models": [{"id": "kokoro", "languages": "en"}]},
        {"models": [{"id": {"a": 1}}]},
        {"models": [{"id": "kokoro", "name": ["x"]}]},
    ],
)
async def test_malformed_catalogue_is_one_typed_error(
    client: TtsAiClient, cloud: HostileCloud, document: dict[str, Any]
) -> None:
    """A catalogue with wrong types is InvalidResponseError, not a TypeError."""
    cloud.tamper("models/", json_body(document))
    with pytest.raises(InvalidResponseError):
        await client.list_models()


# --- Sizes ------------------------------------------------------------------------


async def test_huge_audio_is_refused_while_reading(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """A 256 MB answer is refused at the endpoint's limit, not read whole."""
    cloud.tamper("tts/", huge(256 * MB))
    with pytest.raises(ResponseTooLargeError) as caught:
        await client.tts(GREETING, model="piper", voice="en_US-joe-medium")
    assert unreadable(caught.value)
    assert not cloud.sent[-1].finished


async def test_declared_huge_length_is_refused_at_once(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """An answer that declares a length over the limit is not read at all."""
    cloud.tamper("tts/", huge(256 * MB, declare_length=True))
    with pytest.raises(ResponseTooLargeError):
        await client.tts(GREETING, model="piper", voice="en_US-joe-medium")
    assert not cloud.sent[-1].finished


async def test_huge_json_is_refused(client: TtsAiClient, cloud: HostileCloud) -> None:
    """A JSON answer is capped far below an audio one."""
    cloud.tamper("models/", huge(64 * MB, content_type="application/json"))
    with pytest.raises(ResponseTooLargeError):
        await client.list_models()
    assert not cloud.sent[-1].finished


async def test_gzip_bomb_is_refused_while_inflating(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """0.5 MB of gzip that inflates to 512 MB stops at the limit."""
    cloud.tamper("tts/", gzip_bomb(512 * MB))
    with pytest.raises(ResponseTooLargeError):
        await client.tts(GREETING, model="piper", voice="en_US-joe-medium")


async def test_gzip_bomb_stream_is_refused(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """A streamed answer that looks like MP3 counts inflated bytes too."""
    cloud.tamper(
        "tts/",
        gzip_bomb(512 * MB, content_type="audio/mpeg", prefix=b"ID3\x04" + bytes(6)),
    )
    received = 0
    with pytest.raises(ResponseTooLargeError):
        async for chunk in client.tts_stream(
            GREETING, model="piper", voice="en_US-joe-medium"
        ):
            received += len(chunk)
    assert received <= ep.AUDIO_RESPONSE_LIMIT_BYTES


async def test_huge_error_body_is_not_read_whole(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """A 500 with a 64 MB body is a server error, read no further than needed."""

    async def error_500(request: Any, upstream: Any) -> Any:
        from aiohttp import web

        response = web.StreamResponse(status=500)
        response.content_type = "application/json"
        await response.prepare(request)
        sent = cloud.record(request)
        try:
            for _ in range(64):
                await response.write(bytes(MB))
                sent.bytes_written += MB
            sent.finished = True
        except ConnectionError:
            pass
        return response

    cloud.tamper("models/", error_500)
    with pytest.raises(InternalServerError):
        await client.list_models()
    assert not cloud.sent[-1].finished


async def test_stream_that_is_not_audio_fails_before_its_first_chunk(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """An HTML page or zeros labelled audio/mpeg never reach the player."""
    for body in (b"<html>502</html>", bytes(4096)):
        cloud.tamper("tts/", raw_body(body, "audio/mpeg"), times=1)
        received: list[bytes] = []
        with pytest.raises(InvalidResponseError):
            async for chunk in client.tts_stream(
                GREETING, model="piper", voice="en_US-joe-medium"
            ):
                received.append(chunk)
        assert received == []


# --- Time -------------------------------------------------------------------------


async def test_trickling_answer_times_out(
    session: aiohttp.ClientSession, cloud: HostileCloud
) -> None:
    """A byte now and then, each inside the read timeout, still times out."""
    client = make_client(session, cloud, first_byte_timeout=1.0)
    cloud.tamper("tts/", trickle(0.6))
    async with asyncio.timeout(60):  # the guard of this test, not the client's
        with pytest.raises(TtsAiTimeoutError):
            await client.tts(GREETING, model="piper", voice="en_US-joe-medium")
    assert falls_back(client.last_error)


async def test_trickling_stream_times_out(
    session: aiohttp.ClientSession, cloud: HostileCloud
) -> None:
    """A stream that trickles times out too."""
    client = make_client(session, cloud, first_byte_timeout=1.0)
    cloud.tamper("tts/", trickle(0.6))
    async with asyncio.timeout(60):
        with pytest.raises(TtsAiTimeoutError):
            async for _chunk in client.tts_stream(
                GREETING, model="piper", voice="en_US-joe-medium"
            ):
                pass


async def test_waiting_for_a_slot_counts_against_the_deadline(
    session: aiohttp.ClientSession, cloud: HostileCloud
) -> None:
    """A request queued behind busy slots fails at its deadline, never sent.

    Every slot is held by an open stream the cloud keeps trickling; the next
    request waits for a slot no longer than it would wait for an answer.
    """
    client = make_client(session, cloud, first_byte_timeout=1.0, connect_timeout=1.0)
    cloud.tamper("tts/", trickle(0.05))
    limit = client.plan_limits.concurrent_requests
    holders = [
        client.tts_stream(GREETING, model="piper", voice="en_US-joe-medium")
        for _ in range(limit)
    ]
    try:
        for holder in holders:
            await anext(holder)  # the stream is open and holds its slot
        async with asyncio.timeout(30):  # the guard of this test
            with pytest.raises(TtsAiTimeoutError):
                await client.tts(GREETING, model="piper", voice="en_US-joe-medium")
        assert cloud.requests.count("tts/") == limit
    finally:
        for holder in holders:
            await holder.aclose()


# --- URLs and extensions ------------------------------------------------------------


async def translated(client: TtsAiClient) -> Any:
    """Translate a real recording (its audio_url as the cloud sent it)."""
    return await client.translate(
        await speech_wav(), filename="speech.wav", target_language="es"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/v1/results/x.mp3",
        "//evil.example/x.mp3",
        "http://127.0.0.1:1/v1/results/x.mp3",
    ],
)
async def test_foreign_result_url_is_refused_without_a_request(
    client: TtsAiClient, cloud: HostileCloud, url: str
) -> None:
    """The key never goes to a foreign host; the error falls back."""
    cloud.tamper("translate/", result_url(url))
    translation = await translated(client)
    before = len(cloud.requests)
    with pytest.raises(ForeignUrlError) as caught:
        await client.download(translation.audio_url)
    assert unreadable(caught.value)
    assert len(cloud.requests) == before


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "/v1/results/a\x00b.mp3",
        "/v1/results/a\r\nX-Injected: 1",
        "/v1/results/" + "a" * 5000,
        "http://127.0.0.1:99999/x",
    ],
    ids=lambda url: repr(url[:24]),
)
async def test_malformed_result_url_is_one_typed_error(
    client: TtsAiClient, cloud: HostileCloud, url: str
) -> None:
    """A URL the cloud mangled is InvalidResponseError, not a ValueError."""
    cloud.tamper("translate/", result_url(url))
    translation = await translated(client)
    with pytest.raises(InvalidResponseError) as caught:
        await client.download(translation.audio_url)
    assert unreadable(caught.value)


@pytest.mark.parametrize("url", [12345, ["x"], {"u": 1}])
async def test_result_url_of_the_wrong_type_is_one_typed_error(
    client: TtsAiClient, cloud: HostileCloud, url: Any
) -> None:
    """An audio_url that is not a string makes the answer unreadable."""
    cloud.tamper("translate/", result_url(url))
    with pytest.raises(InvalidResponseError):
        await translated(client)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("results/x.svg", "application/octet-stream"),
        ("results/x.svg", "image/svg+xml"),
        ("results/a/c", "application/octet-stream"),
        ("results/x.html", "text/html"),
    ],
)
async def test_the_cloud_never_chooses_the_file_extension(
    client: TtsAiClient, cloud: HostileCloud, path: str, content_type: str
) -> None:
    """A download's format is an audio type, from its Content-Type or the request."""
    audio = await speech_wav()
    cloud.tamper(path, raw_body(audio, content_type))
    url = f"{cloud.base_url}{path}"
    with pytest.raises(InvalidResponseError):
        await client.download(url)
    if content_type == "application/octet-stream":
        result = await client.download(url, format="wav")
        assert result.format == "wav"
        assert result.content_type == "audio/wav"


async def test_audio_typed_download_keeps_its_audio_format(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """An .svg URL serving audio/mpeg is stored as mp3: the type decides."""
    cloud.tamper("results/x.svg", raw_body(b"ID3" + bytes(2000), "audio/mpeg"))
    result = await client.download(f"{cloud.base_url}results/x.svg")
    assert result.format == "mp3"


# --- Counts -------------------------------------------------------------------------


async def test_too_many_stems_are_refused(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """300 stems where a separation has at most 6: the answer is unreadable."""
    cloud.tamper("results/*", stems(300))
    with pytest.raises(InvalidResponseError) as caught:
        await client.get_result("task_abc")
    assert unreadable(caught.value)


async def test_the_contracts_stem_count_is_accepted(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """Six stems, the contract's most, are fine."""
    cloud.tamper("results/*", stems(ep.MAX_STEMS))
    status_ = await client.get_result("task_abc")
    assert len(status_.urls) == ep.MAX_STEMS


# --- Catalogue: total and pages -----------------------------------------------------


async def test_voices_keep_total_and_page_through(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """A partial page (total above what came) is followed by the next pages."""
    page_size = 5

    def paged(document: Any, request: Any) -> Any:
        offset = int(request.query.get(ep.VOICES_OFFSET_PARAM, 0))
        voices = document["voices"]
        return {
            "voices": voices[offset : offset + page_size],
            "total": len(voices),
        }

    cloud.tamper("voices/", json_body(paged))
    voices = await client.list_voices()
    assert voices.total is not None
    assert voices.total > page_size
    assert len(voices) == voices.total
    assert voices.complete
    assert len({voice.id for voice in voices}) == voices.total
    assert cloud.requests.count("voices/") == math.ceil(voices.total / page_size)


async def test_voices_stop_when_pages_repeat(
    client: TtsAiClient, cloud: HostileCloud
) -> None:
    """A cloud that ignores the page parameter is asked a bounded number of times."""
    cloud.tamper(
        "voices/",
        json_body(lambda doc, request: {"voices": doc["voices"][:3], "total": 10**9}),
    )
    voices = await client.list_voices()
    assert len(voices) == 3
    assert not voices.complete
    assert cloud.requests.count("voices/") == 2


# --- Joining off the loop ------------------------------------------------------------


async def test_joining_parts_runs_off_the_event_loop(
    session: aiohttp.ClientSession,
    cloud: HostileCloud,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long multi-part WAV is joined in a worker thread, not in the loop."""
    threads: list[threading.Thread] = []
    real_join = synthesis_module.join_audio

    def spy(parts: list[bytes], fmt: str) -> bytes:
        threads.append(threading.current_thread())
        return real_join(parts, fmt)

    monkeypatch.setattr(synthesis_module, "join_audio", spy)
    client = make_client(session, cloud, max_text_chars=60)
    second = pcm_to_wav(bytes(32_000), 16_000)
    cloud.tamper("tts/", raw_body(second, "audio/wav"))
    text = " ".join(f"Sentence number {n} is here." for n in range(20))
    result = await client.tts(
        text, model="piper", voice="en_US-joe-medium", format="wav"
    )
    assert result.format == "wav"
    assert threads
    assert threads[0] is not threading.main_thread()
