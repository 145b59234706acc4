"""TTS.ai text-to-speech entity: the cloud, with the device as fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
import logging
from typing import Any, override

from homeassistant.components.tts import (
    ATTR_VOICE,
    TextToSpeechEntity,
    TTSAudioRequest,
    TTSAudioResponse,
    Voice,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import TtsAiConfigEntry
from .api import (
    CLONE_FORMATS,
    SPEED_RANGE,
    TTS_FORMATS,
    AudioResult,
    TtsAiClient,
    TtsAiError,
)
from .catalogue import base_language
from .cloned_voices import (
    VOICE_ID_PREFIX,
    ClonedVoice,
    cloned_voices,
    clones_fingerprint,
)
from .const import (
    CONF_FORMAT,
    CONF_LANGUAGE,
    CONF_MODEL,
    CONF_SPEED,
    CONF_VOICE,
    DEFAULT_FORMAT,
    DEFAULT_LANGUAGE,
    DEFAULT_MODEL,
    DEFAULT_SPEED,
    DEFAULT_VOICE,
    DOMAIN,
)
from .entity import TtsAiEntity
from .errors import reauth_on_refused_key, to_ha_error
from .fallback import Mode, Source, falls_back
from .speech.text import SentenceBuffer

_LOGGER = logging.getLogger(__name__)

PARALLEL_UPDATES = 0

# Streamed audio is sent as one file made of consecutive requests: MP3 frames
# concatenate into a valid stream, WAV/FLAC headers would not; and the
# device's audio joins a cloud stream in the same format.
STREAM_FORMAT = "mp3"
# Cloud only: synthesize the first sentence alone so it plays at once, then up
# to three while it plays, then everything that has arrived (as HA core's
# elevenlabs). With a fallback, each sentence is its own request, so a cloud
# stream that breaks off is taken over by the device from the next sentence.
CLOUD_SENTENCE_SCHEDULE = (1, 3)
# The option that puts the cache epoch into HA's TTS cache key.
CACHE_EPOCH_OPTION = "cache_epoch"
# The option that puts the cloned voices' recordings into the cache key.
CLONES_OPTION = "cloned_voices"


async def async_setup_entry(
    hass: HomeAssistant,
    entry: TtsAiConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the TTS.ai TTS entity."""
    async_add_entities([TtsAiTTSEntity(entry)])


@dataclass(frozen=True, slots=True)
class SpeechSettings:
    """The validated settings of one synthesis request."""

    model: str
    voice: str
    format: str
    speed: float
    language: str
    # Set when the voice is a cloned voice: speech goes to tts/clone/.
    clone: ClonedVoice | None = None


def _invalid_option(option: str, value: Any, allowed: str) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="invalid_option",
        translation_placeholders={
            "option": option,
            "value": str(value),
            "allowed": allowed,
        },
    )


async def _single_chunk(data: bytes) -> AsyncGenerator[bytes]:
    yield data


class TtsAiTTSEntity(TtsAiEntity, TextToSpeechEntity):
    """Speaks through the TTS.ai cloud, or on the device when it cannot."""

    _attr_supported_options = [CONF_VOICE, CONF_MODEL, CONF_SPEED, CONF_FORMAT]

    def __init__(self, entry: TtsAiConfigEntry) -> None:
        """Initialise the entity from the entry's options."""
        super().__init__(entry, "tts")
        options = entry.options
        self._policy = self._data.policy
        self._configured = {
            CONF_MODEL: options.get(CONF_MODEL, DEFAULT_MODEL),
            CONF_VOICE: options.get(CONF_VOICE, DEFAULT_VOICE),
            CONF_SPEED: options.get(CONF_SPEED, DEFAULT_SPEED),
            CONF_FORMAT: options.get(CONF_FORMAT, DEFAULT_FORMAT),
        }
        self._default_language: str = options.get(CONF_LANGUAGE, DEFAULT_LANGUAGE)

    async def async_added_to_hass(self) -> None:
        """Use HA's language for a local-only entry."""
        await super().async_added_to_hass()
        if self.catalogue is None and CONF_LANGUAGE not in self._entry.options:
            self._default_language = base_language(self.hass.config.language)

    @property
    @override
    def supported_languages(self) -> list[str]:
        """Return the languages of the cloud models, or the device's voices."""
        if self.catalogue is not None and self.catalogue.tts_languages:
            return self.catalogue.tts_languages
        languages = {
            base_language(v.voice_id.split("-")[0]) for v in self._local_voices
        }
        return sorted(languages | {self._default_language})

    @property
    @override
    def default_language(self) -> str:
        """Return the configured language."""
        return self._default_language

    @property
    @override
    def default_options(self) -> Mapping[str, Any]:
        """Return the configured settings, which are part of HA's cache key."""
        options = dict(self._configured)
        if self._policy.mode is Mode.CLOUD_FIRST:
            options[CACHE_EPOCH_OPTION] = self._data.cache_epoch.value
        if clones := self._cloned_voices():
            # A re-recorded voice keeps its id: without this, HA would replay
            # speech cached with the old recording.
            options[CLONES_OPTION] = clones_fingerprint(clones)
        return options

    @property
    def _local_voices(self) -> list[Voice]:
        return self._data.local.voices() if self._data.local is not None else []

    @callback
    @override
    def async_get_supported_voices(self, language: str) -> list[Voice]:
        """Return the voices for a language, the configured one first.

        The entry's cloned voices of that language come last.
        """
        catalogue = self.catalogue
        if catalogue is None:
            return self._local_voices
        default_voice = self._configured[CONF_VOICE]
        voices = sorted(
            catalogue.voices_for_language(language),
            key=lambda v: (v.id != default_voice, v.name.casefold()),
        )
        wanted = base_language(language)
        clones = sorted(
            (c for c in self._cloned_voices() if base_language(c.language) == wanted),
            key=lambda c: c.name.casefold(),
        )
        return [
            Voice(
                v.id,
                f"{v.name} ({m.name})"
                if v.model is not None and (m := catalogue.model(v.model))
                else v.name,
            )
            for v in voices
        ] + [Voice(c.voice_id, c.name) for c in clones]

    def _cloned_voices(self) -> list[ClonedVoice]:
        """Return the entry's cloned voices (read live: subentries change)."""
        return cloned_voices(self.hass, self._entry)

    def _clone_settings(
        self, voice_id: str, options: Mapping[str, Any]
    ) -> SpeechSettings:
        """Validate a request for a cloned voice."""
        clone = next((c for c in self._cloned_voices() if c.voice_id == voice_id), None)
        if clone is None:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="unknown_voice",
                translation_placeholders={"voice": voice_id},
            )
        audio_format = str(options.get(CONF_FORMAT, DEFAULT_FORMAT))
        if audio_format not in CLONE_FORMATS:
            raise _invalid_option(CONF_FORMAT, audio_format, ", ".join(CLONE_FORMATS))
        return SpeechSettings(
            model=clone.model,
            voice=voice_id,
            format=audio_format,
            speed=DEFAULT_SPEED,  # the clone endpoint has no speed
            # The voice speaks its own language whatever HA asks for.
            language=base_language(clone.language),
            clone=clone,
        )

    @override
    async def async_speak(
        self,
        media_player_entity_id: list[str],
        message: str,
        cache: bool,
        language: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """Check the options before handing the speech to the players.

        Home Assistant checks only the options' names when ``tts.speak`` is
        called; the audio is made when a player fetches it, too late for the
        caller to hear about a bad voice or speed. Checking here fails the
        action itself with the same translated error.
        """
        self._settings(language or self.default_language, options or {})
        await super().async_speak(
            media_player_entity_id, message, cache, language, options
        )

    def _settings(self, language: str, options: Mapping[str, Any]) -> SpeechSettings:
        """Validate a request's options; raise a translated error if they are bad."""
        voice_id = str(options.get(ATTR_VOICE, self._configured[CONF_VOICE]))
        if voice_id.startswith(VOICE_ID_PREFIX):
            return self._clone_settings(voice_id, options)
        model_id = str(options.get(CONF_MODEL, self._configured[CONF_MODEL]))
        if (catalogue := self.catalogue) is not None:
            voice = catalogue.voice(voice_id)
            if voice is None and catalogue.voices:
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="unknown_voice",
                    translation_placeholders={"voice": voice_id},
                )
            # A voice belongs to one model: a voice picked in the UI brings its
            # own model unless the caller names one explicitly.
            if (
                voice is not None
                and voice.model is not None
                and options.get(CONF_MODEL)
                in (
                    None,
                    self._configured[CONF_MODEL],
                )
            ):
                model_id = voice.model
            if catalogue.models and catalogue.model(model_id) not in (
                catalogue.tts_models
            ):
                raise _invalid_option(
                    CONF_MODEL, model_id, ", ".join(m.id for m in catalogue.tts_models)
                )
        audio_format = str(options.get(CONF_FORMAT, DEFAULT_FORMAT))
        if audio_format not in TTS_FORMATS:
            raise _invalid_option(CONF_FORMAT, audio_format, ", ".join(TTS_FORMATS))
        low, high = SPEED_RANGE
        try:
            speed = float(options.get(CONF_SPEED, DEFAULT_SPEED))
        except TypeError, ValueError:
            speed = float("nan")
        if not low <= speed <= high:
            raise _invalid_option(
                CONF_SPEED, options.get(CONF_SPEED), f"{low} to {high}"
            )
        return SpeechSettings(
            model=model_id,
            voice=voice_id,
            format=audio_format,
            speed=speed,
            language=base_language(language or self._default_language),
        )

    @override
    async def async_stream_tts_audio(
        self, request: TTSAudioRequest
    ) -> TTSAudioResponse:
        """Speak text while it is still arriving, sentence by sentence."""
        settings = self._settings(request.language, request.options)
        whole_file = settings.format != STREAM_FORMAT and (
            self._policy.mode is not Mode.LOCAL_ONLY
        )
        if whole_file or settings.clone is not None:
            # Only MP3 can be sent as a run of per-sentence files; another
            # format asked for explicitly is synthesized as one whole file.
            # A cloned voice is too: each request re-sends the recording.
            message = "".join([chunk async for chunk in request.message_gen])
            extension, data = await self._synthesize_whole(message, settings)
            return TTSAudioResponse(extension, _single_chunk(data))
        return TTSAudioResponse(
            STREAM_FORMAT, self._stream_audio(request.message_gen, settings)
        )

    async def _synthesize_whole(
        self, message: str, settings: SpeechSettings
    ) -> tuple[str, bytes]:
        """Synthesize a whole message in the requested format (or MP3 locally)."""
        assert self._data.client is not None
        client = self._data.client

        async def cloud() -> tuple[str, bytes]:
            if settings.clone is not None:
                result = await self._cloud_call(
                    self._clone_request(client, message, settings, settings.clone)
                )
            else:
                result = await self._cloud_call(
                    client.tts(
                        message,
                        model=settings.model,
                        voice=settings.voice,
                        format=settings.format,
                        speed=settings.speed,
                        language=settings.language,
                    )
                )
            return result.format, result.data

        async def local() -> tuple[str, bytes]:
            audio = self._local_stream(message, settings)
            return STREAM_FORMAT, b"".join([chunk async for chunk in audio])

        try:
            source, result = await self._policy.call(cloud, local)
        except TtsAiError as err:
            raise to_ha_error(self.hass, self._entry, err) from err
        self._after_source(source)
        return result

    async def _clone_request(
        self,
        client: TtsAiClient,
        message: str,
        settings: SpeechSettings,
        clone: ClonedVoice,
    ) -> AudioResult:
        """Speak in a cloned voice: the stored recording goes with the text."""
        try:
            recording = await self.hass.async_add_executor_job(
                clone.recording.read_bytes
            )
        except OSError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="recording_missing",
                translation_placeholders={"voice": clone.name},
            ) from err
        return await client.clone_tts(
            message,
            recording,
            reference_filename=clone.recording.name,
            model=clone.model,
            format=settings.format,
            language=settings.language,
        )

    async def _cloud_call[T](self, request: Awaitable[T]) -> T:
        """Await a cloud request; a refused key also starts reauth."""
        with reauth_on_refused_key(self.hass, self._entry):
            return await request

    async def _cloud_stream(
        self, text: str, settings: SpeechSettings
    ) -> AsyncIterator[bytes]:
        assert self._data.client is not None
        with reauth_on_refused_key(self.hass, self._entry):
            async for chunk in self._data.client.tts_stream(
                text,
                model=settings.model,
                voice=settings.voice,
                format=STREAM_FORMAT,
                speed=settings.speed,
                language=settings.language,
            ):
                yield chunk

    def _local_stream(
        self, text: str, settings: SpeechSettings
    ) -> AsyncIterator[bytes]:
        assert self._data.local is not None
        return self._data.local.speak(text, settings.language, settings.speed)

    def _after_source(self, source: Source) -> None:
        """Keep device-made audio out of HA's cache once the cloud is back."""
        if source is Source.LOCAL and self._policy.mode is Mode.CLOUD_FIRST:
            self._data.cache_epoch.advance()

    async def _speak_batch(
        self, text: str, settings: SpeechSettings
    ) -> AsyncIterator[bytes]:
        """Yield the audio of one batch of sentences from whoever can speak it."""
        try:
            source, audio = await self._policy.stream(
                lambda: self._cloud_stream(text, settings),
                lambda: self._local_stream(text, settings),
            )
        except TtsAiError as err:
            _LOGGER.warning("TTS.ai could not synthesize speech: %s", err)
            raise to_ha_error(self.hass, self._entry, err) from err
        self._after_source(source)
        try:
            async for chunk in audio:
                yield chunk
        except TtsAiError as err:
            if (
                source is Source.CLOUD
                and self._policy.mode is Mode.CLOUD_FIRST
                and falls_back(err)
            ):
                # Broke off mid-sentence: the device takes the next one.
                _LOGGER.warning("TTS.ai stream broke off: %s", err)
                self._policy.cloud_failed(err)
                return
            raise to_ha_error(self.hass, self._entry, err) from err

    async def _stream_audio(
        self, message_gen: AsyncGenerator[str], settings: SpeechSettings
    ) -> AsyncGenerator[bytes]:
        """Yield audio of each batch of sentences as soon as it is produced."""
        sentences: list[str] = []
        arrived = asyncio.Event()
        text_done = False

        async def collect_sentences() -> None:
            nonlocal text_done
            buffer = SentenceBuffer()
            try:
                async for chunk in message_gen:
                    sentences.extend(s for s in buffer.add(chunk) if s.strip())
                    if sentences:
                        arrived.set()
                if (rest := buffer.finish()) and rest.strip():
                    sentences.append(rest)
            finally:
                text_done = True
                arrived.set()

        collector = self.hass.async_create_background_task(
            collect_sentences(), name=f"{DOMAIN} collect sentences"
        )
        schedule = (
            list(CLOUD_SENTENCE_SCHEDULE)
            if self._policy.mode is Mode.CLOUD_ONLY
            else None
        )
        try:
            while True:
                await arrived.wait()
                if not sentences:
                    if text_done:
                        return
                    arrived.clear()
                    continue
                # Take what has arrived, no more than the schedule allows, so
                # the first audio never waits for later text.
                if schedule is None:
                    size = 1
                else:
                    size = schedule.pop(0) if schedule else len(sentences)
                text = " ".join(sentences[:size])
                del sentences[:size]
                if not sentences and not text_done:
                    arrived.clear()
                async for chunk in self._speak_batch(text, settings):
                    yield chunk
        finally:
            collector.cancel()
