"""A contract-faithful stand-in for the TTS.ai REST API, for tests and development.

Usage::

    server = StandinServer()
    await server.start()
    ...  # point the integration at server.base_url with DEFAULT_API_KEY
    await server.stop()

Speech is real: Piper (en_US-joe-medium) speaks, faster-whisper tiny.en listens.
"""

from .accounts import (
    BROKE_API_KEY,
    DEFAULT_API_KEY,
    ENTERPRISE_API_KEY,
    FREE_PLAN_API_KEY,
    Account,
)
from .engines import synthesize_wav, transcribe_pcm
from .faults import Fault
from .server import StandinServer
from .state import RecordedRequest

__all__ = [
    "BROKE_API_KEY",
    "DEFAULT_API_KEY",
    "ENTERPRISE_API_KEY",
    "FREE_PLAN_API_KEY",
    "Account",
    "Fault",
    "RecordedRequest",
    "StandinServer",
    "synthesize_wav",
    "transcribe_pcm",
]
