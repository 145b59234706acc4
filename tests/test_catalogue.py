"""The catalogue as the integration reads it: what the cloud lists may be partial."""

from __future__ import annotations

from custom_components.tts_ai.api import Model, Voice
from custom_components.tts_ai.catalogue import Catalogue


def _catalogue() -> Catalogue:
    return Catalogue.from_dict(
        {
            "models": [
                {"id": "kokoro", "name": "Kokoro", "type": "tts", "languages": ["en"]},
                {"id": "whisper", "name": "Whisper", "type": "stt"},
            ],
            "voices": [
                {"id": "af_bella", "name": "Bella", "language": "en-US"},
                # The contract does not promise every voice a language.
                {"id": "mystery", "name": "Mystery"},
                {"id": "ff_siwis", "name": "Siwis", "language": "fr"},
            ],
        }
    )


def test_voices_without_a_language_are_left_out_of_language_lists() -> None:
    catalogue = _catalogue()

    assert [v.id for v in catalogue.voices_for_language("en_GB")] == ["af_bella"]
    assert [v.id for v in catalogue.voices_for_language("fr")] == ["ff_siwis"]
    # The voice is still there when asked for by id.
    assert catalogue.voice("mystery") == Voice(id="mystery", name="Mystery")


def test_round_trips_through_storage() -> None:
    catalogue = _catalogue()

    restored = Catalogue.from_dict(catalogue.as_dict())

    assert restored == catalogue
    assert [m.id for m in restored.tts_models] == ["kokoro"]
    assert [m.id for m in restored.stt_models] == ["whisper"]
    assert restored.tts_languages == ["en"]
    assert isinstance(restored.model("whisper"), Model)
    assert restored.model("missing") is None
