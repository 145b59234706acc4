"""Command line: ``tts-ai-satellite`` (or ``python -m tts_ai_satellite``)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
import contextlib
import enum
import logging
import os
from pathlib import Path
import sys

from .app import FileInput, FileOutput, Satellite, Settings, SpeakerOutput
from .audio import (
    AudioDeviceError,
    Direction,
    Microphone,
    Speaker,
    describe_devices,
    list_devices,
    portaudio,
    select_device,
)
from .ha import AuthenticationError, PipelineNotFoundError, websocket_url
from .verify import DEFAULT_VERIFY_MODEL, WhisperVerifier
from .wake import (
    DEFAULT_NOISE_SUPPRESSION_DB,
    DEFAULT_WAKE_GAIN_DB,
    DEFAULT_WAKE_THRESHOLD,
    DEFAULT_WAKE_WORD,
    WAKE_WORDS,
    MicroWakeWordModel,
    WakeWordListener,
    WakeWordUnavailableError,
)
from .wav import WavError, read_wav

TOKEN_ENVIRONMENT_VARIABLE = "HA_TOKEN"  # noqa: S105 - a variable name, not a token
URL_ENVIRONMENT_VARIABLE = "HA_URL"


class ExitCode(enum.IntEnum):
    """What the exit status tells a script or systemd."""

    OK = 0
    FAILED = 1
    """The turn failed, or Home Assistant stayed unreachable (one-shot mode)."""
    USAGE = 2
    """Bad arguments: no token, unreadable WAV, unknown sound device."""
    AUTH = 3
    """Home Assistant refused the token."""
    PIPELINE = 4
    """No such Assist pipeline."""


class UsageError(Exception):
    """A command-line problem, with the message to show."""


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="tts-ai-satellite",
        description="Turn this machine into a Home Assistant Assist satellite:"
        " capture speech, run it through an Assist pipeline, play the reply.",
        epilog="The access token comes from --token-file or"
        f" ${TOKEN_ENVIRONMENT_VARIABLE} (a long-lived token from your Home"
        " Assistant profile page).",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENVIRONMENT_VARIABLE) or None,
        help="Home Assistant's address, e.g. http://homeassistant.local:8123"
        f" (default ${URL_ENVIRONMENT_VARIABLE})",
    )
    parser.add_argument("--token-file", type=Path, help="file holding the token")
    parser.add_argument(
        "--pipeline", help="Assist pipeline name or id (default: the preferred one)"
    )
    parser.add_argument(
        "--list-devices", action="store_true", help="list sound devices and exit"
    )
    parser.add_argument("--input-device", help="microphone: number or name")
    parser.add_argument("--output-device", help="speaker: number or name")
    parser.add_argument(
        "--input", type=Path, metavar="FILE.wav", help="speech from a WAV file"
    )
    parser.add_argument(
        "--output", type=Path, metavar="FILE.wav", help="write the reply to a WAV file"
    )
    parser.add_argument(
        "--trigger-file",
        type=Path,
        help="start a turn when this file appears (it is then removed);"
        " with --input/--output, serve a turn per trigger instead of one",
    )
    parser.add_argument(
        "--wake-word",
        nargs="?",
        const=DEFAULT_WAKE_WORD,
        choices=list(WAKE_WORDS),
        metavar="NAME",
        help="listen all the time, on this machine, for a wake word:"
        f" {', '.join(WAKE_WORDS)} (default {DEFAULT_WAKE_WORD}); needs the"
        " `wake` extra. Triggers still start turns too",
    )
    parser.add_argument(
        "--wake-threshold",
        type=float,
        metavar="P",
        default=DEFAULT_WAKE_THRESHOLD,
        help="wake-word probability to fire at, 0-1 (default"
        f" {DEFAULT_WAKE_THRESHOLD}; the model's own is 0.85); lower hears more in"
        " a noisy room and wakes falsely more often",
    )
    parser.add_argument(
        "--wake-noise-suppression",
        type=float,
        metavar="DB",
        default=DEFAULT_NOISE_SUPPRESSION_DB,
        help="clean the noise out of what the wake-word model hears, down to DB"
        f" below itself (default {DEFAULT_NOISE_SUPPRESSION_DB:g}; 0: off). Only"
        " the model hears the cleaned audio",
    )
    parser.add_argument(
        "--wake-gain",
        type=float,
        metavar="DB",
        default=DEFAULT_WAKE_GAIN_DB,
        help="raise what the wake-word model hears by DB, into a soft limiter"
        f" (default {DEFAULT_WAKE_GAIN_DB:g}; 0: off); the model hears loud speech"
        " best. Only the model hears it raised",
    )
    parser.add_argument(
        "--wake-verify",
        nargs="?",
        const=DEFAULT_VERIFY_MODEL,
        metavar="MODEL",
        help="a second opinion on every wake word: Whisper (faster-whisper model"
        f" name or directory; default {DEFAULT_VERIFY_MODEL}, downloaded once) hears"
        " the moment it fired, beside the command, and a wake-up it does not"
        " confirm ends before anything happens. Needs the `verify` extra",
    )
    parser.add_argument(
        "--ha-wake-word",
        action="store_true",
        help="stream all the time to the pipeline's wake-word engine in Home"
        " Assistant instead (e.g. the microWakeWord or openWakeWord add-on)",
    )
    parser.add_argument("--no-cues", action="store_true", help="no beeps")
    parser.add_argument(
        "--max-reconnect-delay",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="longest wait between reconnection attempts (default 30)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="one-turn mode: give up when Home Assistant is unreachable this long",
    )
    parser.add_argument("--debug", action="store_true", help="verbose logging")
    return parser


class RedactingFormatter(logging.Formatter):
    """A formatter that blanks out a secret wherever it would appear.

    Defence in depth: no code here logs the token, and this makes sure no
    library's message or traceback does either.
    """

    def __init__(self, fmt: str, secret: str | None = None) -> None:
        """Format with ``fmt``; replace ``secret`` (once set) by ``[token]``."""
        super().__init__(fmt)
        self.secret = secret

    def format(self, record: logging.LogRecord) -> str:
        """Format the record, then redact."""
        text = super().format(record)
        if self.secret:
            text = text.replace(self.secret, "[token]")
        return text


def configure_logging(debug: bool) -> RedactingFormatter:
    """Log to stderr; returns the formatter so the token can be set on it."""
    formatter = RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        logging.getLogger("aiohttp").setLevel(logging.WARNING)
    return formatter


def read_token(token_file: Path | None) -> str:
    """The access token from the file, or else from the environment."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"cannot read the token file {token_file}: {err}") from err
        if not token:
            raise UsageError(f"the token file {token_file} is empty")
        return token
    if token := os.environ.get(TOKEN_ENVIRONMENT_VARIABLE, "").strip():
        return token
    raise UsageError(
        f"no access token: pass --token-file or set {TOKEN_ENVIRONMENT_VARIABLE}"
    )


def settings_from(args: argparse.Namespace, token: str) -> Settings:
    """Check the arguments that can be checked offline; build the settings."""
    if args.url is None:
        # No guessing (homeassistant.local): a wrong guess only shows as
        # half a minute of reconnecting.
        raise UsageError(
            "no Home Assistant address: pass --url http://HOST:8123"
            f" or set {URL_ENVIRONMENT_VARIABLE}"
        )
    try:
        websocket_url(args.url)
    except ValueError as err:
        raise UsageError(f"--url: {err}") from err
    if args.output is not None and not args.output.parent.is_dir():
        raise UsageError(f"--output: the folder {args.output.parent} does not exist")
    if args.wake_verify and not args.wake_word:
        raise UsageError("--wake-verify checks the on-device --wake-word")
    if args.wake_word and args.ha_wake_word:
        raise UsageError("--wake-word and --ha-wake-word: choose one")
    if (args.wake_word or args.ha_wake_word) and args.input is not None:
        raise UsageError("a wake word is listened for on a microphone, not --input")
    files = args.input is not None or args.output is not None
    return Settings(
        url=args.url,
        token=token,
        pipeline=args.pipeline,
        one_shot=files and args.trigger_file is None,
        ha_wake_word=args.ha_wake_word,
        trigger_file=args.trigger_file,
        connect_timeout=args.connect_timeout,
        max_backoff=args.max_reconnect_delay,
    )


def file_input(args: argparse.Namespace) -> FileInput | None:
    """The ``--input`` WAV, read and converted before the event loop starts."""
    if args.input is None:
        return None
    try:
        return FileInput(read_wav(args.input))
    except WavError as err:
        raise UsageError(f"--input: {err}") from err


@contextlib.contextmanager
def open_audio(
    args: argparse.Namespace, from_file: FileInput | None
) -> Iterator[tuple[object, object]]:
    """The satellite's audio ends: files where given, sound devices otherwise."""
    with contextlib.ExitStack() as stack:
        audio_in: object = from_file
        audio_out: object = None
        if args.output is not None:
            audio_out = FileOutput(args.output)
        if audio_in is None or audio_out is None:
            pa = stack.enter_context(portaudio())
            devices = list_devices(pa)
            if audio_in is None:
                device = select_device(devices, args.input_device, Direction.INPUT)
                microphone = Microphone(pa, device)
                microphone.open()
                stack.callback(microphone.close)
                audio_in = microphone
            if audio_out is None:
                device = select_device(devices, args.output_device, Direction.OUTPUT)
                audio_out = SpeakerOutput(Speaker(pa, device), cues=not args.no_cues)
        yield audio_in, audio_out


def wake_listener(args: argparse.Namespace) -> WakeWordListener | None:
    """The ``--wake-word`` model, loaded before the event loop starts."""
    if args.wake_word is None:
        return None
    try:
        model = MicroWakeWordModel(
            args.wake_word,
            args.wake_threshold,
            noise_suppression_db=args.wake_noise_suppression or None,  # 0: off
            gain_db=args.wake_gain or None,  # 0: off
        )
        return WakeWordListener(model)
    except WakeWordUnavailableError as err:
        raise UsageError(f"--wake-word: {err}") from err


def wake_verifier(
    args: argparse.Namespace, listener: WakeWordListener | None
) -> WhisperVerifier | None:
    """The ``--wake-verify`` model, loaded before the event loop starts."""
    if args.wake_verify is None or listener is None:
        return None
    try:
        return WhisperVerifier(listener.model.phrase, args.wake_verify)
    except WakeWordUnavailableError as err:
        raise UsageError(f"--wake-verify: {err}") from err


async def run(
    args: argparse.Namespace,
    settings: Settings,
    from_file: FileInput | None,
    listener: WakeWordListener | None = None,
    verifier: WhisperVerifier | None = None,
) -> int:
    """Open the audio ends and run the satellite."""
    with open_audio(args, from_file) as (audio_in, audio_out):
        satellite = Satellite(
            settings,
            audio_in,  # type: ignore[arg-type]
            audio_out,  # type: ignore[arg-type]
            wake_listener=listener,
            wake_verifier=verifier,
        )
        return await satellite.run()


def main(argv: list[str] | None = None) -> int:
    """Run the satellite; returns the exit status (see :class:`ExitCode`)."""
    args = build_parser().parse_args(argv)
    formatter = configure_logging(args.debug)
    try:
        if args.list_devices:
            with portaudio() as pa:
                print(describe_devices(list_devices(pa)))
            return ExitCode.OK
        token = read_token(args.token_file)
        formatter.secret = token
        settings = settings_from(args, token)
        listener = wake_listener(args)
        verifier = wake_verifier(args, listener)
        return asyncio.run(run(args, settings, file_input(args), listener, verifier))
    except (UsageError, AudioDeviceError) as err:
        print(f"satellite: {err}", file=sys.stderr)
        return ExitCode.USAGE
    except AuthenticationError as err:
        print(f"satellite: {err}", file=sys.stderr)
        return ExitCode.AUTH
    except PipelineNotFoundError as err:
        print(f"satellite: {err}", file=sys.stderr)
        return ExitCode.PIPELINE
    except KeyboardInterrupt:
        return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
