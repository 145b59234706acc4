"""The repository's own promises: manifest, HACS metadata, translations."""

from __future__ import annotations

import ast
import json
from pathlib import Path
import re
import shutil
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


# The parts that run without Home Assistant: the cloud client, the on-device
# engines, the helpers both use, and the plain modules of the glue's level.
HA_FREE = ("api", "local", "speech", "catalogue.py", "fallback.py", "files.py")


def _imports(path: Path, package: str) -> set[str]:
    """Return the absolute module names ``path`` imports (relative ones resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
                # `from . import x` may name a module: count the module itself.
                names.update(f"{base}.{alias.name}" for alias in node.names)
            names.add(base)
    return names


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ha_free_files() -> list[Path]:
    files: list[Path] = []
    for part in HA_FREE:
        path = COMPONENT / part
        files.extend(sorted(path.glob("*.py")) if path.is_dir() else [path])
    return files


def test_ha_free_parts_import_neither_home_assistant_nor_the_glue() -> None:
    """api/, local/, speech/ and the plain modules stay usable without HA.

    They may import each other (within the rules below) but nothing from
    ``homeassistant`` and no module of the HA glue (the integration's
    ``__init__``, its platforms, its flows), not even indirectly.
    """
    free = {_module_name(path) for path in _ha_free_files()}
    component = _module_name(COMPONENT)
    for path in _ha_free_files():
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for name in _imports(path, package):
            assert not name.startswith("homeassistant"), (path, name)
            if name == component or name.startswith(f"{component}."):
                # a name inside a free module (`from .text import x`) is fine
                assert any(name == m or name.startswith(f"{m}.") for m in free), (
                    path,
                    name,
                )


def test_engines_and_cloud_client_do_not_import_each_other() -> None:
    """local/ (the engines) and api/ (the cloud client) meet only in speech/."""
    component = _module_name(COMPONENT)
    for own, other in (("local", "api"), ("api", "local")):
        for path in sorted((COMPONENT / own).glob("*.py")):
            package = f"{component}.{own}"
            for name in _imports(path, package):
                assert not name.startswith(f"{component}.{other}"), (path, name)


def test_satellite_imports_nothing_of_the_integration_or_home_assistant() -> None:
    """The Pi installs the satellite alone: only its own package and its deps."""
    for path in sorted((ROOT / "satellite" / "tts_ai_satellite").glob("*.py")):
        for name in _imports(path, "tts_ai_satellite"):
            assert not name.startswith(("homeassistant", "custom_components")), (
                path,
                name,
            )


def test_nothing_loads_code_by_file_path_and_tests_do_not_import_scripts() -> None:
    """Packages are imported as packages: no ``spec_from_file_location``."""
    sources = [
        path
        for folder in ("custom_components", "tests", "scripts", "satellite")
        for path in (ROOT / folder).rglob("*.py")
    ]
    this_file = Path(__file__).resolve()
    for path in sources:
        if path.resolve() == this_file:
            continue
        assert "spec_from_file_location" not in path.read_text(), path
        if path.is_relative_to(ROOT / "tests"):
            for name in _imports(path, "tests"):
                assert not name.startswith("scripts"), (path, name)


def _latest_released_version(changelog: str) -> str:
    match = re.search(r"^## (\d+\.\d+\.\d+) - \d{4}-\d{2}-\d{2}$", changelog, re.M)
    assert match, "CHANGELOG.md has no released version"
    return match.group(1)


def test_manifest_version_is_the_latest_release_and_licence_is_there() -> None:
    """HACS shows the manifest's version; it must be the newest changelog entry."""
    manifest = json.loads((COMPONENT / "manifest.json").read_text())
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert manifest["version"] == _latest_released_version(changelog)
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_release_script_keeps_manifest_changelog_and_tag_in_step(
    tmp_path: Path,
) -> None:
    """scripts/release moves Unreleased under the version, bumps, commits, tags."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "release", tmp_path / "scripts" / "release")
    shutil.copy(ROOT / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    (tmp_path / "custom_components" / "tts_ai").mkdir(parents=True)
    shutil.copy(COMPONENT / "manifest.json", tmp_path / COMPONENT.relative_to(ROOT))
    manifest_path = tmp_path / COMPONENT.relative_to(ROOT) / "manifest.json"
    old_version = json.loads(manifest_path.read_text())["version"]
    major, minor, _patch = (int(part) for part in old_version.split("."))
    new_version = f"{major}.{minor + 1}.0"

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    unreleased = (tmp_path / "CHANGELOG.md").read_text().split("## Unreleased\n")[1]
    unreleased = unreleased.split("\n## ")[0].strip()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(tmp_path / "scripts" / "release"), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                 "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                 "PATH": "/usr/bin:/bin"},
        )  # fmt: skip

    assert run(old_version).returncode != 0  # not newer: refused, nothing changed
    notes = tmp_path.parent / f"{tmp_path.name}-notes.md"
    completed = run(new_version, "--notes", str(notes))
    assert completed.returncode == 0, completed.stderr

    changelog = (tmp_path / "CHANGELOG.md").read_text()
    assert json.loads(manifest_path.read_text())["version"] == new_version
    assert _latest_released_version(changelog) == new_version
    assert changelog.index("## Unreleased") < changelog.index(f"## {new_version}")
    assert notes.read_text().strip() == unreleased
    assert git("tag", "--list").split() == [f"v{new_version}"]
    assert git("status", "--porcelain") == ""
    # Nothing new to release: refused.
    assert run(f"{major}.{minor + 2}.0").returncode != 0


def _imported_components(path: Path) -> set[str]:
    """Home Assistant integrations a module imports (as hassfest sees them)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.module == "homeassistant.components":
            found.update(alias.name for alias in node.names)
        elif node.module.startswith("homeassistant.components."):
            found.add(node.module.split(".")[2])
    return found


def test_every_used_integration_is_a_declared_dependency() -> None:
    """hassfest: 'Using component X but it's not in dependencies'."""
    manifest = json.loads((COMPONENT / "manifest.json").read_text())
    declared = {*manifest["dependencies"], *manifest["after_dependencies"]}
    # Platforms the integration provides, and diagnostics, need no entry.
    platforms = {path.stem for path in COMPONENT.glob("*.py")} | {"diagnostics"}
    undeclared = {
        (path.relative_to(COMPONENT).as_posix(), component)
        for path in COMPONENT.rglob("*.py")
        for component in _imported_components(path)
        if component not in declared | platforms
    }
    assert undeclared == set()
    # Library loggers, not the integration's own (HA already knows that one).
    assert manifest["loggers"]
    assert not any(
        logger.startswith("custom_components") for logger in manifest["loggers"]
    )


def test_quality_scale_lists_every_rule_with_a_reason_for_each_exemption() -> None:
    """quality_scale.yaml has each rule HA's own integrations list, no other.

    The rules are read from the core integrations of the installed Home
    Assistant (each of their quality_scale.yaml files lists all of them), so a
    rule added by a Home Assistant update shows up here.
    """
    import homeassistant.components
    import yaml

    core = Path(homeassistant.components.__file__).parent
    core_rules = [
        set(yaml.safe_load(path.read_text())["rules"])
        for path in core.glob("*/quality_scale.yaml")
    ]
    every_rule = set.union(*core_rules)
    assert sum(rules == every_rule for rules in core_rules) > len(core_rules) / 2

    ours = yaml.safe_load((COMPONENT / "quality_scale.yaml").read_text())["rules"]

    assert set(ours) == every_rule
    for rule, entry in ours.items():
        status = entry if isinstance(entry, str) else entry["status"]
        assert status in {"done", "todo", "exempt"}, rule
        if status == "exempt":
            assert isinstance(entry, dict), rule
            assert entry.get("comment", "").strip(), f"{rule}: exempt without why"
