"""The test harness: real servers the tests, ``scripts/develop`` and the benchmarks run.

- :mod:`.standin`: a contract-faithful stand-in for the TTS.ai REST API, over
  real HTTP with real Piper and Whisper (``python -m tests.harness.standin``).
- :mod:`.model_server`: serves Piper voices and Whisper models on loopback as
  their hosts do, from the models in PyPI packages
  (``python -m tests.harness.model_server``).
- :mod:`.realhass`: a real ``hass`` process running this integration against
  the stand-in: what ``scripts/develop`` runs and the end-to-end tests use.
- :mod:`.alsa_room`: a microphone and a speaker for the satellite's real sound
  path (PortAudio through ALSA's ``file`` plugin), with no sound hardware.

Import these as a package (``from tests.harness.standin import StandinServer``);
nothing here imports ``scripts/``.
"""
