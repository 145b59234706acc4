"""On-device speech engines: Piper text-to-speech and Whisper speech-to-text.

They stand in for the cloud when it cannot serve. Nothing here imports Home
Assistant, and the heavy packages (``piper``, ``onnxruntime``,
``faster_whisper``, ``ctranslate2``, ``numpy``) are imported only inside the
functions that need them: on Home Assistant OS there are no onnxruntime
wheels for every board, and the integration must still load there. HA
installs the requirements below at run time when the user turns the local
engines on; :func:`missing_packages` says whether that is still needed. The
integration runs the engines in a child process (:mod:`.engine_host`), so
Home Assistant's own process never imports those packages at all.
"""

from __future__ import annotations

import importlib.util

from .device import DeviceProfile, detect_device_profile
from .engine_host import EngineHost
from .host_protocol import EngineCrashedError, EngineError
from .hosted_engines import HostedPiper, HostedWhisper, HostedWhisperStream
from .pcm import PcmChunk
from .piper_engine import LocalVoice, PiperEngine
from .whisper_engine import Transcript, WhisperEngine, WhisperStream

# pip requirement strings, handed to HA's requirements installer.
PIPER_REQUIREMENTS = ["piper-tts==1.8.0", "onnxruntime==1.32.0"]
WHISPER_REQUIREMENTS = ["faster-whisper==1.2.1"]

# Import name of every module the engines import lazily; faster-whisper
# brings ctranslate2 and numpy with it, piper-tts brings numpy.
_PIPER_MODULES = ("piper", "onnxruntime", "numpy")
_WHISPER_MODULES = ("faster_whisper", "ctranslate2", "numpy")


def missing_packages(*, piper: bool = True, whisper: bool = True) -> list[str]:
    """Return the import names of the engines' packages that are not installed.

    Only looks the modules up (``importlib.util.find_spec``), it does not
    import them, so the check is cheap and safe in the event loop.
    """
    wanted: list[str] = []
    if piper:
        wanted.extend(_PIPER_MODULES)
    if whisper:
        wanted.extend(_WHISPER_MODULES)
    missing: list[str] = []
    for name in dict.fromkeys(wanted):  # keep order, drop the numpy repeat
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError, ValueError:
            found = False  # a broken or half-installed package
        if not found:
            missing.append(name)
    return missing


__all__ = [
    "PIPER_REQUIREMENTS",
    "WHISPER_REQUIREMENTS",
    "DeviceProfile",
    "EngineCrashedError",
    "EngineError",
    "EngineHost",
    "HostedPiper",
    "HostedWhisper",
    "HostedWhisperStream",
    "LocalVoice",
    "PcmChunk",
    "PiperEngine",
    "Transcript",
    "WhisperEngine",
    "WhisperStream",
    "detect_device_profile",
    "missing_packages",
]
