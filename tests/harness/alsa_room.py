"""A room for the satellite's real sound path, without sound hardware.

PortAudio (and so pyaudio) captures from, and plays into, ALSA's ``file``
plugin: the capture side reads a FIFO that :class:`AlsaRoom` feeds in real
time, the playback side writes raw files. A process gets the room through
``ALSA_CONFIG_PATH`` (:attr:`AlsaRoom.environment`). ALSA's ``file`` and
``null`` plugins are part of alsa-lib itself (libasound2): no extra package.
"""

from __future__ import annotations

import os
from pathlib import Path
import threading
import time

import numpy as np

RATE = 16000
CHUNK_SECONDS = 0.03
# ALSA's file plugin: capture reads the FIFO, playback writes a new raw file per
# stream (truncate false numbers them: speaker-44100.raw, ….raw.0001, …).
ASOUND_CONF = """
pcm.!default {{
  type asym
  playback.pcm "speaker"
  capture.pcm "microphone"
}}
pcm.speaker {{
  type file
  slave.pcm "null"
  file "{folder}/speaker-%r.raw"
  truncate false
  format "raw"
}}
pcm.microphone {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{folder}/microphone.fifo"
  format "raw"
}}
"""


class AlsaRoom:
    """What the satellite's microphone hears, and what its speaker played.

    A thread writes 30 ms of 16 kHz audio at a time into the FIFO that ALSA's
    capture reads, in real time: quiet household noise, and whatever
    :meth:`play` queued. The FIFO is held open read-write here, so the
    satellite's opens never wait and a write never meets a pipe without a
    reader (PortAudio opens and closes the device while probing it).
    """

    def __init__(self, folder: Path) -> None:
        """Set the room up in ``folder`` (the ALSA configuration, the FIFO)."""
        self.folder = folder
        self.config = folder / "asound.conf"
        self.config.write_text(ASOUND_CONF.format(folder=folder))
        fifo = folder / "microphone.fifo"
        os.mkfifo(fifo)
        self._fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        self._said: list[bytes] = []
        self._lock = threading.Lock()
        self._quiet = threading.Event()
        self._quiet.set()
        self._stop = threading.Event()
        self._rng = np.random.default_rng(7)
        self._thread = threading.Thread(target=self._feed, name="room")
        self._thread.start()

    @property
    def environment(self) -> dict[str, str]:
        """The satellite's environment: ALSA reads this folder's configuration."""
        return {
            **os.environ,
            "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.config}",
        }

    def play(self, samples: np.ndarray) -> None:
        """Queue 16 kHz mono audio, mixed with the room's noise, after the rest."""
        audio = np.clip(samples + self._noise(len(samples)), -32768, 32767)
        audio = audio.astype("<i2").tobytes()
        size = round(RATE * CHUNK_SECONDS) * 2
        with self._lock:
            self._quiet.clear()
            self._said += [audio[i : i + size] for i in range(0, len(audio), size)]

    def wait_until_said(self, timeout: float = 30) -> None:
        """Return once everything queued has gone into the microphone."""
        if not self._quiet.wait(timeout):
            raise TimeoutError("the room never finished speaking")

    def speaker_files(self) -> list[Path]:
        """What the speaker played: a raw file per stream opened."""
        return sorted(self.folder.glob("speaker-*.raw*"))

    def close(self) -> None:
        """Stop feeding the microphone."""
        self._stop.set()
        self._thread.join(timeout=10)
        os.close(self._fd)

    def _noise(self, count: int) -> np.ndarray:
        # A fridge's hum and a little hiss, about -50 dBFS.
        times = np.arange(count) / RATE
        hum = 40 * np.sin(2 * np.pi * 100 * times)
        return hum + self._rng.normal(0, 60, count)

    def _feed(self) -> None:
        size = round(RATE * CHUNK_SECONDS)
        started = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            with self._lock:
                chunk = self._said.pop(0) if self._said else None
                if chunk is None:
                    self._quiet.set()
            if chunk is None:
                chunk = self._noise(size).astype("<i2").tobytes()
            while not self._stop.is_set():
                try:
                    os.write(self._fd, chunk)  # 960 bytes: atomic on a pipe
                    break
                except BlockingIOError:  # nobody has read for 2 s
                    time.sleep(0.01)
            sent += len(chunk) // 2
            time.sleep(max(0.0, started + sent / RATE - time.monotonic()))
