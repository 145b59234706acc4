"""Which files make a faster-whisper model, and where on Hugging Face they are.

A model name is a faster-whisper size (``tiny.en``, ``base``, ...), fetched
from ``Systran/faster-whisper-<name>`` as faster-whisper's own helper does,
or a full Hugging Face repo id (``owner/repo``) of a CTranslate2 conversion.
The repo's file list gives each file's size and digest: the sha256 of LFS
files, the git blob sha1 of small ones.

Plain Python (no Home Assistant import).
"""

from __future__ import annotations

import json
from typing import Final
from urllib.parse import quote

from .downloads import (
    GIT_BLOB_SHA1,
    SHA256,
    Downloader,
    ModelDownloadError,
    ModelNotFoundError,
    RemoteFile,
    check_name,
    run_blocking,
)

HF_URL: Final = "https://huggingface.co"
# faster-whisper's own download helper uses these CTranslate2 conversions.
WHISPER_REPO_OWNER: Final = "Systran"

# What faster-whisper's WhisperModel reads from a model directory.
WHISPER_REQUIRED: Final = ("config.json", "model.bin", "tokenizer.json")
_WHISPER_VOCABULARIES = ("vocabulary.txt", "vocabulary.json")
# large-v3 and its kin need it for their 128 mel bins; older models lack it.
_WHISPER_OPTIONAL = ("preprocessor_config.json",)


def whisper_repo(name: str) -> tuple[str, str]:
    """(Hugging Face repo id, local directory name) of Whisper model ``name``."""
    if "/" in name:
        owner, _, repo = name.partition("/")
        check_name(owner, "Whisper model")
        check_name(repo, "Whisper model")
        return name, f"{owner}--{repo}"
    check_name(name, "Whisper model")
    return f"{WHISPER_REPO_OWNER}/faster-whisper-{name}", name


def has_whisper_files(installed: set[str]) -> bool:
    """Whether ``installed`` holds what faster-whisper cannot load without."""
    return set(WHISPER_REQUIRED) <= installed


async def whisper_remote_files(
    downloader: Downloader, hf_base_url: str, name: str, repo: str
) -> tuple[RemoteFile, ...]:
    """Ask the host which files model ``name`` (in ``repo``) has; pick those needed.

    Raises :class:`ModelNotFoundError` when a required file is missing.
    """
    tree_url = f"{hf_base_url}/api/models/{repo}/tree/main"
    raw = await downloader.fetch_index(f"file list of Whisper model {name}", tree_url)
    try:
        listing = await run_blocking(_parse_hf_tree, raw)
    except ValueError as err:
        raise ModelDownloadError(
            f"The file list of Whisper model {name} at {tree_url} is not valid: {err}"
        ) from err
    wanted = [*WHISPER_REQUIRED, *_WHISPER_OPTIONAL]
    vocabulary = next((v for v in _WHISPER_VOCABULARIES if v in listing), None)
    if vocabulary is not None:
        wanted.append(vocabulary)
    missing = [n for n in WHISPER_REQUIRED if n not in listing]
    if vocabulary is None:
        missing.append(" or ".join(_WHISPER_VOCABULARIES))
    if missing:
        raise ModelNotFoundError(
            f"Whisper model {name} ({repo}) lacks {', '.join(missing)}"
        )
    return tuple(
        RemoteFile(
            name=path,
            url=f"{hf_base_url}/{repo}/resolve/main/{quote(path)}",
            size=listing[path][0],
            algorithm=listing[path][1],
            digest=listing[path][2],
        )
        for path in wanted
        if path in listing
    )


def _parse_hf_tree(raw: bytes) -> dict[str, tuple[int, str, str]]:
    r"""Hugging Face tree listing -> file path -> (size, algorithm, digest).

    LFS files carry the sha256 of their content; small files the git blob
    sha1, which covers a ``blob <size>\0`` header plus the content.
    """
    data = json.loads(raw)
    if not isinstance(data, list):
        raise ValueError("the file list is not a JSON array")  # noqa: TRY004
    files: dict[str, tuple[int, str, str]] = {}
    for entry in data:
        if not isinstance(entry, dict) or entry.get("type") != "file":
            continue
        try:
            path = str(entry["path"])
            lfs = entry.get("lfs")
            if isinstance(lfs, dict) and lfs.get("oid"):
                files[path] = (
                    int(lfs["size"] if "size" in lfs else entry["size"]),
                    SHA256,
                    str(lfs["oid"]).removeprefix("sha256:").lower(),
                )
            elif entry.get("oid"):
                size = int(entry["size"])
                files[path] = (size, GIT_BLOB_SHA1, str(entry["oid"]).lower())
        except (KeyError, TypeError) as err:
            # The host's answer is untrusted: one error type for any shape.
            raise ValueError(f"a malformed file entry ({err!r})") from err
    return files
