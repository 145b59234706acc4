"""The model and voice catalogue served by ``GET models/`` and ``GET voices/``.

Every voice is really spoken by the one Piper voice installed for the tests
(en_US-joe-medium); the catalogue only has to look like the real service's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Model:
    """A model as ``GET models/`` lists it."""

    id: str
    name: str
    type: str  # "tts", "stt", "voice_changer" or "separation"
    tier: str  # "free", "standard" or "premium"
    languages: tuple[str, ...]
    supports_cloning: bool = False
    supports_streaming: bool = False
    credits_per_1k_chars: float = 0

    def to_json(self) -> dict[str, Any]:
        """The model's JSON object."""
        body = asdict(self)
        body["languages"] = list(self.languages)
        return body


@dataclass(frozen=True)
class Voice:
    """A voice as ``GET voices/`` lists it (without its preview URL)."""

    id: str
    name: str
    model: str
    language: str
    gender: str  # "male", "female" or "neutral"


_WHISPER_LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "nl", "ja", "ko", "zh")

MODELS: tuple[Model, ...] = (
    Model(
        "kokoro",
        "Kokoro",
        "tts",
        "standard",
        ("en", "ja", "ko", "zh", "fr", "es"),
        supports_streaming=True,
        credits_per_1k_chars=2,
    ),
    Model(
        "chatterbox",
        "Chatterbox",
        "tts",
        "premium",
        ("en",),
        supports_cloning=True,
        supports_streaming=True,
        credits_per_1k_chars=4,
    ),
    Model(
        "piper",
        "Piper",
        "tts",
        "free",
        ("en", "de", "es", "fr"),
        supports_streaming=True,
        credits_per_1k_chars=1,
    ),
    Model(
        "cosyvoice2",
        "CosyVoice 2",
        "tts",
        "standard",
        ("zh", "en", "ja", "ko"),
        supports_cloning=True,
        supports_streaming=True,
        credits_per_1k_chars=2,
    ),
    Model(
        "gpt-sovits",
        "GPT-SoVITS",
        "tts",
        "standard",
        ("zh", "en", "ja"),
        supports_cloning=True,
        credits_per_1k_chars=3,
    ),
    Model("whisper", "Whisper", "stt", "standard", _WHISPER_LANGUAGES),
    Model("faster-whisper", "Faster Whisper", "stt", "standard", _WHISPER_LANGUAGES),
    Model("sensevoice", "SenseVoice", "stt", "standard", ("zh", "en", "ja", "ko")),
    Model("openvoice", "OpenVoice", "voice_changer", "standard", ("en", "zh", "es")),
    Model("knn-vc", "kNN-VC", "voice_changer", "standard", ("en",)),
    Model("demucs", "Demucs", "separation", "standard", ()),
    Model("spleeter", "Spleeter", "separation", "standard", ()),
)

VOICES: tuple[Voice, ...] = (
    Voice("af_bella", "Bella", "kokoro", "en", "female"),
    Voice("af_sarah", "Sarah", "kokoro", "en", "female"),
    Voice("am_adam", "Adam", "kokoro", "en", "male"),
    Voice("am_michael", "Michael", "kokoro", "en", "male"),
    Voice("bf_emma", "Emma", "kokoro", "en", "female"),
    Voice("bm_george", "George", "kokoro", "en", "male"),
    Voice("jf_alpha", "Alpha", "kokoro", "ja", "female"),
    Voice("jm_kumo", "Kumo", "kokoro", "ja", "male"),
    Voice("kf_sora", "Sora", "kokoro", "ko", "female"),
    Voice("zf_xiaobei", "Xiaobei", "kokoro", "zh", "female"),
    Voice("zm_yunjian", "Yunjian", "kokoro", "zh", "male"),
    Voice("ff_siwis", "Siwis", "kokoro", "fr", "female"),
    Voice("ef_dora", "Dora", "kokoro", "es", "female"),
    Voice("em_alex", "Alex", "kokoro", "es", "male"),
    Voice("chatterbox_aria", "Aria", "chatterbox", "en", "female"),
    Voice("chatterbox_rex", "Rex", "chatterbox", "en", "male"),
    Voice("chatterbox_sage", "Sage", "chatterbox", "en", "neutral"),
    Voice("en_US-joe-medium", "Joe", "piper", "en", "male"),
    Voice("en_US-lessac-medium", "Lessac", "piper", "en", "female"),
    Voice("en_GB-alan-medium", "Alan", "piper", "en", "male"),
    Voice("de_DE-thorsten-medium", "Thorsten", "piper", "de", "male"),
    Voice("es_ES-davefx-medium", "Davefx", "piper", "es", "male"),
    Voice("fr_FR-siwis-medium", "Siwis (Piper)", "piper", "fr", "female"),
    Voice("cosyvoice_zh_female", "Zhiyu", "cosyvoice2", "zh", "female"),
    Voice("cosyvoice_en_male", "Brian", "cosyvoice2", "en", "male"),
    Voice("sovits_narrator", "Narrator", "gpt-sovits", "en", "neutral"),
    Voice("sovits_ja_female", "Hana", "gpt-sovits", "ja", "female"),
)

_MODELS_BY_ID = {model.id: model for model in MODELS}
_VOICES_BY_ID = {voice.id: voice for voice in VOICES}


def find_model(model_id: str) -> Model | None:
    """The model called ``model_id``, if the catalogue has it."""
    return _MODELS_BY_ID.get(model_id)


def find_voice(voice_id: str) -> Voice | None:
    """The voice called ``voice_id``, if the catalogue has it."""
    return _VOICES_BY_ID.get(voice_id)


def list_voices(
    *, model: str | None = None, language: str | None = None, gender: str | None = None
) -> list[Voice]:
    """Voices matching every given filter, in catalogue order."""
    return [
        voice
        for voice in VOICES
        if (model is None or voice.model == model)
        and (language is None or voice.language == language)
        and (gender is None or voice.gender == gender)
    ]
