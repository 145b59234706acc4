"""The repository's own promises: manifest, HACS metadata, translations."""

from __future__ import annotations

import ast
import json
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parent.parent
COMPONENT = ROOT / "custom_components" / "tts_ai"


def test_manifest_is_valid_for_hassfest() -> None:
    """Domain and name first, the rest sorted; no heavy runtime requirements."""
    manifest = json.loads((COMPONENT / "manifest.json").read_text())
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    assert manifest["domain"] == "tts_ai"
    assert manifest["config_flow"] is True
    for key in ("version", "documentation", "issue_tracker", "codeowners"):
        assert manifest[key]
    assert not any(
        name in req
        for req in manifest["requirements"]
        for name in ("onnxruntime", "piper", "whisper")
    )


def test_translations_are_current() -> None:
    """translations/en.json is strings.json with HA's common keys resolved."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "translations"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_api_package_does_not_import_home_assistant() -> None:
    """The client and plain modules stay usable without Home Assistant."""
    plain = [
        *(COMPONENT / "api").glob("*.py"),
        *(COMPONENT / "local").glob("*.py"),
        COMPONENT / "catalogue.py",
        COMPONENT / "fallback.py",
        COMPONENT / "files.py",
    ]
    for path in plain:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.startswith("homeassistant") for n in names), path
