"""Home Assistant, as far as a satellite needs it: the websocket API and two REST calls.

* :class:`HomeAssistant` — one authenticated websocket connection: commands
  and subscriptions by id, binary audio frames, and a reader task that notices
  when the connection goes (Home Assistant restarting, the network dropping).
* :func:`choose_pipeline` — an Assist pipeline by id or name, or the preferred.
* :func:`run_turn` — one ``assist_pipeline/run`` from audio to the intent's
  reply, streaming the audio until Home Assistant (or the local fallback
  detector) says the speaker has stopped. When the wake word still awaits its
  second opinion (:mod:`.verify`), the run ends at speech-to-text and the
  intent runs only once the wake word is confirmed.
* :meth:`HomeAssistant.reply_audio` — the reply spoken by the pipeline's TTS
  engine, as WAV. The websocket run has no option for the audio format (its
  ``tts-end`` URL serves MP3), so the satellite ends the run at the intent and
  asks the same engine, voice and language for WAV at the speaker's own rate
  through ``/api/tts_get_url``: one synthesis, and no MP3 decoder on the Pi.
* :class:`Backoff` — the delays between reconnection attempts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
from dataclasses import dataclass
import itertools
import json
import logging
import random
from typing import Any

import aiohttp
import numpy as np

from .vad import EndOfSpeechDetector
from .wav import Pcm, WavError, parse_wav

_LOGGER = logging.getLogger(__name__)

ASSIST_SAMPLE_RATE = 16000
HEARTBEAT_SECONDS = 20.0
"""Ping this often: a dead network shows within two heartbeats."""
CONNECT_TIMEOUT_SECONDS = 15.0
COMMAND_TIMEOUT_SECONDS = 30.0
REPLY_AUDIO_TIMEOUT_SECONDS = 120.0
RUN_TIMEOUT_SECONDS = 300
WAKE_WORD_RUN_TIMEOUT_SECONDS = 3600
"""A wake-word run listens until the word comes; it is renewed after this."""

EventCallback = Callable[[str, dict[str, Any]], None]


class HomeAssistantError(Exception):
    """Something Home Assistant answered, or failed to answer."""


class AuthenticationError(HomeAssistantError):
    """The access token was refused: retrying will not help."""


class ConnectionLostError(HomeAssistantError):
    """Home Assistant cannot be reached right now: reconnect later."""


class CommandError(HomeAssistantError):
    """A websocket command came back with an error."""

    def __init__(self, code: str, message: str) -> None:
        """Keep Home Assistant's error code and message."""
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class PipelineNotFoundError(HomeAssistantError):
    """The Assist pipeline the user named does not exist."""


class WakeWordRejectedError(HomeAssistantError):
    """The wake word's second opinion said no: the turn ended before its intent."""


class PipelineRunError(HomeAssistantError):
    """A turn failed inside the pipeline (nothing heard, engine error…)."""

    def __init__(self, code: str, message: str) -> None:
        """Keep the pipeline's error code and message."""
        super().__init__(f"{message} ({code})")
        self.code = code


@dataclass(frozen=True)
class Pipeline:
    """The parts of an Assist pipeline the satellite uses."""

    id: str
    name: str
    language: str
    stt_engine: str | None
    tts_engine: str | None
    tts_language: str | None
    tts_voice: str | None
    wake_word_entity: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pipeline:
        """Build from an item of ``assist_pipeline/pipeline/list``."""
        return cls(
            id=data["id"],
            name=data["name"],
            language=data.get("language") or "",
            stt_engine=data.get("stt_engine"),
            tts_engine=data.get("tts_engine"),
            tts_language=data.get("tts_language"),
            tts_voice=data.get("tts_voice"),
            wake_word_entity=data.get("wake_word_entity"),
        )


@dataclass
class TurnResult:
    """What one turn produced."""

    heard: str = ""
    """The speech-to-text result."""
    reply: str = ""
    """What the conversation agent answered."""
    conversation_id: str | None = None
    continue_conversation: bool = False
    """The agent asked a question: the next turn should start by itself."""


def websocket_url(base_url: str) -> str:
    """``http://host:8123`` -> ``ws://host:8123/api/websocket``."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/api/websocket"
    if base.startswith("http://"):
        return "ws://" + base.removeprefix("http://") + "/api/websocket"
    raise ValueError(f"not an http(s) URL: {base_url!r}")


def choose_pipeline(
    pipelines: list[Pipeline], preferred_id: str | None, wanted: str | None
) -> Pipeline:
    """The pipeline with id or name ``wanted`` (any case), else the preferred one."""
    if wanted:
        folded = wanted.casefold()
        for pipeline in pipelines:
            if wanted == pipeline.id or folded == pipeline.name.casefold():
                return pipeline
        names = ", ".join(repr(p.name) for p in pipelines) or "none"
        raise PipelineNotFoundError(
            f"Home Assistant has no Assist pipeline named {wanted!r}; it has: {names}"
        )
    for pipeline in pipelines:
        if pipeline.id == preferred_id:
            return pipeline
    if pipelines:
        return pipelines[0]
    raise PipelineNotFoundError("Home Assistant has no Assist pipeline")


class Backoff:
    """Reconnection delays: 1 s, doubling to a cap, with a little jitter.

    The jitter keeps a house full of satellites from knocking on Home
    Assistant's door in the same second after it restarts.
    """

    def __init__(self, first: float = 1.0, cap: float = 30.0) -> None:
        """Delays start at ``first`` seconds and never exceed ``cap``."""
        self.first = first
        self.cap = cap
        self._next = first

    def reset(self) -> None:
        """After a good connection: start again from the first delay."""
        self._next = self.first

    def next_delay(self) -> float:
        """The delay before the next attempt (each call doubles the base)."""
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return min(self.cap, delay * random.uniform(0.9, 1.1))


class _Subscription:
    """Events for one websocket command id, ended by ``None`` when the link goes."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()


class EventStream:
    """The events of one subscription (iterate it), and a way to end it early.

    Iterating raises :class:`ConnectionLostError` if the link goes.
    """

    def __init__(
        self, ha: HomeAssistant, ident: int, subscription: _Subscription
    ) -> None:
        """Events for command ``ident``."""
        self._ha = ha
        self._ident = ident
        self._subscription = subscription

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Each event, until the link goes."""
        while (event := await self._subscription.queue.get()) is not None:
            yield event
        raise ConnectionLostError("connection lost")

    async def cancel(self) -> None:
        """Unsubscribe: Home Assistant cancels a pipeline run it belongs to."""
        with contextlib.suppress(CommandError, ConnectionLostError):
            await self._ha.command(
                {"type": "unsubscribe_events", "subscription": self._ident}
            )


class HomeAssistant:
    """One authenticated websocket connection to Home Assistant.

    The token is kept in a private attribute and sent only in the auth message
    and the ``Authorization`` header; it is never logged or put in a repr.
    """

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, token: str
    ) -> None:
        """Prepare a connection to ``base_url`` (``http://host:8123``)."""
        self.base_url = base_url.rstrip("/")
        self._session = session
        self.__token = token
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._results: dict[int, asyncio.Future[Any]] = {}
        self._subscriptions: dict[int, _Subscription] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self.version = ""

    def __repr__(self) -> str:
        """Name the server only (never the token)."""
        return f"<HomeAssistant {self.base_url}>"

    # --- connection ---------------------------------------------------------

    async def connect(self) -> None:
        """Open the websocket and authenticate.

        Raise :class:`AuthenticationError` for a refused token and
        :class:`ConnectionLostError` when Home Assistant is not there.
        """
        try:
            self._ws = await self._session.ws_connect(
                websocket_url(self.base_url),
                heartbeat=HEARTBEAT_SECONDS,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                max_msg_size=0,
            )
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                hello = await self._ws.receive_json()
                if hello.get("type") != "auth_required":
                    raise ConnectionLostError(f"unexpected greeting: {hello}")
                await self._ws.send_json({"type": "auth", "access_token": self.__token})
                answer = await self._ws.receive_json()
        except (aiohttp.ClientError, OSError, TimeoutError, TypeError) as err:
            # TypeError: receive_json on a CLOSE frame (the server went away).
            await self.close()
            raise ConnectionLostError(
                f"cannot reach Home Assistant at {self.base_url}: {_describe(err)}"
            ) from err
        if answer.get("type") == "auth_invalid":
            await self.close()
            raise AuthenticationError(
                "Home Assistant refused the access token"
                f" ({answer.get('message', 'auth_invalid')}): create a long-lived"
                " access token on your Home Assistant profile page and put it in"
                " the token file"
            )
        if answer.get("type") != "auth_ok":
            await self.close()
            raise ConnectionLostError(f"unexpected answer to auth: {answer}")
        self.version = str(answer.get("ha_version", ""))
        self._closed.clear()
        self._reader = asyncio.create_task(self._read(), name="ha-websocket-reader")

    async def close(self) -> None:
        """Close the connection (safe to call at any time, more than once)."""
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._reader = None
        if self._ws is not None:
            await self._ws.close()
        self._fail_pending()

    @property
    def closed(self) -> bool:
        """Whether the connection has gone (closed by either side)."""
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Return when the connection goes."""
        await self._closed.wait()

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                payload = json.loads(message.data)
                for item in payload if isinstance(payload, list) else [payload]:
                    self._dispatch(item)
        except (aiohttp.ClientError, OSError) as err:
            _LOGGER.debug("Websocket read failed: %s", _describe(err))
        finally:
            self._fail_pending()

    def _dispatch(self, message: dict[str, Any]) -> None:
        ident = message.get("id")
        if message.get("type") == "result":
            future = self._results.pop(ident, None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(message)
        elif message.get("type") == "event" and (
            subscription := self._subscriptions.get(ident)  # type: ignore[arg-type]
        ):
            subscription.queue.put_nowait(message["event"])

    def _fail_pending(self) -> None:
        self._closed.set()
        for future in self._results.values():
            if not future.done():
                future.set_exception(ConnectionLostError("connection lost"))
        self._results.clear()
        for subscription in self._subscriptions.values():
            subscription.queue.put_nowait(None)

    # --- commands -----------------------------------------------------------

    async def command(self, message: dict[str, Any]) -> Any:
        """Send a command and return its result; raise :class:`CommandError`."""
        ident, future = await self._send(message)
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                answer = await future
        except TimeoutError as err:
            raise ConnectionLostError(f"no answer to {message['type']}") from err
        finally:
            self._results.pop(ident, None)
        return _result_or_raise(answer)

    async def _send(self, message: dict[str, Any]) -> tuple[int, asyncio.Future[Any]]:
        if self._ws is None or self.closed:
            raise ConnectionLostError("not connected")
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._results[ident] = future
        try:
            await self._ws.send_json({**message, "id": ident})
        except (aiohttp.ClientError, OSError) as err:
            self._results.pop(ident, None)
            raise ConnectionLostError(f"sending failed: {_describe(err)}") from err
        return ident, future

    async def send_audio(self, frame: bytes) -> None:
        """Send one binary frame (handler id byte + audio)."""
        if self._ws is None or self.closed:
            raise ConnectionLostError("not connected")
        try:
            await self._ws.send_bytes(frame)
        except (aiohttp.ClientError, OSError) as err:
            raise ConnectionLostError(
                f"sending audio failed: {_describe(err)}"
            ) from err

    async def pipelines(self) -> tuple[list[Pipeline], str | None]:
        """Every Assist pipeline, and the id of the preferred one."""
        result = await self.command({"type": "assist_pipeline/pipeline/list"})
        pipelines = [Pipeline.from_json(item) for item in result["pipelines"]]
        return pipelines, result.get("preferred_pipeline")

    @contextlib.asynccontextmanager
    async def subscription(self, message: dict[str, Any]) -> AsyncIterator[EventStream]:
        """Send a subscribing command; yield its :class:`EventStream`."""
        subscription = _Subscription()
        ident, future = await self._send(message)
        self._subscriptions[ident] = subscription
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                _result_or_raise(await future)
            yield EventStream(self, ident, subscription)
        finally:
            self._subscriptions.pop(ident, None)
            self._results.pop(ident, None)

    # --- REST ---------------------------------------------------------------

    async def reply_audio(
        self, pipeline: Pipeline, text: str, sample_rate: int | None
    ) -> Pcm:
        """``text`` spoken by the pipeline's TTS engine, as 16-bit mono WAV.

        ``sample_rate``: ask Home Assistant to convert to this rate (the
        speaker's), so the Pi does not have to; None keeps the engine's rate.
        """
        if not pipeline.tts_engine:
            raise PipelineRunError(
                "tts-not-configured", f"pipeline {pipeline.name!r} has no TTS engine"
            )
        options: dict[str, Any] = {
            "preferred_format": "wav",
            "preferred_sample_channels": 1,
            "preferred_sample_bytes": 2,
        }
        if sample_rate:
            options["preferred_sample_rate"] = sample_rate
        if pipeline.tts_voice:
            options["voice"] = pipeline.tts_voice
        request = {
            "engine_id": pipeline.tts_engine,
            "message": text,
            "language": pipeline.tts_language or pipeline.language,
            "options": options,
        }
        headers = {"Authorization": f"Bearer {self.__token}"}
        timeout = aiohttp.ClientTimeout(total=REPLY_AUDIO_TIMEOUT_SECONDS)
        try:
            async with self._session.post(
                f"{self.base_url}/api/tts_get_url",
                json=request,
                headers=headers,
                timeout=timeout,
            ) as response:
                if response.status == 401:
                    raise AuthenticationError("Home Assistant refused the token")
                if response.status != 200:
                    raise PipelineRunError(
                        "tts-failed",
                        f"Home Assistant could not speak the reply:"
                        f" HTTP {response.status} {await response.text()}",
                    )
                path = (await response.json())["path"]
            # The path, on the address we reach Home Assistant at (the full
            # "url" it returns may be an internal one).
            async with self._session.get(
                f"{self.base_url}{path}", timeout=timeout
            ) as response:
                if response.status != 200:
                    raise PipelineRunError(
                        "tts-failed",
                        f"the reply's audio failed: HTTP {response.status}",
                    )
                data = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            raise ConnectionLostError(
                f"fetching the reply audio failed: {_describe(err)}"
            ) from err
        try:
            return parse_wav(data)
        except WavError as err:
            raise PipelineRunError("tts-failed", f"the reply audio: {err}") from err


def _result_or_raise(answer: dict[str, Any]) -> Any:
    if answer.get("success"):
        return answer.get("result")
    error = answer.get("error") or {}
    raise CommandError(str(error.get("code", "unknown")), str(error.get("message", "")))


def _describe(err: BaseException) -> str:
    return str(err) or type(err).__name__


# --- one turn -----------------------------------------------------------------


async def run_turn(
    ha: HomeAssistant,
    pipeline: Pipeline,
    audio: AsyncIterator[bytes],
    *,
    conversation_id: str | None = None,
    wake_word: bool = False,
    end_of_speech: EndOfSpeechDetector | None = None,
    on_event: EventCallback | None = None,
    on_audio_sent: Callable[[], None] | None = None,
    confirmation: asyncio.Future[bool] | None = None,
) -> TurnResult:
    """Stream ``audio`` (16 kHz mono 16-bit) through the pipeline up to the intent.

    With ``wake_word`` the run starts at the wake-word stage and listens until
    the word is spoken. Audio stops flowing when Home Assistant reports the
    end of speech, when ``end_of_speech`` (the local fallback) does, or when
    ``audio`` runs out (a file). ``on_audio_sent`` is called once the first
    audio frame has gone to Home Assistant. Raise :class:`PipelineRunError` when a stage
    fails, :class:`PipelineNotFoundError` if the pipeline went away and
    :class:`ConnectionLostError` if Home Assistant did.

    ``confirmation``: the on-device wake word's second opinion, still to come.
    The run then ends at speech-to-text, so the command is heard meanwhile;
    the intent runs on what was heard once the answer is yes. When it is no,
    the run is cancelled (or its intent never starts) and
    :class:`WakeWordRejectedError` is raised.
    """
    message: dict[str, Any] = {
        "type": "assist_pipeline/run",
        "start_stage": "wake_word" if wake_word else "stt",
        "end_stage": "intent" if confirmation is None else "stt",
        "input": {"sample_rate": ASSIST_SAMPLE_RATE},
        "pipeline": pipeline.id,
        "conversation_id": conversation_id,
        "timeout": WAKE_WORD_RUN_TIMEOUT_SECONDS if wake_word else RUN_TIMEOUT_SECONDS,
    }
    if wake_word:
        message["input"]["timeout"] = 0  # listen for the word until it comes
    result = TurnResult(conversation_id=conversation_id)
    audio_done = asyncio.Event()
    # The local detector judges the command only: not the wait for a wake word.
    command_started = asyncio.Event()
    sender: asyncio.Task[None] | None = None
    handler: int | None = None
    try:
        async with ha.subscription(message) as events:

            async def follow() -> None:
                nonlocal sender, handler
                async for event in events:
                    kind, data = event["type"], event.get("data") or {}
                    _LOGGER.debug("Pipeline event %s", kind)
                    if on_event is not None:
                        on_event(kind, data)
                    if kind == "run-start":
                        result.conversation_id = data.get("conversation_id")
                        handler = data["runner_data"]["stt_binary_handler_id"]
                        sender = asyncio.create_task(
                            _stream_audio(
                                ha,
                                handler_id=handler,
                                audio=audio,
                                done=audio_done,
                                command_started=command_started,
                                end_of_speech=end_of_speech,
                                on_first_frame=on_audio_sent,
                            )
                        )
                    elif kind == "stt-start":
                        command_started.set()
                    elif kind in {"stt-vad-end", "stt-end"}:
                        audio_done.set()
                        if kind == "stt-end":
                            result.heard = str(data["stt_output"]["text"]).strip()
                    elif _run_ended(kind, data, result):
                        break

            try:
                if confirmation is None:
                    await follow()
                else:
                    await _unless_rejected(follow(), confirmation, events)
            except asyncio.CancelledError:
                # The satellite gave the run up (a trigger came before the
                # wake word, or it is stopping): Home Assistant ends it too,
                # rather than wait for audio that will not come.
                await _give_up(ha, events, handler, sender)
                raise
        if confirmation is not None:
            # Speech-to-text is done; the intent waits for the second opinion.
            if not await confirmation:
                raise WakeWordRejectedError("not the wake word after all")
            await _run_intent(ha, pipeline, result, on_event)
    except CommandError as err:
        if err.code == "pipeline-not-found":
            raise PipelineNotFoundError(
                f"the Assist pipeline {pipeline.name!r} no longer exists"
            ) from err
        raise PipelineRunError(err.code, err.message) from err
    finally:
        audio_done.set()
        await _stop_sending(sender)
    return result


async def _give_up(
    ha: HomeAssistant,
    events: EventStream,
    handler: int | None,
    sender: asyncio.Task[None] | None,
) -> None:
    """End a run the satellite no longer follows: its audio, then the run.

    The audio is ended first because Home Assistant's Wyoming wake-word
    engine waits for the next chunk before it lets a cancelled run go: a run
    unsubscribed in mid-stream would hold its connection to the engine until
    its time limit.
    """
    await _stop_sending(sender)
    if handler is not None:
        with contextlib.suppress(ConnectionLostError):
            await ha.send_audio(bytes([handler]))  # the end of the audio
    await events.cancel()


async def _stop_sending(sender: asyncio.Task[None] | None) -> None:
    """Stop the task that streams the run's audio, and wait until it has."""
    if sender is None:
        return
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError, ConnectionLostError):
        await sender


def _run_ended(kind: str, data: dict[str, Any], result: TurnResult) -> bool:
    """Read the intent's answer and the run's end; raise a failed stage's error."""
    if kind == "intent-end":
        _read_intent(data["intent_output"], result)
    elif kind == "error":
        raise PipelineRunError(data.get("code", "error"), data["message"])
    return kind == "run-end"


async def _unless_rejected(
    follow: Awaitable[None], confirmation: asyncio.Future[bool], events: EventStream
) -> None:
    """``follow`` the run; cancel it if ``confirmation`` says no before it ends."""
    following = asyncio.ensure_future(follow)
    either: set[asyncio.Future[Any]] = {following, confirmation}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if confirmation.done() and not confirmation.result():
            await events.cancel()
            raise WakeWordRejectedError("not the wake word after all")
        await following
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following


async def _run_intent(
    ha: HomeAssistant,
    pipeline: Pipeline,
    result: TurnResult,
    on_event: EventCallback | None,
) -> None:
    """The pipeline's intent stage on what its speech-to-text heard."""
    message: dict[str, Any] = {
        "type": "assist_pipeline/run",
        "start_stage": "intent",
        "end_stage": "intent",
        "input": {"text": result.heard},
        "pipeline": pipeline.id,
        "conversation_id": result.conversation_id,
        "timeout": RUN_TIMEOUT_SECONDS,
    }
    async with ha.subscription(message) as events:
        async for event in events:
            kind, data = event["type"], event.get("data") or {}
            if on_event is not None:
                on_event(kind, data)
            if _run_ended(kind, data, result):
                break


async def _stream_audio(
    ha: HomeAssistant,
    *,
    handler_id: int,
    audio: AsyncIterator[bytes],
    done: asyncio.Event,
    command_started: asyncio.Event,
    end_of_speech: EndOfSpeechDetector | None,
    on_first_frame: Callable[[], None] | None = None,
) -> None:
    """Send audio frames until told to stop; then the empty end-of-audio frame."""
    prefix = bytes([handler_id])
    async for chunk in audio:
        if done.is_set():
            return  # Home Assistant ended the audio itself
        await ha.send_audio(prefix + chunk)
        if on_first_frame is not None:
            on_first_frame()
            on_first_frame = None
        if (
            end_of_speech is not None
            and command_started.is_set()
            and end_of_speech.feed(np.frombuffer(chunk, dtype="<i2"))
        ):
            _LOGGER.info("End of speech (local detector: %s)", end_of_speech.end_reason)
            break
    await ha.send_audio(prefix)  # an empty chunk: the audio has ended


def _read_intent(output: dict[str, Any], result: TurnResult) -> None:
    response = output.get("response") or {}
    speech = (response.get("speech") or {}).get("plain") or {}
    result.reply = str(speech.get("speech", "")).strip()
    result.conversation_id = output.get("conversation_id") or result.conversation_id
    result.continue_conversation = bool(output.get("continue_conversation"))
