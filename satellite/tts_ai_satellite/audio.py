"""Sound devices through PortAudio (``pyaudio``): listing, choosing, capture, playback.

``pyaudio`` is imported only here and only when a device is needed, so the
file-to-file mode (``--input`` / ``--output``) runs without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import contextlib
from dataclasses import dataclass
import enum
import logging
import os
from pathlib import Path
import sys
import threading
from typing import Any

import numpy as np

from .resample import StreamResampler, resample
from .wav import Pcm

_LOGGER = logging.getLogger(__name__)

ASSIST_SAMPLE_RATE = 16000
"""What Assist's speech-to-text takes: 16 kHz, 16-bit, mono."""
CHUNK_SECONDS = 0.03
_PLAYBACK_LEAD_IN_SECONDS = 0.05
"""Silence before a sound: many USB DACs swallow the first milliseconds."""


class Direction(enum.StrEnum):
    """Which way audio flows through a device."""

    INPUT = "input"
    OUTPUT = "output"


class AudioDeviceError(Exception):
    """No usable device, or one that the user named and that does not fit."""


@dataclass(frozen=True)
class AudioDevice:
    """What PortAudio reports of a device."""

    index: int
    name: str
    host_api: str
    input_channels: int
    output_channels: int
    default_sample_rate: int
    is_default_input: bool = False
    is_default_output: bool = False

    def channels(self, direction: Direction) -> int:
        """How many channels the device has that way (0: it cannot)."""
        if direction is Direction.INPUT:
            return self.input_channels
        return self.output_channels

    def is_default(self, direction: Direction) -> bool:
        """Whether the system picks this device for that direction."""
        if direction is Direction.INPUT:
            return self.is_default_input
        return self.is_default_output


def select_device(
    devices: list[AudioDevice], wanted: str | None, direction: Direction
) -> AudioDevice:
    """Pick a device by index, by name (or part of it), or the default one.

    Raise :class:`AudioDeviceError` with a message that says what exists.
    """
    usable = [device for device in devices if device.channels(direction) > 0]
    if not usable:
        raise AudioDeviceError(
            f"no {direction} device found: check that it is plugged in "
            f"(`{'arecord' if direction is Direction.INPUT else 'aplay'} -l` "
            "lists what ALSA sees)"
        )
    if wanted is None or wanted.strip().lower() in {"", "default"}:
        return next((d for d in usable if d.is_default(direction)), usable[0])
    wanted = wanted.strip()
    if wanted.isdigit():
        by_index = next((d for d in devices if d.index == int(wanted)), None)
        if by_index is None:
            raise AudioDeviceError(
                f"there is no device {wanted}; {direction} devices:\n"
                + describe_devices(usable)
            )
        if by_index.channels(direction) == 0:
            raise AudioDeviceError(
                f"device {wanted} ({by_index.name}) has no {direction} channels;"
                f" {direction} devices:\n" + describe_devices(usable)
            )
        return by_index
    folded = wanted.casefold()
    exact = [d for d in usable if d.name.casefold() == folded]
    partial = exact or [d for d in usable if folded in d.name.casefold()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise AudioDeviceError(
            f"no {direction} device is named like {wanted!r}; {direction} devices:\n"
            + describe_devices(usable)
        )
    raise AudioDeviceError(
        f"{wanted!r} matches several {direction} devices; give its number:\n"
        + describe_devices(partial)
    )


def describe_devices(devices: list[AudioDevice]) -> str:
    """One line a device: number, name, channels, rate, and which are defaults."""
    if not devices:
        return "  (no audio devices found)"
    lines = []
    for device in devices:
        marks = [
            label
            for label, flag in (
                ("default input", device.is_default_input),
                ("default output", device.is_default_output),
            )
            if flag
        ]
        lines.append(
            f"  {device.index:>3}  {device.name}  [{device.host_api}]"
            f"  in: {device.input_channels}  out: {device.output_channels}"
            f"  {device.default_sample_rate} Hz"
            + (f"  ({', '.join(marks)})" if marks else "")
        )
    return "\n".join(lines)


@contextlib.contextmanager
def portaudio() -> Iterator[Any]:
    """A ``pyaudio.PyAudio`` for the duration of a block.

    ALSA prints a screenful of probing noise on the C-level stderr while
    PortAudio starts (for every card that is not there); it is hidden so the
    satellite's own messages stay readable.
    """
    try:
        import pyaudio  # noqa: PLC0415 - only sound-device modes need it
    except ImportError as err:
        raise AudioDeviceError(
            "pyaudio is not installed: `pip install 'tts-ai-satellite[audio]'`"
            " (it needs the portaudio19-dev package to build)"
        ) from err
    with _quiet_c_stderr():
        pa = pyaudio.PyAudio()
    try:
        yield pa
    finally:
        pa.terminate()


def list_devices(pa: Any) -> list[AudioDevice]:
    """Every device PortAudio knows, with the system's defaults marked."""
    defaults: dict[Direction, int | None] = {}
    for direction, getter in (
        (Direction.INPUT, pa.get_default_input_device_info),
        (Direction.OUTPUT, pa.get_default_output_device_info),
    ):
        try:
            defaults[direction] = int(getter()["index"])
        except OSError:  # "No Default Input Device Available"
            defaults[direction] = None
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        host_api = pa.get_host_api_info_by_index(info["hostApi"])["name"]
        devices.append(
            AudioDevice(
                index=index,
                name=str(info["name"]),
                host_api=str(host_api),
                input_channels=int(info["maxInputChannels"]),
                output_channels=int(info["maxOutputChannels"]),
                default_sample_rate=round(info["defaultSampleRate"]),
                is_default_input=defaults[Direction.INPUT] == index,
                is_default_output=defaults[Direction.OUTPUT] == index,
            )
        )
    return devices


def supported_rate(
    pa: Any, device: AudioDevice, direction: Direction, preferred: int
) -> int:
    """``preferred`` if the device opens mono 16-bit at it, else its own rate."""
    import pyaudio  # noqa: PLC0415

    side = direction.value  # the keyword prefix pyaudio uses
    kwargs = {
        f"{side}_device": device.index,
        f"{side}_channels": 1,
        f"{side}_format": pyaudio.paInt16,
    }
    try:
        pa.is_format_supported(preferred, **kwargs)
    except ValueError:
        return device.default_sample_rate
    return preferred


class Microphone:
    """Captures 16 kHz mono 16-bit audio from an input device.

    The stream stays open for the whole session (opening an ALSA device takes
    long enough to lose the first syllable); a thread reads it, and chunks
    reach :meth:`chunks` only while :meth:`start_listening` is in effect. A
    device that cannot do 16 kHz is captured at its own rate and converted.
    """

    def __init__(self, pa: Any, device: AudioDevice) -> None:
        """Prepare capture from ``device``; :meth:`open` starts it."""
        self._pa = pa
        self.device = device
        self.capture_rate = supported_rate(
            pa, device, Direction.INPUT, ASSIST_SAMPLE_RATE
        )
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._listening = False
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        """Open the device and start reading it."""
        import pyaudio  # noqa: PLC0415

        self._loop = asyncio.get_running_loop()
        frames = round(self.capture_rate * CHUNK_SECONDS)
        self._stream = self._pa.open(
            format=pyaudio.paInt16,
            channels=1,
            rate=self.capture_rate,
            input=True,
            input_device_index=self.device.index,
            frames_per_buffer=frames,
        )
        self._running.set()
        self._thread = threading.Thread(
            target=self._read_forever, args=(frames,), name="microphone", daemon=True
        )
        self._thread.start()
        _LOGGER.info("Microphone: %s at %d Hz", self.device.name, self.capture_rate)

    def close(self) -> None:
        """Stop reading and release the device."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._stream is not None:
            self._stream.stop_stream()
            self._stream.close()
            self._stream = None

    def start_listening(self) -> None:
        """Deliver audio from now on (what was captured before is dropped)."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._listening = True

    def stop_listening(self) -> None:
        """Stop delivering audio (the device keeps running)."""
        self._listening = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """16 kHz mono 16-bit chunks, for as long as the caller iterates."""
        while True:
            yield await self._queue.get()

    def _read_forever(self, frames: int) -> None:
        converter = StreamResampler(self.capture_rate, ASSIST_SAMPLE_RATE)
        while self._running.is_set():
            try:
                data = self._stream.read(frames, exception_on_overflow=False)
            except OSError:
                _LOGGER.exception("Reading the microphone failed")
                return
            samples = np.frombuffer(data, dtype="<i2")
            chunk = converter.process(samples).astype("<i2").tobytes()
            assert self._loop is not None
            # Nothing wants the audio while the satellite waits for a trigger:
            # the event loop is not woken for it, 33 times a second.
            if self._listening:
                self._loop.call_soon_threadsafe(self._deliver, chunk)

    def _deliver(self, chunk: bytes) -> None:
        if self._listening:
            self._queue.put_nowait(chunk)


class Speaker:
    """Plays mono 16-bit audio on an output device at a rate it takes."""

    def __init__(self, pa: Any, device: AudioDevice) -> None:
        """Prepare playback on ``device``."""
        self._pa = pa
        self.device = device
        self.sample_rate = supported_rate(
            pa, device, Direction.OUTPUT, device.default_sample_rate
        )
        self._lock = asyncio.Lock()

    async def play(self, pcm: Pcm) -> None:
        """Play ``pcm`` (converted to the device's rate) and wait until it ends."""
        async with self._lock:  # one sound at a time
            # Converting and writing both block: keep them off the event loop.
            await asyncio.get_running_loop().run_in_executor(
                None, self._play_blocking, pcm
            )

    def _play_blocking(self, pcm: Pcm) -> None:
        import pyaudio  # noqa: PLC0415

        samples = resample(pcm.samples, pcm.sample_rate, self.sample_rate)
        lead_in = np.zeros(round(_PLAYBACK_LEAD_IN_SECONDS * self.sample_rate))
        audio = np.concatenate([lead_in.astype(np.int16), samples])
        stream = self._pa.open(
            format=pyaudio.paInt16,
            channels=1,
            rate=self.sample_rate,
            output=True,
            output_device_index=self.device.index,
        )
        try:
            stream.write(audio.astype("<i2").tobytes())
        finally:
            stream.stop_stream()
            stream.close()


@contextlib.contextmanager
def _quiet_c_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment (C libraries' chatter)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr: nothing to hide
        yield
        return
    try:
        with Path(os.devnull).open("wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
