"""On-device speech for an entry: the built-in engines or other HA entities.

Both kinds offer the same two calls to the entities: `speak` (MP3 bytes as
they are produced) and `transcribe` (16 kHz PCM to text).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from homeassistant.components import stt, tts
from homeassistant.components.ffmpeg import get_ffmpeg_manager
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.event import async_call_later
from homeassistant.requirements import RequirementsNotFound, async_process_requirements
from homeassistant.util.hass_dict import HassKey

from .catalogue import base_language
from .const import (
    CONF_KEEP_ENGINES_LOADED,
    CONF_LOCAL_ENGINE,
    CONF_LOCAL_STT_ENTITY,
    CONF_LOCAL_TTS_ENTITY,
    CONF_LOCAL_VOICES,
    CONF_PIPER_VOICES_URL,
    CONF_WHISPER_MODEL,
    CONF_WHISPER_MODELS_URL,
    DOMAIN,
    LOCAL_ENGINE_ENTITY,
    LOCAL_MODELS_DIR,
)
from .local import (
    PIPER_REQUIREMENTS,
    WHISPER_REQUIREMENTS,
    EngineError,
    EngineHost,
    HostedPiper,
    HostedWhisper,
    HostedWhisperStream,
    LocalVoice,
    detect_device_profile,
    missing_packages,
)
from .local.encoder import encode_mp3
from .local.model_manager import (
    HF_URL,
    PIPER_VOICES_URL,
    DownloadProgress,
    ModelDownloadError,
    ModelFolder,
    ModelManager,
)
from .local.whisper_engine import SHORT_WINDOW_MAX_SECONDS

if TYPE_CHECKING:
    from . import TtsAiConfigEntry

_LOGGER = logging.getLogger(__name__)

# One ModelFolder per models folder for the whole HA instance.
DATA_MODEL_FOLDERS: HassKey[dict[Path, ModelFolder]] = HassKey(
    f"{DOMAIN}_model_folders"
)
# A failed model download is tried again after this long (the internet may be
# back); until then the cloud serves alone.
PREFETCH_RETRY_SECONDS = 900
# The engines' process ends after this many seconds unused (unless the entry
# keeps the engines loaded): Home Assistant's memory returns to its
# pre-load size, and the next request starts the process again.
ENGINE_IDLE_EXIT_SECONDS = 600.0
# The region whose voice speaks a language when HA has no country set.
DEFAULT_COUNTRIES = {"en": "US", "pt": "BR", "zh": "CN"}


class ModelStatus:
    """States of the on-device models, as the `local_models` sensor shows them."""

    NOT_NEEDED = "not_needed"
    DOWNLOADING = "downloading"
    READY = "ready"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"

    ALL = (NOT_NEEDED, DOWNLOADING, READY, FAILED, UNAVAILABLE)


def packages_issue_id(entry_id: str) -> str:
    """Return the id of an entry's repair issue for the built-in engine's packages."""
    return f"local_packages_{entry_id}"


def _not_ready(reason: str) -> HomeAssistantError:
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="local_not_ready",
        translation_placeholders={"reason": reason},
    )


def _engine_failed(err: EngineError) -> HomeAssistantError:
    """Return the error for an engine that failed or whose process ended."""
    return _not_ready(f"{err}; the next request starts it again")


# Audio longer than this is not decoded as it arrives: it no longer fits one
# Whisper window, and is transcribed whole at its end.
STREAMED_PCM_MAX_BYTES = int(SHORT_WINDOW_MAX_SECONDS * 16000) * 2


class TranscriptionSession(Protocol):
    """One utterance transcribed on the device while its audio arrives."""

    @property
    def text_so_far(self) -> str:
        """The words decoded so far (they grow at the user's pauses)."""

    def feed(self, pcm: bytes) -> None:
        """Add 16 kHz 16-bit mono PCM as it arrives; never blocks."""

    async def finish(self) -> str:
        """Return the words in everything fed."""

    async def aclose(self) -> None:
        """Stop the work for an utterance nobody will finish."""


class LocalSpeech(Protocol):
    """What the entities need from an on-device engine."""

    status: str

    async def async_prepare(self) -> None:
        """Make the engine ready (install, download, load) as far as possible."""

    def speak(self, text: str, language: str, speed: float) -> AsyncIterator[bytes]:
        """Yield MP3 audio of `text` as it is produced."""

    async def transcribe(self, pcm: bytes, language: str) -> str:
        """Return the words in 16 kHz 16-bit mono PCM."""

    def start_transcription(self, language: str) -> TranscriptionSession | None:
        """Start transcribing audio as it arrives; None if this engine cannot."""

    def voices(self) -> list[tts.Voice]:
        """Return the voices on the device."""

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` when `status` changes."""

    async def async_close(self) -> None:
        """Release models and timers."""


class _Listeners:
    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def notify(self) -> None:
        for listener in list(self._listeners):
            listener()


class BuiltinSpeech(_Listeners):
    """Piper and Whisper, run in a process of their own (see local.engine_host)."""

    def __init__(self, hass: HomeAssistant, entry: TtsAiConfigEntry) -> None:
        """Prepare the engines; nothing is installed or loaded yet."""
        super().__init__()
        self.hass = hass
        self.entry = entry
        options = entry.options
        root = Path(hass.config.path(LOCAL_MODELS_DIR))
        self.manager = ModelManager(
            async_get_clientsession(hass),
            root,
            piper_base_url=options.get(CONF_PIPER_VOICES_URL) or PIPER_VOICES_URL,
            hf_base_url=options.get(CONF_WHISPER_MODELS_URL) or HF_URL,
            # Every entry of this HA instance shares the folder's downloads.
            folder=hass.data.setdefault(DATA_MODEL_FOLDERS, {}).setdefault(
                root, ModelFolder()
            ),
        )
        self._wanted_voices: list[str] = list(options.get(CONF_LOCAL_VOICES) or [])
        self._whisper_name: str | None = options.get(CONF_WHISPER_MODEL)
        # Started on first use, ended after a quiet spell: Home Assistant's
        # own process never holds the engines' libraries. Kept loaded on
        # request: every reply is fast, for the memory the engines hold.
        self.keep_loaded: bool = bool(options.get(CONF_KEEP_ENGINES_LOADED))
        self.engines = EngineHost(
            idle_exit_after=None if self.keep_loaded else ENGINE_IDLE_EXIT_SECONDS
        )
        self.piper = HostedPiper(self.engines)
        self.whisper: HostedWhisper | None = None
        self._voices: dict[str, LocalVoice] = {}
        self.status = ModelStatus.DOWNLOADING
        self.progress: dict[str, int] = {}
        self.error: str | None = None
        self._cancel_retry: Callable[[], None] | None = None

    @property
    def issue_id(self) -> str:
        """Return the id of this entry's repair issue for missing packages."""
        return packages_issue_id(self.entry.entry_id)

    async def async_prepare(self) -> None:
        """Install the engines' packages and start fetching the models."""
        try:
            await async_process_requirements(
                self.hass, DOMAIN, [*PIPER_REQUIREMENTS, *WHISPER_REQUIREMENTS]
            )
            error = None
        except RequirementsNotFound as err:
            error = str(err)
        missing = await self.hass.async_add_executor_job(missing_packages)
        if missing:
            self._set_status(ModelStatus.UNAVAILABLE)
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                self.issue_id,
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key="local_packages_missing",
                translation_placeholders={
                    "packages": ", ".join(missing),
                    "error": error or "not installable on this system",
                },
            )
            return
        ir.async_delete_issue(self.hass, DOMAIN, self.issue_id)
        self.entry.async_create_background_task(
            self.hass, self._prefetch(), name=f"{DOMAIN} fetch local models"
        )

    async def _prefetch(self) -> None:
        """Download the models now, so they are there when the internet is not."""
        self._set_status(ModelStatus.DOWNLOADING)
        try:
            profile = await self.hass.async_add_executor_job(detect_device_profile)
            language = self.hass.config.language
            if not self._wanted_voices:
                catalogue = await self.manager.piper_catalogue()
                key = self.manager.best_piper_voice(
                    catalogue, self._voice_region(), profile.piper_quality
                )
                if key is None:
                    raise ModelDownloadError(f"no Piper voice speaks {language}")
                self._wanted_voices = [key]
            for key in self._wanted_voices:
                files = await self.manager.ensure_piper_voice(
                    key, progress=self._on_progress
                )
                voice = LocalVoice(files.key, files.model_path, files.config_path)
                self._voices.setdefault(_voice_language(key), voice)
            whisper_name = self._whisper_name or (
                f"{profile.whisper_model}.en"
                if base_language(language) == "en"
                else profile.whisper_model
            )
            model_dir = await self.manager.ensure_whisper_model(
                whisper_name, progress=self._on_progress
            )
            self.whisper = HostedWhisper(self.engines, model_dir)
            # Load and warm the default voice now: the first fallback must be fast.
            await self.piper.load(next(iter(self._voices.values())))
            if self.keep_loaded:
                # Kept loaded: the first command after start-up is heard at
                # once too, not after Whisper has loaded.
                await self.whisper.load()
        except Exception as err:
            # Whatever broke (download, disk, a model that will not load), the
            # cloud keeps serving; the sensor shows why, and we try again later.
            if isinstance(err, ModelDownloadError):
                _LOGGER.error("Could not fetch the on-device models: %s", err)
            else:
                _LOGGER.exception("Could not prepare the on-device models")
            self.error = str(err) or type(err).__name__
            self._set_status(ModelStatus.FAILED)
            self._cancel_retry = async_call_later(
                self.hass, PREFETCH_RETRY_SECONDS, self._retry_prefetch
            )
            return
        self.error = None
        self._set_status(ModelStatus.READY)

    def _voice_region(self) -> str:
        """Return the language and region to pick a voice for, e.g. en_US."""
        language = self.hass.config.language.replace("-", "_")
        if "_" in language:
            return language
        # Piper has no "en" of its own: without a country, US English.
        country = self.hass.config.country or DEFAULT_COUNTRIES.get(language, "")
        return f"{language}_{country}" if country else language

    @callback
    def _retry_prefetch(self, _now: Any) -> None:
        self._cancel_retry = None
        self.entry.async_create_background_task(
            self.hass, self._prefetch(), name=f"{DOMAIN} fetch local models"
        )

    @callback
    def _on_progress(self, progress: DownloadProgress) -> None:
        if not progress.total_bytes:
            return
        percent = int(100 * progress.downloaded_bytes / progress.total_bytes)
        # Whole percents only: a state write per received chunk would flood HA.
        if self.progress.get(progress.item) != percent:
            self.progress[progress.item] = percent
            self.notify()

    def _set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.notify()

    def _voice_for(self, language: str) -> LocalVoice:
        if not self._voices:
            raise _not_ready(self.error or "the voice is still being downloaded")
        return self._voices.get(base_language(language)) or next(
            iter(self._voices.values())
        )

    def voices(self) -> list[tts.Voice]:
        """Return the installed Piper voices."""
        return [tts.Voice(v.key, v.key) for v in self._voices.values()]

    async def speak(
        self, text: str, language: str, speed: float
    ) -> AsyncIterator[bytes]:
        """Yield MP3 of `text`, sentence by sentence, from Piper."""
        voice = self._voice_for(language)
        ffmpeg = get_ffmpeg_manager(self.hass).binary
        try:
            async for data in encode_mp3(
                self.piper.synthesize(text, voice, speed=speed),
                ffmpeg=ffmpeg,
                sample_rate=self.piper.known_sample_rate(voice),
            ):
                yield data
        except EngineError as err:
            raise _engine_failed(err) from err

    async def transcribe(self, pcm: bytes, language: str) -> str:
        """Return the words Whisper hears."""
        if self.whisper is None:
            raise _not_ready(self.error or "the speech model is still being downloaded")
        try:
            transcript = await self.whisper.transcribe(
                pcm, language=base_language(language)
            )
        except EngineError as err:
            raise _engine_failed(err) from err
        return transcript.text

    def start_transcription(self, language: str) -> TranscriptionSession | None:
        """Start decoding an utterance while it is spoken (see WhisperStream).

        The reply's voice is loaded meanwhile if an idle spell unloaded it, so
        the answer is not held up by loading it after the words are known.
        """
        if self.whisper is None:
            return None
        if self._voices:
            self.entry.async_create_background_task(
                self.hass,
                self.piper.load(self._voice_for(language)),
                name=f"{DOMAIN} warm the reply voice",
            )
        return _WhisperSession(self.whisper.stream(language=base_language(language)))

    async def async_close(self) -> None:
        """Stop retries and free the models."""
        if self._cancel_retry is not None:
            self._cancel_retry()
            self._cancel_retry = None
        await self.engines.close()


class _WhisperSession:
    """A WhisperStream as the STT entity uses it: text out."""

    def __init__(self, stream: HostedWhisperStream) -> None:
        self._stream = stream

    @property
    def text_so_far(self) -> str:
        """The words decoded while the audio arrives (partial results)."""
        return self._stream.text_so_far

    def feed(self, pcm: bytes) -> None:
        self._stream.feed(pcm)

    async def finish(self) -> str:
        try:
            return (await self._stream.finish()).text
        except EngineError as err:
            raise _engine_failed(err) from err

    async def aclose(self) -> None:
        await self._stream.aclose()


def _voice_language(key: str) -> str:
    """Return the base language of a Piper voice key (`en_US-joe-medium` -> en)."""
    return base_language(key.split("-", 1)[0])


class EntitySpeech(_Listeners):
    """Another Home Assistant TTS/STT engine (e.g. the Wyoming add-ons)."""

    status = ModelStatus.NOT_NEEDED

    def __init__(self, hass: HomeAssistant, entry: TtsAiConfigEntry) -> None:
        """Remember which entities to use."""
        super().__init__()
        self.hass = hass
        self.entry = entry
        self.tts_entity: str | None = entry.options.get(CONF_LOCAL_TTS_ENTITY)
        self.stt_entity: str | None = entry.options.get(CONF_LOCAL_STT_ENTITY)

    async def async_prepare(self) -> None:
        """Nothing to install: the other integration owns its engine.

        The built-in engine's missing-packages repair is void now: it told
        the user to choose another engine, which they just did.
        """
        ir.async_delete_issue(self.hass, DOMAIN, packages_issue_id(self.entry.entry_id))

    def voices(self) -> list[tts.Voice]:
        """Voices are the other engine's own."""
        return []

    async def speak(
        self, text: str, language: str, speed: float
    ) -> AsyncIterator[bytes]:
        """Yield MP3 of `text` from the other TTS entity."""
        if not self.tts_entity:
            raise _not_ready("no text-to-speech entity chosen in the options")
        engine = tts.async_resolve_engine(self.hass, self.tts_entity)
        if engine is None:
            raise _not_ready(f"{self.tts_entity} is not available")
        stream = tts.async_create_stream(
            self.hass, engine, _pick_language(self.hass, engine, language),
            {tts.ATTR_PREFERRED_FORMAT: "mp3"},
        )  # fmt: skip
        stream.async_set_message(text)
        async for chunk in stream.async_stream_result():
            yield chunk

    async def transcribe(self, pcm: bytes, language: str) -> str:
        """Return the words the other STT entity hears."""
        entity = (
            stt.async_get_speech_to_text_entity(self.hass, self.stt_entity)
            if self.stt_entity
            else None
        )
        if entity is None:
            raise _not_ready("no speech-to-text entity chosen in the options")
        wanted = base_language(language)
        spoken = next(
            (
                lang
                for lang in entity.supported_languages
                if base_language(lang) == wanted
            ),
            language,
        )
        metadata = stt.SpeechMetadata(
            language=spoken,
            format=stt.AudioFormats.WAV,
            codec=stt.AudioCodecs.PCM,
            bit_rate=stt.AudioBitRates.BITRATE_16,
            sample_rate=stt.AudioSampleRates.SAMPLERATE_16000,
            channel=stt.AudioChannels.CHANNEL_MONO,
        )

        async def audio() -> AsyncIterator[bytes]:
            yield pcm

        result = await entity.internal_async_process_audio_stream(metadata, audio())
        if result.result is not stt.SpeechResultState.SUCCESS:
            raise _not_ready(f"{self.stt_entity} could not transcribe")
        return result.text or ""

    def start_transcription(self, language: str) -> TranscriptionSession | None:
        """Return None: the other entity gets the audio whole (see transcribe)."""
        return None

    async def async_close(self) -> None:
        """Nothing to release."""


def _pick_language(hass: HomeAssistant, engine: str, language: str) -> str | None:
    """Return the other engine's language closest to `language`, or its default."""
    entity = hass.data[tts.DATA_COMPONENT].get_entity(engine)
    if entity is None:
        return None
    wanted = base_language(language)
    return next(
        (lang for lang in entity.supported_languages if base_language(lang) == wanted),
        None,
    )


def create_local_speech(hass: HomeAssistant, entry: TtsAiConfigEntry) -> LocalSpeech:
    """Return the on-device engine the entry's options ask for."""
    if entry.options.get(CONF_LOCAL_ENGINE) == LOCAL_ENGINE_ENTITY:
        return EntitySpeech(hass, entry)
    return BuiltinSpeech(hass, entry)
