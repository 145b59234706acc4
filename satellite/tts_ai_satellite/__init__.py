"""A Raspberry Pi Assist satellite for Home Assistant (``tts-ai-satellite``).

Captures speech with ``pyaudio``, streams it through an Assist pipeline over
Home Assistant's websocket API, and plays the spoken reply; see ``app.py`` for
the loop and the package's README.md for setting up a Pi. It imports nothing
from Home Assistant or the integration.
"""
