"""The satellite's audio plumbing, without sound hardware.

WAV handling, resampling, end-of-speech detection on real (Piper) speech,
the generated cues, and device listing and selection, with PortAudio present
but no sound card (as on CI).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest

from tests.harness.standin.engines import synthesize_pcm, transcribe_samples
from tts_ai_satellite.audio import (
    AudioDevice,
    AudioDeviceError,
    Direction,
    Microphone,
    Speaker,
    describe_devices,
    list_devices,
    portaudio,
    select_device,
)
from tts_ai_satellite.cues import Cue, cue_audio
from tts_ai_satellite.resample import StreamResampler, resample
from tts_ai_satellite.vad import EndOfSpeechDetector, EndReason
from tts_ai_satellite.wav import Pcm, WavError, parse_wav, read_wav, write_wav

# The satellite as its command runs it, from this package's folder (which puts
# the package on the path without installing it).
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SATELLITE = (sys.executable, "-m", "tts_ai_satellite")


def _tone(
    frequency: float, seconds: float, rate: int, level: float = 0.5
) -> np.ndarray:
    times = np.arange(round(seconds * rate)) / rate
    return np.round(level * 32767 * np.sin(2 * np.pi * frequency * times)).astype(
        np.int16
    )


def _peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(
        np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))
    )
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))


def _ffmpeg(*args: str) -> bytes:
    """Run ffmpeg and return what it writes to stdout."""
    return subprocess.run(
        ["ffmpeg", "-v", "error", *args], capture_output=True, check=True
    ).stdout


def _probe(path: Path) -> str:
    return subprocess.run(
        [
            *("ffprobe", "-v", "error", "-show_entries"),
            *("stream=codec_name,sample_rate,channels", "-of", "csv=p=0", str(path)),
        ],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()


# --- WAV ----------------------------------------------------------------------


def test_written_wav_is_read_back_and_by_ffmpeg(tmp_path: Path) -> None:
    pcm = Pcm(_tone(440, 0.5, 22050), 22050)
    path = tmp_path / "reply.wav"
    write_wav(path, pcm)
    assert _probe(path) == "pcm_s16le,22050,1"
    again = read_wav(path)
    assert again.sample_rate == 22050
    np.testing.assert_array_equal(again.samples, pcm.samples)
    assert not list(tmp_path.glob(".*partial"))  # no temporary left behind


def test_streamed_wav_without_sizes_is_read_whole() -> None:
    """ffmpeg writing WAV to a pipe (as Home Assistant's TTS does) sets no sizes."""
    data = _ffmpeg(
        *("-f", "lavfi", "-i", "sine=frequency=500:duration=1.5:sample_rate=16000"),
        *("-f", "wav", "pipe:1"),
    )
    pcm = parse_wav(data)
    assert pcm.sample_rate == 16000
    assert pcm.duration == pytest.approx(1.5, abs=0.01)
    assert _peak_frequency(pcm.samples, 16000) == pytest.approx(500, abs=5)


@pytest.mark.parametrize(
    ("codec", "channels"),
    [("pcm_s24le", 2), ("pcm_f32le", 2), ("pcm_u8", 1), ("pcm_s32le", 1)],
)
def test_other_pcm_wavs_become_mono_16_bit(
    tmp_path: Path, codec: str, channels: int
) -> None:
    path = tmp_path / "input.wav"
    source = ("-f", "lavfi", "-i", "sine=frequency=700:duration=1:sample_rate=44100")
    _ffmpeg(*source, "-ac", str(channels), "-c:a", codec, str(path))
    # The same sound as plain 16-bit frames: the level to keep.
    frames = _ffmpeg(*source, "-ac", str(channels), "-f", "s16le", "pipe:1")
    reference = np.frombuffer(frames, dtype="<i2").reshape(-1, channels)
    pcm = read_wav(path)
    assert pcm.sample_rate == 44100
    assert pcm.duration == pytest.approx(1.0, abs=0.01)
    assert _peak_frequency(pcm.samples, 44100) == pytest.approx(700, abs=5)
    assert _rms(pcm.samples) == pytest.approx(_rms(reference[:, 0]), rel=0.02)


def test_unusable_wavs_say_what_is_wrong(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(WavError, match=r"cannot read .*missing\.wav"):
        read_wav(missing)
    text = tmp_path / "notes.wav"
    text.write_text("what time is it")
    with pytest.raises(WavError, match="not a WAV file"):
        read_wav(text)
    mp3 = tmp_path / "speech.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-f", "mp3", str(mp3))
    with pytest.raises(WavError, match="not a WAV file"):
        read_wav(mp3)
    mulaw = tmp_path / "phone.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "pcm_mulaw", str(mulaw))
    with pytest.raises(WavError, match="unsupported WAV encoding mu-law"):
        read_wav(mulaw)
    header_only = tmp_path / "empty.wav"
    header_only.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(WavError, match="no data chunk"):
        read_wav(header_only)


# --- resampling ---------------------------------------------------------------


def test_downsampling_keeps_speech_frequencies_and_level() -> None:
    tone = _tone(1000, 1.0, 48000)
    out = resample(tone, 48000, 16000)
    assert len(out) == 16000
    assert _peak_frequency(out, 16000) == pytest.approx(1000, abs=3)
    assert _rms(out) == pytest.approx(_rms(tone), rel=0.02)


def test_downsampling_removes_what_the_new_rate_cannot_carry() -> None:
    """A 10 kHz whistle must not come back as a 6 kHz tone at 16 kHz."""
    whistle = _tone(10000, 1.0, 48000)
    out = resample(whistle, 48000, 16000)
    assert _rms(out) < _rms(whistle) / 100  # more than 40 dB down
    # Linear interpolation alone would keep it loud (what the filter is for).
    naive = np.interp(np.arange(16000) * 3.0, np.arange(48000), whistle)
    assert _rms(naive) > _rms(whistle) / 2


def test_upsampling_a_reply_to_the_speakers_rate() -> None:
    out = resample(_tone(440, 1.0, 16000), 16000, 44100)
    assert len(out) == 44100
    assert _peak_frequency(out, 44100) == pytest.approx(440, abs=2)


def test_streaming_in_uneven_chunks_has_no_seams() -> None:
    signal = _tone(440, 1.0, 44100) // 2 + _tone(3000, 1.0, 44100) // 2
    whole = StreamResampler(44100, 16000).process(signal)
    chunked_resampler = StreamResampler(44100, 16000)
    sizes = [1, 441, 1323, 7, 2048, 30000]
    pieces, start = [], 0
    for size in [*sizes, len(signal)]:
        pieces.append(chunked_resampler.process(signal[start : start + size]))
        start += size
    chunked = np.concatenate(pieces)
    assert abs(len(chunked) - 16000) <= 1
    np.testing.assert_allclose(chunked, whole, atol=1)
    # The stream is the whole-buffer conversion, delayed by the filter's
    # 50 input samples (about 1 ms).
    delayed = np.concatenate([np.zeros(50, dtype=np.int16), signal])[: len(signal)]
    reference = resample(delayed, 44100, 16000)
    np.testing.assert_allclose(chunked[100:15900], reference[100:15900], atol=2)


# --- end of speech --------------------------------------------------------------


def _speech_in_noise(
    text: str, before: float, after: float
) -> tuple[np.ndarray, float, float]:
    """Piper speech between stretches of room noise; (samples, start, end) in s."""
    spoken = synthesize_pcm(text)
    assert spoken.sample_rate == 22050
    speech = resample(np.frombuffer(spoken.pcm, dtype=np.int16), 22050, 16000)
    generator = np.random.default_rng(7)
    total = round((before + after) * 16000) + len(speech)
    noise = generator.normal(0, 32768 * 10 ** (-60 / 20), total)  # -60 dBFS hiss
    signal = noise
    offset = round(before * 16000)
    signal[offset : offset + len(speech)] += speech
    voiced = np.flatnonzero(np.abs(speech) > 500)  # Piper pads a little silence
    start = before + voiced[0] / 16000
    end = before + voiced[-1] / 16000
    return np.clip(signal, -32768, 32767).astype(np.int16), start, end


def _feed_like_a_microphone(
    detector: EndOfSpeechDetector, samples: np.ndarray
) -> float:
    """Feed 30 ms chunks until the detector ends; returns when (seconds)."""
    for start in range(0, len(samples), 480):
        if detector.feed(samples[start : start + 480]):
            return (start + 480) / 16000
    return len(samples) / 16000


def test_end_of_speech_after_a_command_with_silence_around_it() -> None:
    samples, start, end = _speech_in_noise("Turn on the kitchen lights.", 1.5, 3.0)
    detector = EndOfSpeechDetector(16000)
    stopped_at = _feed_like_a_microphone(detector, samples)
    assert detector.end_reason is EndReason.SILENCE
    assert detector.speech_start == pytest.approx(start, abs=0.15)
    assert detector.speech_end == pytest.approx(end, abs=0.15)
    # The recording stops soon after the last word, long before the audio ends.
    silence = detector.settings.silence_seconds
    assert end + silence - 0.1 <= stopped_at <= end + silence + 0.3


def test_a_pause_between_sentences_does_not_end_the_command() -> None:
    samples, _start, end = _speech_in_noise(
        "Turn on the lights. Then lock the front door.", 0.5, 2.0
    )
    detector = EndOfSpeechDetector(16000)
    stopped_at = _feed_like_a_microphone(detector, samples)
    assert detector.end_reason is EndReason.SILENCE
    assert stopped_at >= end  # both sentences were heard


def test_only_room_noise_ends_as_no_speech() -> None:
    noise = np.random.default_rng(1).normal(0, 30, 16000 * 10).astype(np.int16)
    detector = EndOfSpeechDetector(16000)
    stopped_at = _feed_like_a_microphone(detector, noise)
    assert detector.end_reason is EndReason.NO_SPEECH
    assert detector.speech_start is None
    assert stopped_at == pytest.approx(detector.settings.no_speech_seconds, abs=0.05)


# --- cues -----------------------------------------------------------------------


@pytest.mark.parametrize("rate", [16000, 22050, 48000])
@pytest.mark.parametrize("cue", list(Cue))
def test_cues_are_short_soft_edged_tones(cue: Cue, rate: int) -> None:
    audio = cue_audio(cue, rate)
    assert audio.sample_rate == rate
    assert 0.2 < audio.duration < 0.5  # a cue, not a tune
    samples = audio.samples
    assert abs(int(samples[0])) < 300 and abs(int(samples[-1])) < 300  # no click
    assert -20 < 20 * np.log10(np.max(np.abs(samples)) / 32768) < -6
    # The notes come in order: e.g. "listening" rises, "done" falls.
    (first_hz, first_s), (second_hz, _) = cue.value
    first = samples[: round(first_s * rate)]
    second = samples[len(samples) - round(0.1 * rate) :]
    assert _peak_frequency(first, rate) == pytest.approx(first_hz, rel=0.05)
    assert _peak_frequency(second, rate) == pytest.approx(second_hz, rel=0.05)
    if cue is Cue.LISTENING:
        assert second_hz > first_hz


# --- devices ----------------------------------------------------------------------

USB_MIC = AudioDevice(2, "USB PnP Sound Device: Audio (hw:1,0)", "ALSA", 1, 0, 44100)
HDMI = AudioDevice(0, "vc4-hdmi-0: MAI PCM i2s-hifi-0 (hw:0,0)", "ALSA", 0, 2, 48000)
HEADPHONES = AudioDevice(
    1, "bcm2835 Headphones: - (hw:2,0)", "ALSA", 0, 8, 44100, is_default_output=True
)
USB_SPEAKER = AudioDevice(3, "USB Audio Device: - (hw:3,0)", "ALSA", 1, 2, 48000)
DEVICES = [HDMI, HEADPHONES, USB_MIC, USB_SPEAKER]


def test_devices_are_chosen_by_default_number_or_name() -> None:
    # No default input: the first that can record.
    assert select_device(DEVICES, None, Direction.INPUT) == USB_MIC
    assert select_device(DEVICES, "default", Direction.OUTPUT) == HEADPHONES
    assert select_device(DEVICES, "3", Direction.OUTPUT) == USB_SPEAKER
    assert select_device(DEVICES, "pnp", Direction.INPUT) == USB_MIC
    assert select_device(DEVICES, "HDMI", Direction.OUTPUT) == HDMI
    exact = AudioDevice(4, "USB", "ALSA", 1, 0, 16000)
    assert select_device([*DEVICES, exact], "usb", Direction.INPUT) == exact


def test_device_choices_that_do_not_fit_list_what_exists() -> None:
    with pytest.raises(AudioDeviceError, match="matches several input devices") as err:
        select_device(DEVICES, "usb", Direction.INPUT)
    assert "USB PnP" in str(err.value) and "USB Audio Device" in str(err.value)
    with pytest.raises(AudioDeviceError, match=r"device 0 .* has no input channels"):
        select_device(DEVICES, "0", Direction.INPUT)
    with pytest.raises(AudioDeviceError, match="there is no device 9"):
        select_device(DEVICES, "9", Direction.OUTPUT)
    with pytest.raises(AudioDeviceError, match="no output device is named like"):
        select_device(DEVICES, "bluetooth", Direction.OUTPUT)
    with pytest.raises(AudioDeviceError, match=r"no input device found.*arecord -l"):
        select_device([HDMI, HEADPHONES], None, Direction.INPUT)


def test_device_table_marks_defaults() -> None:
    table = describe_devices(DEVICES)
    assert len(table.splitlines()) == 4
    assert "bcm2835 Headphones" in table and "(default output)" in table
    assert "in: 1  out: 0  44100 Hz" in table


class _FakePyAudio:
    """What pyaudio reports on a Pi with a USB microphone and headphones."""

    def __init__(self, devices: list[dict[str, Any]]) -> None:
        self.devices = devices

    def get_device_count(self) -> int:
        return len(self.devices)

    def get_device_info_by_index(self, index: int) -> dict[str, Any]:
        return self.devices[index]

    def get_host_api_info_by_index(self, index: int) -> dict[str, Any]:
        return {"index": index, "name": "ALSA"}

    def get_default_input_device_info(self) -> dict[str, Any]:
        raise OSError("No Default Input Device Available")

    def get_default_output_device_info(self) -> dict[str, Any]:
        return self.devices[1]


def test_pyaudio_device_info_is_read() -> None:
    fake = _FakePyAudio(
        [
            {"index": 0, "name": "USB mic", "hostApi": 0, "maxInputChannels": 1,
             "maxOutputChannels": 0, "defaultSampleRate": 44100.0},
            {"index": 1, "name": "Headphones", "hostApi": 0, "maxInputChannels": 0,
             "maxOutputChannels": 2, "defaultSampleRate": 48000.0},
        ]
    )  # fmt: skip
    mic, phones = list_devices(fake)
    assert (mic.name, mic.input_channels, mic.default_sample_rate) == (
        "USB mic",
        1,
        44100,
    )
    assert not mic.is_default_input and phones.is_default_output


def test_real_portaudio_without_sound_cards() -> None:
    """CI has PortAudio but no card: listing works and is empty."""
    with portaudio() as pa:
        devices = list_devices(pa)
    assert [d for d in devices if d.input_channels or d.output_channels] == devices
    if devices:
        pytest.skip("this machine has sound devices")
    assert describe_devices(devices) == "  (no audio devices found)"


def test_list_devices_command_is_quiet_and_clear() -> None:
    result = subprocess.run(
        [*SATELLITE, "--list-devices"],
        cwd=PACKAGE_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    # ALSA's probing chatter for missing cards is hidden.
    assert "ALSA lib" not in result.stderr
    assert "jack server" not in result.stderr.lower()


def test_satellite_without_a_microphone_says_so(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("not-needed")
    with portaudio() as pa:
        if list_devices(pa):
            pytest.skip("this machine has sound devices")
    result = subprocess.run(
        [
            *(*SATELLITE, "--url", "http://127.0.0.1:9"),
            *("--token-file", str(token)),
        ],
        cwd=PACKAGE_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no input device found" in result.stderr


# --- capture and playback through PortAudio's interface ---------------------------


class _FakeStream:
    """A PortAudio stream: reads come from ``source``, writes are kept."""

    def __init__(
        self, source: np.ndarray | None, rate: int, speaking: threading.Event
    ) -> None:
        self.source = source
        self.rate = rate
        self.speaking = speaking  # silence until the test lets the user speak
        self.position = 0
        self.written = bytearray()
        self.closed = False

    def read(self, frames: int, exception_on_overflow: bool = True) -> bytes:
        assert self.source is not None
        time.sleep(frames / self.rate / 8)  # a little like a real device
        if not self.speaking.is_set():
            return bytes(frames * 2)
        chunk = self.source[self.position : self.position + frames]
        self.position += frames
        return np.pad(chunk, (0, frames - len(chunk))).astype("<i2").tobytes()

    def write(self, data: bytes) -> None:
        self.written.extend(data)

    def stop_stream(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class _FakeDevicePyAudio:
    """One device that only opens at ``rate`` (like many USB microphones)."""

    def __init__(self, rate: int, source: np.ndarray | None = None) -> None:
        self.rate = rate
        self.source = source
        self.streams: list[tuple[dict[str, Any], _FakeStream]] = []
        self.speaking = threading.Event()

    def is_format_supported(self, rate: int, **kwargs: Any) -> bool:
        if rate != self.rate:
            raise ValueError("Invalid sample rate")
        return True

    def open(self, **kwargs: Any) -> _FakeStream:
        assert kwargs["rate"] == self.rate and kwargs["channels"] == 1
        stream = _FakeStream(self.source, self.rate, self.speaking)
        self.streams.append((kwargs, stream))
        return stream


def _speech(text: str, rate: int) -> np.ndarray:
    spoken = synthesize_pcm(text)
    return resample(np.frombuffer(spoken.pcm, dtype=np.int16), spoken.sample_rate, rate)


def _heard(samples: np.ndarray, rate: int) -> list[str]:
    audio = resample(samples, rate, 16000).astype(np.float32) / 32768
    text = " ".join(segment.text for segment in transcribe_samples(audio))
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


async def test_microphone_at_44k_delivers_16k_speech() -> None:
    speech = _speech("Turn on the kitchen lights.", 44100)
    # A moment of quiet before the words, as when someone starts to speak
    # (Whisper mishears a word cut right at the start of the audio).
    pause = np.zeros(44100 // 3, dtype=np.int16)
    pa = _FakeDevicePyAudio(44100, np.concatenate([pause, speech]))
    device = AudioDevice(1, "USB mic", "ALSA", 1, 0, 44100, is_default_input=True)
    microphone = Microphone(pa, device)
    assert microphone.capture_rate == 44100  # 16 kHz refused: converted here
    microphone.open()
    try:
        await asyncio.sleep(0.1)  # audio before the turn is dropped
        microphone.start_listening()
        pa.speaking.set()
        chunks = microphone.chunks()
        received = bytearray()
        [(_opened, stream)] = pa.streams
        async with asyncio.timeout(30):
            # Until the device has given all the speech and some silence after.
            while stream.position < len(pa.source) + 44100 // 4:
                received.extend(await anext(chunks))
        microphone.stop_listening()
    finally:
        microphone.close()
    [(opened, stream)] = pa.streams
    assert opened["input"] is True and opened["input_device_index"] == 1
    assert stream.closed
    samples = np.frombuffer(bytes(received), dtype="<i2")
    assert _heard(samples, 16000) == ["turn", "on", "the", "kitchen", "lights"]


async def test_speaker_plays_a_reply_at_the_devices_own_rate() -> None:
    reply = _speech("Good night, sleep well.", 22050)
    pa = _FakeDevicePyAudio(48000)
    device = AudioDevice(0, "Headphones", "ALSA", 0, 2, 48000, is_default_output=True)
    speaker = Speaker(pa, device)
    assert speaker.sample_rate == 48000  # what the satellite asks HA for
    await speaker.play(Pcm(reply, 22050))
    [(opened, stream)] = pa.streams
    assert opened["output"] is True and opened["rate"] == 48000
    played = np.frombuffer(bytes(stream.written), dtype="<i2")
    assert len(played) / 48000 == pytest.approx(len(reply) / 22050 + 0.05, abs=0.01)
    assert _heard(played, 48000) == ["good", "night", "sleep", "well"]
