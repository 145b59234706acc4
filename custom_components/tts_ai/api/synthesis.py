"""Audio from TTS.ai: checked before it is accepted, joined from parts, streamed.

A text longer than one request allows is split (``speech.text``); the parts
run concurrently and are joined off the event loop, or, for a stream, are
played part after part. Every audio answer (a tool's and a download's too)
passes the same check: an allowlisted Content-Type and the first bytes of
that format. The client builds the requests; this module only reads answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
import logging

from ..speech.audio import (
    JOINABLE_FORMATS,
    STREAM_JOINABLE_FORMATS,
    id3v2_size,
    join_audio,
)
from ..speech.text import chunk_text
from . import endpoints as ep
from .errors import TextTooLongError
from .headers import header_float
from .models import AudioResult
from .transport import ApiRequest, ApiResponse, Transport, media_type

_LOGGER = logging.getLogger(__name__)

# How each format's file begins. A body that does not is not that audio
# (an HTML error page, an SVG, zeros from a broken proxy), and must not be
# played or stored as if it were. Formats not listed are not checked.
_AUDIO_MAGIC: dict[str, tuple[bytes, ...]] = {
    "mp3": (b"ID3", b"\xff\xe0", b"\xff\xf0"),  # tag, or a frame sync (masked)
    "wav": (b"RIFF",),
    "ogg": (b"OggS",),
    "flac": (b"fLaC",),
}
_MAGIC_BYTES = 4


class Synthesis:
    """Reads audio answers over a :class:`Transport`.

    Every refusal is an InvalidResponseError reported through the
    transport, like its own failures.
    """

    def __init__(self, transport: Transport) -> None:
        """Read answers that ``transport`` fetches."""
        self._transport = transport

    async def fetch(
        self, request: ApiRequest, expected_format: str | None
    ) -> AudioResult:
        """Send ``request`` and accept its answer only if it is audio."""
        return self.result(await self._transport.fetch(request), expected_format)

    def result(self, response: ApiResponse, expected_format: str | None) -> AudioResult:
        """Turn an audio response into an AudioResult.

        The format is an allowlisted audio type: the answer's Content-Type,
        or (for a bare ``application/octet-stream``) what was asked for.
        """
        content_type = response.content_type
        fmt = ep.FORMAT_BY_CONTENT_TYPE.get(content_type)
        if (
            fmt is None
            and content_type in ("", ep.OCTET_STREAM)
            and expected_format in ep.CONTENT_TYPES
        ):
            fmt = expected_format
        if fmt is None or not response.body:
            raise self._transport.invalid(
                f"expected audio but got {content_type[:100] or 'no content type'} "
                f"({len(response.body)} bytes)"
            )
        self._check_magic(fmt, response.body)
        return AudioResult(
            data=response.body,
            format=fmt,
            content_type=ep.CONTENT_TYPES[fmt],
            credits_used=header_float(response.headers, ep.HEADER_CREDITS_USED),
        )

    async def whole(
        self,
        text: str,
        fmt: str,
        one_part: Callable[[str, str], ApiRequest],
        *,
        max_chars: int,
        concurrency: int,
    ) -> AudioResult:
        """Synthesise ``text`` in as many requests as ``max_chars`` needs.

        ``one_part(chunk, format)`` builds the request for one part. A
        multi-part format that cannot be joined (FLAC) is synthesised as WAV.
        """
        chunks = chunk_text(text, max_chars)
        if len(chunks) == 1:
            return await self.fetch(one_part(chunks[0], fmt), fmt)
        part_format = fmt if fmt in JOINABLE_FORMATS else "wav"
        _LOGGER.debug("Synthesising %d characters in %d parts", len(text), len(chunks))
        # Parts run concurrently, no more at once than the plan allows: a
        # part queued here has not started, so its deadline has not either.
        # A failing part cancels the others.
        running = asyncio.Semaphore(concurrency)

        async def part(chunk: str) -> AudioResult:
            async with running:
                response = await self._transport.fetch(one_part(chunk, part_format))
            return self.result(response, part_format)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(part(chunk)) for chunk in chunks]
        return await self._join([task.result() for task in tasks])

    async def stream(
        self,
        text: str,
        fmt: str,
        one_part: Callable[[str], ApiRequest],
        *,
        max_chars: int,
    ) -> AsyncGenerator[bytes]:
        """Yield the audio of ``text`` as the service produces it.

        Text over ``max_chars`` is streamed part after part for the formats
        that stay playable when concatenated (mp3, ogg); for the others it
        raises TextTooLongError. ``one_part(chunk)`` builds a part's request.
        """
        chunks = chunk_text(text, max_chars)
        if len(chunks) > 1 and fmt not in STREAM_JOINABLE_FORMATS:
            raise TextTooLongError(
                f"text is {len(text)} characters; a {fmt} stream allows at most "
                f"{max_chars} (use mp3 or ogg to stream longer texts)"
            )
        for index, chunk in enumerate(chunks):
            pieces = self._stream_one(one_part(chunk), fmt)
            if index and fmt == "mp3":
                pieces = _without_id3v2(pieces)
            async with aclosing(pieces):
                async for piece in pieces:
                    yield piece

    async def _join(self, parts: list[AudioResult]) -> AudioResult:
        """Join synthesised parts into one result (off the event loop)."""
        formats = {part.format for part in parts}
        if len(formats) != 1:
            raise self._transport.invalid(
                f"parts came back in different formats: {formats}"
            )
        fmt = formats.pop()
        try:
            # Hundreds of megabytes may be copied: never in the event loop.
            data = await asyncio.get_running_loop().run_in_executor(
                None, join_audio, [part.data for part in parts], fmt
            )
        except ValueError as err:
            raise self._transport.invalid(
                f"cannot join the synthesised parts: {err}"
            ) from None
        used = [part.credits_used for part in parts if part.credits_used is not None]
        return AudioResult(
            data=data,
            format=fmt,
            content_type=parts[0].content_type,
            credits_used=sum(used) if used else None,
        )

    async def _stream_one(self, request: ApiRequest, fmt: str) -> AsyncGenerator[bytes]:
        """Yield the body of ``request``'s response as it arrives.

        Nothing is yielded until the answer shows it is ``fmt`` audio (its
        Content-Type and first bytes): once a chunk is out it is played, so
        an answer that is not audio must fail before, while the device can
        still take the whole sentence.
        """
        async with self._transport.open(request) as response:
            content_type = media_type(response.headers)
            declared = ep.FORMAT_BY_CONTENT_TYPE.get(content_type)
            if declared is None and content_type not in ("", ep.OCTET_STREAM):
                raise self._transport.invalid(
                    f"expected a {fmt} stream but got {content_type[:100]}"
                )
            kind = declared or fmt
            head = b""
            checked = False
            # The first byte has its own deadline: headers may come at once
            # while synthesis has not produced any audio yet.
            async for chunk in self._transport.body(
                response,
                request,
                first_byte_timeout=self._transport.first_byte_timeout,
            ):
                if checked:
                    yield chunk
                    continue
                head += chunk
                if len(head) >= _MAGIC_BYTES:
                    self._check_magic(kind, head)
                    checked = True
                    yield head
            if head and not checked:
                self._check_magic(kind, head)
                yield head

    def _check_magic(self, fmt: str, head: bytes) -> None:
        """Raise InvalidResponseError unless ``head`` can begin ``fmt`` audio."""
        if not _looks_like(fmt, head[:_MAGIC_BYTES]):
            raise self._transport.invalid(
                f"the answer is labelled {fmt} but is not {fmt} audio"
            )


def _looks_like(fmt: str, head: bytes) -> bool:
    """Whether ``head`` (the first bytes) can begin a ``fmt`` file."""
    magic = _AUDIO_MAGIC.get(fmt)
    if magic is None:
        return True
    if fmt == "mp3" and len(head) >= 2 and head[0] == 0xFF:
        # A frame sync: eleven set bits.
        return head[1] & 0xE0 == 0xE0
    return head.startswith(magic)


async def _without_id3v2(pieces: AsyncGenerator[bytes]) -> AsyncGenerator[bytes]:
    """Pass an MP3 stream through, minus a leading ID3v2 tag.

    Used for the second and later parts of a multi-part stream: a tag in the
    middle of a stream is junk to a decoder.
    """
    head = b""
    to_skip: int | None = None
    async with aclosing(pieces):
        async for piece in pieces:
            data = piece
            if to_skip is None:
                head += data
                to_skip = id3v2_size(head)
                if to_skip is None:
                    continue  # fewer than 10 bytes so far
                data, head = head, b""
            if to_skip:
                dropped = min(to_skip, len(data))
                data, to_skip = data[dropped:], to_skip - dropped
            if data:
                yield data
        if to_skip is None and head:
            yield head
