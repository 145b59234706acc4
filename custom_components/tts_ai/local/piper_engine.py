"""Piper text-to-speech on the device, streamed sentence by sentence.

Each voice gets its own ONNX Runtime session, tuned for a small ARM board.
Synthesis runs on a thread of the engine's own, one text piece of bounded
length at a time and at most one piece ahead of the consumer, so the first
audio is out after the first sentence (or the first clause of a long one)
while the rest is still being synthesised, and a consumer that stops (the
cloud won a hedge) stops the work within one piece.
"""

# The engines' packages are optional: import them lazily (see __init__.py).
# ruff: noqa: PLC0415

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
import json
import logging
from pathlib import Path
import re
from typing import Any

from ..speech.audio import pcm_to_wav
from ..speech.text import clean_text, split_sentences
from .device import DeviceProfile, detect_device_profile
from .idle import IdleReleaser, free_objects, trim_heap
from .pcm import PcmChunk

_LOGGER = logging.getLogger(__name__)

# A first sentence longer than this is cut at its clauses, so the listener
# hears something after one clause instead of after the whole sentence.
FIRST_PIECE_MAX_CHARS = 60
FIRST_PIECE_MAX_WORDS = 10
# No piece is longer than this. ONNX Runtime's working memory for one Piper
# inference grows with the length of its text: measured on the 2-core x86_64
# development machine, peak RSS growth of one inference is ~1.2 MB per
# character up to 150 characters (20: +34 MB, 80: +125 MB, 150: +202 MB) and
# one unpunctuated sentence of 1,000 characters took +630 MB, 2,000 +1.1-1.35
# GB, 20,000 std::bad_alloc: a templated automation text could take a 1-4 GB
# Pi down. A sentence up to this length (a long one in a normal
# announcement) is one piece; a longer one is cut at clauses.
MAX_PIECE_CHARS = 100
# A clause still longer than MAX_PIECE_CHARS is cut between words into pieces
# of at most this length: without punctuation there is no phrasing to keep,
# and short pieces keep such text below a normal announcement's memory
# (scripts/bench, the long-text figure).
WORD_PIECE_MAX_CHARS = 50
# ... and the first of them, when it starts the text, at most this long: a
# normal text's first piece is a short sentence or clause, and a text without
# punctuation should not be heard later than one.
FIRST_WORD_PIECE_MAX_CHARS = 40
# Clauses shorter than this are joined to a neighbour: a lone "Well," as its
# own piece sounds choppy and saves no time.
_MIN_CLAUSE_CHARS = 15
# After , ; : or a spaced dash; also inside "word—word". "1,000" stays whole.
_CLAUSE_BREAK = re.compile(r"(?<=[,;:\u2014\u2013])\s+|(?<=\w\u2014)(?=\w)")
# Give freed heap memory back every this many syntheses (see idle.trim_heap):
# onnxruntime's per-run allocations otherwise make a long-running HA creep up.
TRIM_HEAP_EVERY = 25
# Synthesised once after loading, so the first real request does not pay
# for ONNX Runtime's lazy allocations and espeak-ng's start-up.
_WARM_UP_TEXT = "Ready."

# ONNX Runtime memory settings, chosen by measurement: 50 syntheses of 1-2
# sentence texts with en_US-joe-medium, 2 intra-op threads, on the 2-core
# x86_64 development machine (two runs each; RSS above the pre-load baseline):
#   arena on,  mem pattern on:  RSS 187 MB after 5, 252-258 MB after 50
#                               (still growing), CPU 8.1-8.2 s
#   arena off, mem pattern off: RSS 120 MB after 5, 118-121 MB after 50
#                               (flat), CPU 9.4-10.0 s
# (mixed settings were no better than either.) The arena keeps the largest
# buffers it ever needed, so a long text leaves ~135 MB pinned for good; on
# a 1 GB Pi 3 that is too much to pay for ~15% less CPU time, when synthesis
# is already far faster than real time. So both are off.
# Checked again on a quiet machine (60 syntheses, one process each): arena
# off 161 MB, arena on 251 MB, arena + pattern 293 MB above the baseline;
# arena on is ~20 % faster (scripts/bench figure 1 shows the same gap).
_ENABLE_CPU_MEM_ARENA = False
_ENABLE_MEM_PATTERN = False
# Spin-waiting worker threads burned 8.5-13 s CPU instead of 8.1-8.6 s for
# the same 50 syntheses with no gain in speed, and on a Pi that CPU belongs
# to the rest of Home Assistant: let the threads sleep.
_ALLOW_SPINNING = "0"


@dataclass(frozen=True)
class LocalVoice:
    """A Piper voice on disk: the ONNX model and its JSON config."""

    key: str
    """Voice name, e.g. "en_US-joe-medium"."""
    model_path: Path
    config_path: Path


class VoiceSampleRates:
    """The rate each voice's audio comes at, remembered once known.

    Known without file access once a voice has been loaded or has spoken;
    before that the voice's small JSON config is read (blocking).
    """

    def __init__(self) -> None:
        """Start knowing no voice's rate."""
        self._rates: dict[LocalVoice, int] = {}

    def of(self, voice: LocalVoice) -> int:
        """Return ``voice``'s rate, reading its config if it is not known yet."""
        rate = self._rates.get(voice)
        if rate is None:
            rate = self._rates[voice] = _read_sample_rate(voice.config_path)
        return rate

    def known(self, voice: LocalVoice) -> int | None:
        """Return ``voice``'s rate if known without reading a file."""
        return self._rates.get(voice)

    def remember(self, voice: LocalVoice, rate: int) -> None:
        """Keep ``rate`` as ``voice``'s (it was loaded, or its audio said so)."""
        self._rates[voice] = rate


@dataclass
class _LoadedVoice:
    """A voice ready to synthesise."""

    voice: LocalVoice
    piper: Any  # piper.PiperVoice; piper is imported lazily
    sample_rate: int


class PiperEngine:
    """Synthesise speech with Piper voices kept in memory (LRU, idle unload).

    Safe for concurrent use: an ONNX Runtime session may run several
    inferences at once, and a Piper voice keeps no per-call state (its
    espeak-ng phonemizer has its own lock).
    """

    def __init__(
        self,
        profile: DeviceProfile | None = None,
        *,
        max_loaded_voices: int = 2,
        idle_unload_after: float | None = 600.0,
    ) -> None:
        """Set up the engine; nothing is loaded until the first request.

        ``profile`` defaults to the detected hardware (read in an executor
        on first load). ``idle_unload_after=None`` keeps voices loaded.
        """
        if max_loaded_voices < 1:
            raise ValueError("max_loaded_voices must be at least 1")
        self._profile = profile
        self._max_loaded_voices = max_loaded_voices
        # Least recently used first.
        self._voices: OrderedDict[str, _LoadedVoice] = OrderedDict()
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._sample_rates = VoiceSampleRates()
        self._idle = IdleReleaser(idle_unload_after, self.unload)
        self._syntheses = 0
        # Every inference runs on this one thread, one at a time. Two at once
        # would need twice the memory for no gain (one already uses every
        # core), and the heap of a single thread is reused from piece to
        # piece instead of growing one malloc arena per executor thread.
        self._inference: ThreadPoolExecutor | None = None

    @property
    def loaded_voices(self) -> list[str]:
        """Keys of the voices in memory, least recently used first."""
        return list(self._voices)

    def sample_rate(self, voice: LocalVoice) -> int:
        """Return the sample rate of the audio ``voice`` produces.

        Known without file access once the voice has been loaded; before
        that the small JSON config is read (call :meth:`load` first from
        the event loop to avoid even that).
        """
        return self._sample_rates.of(voice)

    def known_sample_rate(self, voice: LocalVoice) -> int | None:
        """Return the rate of ``voice``'s audio if known without reading a file."""
        return self._sample_rates.known(voice)

    def _inference_thread(self) -> ThreadPoolExecutor:
        """Return the thread that loads voices and runs every inference."""
        if self._inference is None:
            self._inference = ThreadPoolExecutor(1, thread_name_prefix="piper")
        return self._inference

    async def load(self, voice: LocalVoice) -> None:
        """Load ``voice`` and warm it up; evicts the least recently used voice."""
        with self._idle.in_use():
            await self._ensure_loaded(voice)

    async def synthesize(
        self, text: str, voice: LocalVoice, *, speed: float = 1.0
    ) -> AsyncIterator[PcmChunk]:
        """Yield the speech for ``text`` piece by piece as it is synthesised.

        Pieces are sentences of bounded length (see :func:`split_for_streaming`).
        While the caller handles one chunk, the next piece is being synthesised.
        ``speed`` 2.0 talks twice as fast. Blank text yields nothing. A caller
        that stops early should close the generator (``contextlib.aclosing``)
        so the piece synthesised ahead is dropped and the idle countdown
        starts at once rather than when the generator is garbage-collected.
        """
        length_scale = length_scale_for(speed)
        pieces = split_for_streaming(text)
        if not pieces:
            return
        loop = asyncio.get_running_loop()
        with self._idle.in_use():
            loaded = await self._ensure_loaded(voice)
            thread = self._inference_thread()

            def render(piece: str) -> asyncio.Future[bytes]:
                return loop.run_in_executor(
                    thread, _render, loaded.piper, piece, length_scale
                )

            pending = render(pieces[0])
            try:
                for index, piece in enumerate(pieces):
                    audio = await pending
                    if index + 1 < len(pieces):
                        pending = render(pieces[index + 1])
                    yield PcmChunk(
                        audio=audio, sample_rate=loaded.sample_rate, text=piece
                    )
                self._syntheses += 1
                if self._syntheses % TRIM_HEAP_EVERY == 0:
                    # Off the listener's path: nobody waits for it.
                    loop.run_in_executor(None, trim_heap)
            finally:
                # The consumer stopped early: drop the piece synthesised ahead.
                # The executor job runs to its end; its result is discarded.
                if not pending.done():
                    pending.cancel()

    async def synthesize_wav(
        self, text: str, voice: LocalVoice, *, speed: float = 1.0
    ) -> bytes:
        """Return the whole speech for ``text`` as one WAV file (16-bit mono)."""
        with self._idle.in_use():
            loaded = await self._ensure_loaded(voice)
            pcm = [
                chunk.audio async for chunk in self.synthesize(text, voice, speed=speed)
            ]
        return pcm_to_wav(b"".join(pcm), loaded.sample_rate)

    async def unload(self, voice_key: str | None = None) -> None:
        """Drop one voice (by key) or all of them from memory."""
        if voice_key is None:
            dropped = list(self._voices.values())
            self._voices.clear()
        elif (loaded := self._voices.pop(voice_key, None)) is not None:
            dropped = [loaded]
        else:
            return
        if dropped:
            _LOGGER.debug("Unloading Piper voices %s", [v.voice.key for v in dropped])
            await asyncio.get_running_loop().run_in_executor(
                None, free_objects, dropped
            )

    async def close(self) -> None:
        """Stop the idle countdown, free every voice and end the thread."""
        await self._idle.close()
        await self.unload()
        if (thread := self._inference) is not None:
            self._inference = None
            # Queued pieces are dropped; one already running is waited for.
            await asyncio.get_running_loop().run_in_executor(
                None, partial(thread.shutdown, wait=True, cancel_futures=True)
            )

    async def _ensure_loaded(self, voice: LocalVoice) -> _LoadedVoice:
        """Return ``voice`` loaded, loading it once however many ask at once."""
        if (loaded := self._loaded(voice)) is not None:
            return loaded
        lock = self._load_locks.setdefault(voice.key, asyncio.Lock())
        async with lock:
            if (loaded := self._loaded(voice)) is not None:
                return loaded  # another request loaded it while we waited
            loop = asyncio.get_running_loop()
            if self._profile is None:
                self._profile = await loop.run_in_executor(None, detect_device_profile)
            loaded = await loop.run_in_executor(
                self._inference_thread(), _load_voice, voice, self._profile
            )
            self._sample_rates.remember(voice, loaded.sample_rate)
            self._voices[voice.key] = loaded
            evicted: list[_LoadedVoice] = []
            while len(self._voices) > self._max_loaded_voices:
                evicted.append(self._voices.popitem(last=False)[1])
            if evicted:
                # A request still using an evicted voice holds its own
                # reference; the memory goes when that request ends.
                await loop.run_in_executor(None, free_objects, evicted)
            return loaded

    def _loaded(self, voice: LocalVoice) -> _LoadedVoice | None:
        """Return ``voice`` if it is in memory (marking it recently used)."""
        loaded = self._voices.get(voice.key)
        if loaded is None or loaded.voice != voice:
            return None  # not loaded, or the key now names other files
        self._voices.move_to_end(voice.key)
        return loaded


def split_for_streaming(text: str) -> list[str]:
    """Split ``text`` into the pieces synthesised one at a time.

    Sentences, each at most :data:`MAX_PIECE_CHARS` long: a longer one is cut
    at its clauses (packed back together up to the limit), and a clause that
    is still too long between words. A long first sentence gives its first
    clause alone, so that the first audio is ready sooner. Control characters
    become spaces and runs of whitespace one space; no word is dropped.
    """
    pieces: list[str] = []
    for raw_sentence in split_sentences(clean_text(text)):
        sentence = " ".join(raw_sentence.split())
        if not pieces:
            if (
                len(sentence) > FIRST_PIECE_MAX_CHARS
                or len(sentence.split()) > FIRST_PIECE_MAX_WORDS
            ):
                first, *rest = split_clauses(sentence)
                clauses = [first, *_pack(rest, MAX_PIECE_CHARS)]
            else:
                clauses = [sentence]
        elif len(sentence) > MAX_PIECE_CHARS:
            clauses = _pack(split_clauses(sentence), MAX_PIECE_CHARS)
        else:
            clauses = [sentence]
        for clause in clauses:
            if len(clause) <= MAX_PIECE_CHARS:
                pieces.append(clause)
            else:
                pieces.extend(_split_words(clause, first=not pieces))
    return pieces


def split_clauses(sentence: str) -> list[str]:
    """Cut a sentence after , ; : and dashes, keeping no clause tiny."""
    pieces: list[str] = []
    for raw_clause in _CLAUSE_BREAK.split(sentence):
        clause = raw_clause.strip()
        if not clause:
            continue
        if pieces and len(pieces[-1]) < _MIN_CLAUSE_CHARS:
            pieces[-1] = f"{pieces[-1]} {clause}"
        else:
            pieces.append(clause)
    if len(pieces) > 1 and len(pieces[-1]) < _MIN_CLAUSE_CHARS:
        tail = pieces.pop()
        pieces[-1] = f"{pieces[-1]} {tail}"
    return pieces


def _split_words(clause: str, *, first: bool) -> list[str]:
    """Cut an over-long clause between words into pieces of similar length.

    Each piece is at most :data:`WORD_PIECE_MAX_CHARS` long (the text's
    ``first`` piece at most :data:`FIRST_WORD_PIECE_MAX_CHARS`); a word
    longer than that is cut inside.
    """
    words = [
        word[start : start + WORD_PIECE_MAX_CHARS]
        for word in clause.split()
        for start in range(0, len(word), WORD_PIECE_MAX_CHARS)
    ]
    pieces: list[str] = []
    if first:
        pieces.append(_pack(words, FIRST_WORD_PIECE_MAX_CHARS)[0])
        words = words[len(pieces[0].split()) :]
    rest = " ".join(words)
    if rest:
        # Pieces of even length, so no short tail is spoken on its own.
        count = -(-len(rest) // WORD_PIECE_MAX_CHARS)
        target = -(-len(rest) // count) + 8
        pieces.extend(_pack(words, min(WORD_PIECE_MAX_CHARS, target)))
    return pieces


def _pack(parts: list[str], limit: int) -> list[str]:
    """Join parts with single spaces, greedily, into pieces within ``limit``.

    A part longer than ``limit`` stays a piece of its own.
    """
    pieces: list[str] = []
    for part in parts:
        if pieces and len(pieces[-1]) + 1 + len(part) <= limit:
            pieces[-1] = f"{pieces[-1]} {part}"
        else:
            pieces.append(part)
    return pieces


def length_scale_for(speed: float) -> float:
    """Piper's length scale for a speaking ``speed`` (2.0 = twice as fast)."""
    if not speed > 0:
        raise ValueError(f"speed must be positive, not {speed}")
    return 1.0 / speed


def _read_sample_rate(config_path: Path) -> int:
    """Read a voice's output sample rate from its JSON config."""
    with config_path.open(encoding="utf-8") as config_file:
        return int(json.load(config_file)["audio"]["sample_rate"])


# --- executor side: everything below blocks -------------------------------


def _load_voice(voice: LocalVoice, profile: DeviceProfile) -> _LoadedVoice:
    """Build the ONNX session and Piper voice, then warm it up."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    with voice.config_path.open(encoding="utf-8") as config_file:
        config = PiperConfig.from_dict(json.load(config_file))
    session = onnxruntime.InferenceSession(
        str(voice.model_path),
        sess_options=_session_options(profile),
        providers=["CPUExecutionProvider"],
    )
    piper = PiperVoice(session=session, config=config)
    _render(piper, _WARM_UP_TEXT, 1.0)
    _LOGGER.debug("Loaded Piper voice %s", voice.key)
    return _LoadedVoice(voice=voice, piper=piper, sample_rate=config.sample_rate)


def _session_options(profile: DeviceProfile) -> Any:
    """ONNX Runtime session options tuned for a small multi-core board."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One inference uses the physical cores (at most 4); the graph is a
    # chain, so parallel operator execution (inter-op) would only add threads.
    options.intra_op_num_threads = profile.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Measured, see the numbers next to _ENABLE_CPU_MEM_ARENA.
    options.enable_cpu_mem_arena = _ENABLE_CPU_MEM_ARENA
    options.enable_mem_pattern = _ENABLE_MEM_PATTERN
    options.add_session_config_entry("session.intra_op.allow_spinning", _ALLOW_SPINNING)
    return options


def _render(piper: Any, text: str, length_scale: float) -> bytes:
    """Synthesise ``text`` to int16 mono PCM bytes.

    Piper may split the text into several sentences of its own; their audio
    is joined. ``length_scale`` scales the voice's own default pacing.
    """
    from piper import SynthesisConfig

    syn_config = SynthesisConfig(length_scale=piper.config.length_scale * length_scale)
    return b"".join(
        chunk.audio_int16_bytes for chunk in piper.synthesize(text, syn_config)
    )
