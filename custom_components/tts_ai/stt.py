"""TTS.ai speech-to-text entity."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from contextlib import aclosing
from functools import partial
import logging
from typing import TYPE_CHECKING, Any, override

from homeassistant.components import stt
from homeassistant.components.stt import (
    AudioBitRates,
    AudioChannels,
    AudioCodecs,
    AudioFormats,
    AudioSampleRates,
    SpeechMetadata,
    SpeechResult,
    SpeechResultState,
    SpeechToTextEntity,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import TtsAiConfigEntry
from .api import STT, STT_LANGUAGES, TtsAiError
from .api.endpoints import MEGABYTE
from .catalogue import base_language
from .const import CONF_STT_MODEL, DEFAULT_STT_MODEL, REGIONAL_LANGUAGE_TAGS
from .entity import TtsAiEntity
from .errors import reauth_on_refused_key
from .local_speech import STREAMED_PCM_MAX_BYTES
from .speech.audio import pcm_to_wav

if TYPE_CHECKING:
    from .local_speech import TranscriptionSession

_LOGGER = logging.getLogger(__name__)

PARALLEL_UPDATES = 0

# The longest speech taken: what the cloud accepts as one WAV upload (the
# device gets no more, so a runaway stream is refused whoever would listen).
_WAV_HEADER_BYTES = 44
assert STT.upload_limit_bytes is not None
MAX_PCM_BYTES = STT.upload_limit_bytes - _WAV_HEADER_BYTES

# Home Assistant 2026.11 takes the words heard so far while the user speaks
# (stt.PartialSpeechResult); 2026.10 has no such type and asks for the final
# result only.
PARTIAL_SPEECH_RESULT: Any = getattr(stt, "PartialSpeechResult", None)

SUPPORTED_LANGUAGES = sorted(
    {*STT_LANGUAGES}
    | {tag for tag in REGIONAL_LANGUAGE_TAGS if base_language(tag) in STT_LANGUAGES}
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: TtsAiConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the TTS.ai STT entity."""
    async_add_entities([TtsAiSTTEntity(entry)])


class TtsAiSTTEntity(TtsAiEntity, SpeechToTextEntity):
    """Transcribes Assist audio through the TTS.ai cloud."""

    def __init__(self, entry: TtsAiConfigEntry) -> None:
        """Initialise the entity."""
        super().__init__(entry, "stt")
        self._model = entry.options.get(CONF_STT_MODEL, DEFAULT_STT_MODEL)

    @property
    @override
    def supported_languages(self) -> list[str]:
        """Return the languages Whisper-class models transcribe."""
        return SUPPORTED_LANGUAGES

    @property
    @override
    def supported_formats(self) -> list[AudioFormats]:
        """Return the supported container: HA's raw PCM, sent on as WAV."""
        return [AudioFormats.WAV]

    @property
    @override
    def supported_codecs(self) -> list[AudioCodecs]:
        """Return the supported codecs."""
        return [AudioCodecs.PCM]

    @property
    @override
    def supported_bit_rates(self) -> list[AudioBitRates]:
        """Return the supported bit rates."""
        return [AudioBitRates.BITRATE_16]

    @property
    @override
    def supported_sample_rates(self) -> list[AudioSampleRates]:
        """Return the supported sample rates."""
        return [AudioSampleRates.SAMPLERATE_16000]

    @property
    @override
    def supported_channels(self) -> list[AudioChannels]:
        """Return the supported channels."""
        return [AudioChannels.CHANNEL_MONO]

    @override
    async def async_process_audio_stream(
        self, metadata: SpeechMetadata, stream: AsyncIterable[bytes]
    ) -> SpeechResult:
        """Return the words in Assist's audio, from the cloud or the device."""
        async with aclosing(self._results(metadata, stream)) as results:
            async for result in results:
                if isinstance(result, SpeechResult):
                    return result
        raise AssertionError("_results ends with a SpeechResult")  # pragma: no cover

    # No @override: Home Assistant 2026.10 has no such method to override, and
    # 2026.11 calls this one instead of async_process_audio_stream.
    async def async_process_audio_stream_with_progress(
        self, metadata: SpeechMetadata, stream: AsyncIterable[bytes]
    ) -> AsyncGenerator[Any]:
        """Yield the words heard so far as they grow, then the final result.

        Only the device decodes while the user speaks (the cloud takes the
        audio whole), so a cloud transcription yields the final result alone.
        """
        async with aclosing(self._results(metadata, stream)) as results:
            async for result in results:
                if isinstance(result, SpeechResult):
                    yield result
                elif PARTIAL_SPEECH_RESULT is not None:
                    _LOGGER.debug("Partial result: %.200s", result)
                    yield PARTIAL_SPEECH_RESULT(text=result)

    async def _results(
        self, metadata: SpeechMetadata, stream: AsyncIterable[bytes]
    ) -> AsyncGenerator[str | SpeechResult]:
        """Yield the text heard so far whenever it grows, then the SpeechResult."""
        language = base_language(metadata.language)
        session = self._local_session(metadata.language)
        try:
            async with aclosing(
                self._transcribe(metadata, stream, language, session)
            ) as results:
                async for result in results:
                    yield result
        finally:
            if session is not None:
                await session.aclose()

    def _local_session(self, language: str) -> TranscriptionSession | None:
        """Start decoding on the device as the audio arrives, if it will answer.

        Only when the device is going to transcribe (device only, or the cloud
        is down): the cloud takes the audio whole, and decoding beside a
        healthy cloud would only take CPU from the rest of Home Assistant.
        """
        if self._data.local is None or self._data.policy.cloud_reachable:
            return None
        return self._data.local.start_transcription(language)

    async def _transcribe(
        self,
        metadata: SpeechMetadata,
        stream: AsyncIterable[bytes],
        language: str,
        session: TranscriptionSession | None,
    ) -> AsyncGenerator[str | SpeechResult]:
        chunks: list[bytes] = []
        size = 0
        heard = ""
        async for chunk in stream:
            size += len(chunk)
            if size > MAX_PCM_BYTES:
                # Checked while reading: a runaway stream never sits in memory.
                _LOGGER.error(
                    "Speech to transcribe is over %d MB; not transcribing it",
                    MAX_PCM_BYTES // MEGABYTE,
                )
                yield SpeechResult(None, SpeechResultState.ERROR)
                return
            chunks.append(chunk)
            if session is not None:
                if size > STREAMED_PCM_MAX_BYTES:
                    # Too long to decode as it arrives: transcribed whole.
                    await session.aclose()
                    session = None
                else:
                    session.feed(chunk)
                    if (text := session.text_so_far) != heard:
                        # A piece that a pause ended was decoded meanwhile.
                        heard = text
                        yield heard
        if not size:
            _LOGGER.warning("No audio received to transcribe")
            yield SpeechResult(None, SpeechResultState.ERROR)
            return
        # Up to 100 MB are copied here: never in the event loop.
        pcm = await self.hass.async_add_executor_job(b"".join, chunks)
        del chunks

        async def cloud() -> str:
            assert self._data.client is not None
            wav = await self.hass.async_add_executor_job(
                partial(
                    pcm_to_wav,
                    pcm,
                    rate=int(metadata.sample_rate),
                    channels=int(metadata.channel),
                )
            )
            with reauth_on_refused_key(self.hass, self._entry):
                result = await self._data.client.stt(
                    wav, model=self._model, language=language
                )
            return result.text

        async def local() -> str:
            assert self._data.local is not None
            if session is not None:
                # Most of it was decoded while the user spoke.
                return await session.finish()
            return await self._data.local.transcribe(pcm, language)

        try:
            _source, text = await self._data.policy.call(cloud, local)
        except (TtsAiError, HomeAssistantError) as err:
            # The pipeline reports an STT error itself; raising would abort it
            # with a stack trace instead of a spoken "I didn't understand".
            _LOGGER.error("TTS.ai could not transcribe speech: %s", err)
            yield SpeechResult(None, SpeechResultState.ERROR)
            return
        yield SpeechResult(text.strip(), SpeechResultState.SUCCESS)
