"""Diagnostics for TTS.ai, with the API key redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant

from . import TtsAiConfigEntry
from .local_speech import BuiltinSpeech

TO_REDACT = {CONF_API_KEY, "unique_id"}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: TtsAiConfigEntry
) -> dict[str, Any]:
    """Return what helps a bug report: settings, catalogue, limits, engines."""
    data = entry.runtime_data
    diagnostics: dict[str, Any] = {
        "entry": async_redact_data(entry.as_dict(), TO_REDACT),
        "mode": data.policy.mode,
        "fallback": {
            "active_engine": data.policy.active,
            "cloud_reachable": data.policy.cloud_reachable,
            "breaker_failures": data.policy.breaker.failures,
            "last_cloud_error": _error(data.policy.breaker.last_error),
        },
    }
    if data.catalogue is not None:
        catalogue = data.catalogue.data
        diagnostics["catalogue"] = {
            "tts_models": [m.id for m in catalogue.tts_models],
            "stt_models": [m.id for m in catalogue.stt_models],
            "voices": len(catalogue.voices),
            "languages": catalogue.tts_languages,
        }
    if (client := data.client) is not None:
        diagnostics["plan_limits"] = asdict(client.plan_limits)
        diagnostics["rate_limit"] = (
            asdict(client.rate_limit) if client.rate_limit else None
        )
        diagnostics["credits"] = asdict(client.credits) if client.credits else None
        diagnostics["last_error"] = _error(client.last_error)
    if isinstance(data.local, BuiltinSpeech):
        diagnostics["local_models"] = {
            "status": data.local.status,
            "progress": data.local.progress,
            "error": data.local.error,
            "loaded_voices": data.local.piper.loaded_voices,
            # Whether the engines are warm, and how often their process has
            # started (each start after a quiet spell costs the next reply).
            "keep_loaded": data.local.keep_loaded,
            "engine_process_running": data.local.engines.pid is not None,
            "engine_process_starts": data.local.engines.starts,
        }
    return diagnostics


def _error(err: BaseException | None) -> dict[str, Any] | None:
    """Describe an error by type and code only: messages may quote user text."""
    if err is None:
        return None
    return {"type": type(err).__name__, "code": getattr(err, "code", None)}
