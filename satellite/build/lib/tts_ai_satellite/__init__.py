"""A Raspberry Pi Assist satellite for Home Assistant (``scripts/satellite``).

Captures speech with ``pyaudio``, streams it through an Assist pipeline over
Home Assistant's websocket API, and plays the spoken reply; see ``app.py`` for
the loop and ``README-section.md`` for setting up a Pi.
"""
