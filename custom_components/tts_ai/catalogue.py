"""The TTS.ai model and voice catalogue, as the integration uses it.

Plain Python (no Home Assistant import): it answers the questions the entities
and flows ask — which languages, which voices for a language, which model a
voice belongs to — and round-trips through JSON for Home Assistant's `Store`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .api import Model, Voice

MODEL_TYPE_TTS = "tts"
MODEL_TYPE_STT = "stt"


def base_language(language: str) -> str:
    """Return the language part of a code: `en-US` and `en_us` give `en`."""
    return language.replace("_", "-").split("-", 1)[0].lower()


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The models and voices the account can use."""

    models: tuple[Model, ...]
    voices: tuple[Voice, ...]

    @property
    def tts_models(self) -> list[Model]:
        """Return the text-to-speech models."""
        return [m for m in self.models if m.type == MODEL_TYPE_TTS]

    @property
    def stt_models(self) -> list[Model]:
        """Return the speech-to-text models."""
        return [m for m in self.models if m.type == MODEL_TYPE_STT]

    def model(self, model_id: str) -> Model | None:
        """Return a model by id."""
        return next((m for m in self.models if m.id == model_id), None)

    def voice(self, voice_id: str) -> Voice | None:
        """Return a voice by id."""
        return next((v for v in self.voices if v.id == voice_id), None)

    @property
    def tts_languages(self) -> list[str]:
        """Return every language some TTS model speaks, sorted."""
        return sorted({lang for m in self.tts_models for lang in m.languages})

    def voices_for_language(self, language: str) -> list[Voice]:
        """Return the voices that speak a language (`en-US` matches `en`)."""
        wanted = base_language(language)
        return [
            v
            for v in self.voices
            if v.language is not None and base_language(v.language) == wanted
        ]

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form, for storage."""
        return {
            "models": [asdict(m) for m in self.models],
            "voices": [asdict(v) for v in self.voices],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Catalogue:
        """Rebuild a catalogue stored by `as_dict`."""
        return cls(
            models=tuple(Model.from_dict(m) for m in data.get("models", [])),
            voices=tuple(Voice.from_dict(v) for v in data.get("voices", [])),
        )
