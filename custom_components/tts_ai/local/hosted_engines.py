"""Piper and Whisper as the integration calls them, served by the engine process.

:class:`HostedPiper` and :class:`HostedWhisper` offer the calls of
:class:`.PiperEngine` and :class:`.WhisperEngine` (and
:class:`HostedWhisperStream` those of :class:`.WhisperStream`); each request
goes to :class:`.engine_host.EngineHost`'s child, and every value in its
answers is checked before it is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
from pathlib import Path
from typing import Any

from ..speech.audio import pcm_to_wav
from .engine_host import EngineHost, EngineRequest
from .host_protocol import (
    AUDIO_PIECE_BYTES,
    MAX_PAYLOAD_BYTES,
    EngineError,
    ProtocolError,
    field,
)
from .pcm import WHISPER_SAMPLE_RATE, PcmChunk
from .piper_engine import (
    LocalVoice,
    VoiceSampleRates,
    length_scale_for,
    split_for_streaming,
)
from .whisper_engine import Transcript, check_sample_rate


def _voice_spec(voice: LocalVoice) -> dict[str, str]:
    return {
        "key": voice.key,
        "model": str(voice.model_path),
        "config": str(voice.config_path),
    }


class HostedPiper:
    """:class:`.PiperEngine`'s calls, served by the engine process."""

    def __init__(self, host: EngineHost) -> None:
        """Use ``host``'s child; nothing starts until the first request."""
        self._host = host
        self._sample_rates = VoiceSampleRates()

    @property
    def loaded_voices(self) -> list[str]:
        """Keys of the voices in memory, least recently used first."""
        return list(self._host.voices)

    def sample_rate(self, voice: LocalVoice) -> int:
        """Return the sample rate of ``voice``'s audio (see PiperEngine)."""
        return self._sample_rates.of(voice)

    def known_sample_rate(self, voice: LocalVoice) -> int | None:
        """Return the rate of ``voice``'s audio if known without reading a file."""
        return self._sample_rates.known(voice)

    async def load(self, voice: LocalVoice) -> None:
        """Load ``voice`` in the engine process and warm it up."""
        reply = await self._host.request({"op": "load", "voice": _voice_spec(voice)})
        self._sample_rates.remember(voice, _positive(field(reply, "rate", int)))

    async def synthesize(
        self, text: str, voice: LocalVoice, *, speed: float = 1.0
    ) -> AsyncIterator[PcmChunk]:
        """Yield the speech for ``text`` piece by piece (see PiperEngine).

        Closing the generator early (or cancelling the task reading it)
        stops the child at the next piece.
        """
        length_scale_for(speed)  # a bad speed fails here, as in-process
        if not split_for_streaming(text):
            return
        encoded = text.encode()
        if len(encoded) > MAX_PAYLOAD_BYTES:
            raise ValueError("text too long to speak")
        with self._host.in_use():
            call = await self._host.open(
                {"op": "synth", "voice": _voice_spec(voice), "speed": speed}, encoded
            )
            try:
                while True:
                    header, audio = await call.receive()
                    if header["op"] == "end":
                        return
                    rate = _positive(field(header, "rate", int))
                    self._sample_rates.remember(voice, rate)
                    yield PcmChunk(
                        audio=audio, sample_rate=rate, text=field(header, "text", str)
                    )
                    call.send({"op": "more"})
            finally:
                # The listener stopped early (the cloud won a hedge).
                await call.cancel()

    async def synthesize_wav(
        self, text: str, voice: LocalVoice, *, speed: float = 1.0
    ) -> bytes:
        """Return the whole speech for ``text`` as one WAV file (16-bit mono)."""
        chunks = [chunk async for chunk in self.synthesize(text, voice, speed=speed)]
        rate = chunks[0].sample_rate if chunks else self.sample_rate(voice)
        return pcm_to_wav(b"".join(chunk.audio for chunk in chunks), rate)

    async def unload(self, voice_key: str | None = None) -> None:
        """Drop one voice (by key) or all of them from the engine process."""
        await self._host.request_if_running({"op": "unload", "key": voice_key})

    async def close(self) -> None:
        """Free the voices (the host's owner ends the process)."""
        await self.unload()


class HostedWhisper:
    """:class:`.WhisperEngine`'s calls, served by the engine process."""

    def __init__(
        self,
        host: EngineHost,
        model_dir: Path | str,
        *,
        compute_type: str = "int8",
        beam_size: int | None = None,
    ) -> None:
        """Transcribe with the CTranslate2 model in ``model_dir``, in ``host``."""
        self._host = host
        self._model = {
            "dir": str(model_dir),
            "compute_type": compute_type,
            "beam_size": beam_size,
        }

    @property
    def host(self) -> EngineHost:
        """The engine process this model runs in."""
        return self._host

    @property
    def is_loaded(self) -> bool:
        """Whether the model is in the engine process's memory."""
        return self._model["dir"] in self._host.models

    async def load(self) -> None:
        """Load the model now rather than on the first transcription."""
        await self._host.request({"op": "whisper_load", "model": self._model})

    async def transcribe(
        self,
        pcm16: bytes,
        *,
        sample_rate: int = WHISPER_SAMPLE_RATE,
        language: str | None = None,
    ) -> Transcript:
        """Transcribe 16-bit mono PCM (see WhisperEngine.transcribe)."""
        check_sample_rate(sample_rate)
        if len(pcm16) < 2:
            return Transcript(text="", language=language, duration=0.0)
        with self._host.in_use():
            call = await self._host.open(
                self._request("transcribe", sample_rate, language)
            )
            try:
                for start in range(0, len(pcm16), AUDIO_PIECE_BYTES):
                    piece = pcm16[start : start + AUDIO_PIECE_BYTES]
                    await call.send_drained({"op": "audio"}, piece)
                call.send({"op": "run"})
                reply, _ = await call.receive()
            except asyncio.CancelledError:
                # The child stops at the next window.
                call.abandon()
                raise
            return _transcript(reply)

    def stream(
        self,
        *,
        sample_rate: int = WHISPER_SAMPLE_RATE,
        language: str | None = None,
    ) -> HostedWhisperStream:
        """Start transcribing an utterance that arrives in pieces."""
        check_sample_rate(sample_rate)
        return HostedWhisperStream(
            self._host, self._request("stream", sample_rate, language), language
        )

    async def unload(self) -> None:
        """Drop the model from the engine process's memory."""
        await self._host.request_if_running(
            {"op": "whisper_unload", "model": self._model}
        )

    async def close(self) -> None:
        """Free the model (the host's owner ends the process)."""
        await self.unload()

    def _request(
        self, op: str, sample_rate: int, language: str | None
    ) -> dict[str, Any]:
        return {
            "op": op,
            "model": self._model,
            "rate": sample_rate,
            "language": language,
        }


class HostedWhisperStream:
    """:class:`.WhisperStream`'s calls: one utterance decoded while it arrives."""

    def __init__(
        self, host: EngineHost, request: dict[str, Any], language: str | None
    ) -> None:
        """Open the stream in the child; audio fed meanwhile waits here."""
        self._host = host
        self._language = language
        self._rate = int(request["rate"])
        self._waiting = bytearray()
        self._fed = 0
        self._call: EngineRequest | None = None
        self._finished = False
        self._closed = False
        self._use = contextlib.ExitStack()
        self._use.enter_context(host.in_use())
        self._opening = asyncio.get_running_loop().create_task(self._open(request))
        # Retrieved here if nobody awaits it (the stream was dropped).
        self._opening.add_done_callback(
            lambda task: task.cancelled() or task.exception()
        )

    @property
    def text_so_far(self) -> str:
        """The words of the pieces decoded so far (updated by the child)."""
        return self._call.partial if self._call is not None else ""

    @property
    def decodes_before_end(self) -> int:
        """Pieces decoded while the audio was still arriving."""
        return self._call.decodes if self._call is not None else 0

    async def _open(self, request: dict[str, Any]) -> None:
        call = await self._host.open(request)
        self._call = call
        waiting, self._waiting = bytes(self._waiting), bytearray()
        self._send(call, waiting)

    def feed(self, pcm16: bytes) -> None:
        """Add audio (16-bit mono PCM at the stream's rate); never blocks."""
        if self._finished or not pcm16:
            return
        self._fed += len(pcm16)
        if self._call is None:
            self._waiting += pcm16
        else:
            self._send(self._call, pcm16)

    @staticmethod
    def _send(call: EngineRequest, pcm16: bytes) -> None:
        for start in range(0, len(pcm16), AUDIO_PIECE_BYTES):
            call.send({"op": "audio"}, pcm16[start : start + AUDIO_PIECE_BYTES])

    async def finish(self) -> Transcript:
        """Return the transcript of everything fed; the stream ends here."""
        self._finished = True
        if self._fed < 2:
            await self.aclose()
            return Transcript(text="", language=self._language, duration=0.0)
        try:
            await self._opening
            assert self._call is not None
            self._call.send({"op": "run"})
            reply, _ = await self._call.receive()
            return _transcript(reply)
        except asyncio.CancelledError:
            if self._call is not None:
                self._call.abandon()
            raise
        finally:
            self._closed = True
            self._use.close()

    async def aclose(self) -> None:
        """Stop the work for a stream nobody will finish (the cloud answered)."""
        self._finished = True
        if self._closed:
            return
        self._closed = True
        try:
            if not self._opening.done():
                self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError, EngineError):
                await self._opening
            if self._call is not None:
                await self._call.cancel()
        finally:
            self._use.close()


def _positive(value: int) -> int:
    if value <= 0:
        raise ProtocolError("a sample rate must be positive")
    return value


def _transcript(reply: dict[str, Any]) -> Transcript:
    """Return the transcript in the child's ``end`` frame."""
    language = reply.get("language")
    if language is not None and not isinstance(language, str):
        raise ProtocolError("language is not a string")
    duration = reply.get("duration")
    if not isinstance(duration, (int, float)) or isinstance(duration, bool):
        raise ProtocolError("duration is not a number")
    return Transcript(
        text=field(reply, "text", str), language=language, duration=float(duration)
    )
