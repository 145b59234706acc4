"""The satellite itself: connect, wait for a turn, run it, speak, and survive outages.

Audio comes from an :class:`AudioInput` (the microphone, or a WAV file for
``--input``) and goes to an :class:`AudioOutput` (the speaker, or a WAV file
for ``--output``), so the same loop serves a Pi in the kitchen and a test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
from dataclasses import dataclass, field
import logging
from pathlib import Path
import signal
import sys
from typing import Any, Protocol

import aiohttp

from .cues import Cue, cue_audio
from .ha import (
    Backoff,
    CommandError,
    ConnectionLostError,
    HomeAssistant,
    Pipeline,
    PipelineRunError,
    TurnResult,
    WakeWordRejectedError,
    choose_pipeline,
    run_turn,
)
from .resample import resample
from .vad import EndOfSpeechDetector
from .verify import WakeWordVerifier
from .wake import WakeWordListener
from .wav import Pcm, write_wav

_LOGGER = logging.getLogger(__name__)

ASSIST_SAMPLE_RATE = 16000
CHUNK_SECONDS = 0.03
TRIGGER_POLL_SECONDS = 0.1
WAKE_WORD_SOURCE = "wake word"
VERIFY_TIMEOUT_SECONDS = 10.0
"""A second opinion later than this is not waited for: the wake word stands."""
# How a run from Home Assistant's wake-word stage may end, before the word was
# heard, without anything having gone wrong: the satellite listens again, and
# nothing is said or sounded.
WAKE_WORD_RUN_RENEWALS = {
    "timeout": "the run reached its time limit",
    "duplicate_wake_up_detected": "another satellite answered that wake word",
}


class AudioInput(Protocol):
    """Where a turn's speech comes from."""

    def start_listening(self) -> None:
        """A turn begins: deliver audio from now on."""

    def stop_listening(self) -> None:
        """The turn no longer needs audio."""

    def chunks(self) -> AsyncIterator[bytes]:
        """16 kHz mono 16-bit chunks; a file's run out, a microphone's do not."""
        ...


class AudioOutput(Protocol):
    """Where replies and cues go."""

    sample_rate: int | None
    """The rate to ask Home Assistant for; None: whatever the engine makes."""

    async def play(self, pcm: Pcm) -> None:
        """Play (or store) a reply."""

    async def cue(self, cue: Cue) -> None:
        """Play a short cue (or nothing, where no one listens)."""


class FileInput:
    """A WAV file as the microphone: the same speech for every turn."""

    def __init__(self, pcm: Pcm) -> None:
        """Take the file's audio (any rate) and convert it to 16 kHz once."""
        samples = resample(pcm.samples, pcm.sample_rate, ASSIST_SAMPLE_RATE)
        self.audio = Pcm(samples, ASSIST_SAMPLE_RATE).to_bytes()

    def start_listening(self) -> None:
        """Nothing to start: the file is always there."""

    def stop_listening(self) -> None:
        """Nothing to stop."""

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file in 30 ms chunks, as fast as they are taken."""
        size = round(ASSIST_SAMPLE_RATE * CHUNK_SECONDS) * 2
        for start in range(0, len(self.audio), size):
            yield self.audio[start : start + size]
            await asyncio.sleep(0)  # let the websocket reader run


class FileOutput:
    """Replies go to a WAV file (the last reply wins); no cues."""

    sample_rate: int | None = None

    def __init__(self, path: Path) -> None:
        """Write replies to ``path``."""
        self.path = path
        self.written = False

    async def play(self, pcm: Pcm) -> None:
        """Write the reply, off the event loop."""
        await asyncio.get_running_loop().run_in_executor(
            None, write_wav, self.path, pcm
        )
        self.written = True
        _LOGGER.info("Reply audio (%.1f s) written to %s", pcm.duration, self.path)

    async def cue(self, cue: Cue) -> None:
        """Files get no cues."""


class SpeakerOutput:
    """Replies and cues on a sound device (an ``audio.Speaker``)."""

    def __init__(self, speaker: Any, *, cues: bool = True) -> None:
        """Play through ``speaker``; ``cues=False`` keeps the beeps quiet."""
        self._speaker = speaker
        self.sample_rate: int | None = speaker.sample_rate
        self._cues = cues

    async def play(self, pcm: Pcm) -> None:
        """Play the reply and wait for it to finish."""
        await self._speaker.play(pcm)

    async def cue(self, cue: Cue) -> None:
        """Play a generated cue at the speaker's rate."""
        if self._cues:
            await self._speaker.play(cue_audio(cue, self._speaker.sample_rate))


@dataclass
class Settings:
    """What the command line asked for."""

    url: str
    token: str = field(repr=False)
    pipeline: str | None = None
    one_shot: bool = False
    """Run one turn and exit (``--input``/``--output`` without a trigger)."""
    ha_wake_word: bool = False
    """Stream all the time to the pipeline's wake-word engine in Home Assistant."""
    trigger_file: Path | None = None
    connect_timeout: float = 30.0
    """One-shot mode: give up when Home Assistant is unreachable this long."""
    max_backoff: float = 30.0


class Satellite:
    """Runs turns against Home Assistant until stopped; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        audio_in: AudioInput,
        audio_out: AudioOutput,
        wake_listener: WakeWordListener | None = None,
        wake_verifier: WakeWordVerifier | None = None,
    ) -> None:
        """Wire the satellite to its settings and audio ends.

        With ``wake_listener`` the microphone is listened to all the time and
        the wake word, heard on this machine, starts a turn (so do the
        triggers, as without it). With ``wake_verifier`` too, each detection
        gets a second opinion before its command's intent runs.
        """
        self.settings = settings
        self.audio_in = audio_in
        self.audio_out = audio_out
        self.wake_listener = wake_listener
        self.wake_verifier = wake_verifier
        self.wake_to_audio_seconds: list[float] = []
        """Per wake-word turn: from the detection to the first command audio
        sent to Home Assistant (the benchmark reads it)."""
        self._woken_at: float | None = None
        self._wake_word_heard: bool | None = None
        """In a run from Home Assistant's wake-word stage: whether its engine
        heard the word (False: it stopped listening without); None until it
        has said either."""
        self._wake_word_retry = Backoff(cap=settings.max_backoff)
        self._pause_before_listening = 0.0
        self._stop = asyncio.Event()
        self._triggers: asyncio.Queue[str] = asyncio.Queue()
        self._background: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """Ask the satellite to finish (SIGTERM, Ctrl-C)."""
        self._stop.set()

    def trigger(self, source: str) -> None:
        """Start a turn when idle (Enter, SIGUSR1, the trigger file)."""
        self._triggers.put_nowait(source)

    async def run(self) -> int:
        """Serve until stopped (one turn in one-shot mode); return the exit code.

        :class:`~.ha.AuthenticationError` and
        :class:`~.ha.PipelineNotFoundError` are left to the caller: no retry
        fixes them.
        """
        loop = asyncio.get_running_loop()
        with self._signal_handlers(loop):
            work = asyncio.create_task(self._connect_and_serve())
            stopped = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait({work, stopped}, return_when="FIRST_COMPLETED")
            finally:
                stopped.cancel()
                if not work.done():
                    _LOGGER.info("Stopping")
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await work
            if work.cancelled():
                return 0
            return work.result()

    @contextlib.contextmanager
    def _signal_handlers(self, loop: asyncio.AbstractEventLoop) -> Any:
        handled = [signal.SIGTERM, signal.SIGINT]
        for signum in handled:
            loop.add_signal_handler(signum, self.stop)
        if not self.settings.one_shot:
            handled.append(signal.SIGUSR1)
            loop.add_signal_handler(signal.SIGUSR1, self.trigger, "signal")
        reading_stdin = self._watch_stdin(loop)
        try:
            yield
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
            if reading_stdin:
                loop.remove_reader(sys.stdin.fileno())

    def _watch_stdin(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Push-to-talk with Enter, when there is a terminal to read."""
        if self.settings.one_shot:
            return False
        if sys.stdin is None:
            return False
        try:
            fd = sys.stdin.fileno()
            if not sys.stdin.isatty():
                return False  # /dev/null under systemd: nothing will come
            loop.add_reader(fd, self._stdin_ready, loop, fd)
        except (OSError, ValueError, NotImplementedError):
            return False
        return True

    def _stdin_ready(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        if sys.stdin.readline():
            self.trigger("enter")
        else:  # end of input: stop watching, or the loop would spin
            loop.remove_reader(fd)

    async def _connect_and_serve(self) -> int:
        loop = asyncio.get_running_loop()
        backoff = Backoff(cap=self.settings.max_backoff)
        give_up_at = loop.time() + self.settings.connect_timeout
        outage_announced = False
        async with aiohttp.ClientSession() as session:
            while True:
                ha = HomeAssistant(session, self.settings.url, self.settings.token)
                try:
                    pipeline = await self._connect(ha)
                    backoff.reset()
                    outage_announced = False
                    if self.settings.one_shot:
                        return await self._one_turn(ha, pipeline)
                    await self._serve(ha, pipeline)
                except ConnectionLostError as err:
                    if self.settings.one_shot and loop.time() >= give_up_at:
                        print(f"satellite: {err}", file=sys.stderr)
                        return 1
                    delay = backoff.next_delay()
                    _LOGGER.warning(
                        "Home Assistant connection: %s; reconnecting in %.1f s",
                        err,
                        delay,
                    )
                    if not outage_announced:
                        outage_announced = True
                        await self._cue(Cue.ERROR)
                    await asyncio.sleep(delay)
                finally:
                    await ha.close()

    async def _connect(self, ha: HomeAssistant) -> Pipeline:
        await ha.connect()
        try:
            pipelines, preferred = await ha.pipelines()
        except CommandError as err:
            # "unknown_command" while Home Assistant is still starting up.
            raise ConnectionLostError(f"Assist is not ready: {err}") from err
        pipeline = choose_pipeline(pipelines, preferred, self.settings.pipeline)
        _LOGGER.info(
            "Connected to Home Assistant %s at %s; Assist pipeline %r",
            ha.version,
            ha.base_url,
            pipeline.name,
        )
        if self.settings.ha_wake_word and not pipeline.wake_word_entity:
            _LOGGER.warning(
                "Pipeline %r has no wake-word engine (set one in Settings > Voice"
                " assistants): using push-to-talk instead",
                pipeline.name,
            )
        return pipeline

    async def _one_turn(self, ha: HomeAssistant, pipeline: Pipeline) -> int:
        result = await self._turn(ha, pipeline, None)
        return 0 if result is not None else 1

    async def _serve(self, ha: HomeAssistant, pipeline: Pipeline) -> None:
        """Turns until stopped; raise :class:`ConnectionLostError` on an outage."""
        wake_word = self.settings.ha_wake_word and bool(pipeline.wake_word_entity)
        conversation_id: str | None = None
        follow_up = False
        while True:
            pre_roll: bytes | None = None
            clip: bytes | None = None
            if not follow_up and not wake_word:
                source = await self._next_trigger(ha)
                if source == WAKE_WORD_SOURCE:
                    assert self.wake_listener is not None
                    pre_roll = self.wake_listener.pre_roll()
                    clip = self.wake_listener.clip()
            if ha.closed:
                raise ConnectionLostError("connection lost")
            confirmation: asyncio.Future[bool] | None = None
            if clip is not None and self.wake_verifier is not None:
                # Judged beside the command, which starts streaming at once.
                confirmation = asyncio.ensure_future(
                    second_opinion(self.wake_verifier, clip)
                )
            try:
                if wake_word and not follow_up:
                    result = await self._home_assistant_listens(
                        ha, pipeline, conversation_id
                    )
                else:
                    result = await self._turn(
                        ha,
                        pipeline,
                        conversation_id,
                        pre_roll=pre_roll,
                        confirmation=confirmation,
                    )
            finally:
                if self.wake_listener is not None:
                    # Deaf for the refractory period from here: the reply has
                    # been played, and its tail must not wake the satellite.
                    self.wake_listener.rearm()
            # The agent asked something back: listen again without a trigger.
            follow_up = result is not None and result.continue_conversation
            conversation_id = result.conversation_id if result else None
            _drain(self._triggers)  # presses during the turn start nothing
            if wake_word and self._pause_before_listening:
                # A failing wake-word engine must not spin the CPU (or the log).
                await asyncio.sleep(self._pause_before_listening)
                self._pause_before_listening = 0.0

    async def _home_assistant_listens(
        self, ha: HomeAssistant, pipeline: Pipeline, conversation_id: str | None
    ) -> TurnResult | None:
        """A run from Home Assistant's wake-word stage, or a push-to-talk turn.

        A trigger (Enter, SIGUSR1, the trigger file) that comes before the
        wake word is heard ends the run and starts a turn at once, as it does
        while the satellite listens for the wake word itself.
        """
        # Reset here, not at the run's start: a run that fails to start
        # counts as the engine failing.
        self._wake_word_heard = None
        run = asyncio.create_task(
            self._turn(ha, pipeline, conversation_id, wake_word=True)
        )
        trigger = asyncio.create_task(self._next_trigger(ha, announce=False))
        try:
            await asyncio.wait({run, trigger}, return_when=asyncio.FIRST_COMPLETED)
            if run.done() or self._wake_word_heard:
                return await run  # a trigger during the command starts nothing
            source = trigger.result()
        finally:
            trigger.cancel()
            if not run.done():
                # Home Assistant's run is ended before anything else happens
                # (the next turn, or closing the connection on a stop).
                run.cancel()
                await asyncio.wait({run})
        _LOGGER.info("Turn triggered (%s)", source)
        return await self._turn(ha, pipeline, conversation_id)

    async def _next_trigger(self, ha: HomeAssistant, *, announce: bool = True) -> str:
        """Wait for the wake word / Enter / SIGUSR1 / the trigger file.

        ``announce``: say so in the log, and which it was.
        Raise :class:`ConnectionLostError` if the connection goes meanwhile.
        """
        waiters = {
            asyncio.create_task(self._triggers.get()),
            asyncio.create_task(ha.wait_closed()),
        }
        if self.settings.trigger_file is not None:
            waiters.add(asyncio.create_task(self._poll_trigger_file()))
        if self.wake_listener is not None:
            _LOGGER.info(
                "Ready: listening for %r (or a trigger)",
                self.wake_listener.model.phrase,
            )
            waiters.add(asyncio.create_task(self._listen_for_wake_word()))
        elif announce:
            _LOGGER.info("Ready: waiting for a trigger")
        try:
            done, _pending = await asyncio.wait(waiters, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()
        source = next(iter(done)).result()
        if ha.closed:
            raise ConnectionLostError("connection lost")
        if announce:
            _LOGGER.info("Turn triggered (%s)", source)
        return str(source)

    async def _listen_for_wake_word(self) -> str:
        """Run the microphone's audio through the wake-word model until it fires.

        Only the model hears this audio; none of it leaves the machine unless
        the word fires (and then only its last moment, the pre-roll).
        """
        listener = self.wake_listener
        assert listener is not None
        # Anything captured while the satellite was not listening (the last
        # turn, its reply) is dropped here.
        self.audio_in.start_listening()
        async for chunk in self.audio_in.chunks():
            if listener.feed(chunk):
                self._woken_at = asyncio.get_running_loop().time()
                return WAKE_WORD_SOURCE
        _LOGGER.error("The microphone stopped delivering audio")
        self.stop()
        await asyncio.Event().wait()  # the stop ends this task
        raise AssertionError("unreachable")

    async def _poll_trigger_file(self) -> str:
        """The trigger file appearing starts a turn (and is removed)."""
        path = self.settings.trigger_file
        assert path is not None
        while True:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                return "trigger file"
            await asyncio.sleep(TRIGGER_POLL_SECONDS)

    async def _turn(
        self,
        ha: HomeAssistant,
        pipeline: Pipeline,
        conversation_id: str | None,
        *,
        wake_word: bool = False,
        pre_roll: bytes | None = None,
        confirmation: asyncio.Future[bool] | None = None,
    ) -> TurnResult | None:
        """One turn; None if it failed in the pipeline (already reported).

        ``pre_roll``: the turn follows the on-device wake word, and the
        microphone has been listening since; the command is this audio and
        what the microphone has gathered since the word fired (nothing lost).
        ``confirmation``: that wake word's second opinion, still to come; a
        no ends the turn quietly (None).
        """
        if pre_roll is not None:
            audio = _after(pre_roll, self.audio_in.chunks())
            # The command goes on meanwhile. A wake word still to be confirmed
            # is not answered with a sound until it is: a false wake-up is
            # not heard at all.
            if confirmation is None:
                self._cue_in_background(Cue.LISTENING)
            else:
                confirmation.add_done_callback(self._cue_if_confirmed)
        else:
            if not wake_word:
                await self._cue(Cue.LISTENING)
            self.audio_in.start_listening()
            audio = self.audio_in.chunks()
        try:
            result = await run_turn(
                ha,
                pipeline,
                audio,
                conversation_id=conversation_id,
                wake_word=wake_word,
                end_of_speech=EndOfSpeechDetector(ASSIST_SAMPLE_RATE),
                on_event=self._on_event,
                on_audio_sent=self._command_audio_sent
                if pre_roll is not None
                else None,
                confirmation=confirmation,
            )
        except WakeWordRejectedError:
            _LOGGER.info("Not the wake word after all: listening again")
            return None
        except PipelineRunError as err:
            if wake_word and not self._wake_word_heard:
                self._no_wake_word(err.code, str(err))
                return None
            print(f"error: {err}", flush=True)
            _LOGGER.warning("The turn failed: %s", err)
            await self._cue(Cue.ERROR)
            return None
        finally:
            # Muted from here until the next wait: the reply is not listened to.
            self.audio_in.stop_listening()
            if confirmation is not None:
                confirmation.cancel()  # a late verdict must not cue a past turn
        if wake_word and not self._wake_word_heard:
            if self._wake_word_heard is None:  # the wake-word stage never ended
                self._no_wake_word("timeout", WAKE_WORD_RUN_RENEWALS["timeout"])
            else:
                self._no_wake_word(
                    "wake-word-engine-stopped", "it stopped listening before the word"
                )
            return None
        print(f"heard: {result.heard}", flush=True)
        print(f"reply: {result.reply}", flush=True)
        if result.reply and pipeline.tts_engine:
            try:
                reply = await ha.reply_audio(
                    pipeline, result.reply, self.audio_out.sample_rate
                )
            except PipelineRunError as err:
                print(f"error: {err}", flush=True)
                await self._cue(Cue.ERROR)
                return None
            await self.audio_out.play(reply)
        else:
            await self._cue(Cue.DONE)
        return result

    def _no_wake_word(self, code: str, detail: str) -> None:
        """A run from Home Assistant's wake-word stage ended before the word.

        Nobody spoke, so nothing is printed or sounded. ``code`` says how it
        ended (the pipeline's error code); an engine that failed is tried
        again after a growing pause, so it cannot spin the CPU or the log.
        """
        reason = WAKE_WORD_RUN_RENEWALS.get(code)
        if reason is not None:
            _LOGGER.info("No wake word in that run (%s): listening again", reason)
            self._wake_word_retry.reset()
            return
        self._pause_before_listening = self._wake_word_retry.next_delay()
        _LOGGER.warning(
            "Home Assistant's wake-word engine failed (%s); trying again in %.0f s",
            detail,
            self._pause_before_listening,
        )

    def _command_audio_sent(self) -> None:
        if self._woken_at is None:
            return
        latency = asyncio.get_running_loop().time() - self._woken_at
        self._woken_at = None
        self.wake_to_audio_seconds.append(latency)
        _LOGGER.info(
            "First command audio sent %.0f ms after the wake word", latency * 1000
        )

    def _cue_if_confirmed(self, confirmation: asyncio.Future[bool]) -> None:
        if (
            not confirmation.cancelled()
            and confirmation.exception() is None
            and confirmation.result()
        ):
            self._cue_in_background(Cue.LISTENING)

    def _cue_in_background(self, cue: Cue) -> None:
        task = asyncio.get_running_loop().create_task(self._cue(cue))
        self._background.add(task)  # keep a reference until it is done
        task.add_done_callback(self._background.discard)

    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "wake_word-start":
            _LOGGER.info(
                "Ready: listening for the wake word (Home Assistant's %s)",
                data.get("entity_id"),
            )
        elif kind == "wake_word-end" and not data.get("wake_word_output"):
            self._wake_word_heard = False
        elif kind == "wake_word-end":
            self._wake_word_heard = True
            self._wake_word_retry.reset()
            _LOGGER.info(
                "Wake word %r heard (by Home Assistant)",
                data["wake_word_output"].get("wake_word_phrase"),
            )
            self._cue_in_background(Cue.LISTENING)
        elif kind == "stt-vad-end":
            _LOGGER.debug("Home Assistant heard the end of speech")

    async def _cue(self, cue: Cue) -> None:
        try:
            await self.audio_out.cue(cue)
        except OSError as err:  # a speaker that went away must not end the session
            _LOGGER.warning("Playing a cue failed: %s", err)


async def second_opinion(
    verifier: WakeWordVerifier,
    clip: bytes,
    patience: float = VERIFY_TIMEOUT_SECONDS,
) -> bool:
    """``verifier`` on ``clip`` in a worker thread; yes if it cannot answer.

    A check that fails or hangs must not silence the satellite: the wake word
    then stands as the model heard it.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(patience):
            return await loop.run_in_executor(None, verifier.confirms, clip)
    except TimeoutError:
        _LOGGER.warning(
            "No second opinion on the wake word in %.0f s: it stands", patience
        )
    except (OSError, RuntimeError, ValueError) as err:
        _LOGGER.warning("The wake word's second opinion failed (%s): it stands", err)
    return True


async def _after(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``first``, then what ``rest`` yields."""
    if first:
        yield first
    async for chunk in rest:
        yield chunk


def _drain(queue: asyncio.Queue[Any]) -> None:
    while not queue.empty():
        queue.get_nowait()
