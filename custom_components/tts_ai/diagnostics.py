"""Diagnostics for TTS.ai, with the API key redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant

from . import TtsAiConfigEntry

TO_REDACT = {CONF_API_KEY, "unique_id"}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: TtsAiConfigEntry
) -> dict[str, Any]:
    """Return what helps a bug report: settings, catalogue size, limits, last error."""
    client = entry.runtime_data.client
    catalogue = entry.runtime_data.catalogue.data
    last_error = client.last_error
    return {
        "entry": async_redact_data(entry.as_dict(), TO_REDACT),
        "catalogue": {
            "tts_models": [m.id for m in catalogue.tts_models],
            "stt_models": [m.id for m in catalogue.stt_models],
            "voices": len(catalogue.voices),
            "languages": catalogue.tts_languages,
        },
        "plan_limits": asdict(client.plan_limits),
        "rate_limit": asdict(client.rate_limit) if client.rate_limit else None,
        "credits": asdict(client.credits) if client.credits else None,
        "last_error": (
            {"type": type(last_error).__name__, "code": last_error.code}
            if last_error
            else None
        ),
    }
