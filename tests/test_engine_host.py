"""The engine process: Piper and Whisper outside Home Assistant's process.

Real child processes with the real models, and a misbehaving stand-in child
(tests/hostile_engine_child.py) for what a broken or hostile one may send.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import json
import logging
import os
from pathlib import Path
import signal
import sys

import pytest

from custom_components.tts_ai.local import (
    EngineCrashedError,
    EngineError,
    EngineHost,
    HostedPiper,
    HostedWhisper,
)
from custom_components.tts_ai.local.engine_host import (
    STDERR_LINE_MAX_CHARS,
    STDERR_MAX_LINES,
)

from .test_local_engines import JOE, PROFILE, WHISPER_DIR, normalise

ROOT = Path(__file__).resolve().parents[1]
HOST_LOGGER = "custom_components.tts_ai.local.engine_host"
COMMAND = "Turn on the kitchen lights. Then lock the front door."
# Twenty pieces: far more than one piece ahead of a listener who stops.
LONG_TEXT = " ".join(f"This is sentence number {n} of the story." for n in range(20))


def _exists(pid: int) -> bool:
    """Whether a process (or its unreaped remains) exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
async def host() -> AsyncIterator[EngineHost]:
    """An engine process host that keeps its child until closed."""
    engine_host = EngineHost(PROFILE, idle_exit_after=None)
    yield engine_host
    await engine_host.close()


async def test_speech_and_transcription_run_in_another_process(
    host: EngineHost,
) -> None:
    """Piper speaks and Whisper hears through the host, as in-process."""
    piper = HostedPiper(host)
    whisper = HostedWhisper(host, WHISPER_DIR)

    chunks = [chunk async for chunk in piper.synthesize(COMMAND, JOE)]
    transcript = await whisper.transcribe(
        b"".join(chunk.audio for chunk in chunks),
        sample_rate=chunks[0].sample_rate,
        language="en",
    )

    assert [chunk.text for chunk in chunks] == [
        "Turn on the kitchen lights.",
        "Then lock the front door.",
    ]
    assert normalise(transcript.text) == normalise(COMMAND)
    assert piper.loaded_voices == ["en_US-joe-medium"]
    assert piper.known_sample_rate(JOE) == 22050
    assert whisper.is_loaded
    assert host.pid not in (None, os.getpid())


# Run in a fresh interpreter: the test process itself has NumPy, ONNX Runtime
# and CTranslate2 loaded already (the stand-in runs the real models).
_PARENT_SCRIPT = """
import asyncio, json, sys, types
from pathlib import Path
package = types.ModuleType("custom_components.tts_ai")
package.__path__ = [str(Path("custom_components/tts_ai").resolve())]
sys.modules["custom_components.tts_ai"] = package
from custom_components.tts_ai.local import (
    EngineHost, HostedPiper, HostedWhisper, LocalVoice,
)
HEAVY = ("numpy", "onnxruntime", "piper", "faster_whisper", "ctranslate2")
key, model, config, whisper_dir, text = json.loads(sys.argv[1])

def heavy():
    return [name for name in HEAVY if name in sys.modules]

async def main():
    before = heavy()
    host = EngineHost(idle_exit_after=None)
    voice = LocalVoice(key, Path(model), Path(config))
    chunks = [c async for c in HostedPiper(host).synthesize(text, voice)]
    transcript = await HostedWhisper(host, whisper_dir).transcribe(
        b"".join(c.audio for c in chunks), sample_rate=chunks[0].sample_rate
    )
    await host.close()
    print(json.dumps({"before": before, "after": heavy(), "text": transcript.text}))

asyncio.run(main())
"""


async def test_home_assistant_process_never_imports_the_engine_libraries() -> None:
    """After speaking and listening, the parent has no engine library loaded."""
    arguments = json.dumps(
        [JOE.key, str(JOE.model_path), str(JOE.config_path), str(WHISPER_DIR), COMMAND]
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PARENT_SCRIPT, arguments,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)

    assert normalise(result["text"]) == normalise(COMMAND)
    assert result["before"] == []
    assert result["after"] == []


async def test_listener_who_stops_early_stops_the_process_within_one_piece(
    host: EngineHost, caplog: pytest.LogCaptureFixture
) -> None:
    """The cloud won the hedge after the device's first piece: the child
    synthesises at most the one piece it had started ahead, then stops."""
    # Piper logs each piece it synthesises at debug level; the child's log
    # reaches this process through its stderr.
    caplog.set_level(logging.DEBUG, logger="custom_components.tts_ai.local")
    piper = HostedPiper(host)
    await piper.load(JOE)

    speech = piper.synthesize(LONG_TEXT, JOE)
    first = await anext(speech)
    # A slow listener: time for a child that ran ahead to render many pieces.
    await asyncio.sleep(1.0)
    await speech.aclose()  # type: ignore[attr-defined]
    status = await host.request({"op": "status"})
    # A last request whose log line shows all earlier lines have arrived.
    assert [chunk.text async for chunk in piper.synthesize("Done.", JOE)]
    async with asyncio.timeout(30):
        while not any("text=Done." in m for m in caplog.messages):
            await asyncio.sleep(0.05)

    assert first.text == "This is sentence number 0 of the story."
    assert status["jobs"] == 0
    spoken = [m for m in caplog.messages if "text=This is sentence" in m]
    assert 1 <= len(spoken) <= 2


async def test_idle_process_exits_and_the_next_request_starts_another() -> None:
    """After the quiet spell the child is gone; the next request still works."""
    host = EngineHost(PROFILE, idle_exit_after=0.3)
    piper = HostedPiper(host)
    try:
        await piper.load(JOE)
        first_pid = host.pid
        assert first_pid is not None
        async with asyncio.timeout(30):
            while host.pid is not None or _exists(first_pid):
                await asyncio.sleep(0.05)
        assert piper.loaded_voices == []

        chunks = [chunk async for chunk in piper.synthesize("Welcome home.", JOE)]

        assert [chunk.text for chunk in chunks] == ["Welcome home."]
        assert host.starts == 2
    finally:
        await host.close()


async def test_utterance_given_up_leaves_the_engine_free(host: EngineHost) -> None:
    """A stream nobody finishes (the satellite went away mid-command) and a
    transcription cancelled mid-way stop in the child: the next command is
    heard in full."""
    piper = HostedPiper(host)
    whisper = HostedWhisper(host, WHISPER_DIR)
    chunks = [chunk async for chunk in piper.synthesize(COMMAND, JOE)]
    rate = chunks[0].sample_rate
    speech = b"".join(chunk.audio for chunk in chunks)

    given_up = whisper.stream(sample_rate=rate, language="en")
    given_up.feed(speech[: len(speech) // 2])
    await asyncio.sleep(0.2)
    await given_up.aclose()
    await given_up.aclose()  # twice is harmless
    cancelled = asyncio.create_task(
        whisper.transcribe(speech, sample_rate=rate, language="en")
    )
    await asyncio.sleep(0.05)
    cancelled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled

    async with asyncio.timeout(60):
        transcript = await whisper.transcribe(speech, sample_rate=rate, language="en")
    assert normalise(transcript.text) == normalise(COMMAND)
    assert host.starts == 1


async def test_child_runs_through_the_interpreter_command(tmp_path: Path) -> None:
    """The child's Python can be started through another command (the emulated
    aarch64 check starts it through qemu): the engines work through it."""
    marker = tmp_path / "started"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\ntouch "{marker}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    host = EngineHost(PROFILE, idle_exit_after=None, interpreter=[str(wrapper)])
    try:
        chunks = [chunk async for chunk in HostedPiper(host).synthesize(COMMAND, JOE)]
    finally:
        await host.close()
    assert marker.exists()
    assert sum(len(chunk.audio) for chunk in chunks) > 22050  # over half a second


async def test_stream_without_speech_is_heard_as_nothing(host: EngineHost) -> None:
    """An utterance that ends before any audio arrived is empty, not an error."""
    stream = HostedWhisper(host, WHISPER_DIR).stream(language="en")
    stream.feed(b"")
    transcript = await stream.finish()
    assert transcript.text == ""
    assert stream.text_so_far == ""
    assert stream.decodes_before_end == 0


async def test_process_killed_mid_synthesis_fails_that_request_only(
    host: EngineHost,
) -> None:
    """SIGKILL (the OOM killer) mid-announcement: a typed error, no hang, and
    the next announcement is spoken by a fresh process."""
    piper = HostedPiper(host)
    speech = piper.synthesize(LONG_TEXT, JOE)
    await anext(speech)
    assert host.pid is not None
    os.kill(host.pid, signal.SIGKILL)

    with pytest.raises(EngineCrashedError, match="SIGKILL"):
        async with asyncio.timeout(30):
            async for _chunk in speech:
                pass
    chunks = [chunk async for chunk in piper.synthesize("Welcome home.", JOE)]

    assert [chunk.text for chunk in chunks] == ["Welcome home."]
    assert host.starts == 2


async def test_process_killed_mid_utterance_fails_the_transcription(
    host: EngineHost,
) -> None:
    """The child dies while a stream is being decoded: finish() raises."""
    piper = HostedPiper(host)
    chunks = [chunk async for chunk in piper.synthesize(COMMAND, JOE)]
    stream = HostedWhisper(host, WHISPER_DIR).stream(
        sample_rate=chunks[0].sample_rate, language="en"
    )
    stream.feed(chunks[0].audio)
    async with asyncio.timeout(30):
        while host.pid is None:
            await asyncio.sleep(0.01)
    os.kill(host.pid, signal.SIGKILL)
    stream.feed(chunks[1].audio)  # never raises, never blocks

    with pytest.raises(EngineCrashedError):
        async with asyncio.timeout(30):
            await stream.finish()


@pytest.mark.parametrize("mode", ["huge_frame", "garbage", "flood_of_frames"])
async def test_child_that_breaks_the_protocol_is_an_engine_error(
    mode: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A 1 GB frame, bytes that are no frame, frames nobody asked for: the
    request fails with EngineError at once and the child is killed."""
    monkeypatch.setenv("HOSTILE_ENGINE_CHILD", mode)
    host = EngineHost(idle_exit_after=None, child_module="tests.hostile_engine_child")
    try:
        with pytest.raises(EngineError):
            async with asyncio.timeout(30):
                await HostedPiper(host).load(JOE)
        async with asyncio.timeout(30):
            while host.pid is not None:
                await asyncio.sleep(0.01)
    finally:
        await host.close()
    assert host.starts == 1


async def test_wrong_values_from_the_child_are_engine_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Well-formed frames with wrong values (a zero sample rate, a number for
    text, a language that is no string, a duration that is no number) fail
    each request with EngineError, never a raw exception or a bad result."""
    monkeypatch.setenv("HOSTILE_ENGINE_CHILD", "bad_answers")
    host = EngineHost(idle_exit_after=None, child_module="tests.hostile_engine_child")
    piper = HostedPiper(host)
    whisper = HostedWhisper(host, WHISPER_DIR)
    speech = bytes(3200)
    try:
        async with asyncio.timeout(60):
            with pytest.raises(EngineError, match="sample rate"):
                await piper.load(JOE)
            with pytest.raises(EngineError):
                [chunk async for chunk in piper.synthesize(COMMAND, JOE)]
            with pytest.raises(EngineError, match="language"):
                await whisper.transcribe(speech, language="en")
            stream = whisper.stream(language="en")
            stream.feed(speech)
            with pytest.raises(EngineError, match="duration"):
                await stream.finish()
    finally:
        await host.close()


async def test_child_that_will_not_start_is_an_engine_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A child that exits before it is ready fails the request, typed."""
    monkeypatch.setenv("HOSTILE_ENGINE_CHILD", "exit")
    host = EngineHost(idle_exit_after=None, child_module="tests.hostile_engine_child")
    try:
        with pytest.raises(EngineError, match="did not start"):
            async with asyncio.timeout(30):
                await HostedPiper(host).load(JOE)
        assert host.pid is None
    finally:
        await host.close()


async def test_child_stderr_reaches_the_log_bounded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Thousands of long lines (and one that never ends) on the child's
    stderr: a bounded number of bounded lines reach the log, and the child
    is not blocked on a full pipe (it starts and exits)."""
    monkeypatch.setenv("HOSTILE_ENGINE_CHILD", "flood")
    host = EngineHost(idle_exit_after=None, child_module="tests.hostile_engine_child")
    try:
        call = await host.open({"op": "status"})
        async with asyncio.timeout(30):
            while not any("further output not logged" in m for m in caplog.messages):
                await asyncio.sleep(0.05)
    finally:
        await host.close()
    with contextlib.suppress(EngineError):
        await call.receive()

    relayed = [
        r.getMessage()
        for r in caplog.records
        if r.name == HOST_LOGGER
        and r.getMessage().startswith("On-device engine process")
    ]
    assert len([m for m in relayed if "further output" not in m]) == STDERR_MAX_LINES
    # Each relayed line is cut (the child's are 5,000 characters and more).
    assert all(len(m) <= STDERR_LINE_MAX_CHARS + 40 for m in relayed)
