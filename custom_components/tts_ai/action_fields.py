"""The action forms' voice and model pickers, filled from the catalogue.

services.yaml cannot know an account's voices; this replaces those fields'
selectors with the catalogue's voices and models (display names shown, ids
sent) whenever an entry loads, unloads or refreshes its catalogue. The
pickers accept a typed id too, so automations with any id keep working.
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.service import async_set_service_schema
from homeassistant.util.hass_dict import HassKey
from homeassistant.util.yaml import load_yaml_dict

from .cloned_voices import cloned_voices
from .const import (
    CONF_MODEL,
    CONF_VOICE,
    DOMAIN,
    SERVICE_ANNOUNCE,
    SERVICE_CHANGE_VOICE,
    SERVICE_RESTYLE_SPEECH,
    SERVICE_TRANSLATE_SPEECH,
)

if TYPE_CHECKING:
    from . import TtsAiConfigEntry

# (action, field) -> what the field picks.
VOICE_FIELDS: tuple[tuple[str, str], ...] = (
    (SERVICE_ANNOUNCE, CONF_VOICE),
    (SERVICE_CHANGE_VOICE, "target_voice"),
    (SERVICE_RESTYLE_SPEECH, CONF_VOICE),
    (SERVICE_TRANSLATE_SPEECH, CONF_VOICE),
)
MODEL_FIELDS: tuple[tuple[str, str], ...] = ((SERVICE_ANNOUNCE, CONF_MODEL),)
# Cloned voices speak only through the TTS entity, i.e. in announcements.
CLONED_VOICE_FIELDS = {(SERVICE_ANNOUNCE, CONF_VOICE)}

_SERVICES_YAML: HassKey[dict[str, Any]] = HassKey(f"{DOMAIN}_services_yaml")


def _picker(options: list[dict[str, str]]) -> dict[str, Any]:
    """Return a dropdown of the options that also takes a typed value."""
    return {"select": {"options": options, "custom_value": True, "mode": "dropdown"}}


def _entries(
    hass: HomeAssistant,
    loading: TtsAiConfigEntry | None,
    unloading: TtsAiConfigEntry | None,
) -> list[TtsAiConfigEntry]:
    """Return the loaded entries, with the one loading, without the one unloading."""
    entries = [
        entry
        for entry in hass.config_entries.async_loaded_entries(DOMAIN)
        if entry is not unloading and entry is not loading
    ]
    return [*entries, loading] if loading is not None else entries


@callback
def _catalogue_options(
    hass: HomeAssistant,
    loading: TtsAiConfigEntry | None,
    unloading: TtsAiConfigEntry | None,
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    """Return (voices, cloned voices, TTS models) of every loaded entry."""
    voices: dict[str, str] = {}
    clones: dict[str, str] = {}
    models: dict[str, str] = {}
    for entry in _entries(hass, loading, unloading):
        if (coordinator := entry.runtime_data.catalogue) is None:
            continue
        catalogue = coordinator.data
        names = {m.id: m.name for m in catalogue.models}
        for model in catalogue.tts_models:
            models.setdefault(model.id, model.name)
        for voice in sorted(catalogue.voices, key=lambda v: v.name.casefold()):
            model_name = names.get(voice.model or "", voice.model)
            label = f"{voice.name} ({model_name})" if model_name else voice.name
            voices.setdefault(voice.id, label)
        for clone in cloned_voices(hass, entry):
            clones.setdefault(clone.voice_id, clone.name)
    return (
        [{"value": k, "label": v} for k, v in voices.items()],
        [{"value": k, "label": v} for k, v in sorted(clones.items(), key=_by_label)],
        [{"value": k, "label": v} for k, v in sorted(models.items(), key=_by_label)],
    )


def _by_label(item: tuple[str, str]) -> str:
    return item[1].casefold()


async def async_update_action_fields(
    hass: HomeAssistant,
    *,
    loading: TtsAiConfigEntry | None = None,
    unloading: TtsAiConfigEntry | None = None,
) -> None:
    """Offer the loaded entries' voices and models in the action forms.

    ``loading``: an entry being set up (not yet counted as loaded);
    ``unloading``: one being unloaded (still counted as loaded).
    """
    described = hass.data.get(_SERVICES_YAML)
    if described is None:
        path = Path(__file__).parent / "services.yaml"
        loaded: dict[str, Any] = await hass.async_add_executor_job(
            load_yaml_dict, str(path)
        )
        hass.data[_SERVICES_YAML] = described = loaded
    voices, clones, models = _catalogue_options(hass, loading, unloading)
    changed: dict[str, dict[str, Any]] = {}
    for (service, field), options in [
        *(((s, f), voices) for s, f in VOICE_FIELDS),
        *(((s, f), models) for s, f in MODEL_FIELDS),
    ]:
        offered = (
            clones + options if (service, field) in CLONED_VOICE_FIELDS else options
        )
        description = changed.setdefault(service, deepcopy(described[service]))
        description["fields"][field]["selector"] = _picker(offered)
    for service, description in changed.items():
        async_set_service_schema(hass, DOMAIN, service, description)
