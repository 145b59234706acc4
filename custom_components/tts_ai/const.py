"""Constants of the TTS.ai integration: option names and their defaults."""

from typing import Final

DOMAIN: Final = "tts_ai"
MANUFACTURER: Final = "TTS.ai"

# Config entry data.
CONF_BASE_URL: Final = "base_url"
# The config entry's version. 1.2: every entry's options state its mode, and
# a cleared optional field is absent rather than an empty string.
ENTRY_VERSION: Final = 1
ENTRY_MINOR_VERSION: Final = 2

# Options (entry.options) and TTS service options (tts.speak `options:`).
CONF_MODEL: Final = "model"
CONF_VOICE: Final = "voice"
CONF_FORMAT: Final = "format"
CONF_SPEED: Final = "speed"
CONF_LANGUAGE: Final = "language"
CONF_STT_MODEL: Final = "stt_model"
# Instructions for the voice-chat conversation agent (options).
CONF_SYSTEM_PROMPT: Final = "system_prompt"

DEFAULT_MODEL: Final = "kokoro"
DEFAULT_VOICE: Final = "af_bella"
# MP3 is what cast, Sonos and AirPlay players all accept; HA transcodes on request.
DEFAULT_FORMAT: Final = "mp3"
DEFAULT_SPEED: Final = 1.0
DEFAULT_LANGUAGE: Final = "en"
DEFAULT_STT_MODEL: Final = "whisper"

# The model and voice catalogue is kept so voices can be listed (and speech
# requested with the last known settings) when the cloud is unreachable at start.
CATALOGUE_STORAGE_VERSION: Final = 1
CATALOGUE_REFRESH_HOURS: Final = 12

# Whisper-class models are region-agnostic; Assist and /api/stt ask with the
# exact tag, so the usual regional tags are offered besides the bare codes.
REGIONAL_LANGUAGE_TAGS: Final = (
    "de-AT", "de-CH", "de-DE", "en-AU", "en-CA", "en-GB", "en-IE", "en-IN",
    "en-NZ", "en-US", "es-419", "es-ES", "es-MX", "es-US", "fr-BE", "fr-CA",
    "fr-CH", "fr-FR", "it-IT", "nl-BE", "nl-NL", "pt-BR", "pt-PT", "sv-SE",
    "zh-CN", "zh-HK", "zh-Hans", "zh-Hant", "zh-TW",
)  # fmt: skip

# On-device fallback (options).
CONF_MODE: Final = "mode"
CONF_LOCAL_ENGINE: Final = "local_engine"
CONF_LOCAL_TTS_ENTITY: Final = "local_tts_entity"
CONF_LOCAL_STT_ENTITY: Final = "local_stt_entity"
CONF_LOCAL_VOICES: Final = "local_voices"
CONF_WHISPER_MODEL: Final = "whisper_model"
CONF_HEDGE_DEADLINE: Final = "hedge_deadline"
CONF_PIPER_VOICES_URL: Final = "piper_voices_url"
CONF_WHISPER_MODELS_URL: Final = "whisper_models_url"
# Built-in engine only: keep its process and models loaded instead of ending
# it after a quiet spell (a faster first reply for ~300 MB kept in memory).
CONF_KEEP_ENGINES_LOADED: Final = "keep_engines_loaded"

LOCAL_ENGINE_BUILT_IN: Final = "built_in"
LOCAL_ENGINE_ENTITY: Final = "entity"
LOCAL_ENGINES: Final = (LOCAL_ENGINE_BUILT_IN, LOCAL_ENGINE_ENTITY)
# The hedge deadline: how long the cloud may stay silent before the device
# starts speaking too. Below ~0.3 s the cloud would rarely win even when up.
HEDGE_DEADLINE_RANGE: Final = (0.3, 5.0)
LOCAL_MODELS_DIR: Final = "tts_ai/models"

# Actions (services) and their fields.
SERVICE_TRANSCRIBE: Final = "transcribe"
SERVICE_CHANGE_VOICE: Final = "change_voice"
SERVICE_RESTYLE_SPEECH: Final = "restyle_speech"
SERVICE_TRANSLATE_SPEECH: Final = "translate_speech"
SERVICE_ENHANCE_AUDIO: Final = "enhance_audio"
SERVICE_REMOVE_ECHO: Final = "remove_echo"
SERVICE_SEPARATE_STEMS: Final = "separate_stems"
SERVICE_ANALYZE_AUDIO: Final = "analyze_audio"
SERVICE_CONVERT_AUDIO: Final = "convert_audio"
SERVICE_ANNOUNCE: Final = "announce"
ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_AUDIO: Final = "audio"
ATTR_MEDIA_PLAYER_ENTITY_ID: Final = "media_player_entity_id"
ATTR_MESSAGE: Final = "message"
ATTR_CHIME: Final = "chime"
ATTR_VOLUME: Final = "volume"
ATTR_TIMEOUT: Final = "timeout"
# Fired when a long task (stem separation) has ended and its results are stored.
EVENT_TASK_COMPLETED: Final = "tts_ai_task_completed"
# Results of the actions go below the media folder, one folder per action.
RESULTS_DIR: Final = "tts_ai"
