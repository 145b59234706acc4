"""A real Home Assistant running this integration against the TTS.ai stand-in.

One code path serves ``scripts/develop`` (a developer's instance on
http://127.0.0.1:8123 with ``config/``) and ``tests/test_develop_e2e.py`` (a
throw-away instance on free ports). It

1. installs the packages the configured integrations need that the venv lacks
   (Home Assistant then runs with ``--skip-pip``: nothing is fetched at start),
2. links the integration into the configuration directory,
3. stores Home Assistant's HTTP settings (loopback only, on the port of the
   configuration's ``internal_url``) where Home Assistant 2026.10 keeps them,
4. starts the stand-in server (``python -m tests.harness.standin``) and ``hass``,
5. onboards a fresh configuration through Home Assistant's own REST API (user
   ``dev`` / password ``dev``), or logs in on one that is already onboarded,
6. adds a TTS.ai config entry through the integration's config flow, unless
   there is one already: pointed at the stand-in, and its on-device models at
   the local model server from the start,
7. adds a "TTS.ai" Assist pipeline (the entry's speech-to-text and
   text-to-speech, preferred) and a long-lived token for ``scripts/satellite``.

Run it as ``scripts/develop`` (``python -m tests.harness.realhass``); Ctrl-C
stops both servers.
"""

import argparse
import asyncio
from collections.abc import Iterable, Iterator, Mapping
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
import importlib.metadata
import json
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import time
from typing import IO, Any
import urllib.error
import urllib.parse
import urllib.request

import aiohttp
from homeassistant.bootstrap import DEFAULT_INTEGRATIONS
import homeassistant.components
from homeassistant.components.http.config import HTTP_STORAGE_SCHEMA
from packaging.requirements import Requirement
import yaml

from .standin import DEFAULT_API_KEY

REPO_ROOT = Path(__file__).resolve().parents[2]
INTEGRATION_DOMAIN = "tts_ai"
INTEGRATION_DIR = REPO_ROOT / "custom_components" / INTEGRATION_DOMAIN
DEFAULT_CONFIG_DIR = REPO_ROOT / "config"
CONFIGURATION_FILE = "configuration.yaml"
FRONTEND_PACKAGE = "home-assistant-frontend"
DEFAULT_STANDIN_PORT = 8765
DEFAULT_MODELS_PORT = 8766


@dataclass(frozen=True)
class ServerPorts:
    """Where the stand-in and the model server listen (on loopback)."""

    standin: int = DEFAULT_STANDIN_PORT
    models: int = DEFAULT_MODELS_PORT

    @classmethod
    def free(cls) -> ServerPorts:
        """Two ports nothing uses now: a throw-away instance's."""
        standin, models = free_ports(2)
        return cls(standin, models)


LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = frozenset({LOOPBACK, "localhost"})
DEFAULT_HASS_PORT = 8123
# Home Assistant 2026.10 keeps its HTTP settings in this store, as a confirmed
# ("stable") config and an unconfirmed ("pending") one that it reverts after
# 5 minutes (homeassistant/components/http/config.py). The layout written here
# is its version 2.2; Home Assistant migrates older versions forward itself.
HTTP_STORE_PATH = Path(".storage") / "http"
HTTP_STORE_VERSION = (2, 2)
HTTP_STORE_META_KEYS = ("created_at", "error", "error_message")

DEV_NAME = "Developer"
DEV_USERNAME = "dev"
DEV_PASSWORD = "dev"  # a documented, loopback-only login
DEV_LANGUAGE = "en"
PIPELINE_NAME = "TTS.ai"
# `scripts/satellite` finds this file in config/ and then talks to this instance.
SATELLITE_TOKEN_FILE = "satellite-token"
SATELLITE_CLIENT_NAME = "scripts/satellite (develop)"
SATELLITE_TOKEN_DAYS = 3650

# Home Assistant exits with this code when asked to restart (e.g. from the UI);
# a supervisor is expected to start it again, and `develop` plays that role.
HASS_RESTART_EXIT_CODE = 100

STANDIN_START_TIMEOUT = 60.0
HASS_START_TIMEOUT = 180.0
PROCESS_STOP_TIMEOUT = 30.0
HTTP_TIMEOUT = 30.0


class DevEnvironmentError(RuntimeError):
    """Something in bringing the environment up failed."""


# --- configuration and requirements -------------------------------------------


def load_configuration(config_dir: Path) -> dict[str, Any]:
    """Read ``configuration.yaml`` (plain YAML: no ``!include`` tags are used)."""
    text = (config_dir / CONFIGURATION_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


def write_configuration(config_dir: Path, configuration: Mapping[str, Any]) -> None:
    """Write ``configuration.yaml`` into a configuration directory."""
    config_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dict(configuration), sort_keys=False)
    (config_dir / CONFIGURATION_FILE).write_text(text, encoding="utf-8")


def hass_url(configuration: Mapping[str, Any]) -> str:
    """Return the address Home Assistant serves on: its ``internal_url``.

    Home Assistant 2026.10 no longer reads ``http:`` from YAML after migrating
    it once (and then flags it as a repair), so the development configuration
    says where it serves in one place Home Assistant does read: the
    ``homeassistant: internal_url:``, which also makes the URLs it hands out
    (``tts_get_url``, media) point there. The host must be loopback: the dev
    login and the stand-in's demo key are not secrets.
    """
    if "http" in configuration:
        raise DevEnvironmentError(
            f"{CONFIGURATION_FILE}: remove `http:`; Home Assistant 2026.10 keeps"
            " HTTP settings in storage, and develop serves on the host and port of"
            " `homeassistant: internal_url:`"
        )
    core = configuration.get("homeassistant") or {}
    url = core.get("internal_url", f"http://{LOOPBACK}:{DEFAULT_HASS_PORT}")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or parsed.hostname not in LOOPBACK_HOSTS:
        raise DevEnvironmentError(
            f"internal_url {url!r}: develop serves plain http on loopback only"
            f" (http://{LOOPBACK}:PORT)"
        )
    return f"http://{LOOPBACK}:{parsed.port or 80}"


def store_http_config(config_dir: Path, port: int) -> bool:
    """Make Home Assistant serve on loopback only, now and on every later start.

    Writes the confirmed ("stable") HTTP config into Home Assistant's own store
    before it starts, with nothing pending: Home Assistant 2026.10 would
    otherwise stage a YAML ``http:`` as a trial that it reverts after 5
    minutes (then serving on every interface), and with no config at all it
    serves on every interface from the start. Settings changed in the UI are
    put back at the next start. Returns whether the store was written.
    """
    wanted = HTTP_STORAGE_SCHEMA({"server_host": [LOOPBACK], "server_port": port})
    path = config_dir / HTTP_STORE_PATH
    stored: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        stored = json.loads(path.read_text(encoding="utf-8"))
    data = stored.get("data") if isinstance(stored, dict) else None
    stable = data.get("stable") if isinstance(data, dict) else None
    if (
        isinstance(data, dict)
        and isinstance(stable, dict)
        and data.get("pending") is None
        and data.get("yaml_migration_done") is True
        and (stored.get("version"), stored.get("minor_version")) == HTTP_STORE_VERSION
        and {k: v for k, v in stable.items() if k not in HTTP_STORE_META_KEYS} == wanted
    ):
        return False
    major, minor = HTTP_STORE_VERSION
    document = {
        "version": major,
        "minor_version": minor,
        "key": "http",
        "data": {
            "stable": {
                **wanted,
                "created_at": datetime.now(UTC).isoformat(),
                "error": None,
                "error_message": None,
            },
            "pending": None,
            "yaml_migration_done": True,
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Private, as Home Assistant keeps it; replaced whole, never half-written.
    temporary = path.with_name(f".{path.name}.develop")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
    temporary.replace(path)
    return True


def configured_domains(configuration: Mapping[str, Any]) -> set[str]:
    """Return the integrations a configuration loads, this integration included.

    Top-level keys are integrations; ``platform:`` entries under them name more.
    The integration's own platforms (``tts.py``, ``stt.py``…) load the
    integrations of the same name.
    """
    domains: set[str] = set()
    for key, value in configuration.items():
        domain = str(key).split(" ")[0]  # "media_player old" style keys
        if domain != "homeassistant":
            domains.add(domain)
        if isinstance(value, list):
            domains.update(
                item["platform"]
                for item in value
                if isinstance(item, dict) and "platform" in item
            )
    domains.add(INTEGRATION_DOMAIN)
    # Home Assistant sets these up whatever the configuration says; one that
    # fails (camera without PyTurboJPEG) takes the demo devices down with it.
    domains.update(DEFAULT_INTEGRATIONS)
    components = _core_components_dir()
    domains.update(
        module.stem
        for module in INTEGRATION_DIR.glob("*.py")
        if (components / module.stem / "manifest.json").is_file()
    )
    return domains


def missing_requirements(domains: Iterable[str]) -> list[str]:
    """Return the requirements the running Python environment does not satisfy.

    Those of these integrations and of the ones they (after-)depend on.
    """
    missing: list[str] = []
    for requirement in _requirements_closure(domains):
        parsed = Requirement(requirement)
        try:
            installed = importlib.metadata.version(parsed.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
            continue
        if not parsed.specifier.contains(installed, prereleases=True):
            missing.append(requirement)
    return sorted(set(missing))


def configuration_requirements(
    configuration: Mapping[str, Any], *, frontend: bool = True
) -> list[str]:
    """Return what Home Assistant needs installed to run this configuration.

    ``frontend=False`` leaves out the web UI's package (110 MB), which a
    ``frontend: development_repo:`` makes unneeded as well.
    """
    missing = missing_requirements(configured_domains(configuration))
    if not frontend or (configuration.get("frontend") or {}).get("development_repo"):
        missing = [r for r in missing if Requirement(r).name != FRONTEND_PACKAGE]
    return missing


def ensure_requirements(
    configuration: Mapping[str, Any],
    *,
    output: IO[str] | None,
    frontend: bool = True,
) -> None:
    """Install what the configuration needs, pinned as Home Assistant pins it.

    Home Assistant would do this itself at start, but silently, slowly and once
    per integration; doing it up front lets it run with ``--skip-pip``.
    """
    if not (missing := configuration_requirements(configuration, frontend=frontend)):
        return
    print(f"Installing for Home Assistant: {' '.join(missing)}", file=output)
    constraints = _core_components_dir().parent / "package_constraints.txt"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet"),
            *("--constraint", str(constraints), *missing),
        ],
        check=True,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
    )


def _core_components_dir() -> Path:
    """Locate ``homeassistant/components`` (Home Assistant's own integrations)."""
    return Path(homeassistant.components.__file__).parent


def _manifest(domain: str) -> dict[str, Any]:
    """Read an integration's manifest: this one, or one of Home Assistant's."""
    if domain == INTEGRATION_DOMAIN:
        path = INTEGRATION_DIR / "manifest.json"
    else:
        path = _core_components_dir() / domain / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _requirements_closure(domains: Iterable[str]) -> list[str]:
    """Collect requirements over dependencies and after_dependencies."""
    pending, seen, requirements = list(domains), set(), []
    while pending:
        domain = pending.pop()
        if domain in seen:
            continue
        seen.add(domain)
        manifest = _manifest(domain)
        requirements.extend(manifest.get("requirements", []))
        pending.extend(manifest.get("dependencies", []))
        pending.extend(manifest.get("after_dependencies", []))
    return requirements


def frontend_stand_in(root: Path) -> dict[str, str]:
    """A ``frontend:`` section pointing at an empty development checkout in ``root``.

    Home Assistant refuses to run without a frontend (it falls back to
    recovery mode), and tests and benchmarks need none of its 110 MB.
    """
    checkout = root / "frontend"
    for served in ("static", "frontend_latest", "frontend_es5"):
        (checkout / "hass_frontend" / served).mkdir(parents=True)
    return {"development_repo": str(checkout)}


def throwaway_config_dir(root: Path, logger: Mapping[str, Any] | None = None) -> Path:
    """The developer's configuration.yaml under ``root``, on a free port, without
    the web UI (:func:`frontend_stand_in`); ``logger`` replaces its ``logger:``
    section."""
    configuration = load_configuration(DEFAULT_CONFIG_DIR)
    configuration["homeassistant"] = {
        **configuration["homeassistant"],
        "internal_url": f"http://{LOOPBACK}:{free_port()}",
    }
    configuration["frontend"] = frontend_stand_in(root)
    if logger is not None:
        configuration["logger"] = dict(logger)
    directory = root / "config"
    write_configuration(directory, configuration)
    return directory


def prepare_config_dir(config_dir: Path) -> None:
    """Make Home Assistant find the integration: link it into the config dir.

    A link (rather than a copy) means an edit in the repo is live after a
    Home Assistant restart.
    """
    link = config_dir / "custom_components" / INTEGRATION_DOMAIN
    link.parent.mkdir(parents=True, exist_ok=True)
    target = Path(os.path.relpath(INTEGRATION_DIR, link.parent))
    if link.is_symlink() and link.resolve() == INTEGRATION_DIR.resolve():
        return
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise DevEnvironmentError(f"{link} exists and is not a link to {target}")
    link.symlink_to(target, target_is_directory=True)


# --- HTTP ---------------------------------------------------------------------


@dataclass
class HttpResponse:
    """Status and decoded body of one HTTP exchange."""

    status: int
    body: Any


def http_request(
    method: str,
    url: str,
    *,
    token: str | None = None,
    json_body: Any = None,
    form: Mapping[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> HttpResponse:
    """Send one request; JSON bodies come back decoded, others as bytes.

    Error statuses are returned, not raised: callers decide what is expected.
    """
    headers: dict[str, str] = {}
    data: bytes | None = None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    # Only http:// URLs of the local Home Assistant come here.
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return HttpResponse(response.status, _decode(response))
    except urllib.error.HTTPError as err:
        return HttpResponse(err.code, _decode(err))


def _decode(response: Any) -> Any:
    raw = response.read()
    if "json" in (response.headers.get("Content-Type") or ""):
        return json.loads(raw or b"null")
    return raw


def _expect(response: HttpResponse, what: str, *statuses: int) -> Any:
    if response.status not in (statuses or (200,)):
        raise DevEnvironmentError(f"{what}: HTTP {response.status}: {response.body!r}")
    return response.body


def websocket_command(url: str, token: str, command: Mapping[str, Any]) -> Any:
    """Send one command over Home Assistant's websocket API; return its result.

    Some settings (HTTP, pipelines, long-lived tokens) have no REST endpoint;
    the frontend changes them over the websocket, and so does this.
    """

    async def exchange() -> Any:
        timeout = aiohttp.ClientWSTimeout(ws_close=HTTP_TIMEOUT)
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{url}/api/websocket", timeout=timeout) as socket,
        ):
            await socket.receive_json()  # auth_required
            await socket.send_json({"type": "auth", "access_token": token})
            if (answer := await socket.receive_json())["type"] != "auth_ok":
                raise DevEnvironmentError(f"websocket login refused: {answer}")
            await socket.send_json({"id": 1, **command})
            while (answer := await socket.receive_json()).get("id") != 1:
                pass  # events of earlier subscriptions: none are made here
        if not answer.get("success"):
            raise DevEnvironmentError(f"{command['type']}: {answer.get('error')}")
        return answer.get("result")

    async def bounded() -> Any:
        async with asyncio.timeout(HTTP_TIMEOUT):
            return await exchange()

    return asyncio.run(bounded())


# --- processes ----------------------------------------------------------------


def start_standin(port: int, *, output: IO[str] | None) -> subprocess.Popen[bytes]:
    """Start the TTS.ai stand-in server on loopback."""
    return _start_module(
        ["tests.harness.standin", "--port", str(port), "--host", LOOPBACK],
        output=output,
    )


def start_model_server(port: int, *, output: IO[str] | None) -> subprocess.Popen[bytes]:
    """Serve Piper voices and Whisper models on loopback, as their hosts do."""
    return _start_module(
        ["tests.harness.model_server", "--port", str(port)], output=output
    )


def _start_module(
    arguments: list[str], *, output: IO[str] | None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", *arguments],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        # Its own process group: a terminal's Ctrl-C reaches `develop` only,
        # which then stops the servers in order.
        start_new_session=True,
    )


def start_hass(config_dir: Path, *, output: IO[str] | None) -> subprocess.Popen[bytes]:
    """Start Home Assistant on a configuration directory, on loopback only."""
    port = urllib.parse.urlsplit(hass_url(load_configuration(config_dir))).port
    assert port is not None  # hass_url always names one
    store_http_config(config_dir, port)
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "homeassistant", "--config", str(config_dir)),
            *("--skip-pip", "--log-no-color"),
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
    )


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Stop a server started here, with its children: politely, then not."""
    if process is None or process.poll() is not None:
        return
    # SIGTERM to the server itself: Home Assistant then shuts down cleanly
    # (saving its storage) and ends what it started.
    process.terminate()
    try:
        process.wait(PROCESS_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for_http(
    url: str, process: subprocess.Popen[bytes], *, what: str, timeout: float
) -> HttpResponse:
    """Poll a URL until it answers with anything but a connection error."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise DevEnvironmentError(f"{what} exited with code {process.returncode}")
        try:
            return http_request("GET", url, timeout=5)
        except OSError:  # refused, reset or timed out: not serving yet
            if time.monotonic() > deadline:
                raise DevEnvironmentError(
                    f"{what} did not answer at {url} in {timeout:.0f} s"
                ) from None
            time.sleep(0.25)


def wait_until_running(url: str, token: str, hass: subprocess.Popen[bytes]) -> None:
    """Wait for Home Assistant to finish starting, not just to serve HTTP.

    Its HTTP server (and onboarding) is up early in the start; until the core
    runs, SIGTERM is not yet handled, and stopping it then would lose what
    onboarding and the config flow stored.
    """
    deadline = time.monotonic() + HASS_START_TIMEOUT
    while True:
        state = http_request("GET", f"{url}/api/core/state", token=token)
        if state.status == 200 and state.body["state"] == "RUNNING":
            return
        if hass.poll() is not None:
            raise DevEnvironmentError(f"Home Assistant exited with {hass.returncode}")
        if time.monotonic() > deadline:
            raise DevEnvironmentError(f"Home Assistant did not start: {state}")
        time.sleep(0.25)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` different TCP ports on 127.0.0.1 that nothing uses now.

    The kernel picks them as it picks a listening socket's port, so they are
    unlike the ports its outgoing connections take (a neighbour of a free port,
    e.g. ``port + 1``, is often one of those).
    """
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:  # all held open at once: no port twice
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


# --- onboarding and the TTS.ai entry ------------------------------------------


def onboard_or_log_in(url: str) -> str:
    """Finish whatever onboarding is left, or log in; return an access token.

    The steps are the ones the frontend takes, through the same endpoints.
    """
    client_id = f"{url}/"
    status = http_request("GET", f"{url}/api/onboarding")
    if status.status == 404:  # onboarded: the onboarding views are gone
        return _exchange_code(url, client_id, _log_in(url, client_id))
    done = {
        step["step"] for step in _expect(status, "onboarding status") if step["done"]
    }

    if "user" in done:
        auth_code = _log_in(url, client_id)
    else:
        created = http_request(
            "POST",
            f"{url}/api/onboarding/users",
            json_body={
                "client_id": client_id,
                "name": DEV_NAME,
                "username": DEV_USERNAME,
                "password": DEV_PASSWORD,
                "language": DEV_LANGUAGE,
            },
        )
        auth_code = _expect(created, "creating the dev user")["auth_code"]
    token = _exchange_code(url, client_id, auth_code)

    for step in ("core_config", "analytics"):
        if step not in done:
            answer = http_request("POST", f"{url}/api/onboarding/{step}", token=token)
            _expect(answer, f"onboarding step {step}")
    if "integration" not in done:
        answer = http_request(
            "POST",
            f"{url}/api/onboarding/integration",
            token=token,
            json_body={
                "client_id": client_id,
                "redirect_uri": f"{client_id}?auth_callback=1",
            },
        )
        _expect(answer, "onboarding step integration")
    return token


def _log_in(url: str, client_id: str) -> str:
    """Log in as the dev user through the login flow; return an auth code."""
    flow = http_request(
        "POST",
        f"{url}/auth/login_flow",
        json_body={
            "client_id": client_id,
            "handler": ["homeassistant", None],
            "redirect_uri": f"{client_id}?auth_callback=1",
        },
    )
    flow_id = _expect(flow, "starting a login")["flow_id"]
    result = http_request(
        "POST",
        f"{url}/auth/login_flow/{flow_id}",
        json_body={
            "client_id": client_id,
            "username": DEV_USERNAME,
            "password": DEV_PASSWORD,
        },
    )
    body = _expect(result, "logging in")
    if body.get("type") != "create_entry":
        raise DevEnvironmentError(
            f"cannot log in as {DEV_USERNAME!r}/{DEV_PASSWORD!r} "
            f"(changed? delete config/.storage to start afresh): {body}"
        )
    return body["result"]


def _exchange_code(url: str, client_id: str, auth_code: str) -> str:
    answer = http_request(
        "POST",
        f"{url}/auth/token",
        form={
            "grant_type": "authorization_code",
            "code": auth_code,
            "client_id": client_id,
        },
    )
    return _expect(answer, "exchanging the auth code")["access_token"]


def ensure_tts_ai_entry(
    url: str, token: str, *, api_key: str, base_url: str, models_url: str
) -> dict[str, Any]:
    """Return the TTS.ai config entry, created through the config flow if absent."""
    entries = http_request(
        "GET",
        f"{url}/api/config/config_entries/entry?domain={INTEGRATION_DOMAIN}",
        token=token,
    )
    if existing := _expect(entries, "listing config entries"):
        return existing[0]

    flow = http_request(
        "POST",
        f"{url}/api/config/config_entries/flow",
        token=token,
        json_body={"handler": INTEGRATION_DOMAIN, "show_advanced_options": True},
    )
    flow_id = _expect(flow, "starting the TTS.ai config flow")["flow_id"]
    # The first step is a menu: the cloud (with on-device fallback) or device only.
    menu = http_request(
        "POST",
        f"{url}/api/config/config_entries/flow/{flow_id}",
        token=token,
        json_body={"next_step_id": "cloud"},
    )
    _expect(menu, "choosing the TTS.ai cloud")
    result = http_request(
        "POST",
        f"{url}/api/config/config_entries/flow/{flow_id}",
        token=token,
        json_body={
            "api_key": api_key,
            "base_url": base_url,
            # The form's collapsed section: the entry fetches its on-device
            # models as soon as it exists, so from the model server from the
            # start (the default hosts are unreachable offline).
            "model_downloads": {
                "piper_voices_url": f"{models_url}/rhasspy/piper-voices/resolve/main/",
                "whisper_models_url": models_url,
                # What the model server has: the real Joe voice, Whisper tiny.en.
                "local_voices": ["en_US-joe-medium"],
                "whisper_model": "tiny.en",
            },
        },
    )
    body = _expect(result, "submitting the TTS.ai config flow")
    if body.get("type") != "create_entry":
        raise DevEnvironmentError(f"the TTS.ai config flow did not finish: {body}")
    wait_for_tts_entity(url, token)
    return body["result"]


def wait_for_tts_entity(url: str, token: str, timeout: float = 60.0) -> str:
    """Wait until the TTS.ai entry is loaded with its TTS entity, for good.

    Only an entry seen loaded with its TTS entity for a whole second counts:
    a reload (e.g. after an options change) may still be under way before.
    """
    deadline = time.monotonic() + timeout
    template = (
        "{{ integration_entities('tts_ai') | select('match', 'tts[.]') | list"
        " | tojson }}"
    )
    steady_since: float | None = None
    while True:
        entries = http_request(
            "GET",
            f"{url}/api/config/config_entries/entry?domain={INTEGRATION_DOMAIN}",
            token=token,
        )
        answer = http_request(
            "POST", f"{url}/api/template", token=token, json_body={"template": template}
        )
        found = json.loads(answer.body) if answer.status == 200 else []
        loaded = entries.status == 200 and all(
            entry["state"] == "loaded" for entry in entries.body
        )
        now = time.monotonic()
        if found and loaded:
            steady_since = steady_since or now
            if now - steady_since >= 1.0:
                return found[0]
        else:
            steady_since = None
        if now > deadline:
            raise DevEnvironmentError("the TTS.ai entity did not come up")
        time.sleep(0.2)


def remove_failed_onboarding_entries(url: str, token: str) -> list[str]:
    """Delete the entries onboarding made that cannot work offline.

    Finishing onboarding sets up a few cloud services (Google Translate speech,
    the Met weather, radio browser); without their packages (and the network)
    they only show as failed in the UI. Returns the domains removed.
    """
    entries = http_request("GET", f"{url}/api/config/config_entries/entry", token=token)
    removed = []
    for entry in _expect(entries, "listing config entries"):
        if entry.get("source") == "onboarding" and entry["state"] == "setup_error":
            answer = http_request(
                "DELETE",
                f"{url}/api/config/config_entries/entry/{entry['entry_id']}",
                token=token,
            )
            _expect(answer, f"removing the {entry['domain']} entry")
            removed.append(entry["domain"])
    return removed


def check_http_config(url: str, token: str) -> dict[str, Any]:
    """Fail unless Home Assistant runs the confirmed, loopback-only HTTP config.

    Returns Home Assistant's own account of it (websocket ``http/config``).
    """
    state = websocket_command(url, token, {"type": "http/config"})
    if (
        state["pending"] is not None
        or state["active_config_type"] != "stable"
        or state["stable"].get("server_host") != [LOOPBACK]
    ):
        raise DevEnvironmentError(f"Home Assistant is not loopback-only: {state}")
    return state


def integration_entity(url: str, token: str, domain: str) -> str:
    """Return the TTS.ai entry's entity of a platform (``stt``, ``tts``)."""
    template = (
        f"{{{{ integration_entities('{INTEGRATION_DOMAIN}')"
        f" | select('match', '{domain}[.]') | list | tojson }}}}"
    )
    answer = http_request(
        "POST", f"{url}/api/template", token=token, json_body={"template": template}
    )
    if not (found := json.loads(_expect(answer, "listing the TTS.ai entities"))):
        raise DevEnvironmentError(f"the TTS.ai entry has no {domain} entity")
    return str(found[0])


def ensure_tts_ai_pipeline(url: str, token: str) -> dict[str, Any]:
    """Make a "TTS.ai" Assist pipeline (the entry's STT and TTS) the preferred one.

    Home Assistant's own default pipeline has neither when it was created
    before the entry, and a satellite then fails with "the pipeline does not
    support speech-to-text". An existing "TTS.ai" pipeline is pointed at the
    entry's entities again (they change when the entry is re-created).
    """
    stt_entity = integration_entity(url, token, "stt")
    tts_entity = integration_entity(url, token, "tts")
    languages = {}
    for kind, entity in (("stt", stt_entity), ("tts", tts_entity)):
        engines = websocket_command(
            url, token, {"type": f"{kind}/engine/list", "language": DEV_LANGUAGE}
        )
        [languages[kind]] = [
            p["supported_languages"][0]
            for p in engines["providers"]
            if p["engine_id"] == entity and p["supported_languages"]
        ] or [DEV_LANGUAGE]
    fields = {
        "name": PIPELINE_NAME,
        "language": DEV_LANGUAGE,
        "conversation_engine": "conversation.home_assistant",
        "conversation_language": DEV_LANGUAGE,
        "stt_engine": stt_entity,
        "stt_language": languages["stt"],
        "tts_engine": tts_entity,
        "tts_language": languages["tts"],
        "tts_voice": None,
        "wake_word_entity": None,
        "wake_word_id": None,
    }
    listed = websocket_command(url, token, {"type": "assist_pipeline/pipeline/list"})
    existing = [p for p in listed["pipelines"] if p["name"] == PIPELINE_NAME]
    if not existing:
        pipeline = websocket_command(
            url, token, {"type": "assist_pipeline/pipeline/create", **fields}
        )
    elif any(existing[0].get(key) != value for key, value in fields.items()):
        pipeline = websocket_command(
            url,
            token,
            {
                "type": "assist_pipeline/pipeline/update",
                "pipeline_id": existing[0]["id"],
                **fields,
            },
        )
    else:
        pipeline = existing[0]
    if listed["preferred_pipeline"] != pipeline["id"]:
        websocket_command(
            url,
            token,
            {
                "type": "assist_pipeline/pipeline/set_preferred",
                "pipeline_id": pipeline["id"],
            },
        )
    return pipeline


def ensure_satellite_token(url: str, token: str, token_file: Path) -> str:
    """Return a long-lived token for ``scripts/satellite``, kept in ``token_file``.

    The stored one is reused while Home Assistant accepts it; otherwise a new
    one replaces it (Home Assistant allows one token per client name, so a
    stale one of that name is deleted first).
    """
    with contextlib.suppress(OSError):
        stored = token_file.read_text(encoding="utf-8").strip()
        if stored and http_request("GET", f"{url}/api/", token=stored).status == 200:
            return stored
    for refresh in websocket_command(url, token, {"type": "auth/refresh_tokens"}):
        if refresh.get("client_name") == SATELLITE_CLIENT_NAME:
            websocket_command(
                url,
                token,
                {
                    "type": "auth/delete_refresh_token",
                    "refresh_token_id": refresh["id"],
                },
            )
    created = websocket_command(
        url,
        token,
        {
            "type": "auth/long_lived_access_token",
            "client_name": SATELLITE_CLIENT_NAME,
            "lifespan": SATELLITE_TOKEN_DAYS,
        },
    )
    token_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(f"{created}\n")
    return str(created)


def satellite_command(instance: DevInstance) -> str:
    """The command that runs one satellite turn loop against this instance."""
    token_file = instance.satellite_token_file
    with contextlib.suppress(ValueError):
        token_file = token_file.relative_to(Path.cwd())
    return (
        f"scripts/satellite --url {instance.hass_url} --token-file {token_file}"
        f" --pipeline {PIPELINE_NAME}"
    )


# --- the whole environment ----------------------------------------------------


@dataclass
class DevInstance:
    """A running Home Assistant with a TTS.ai entry, and the stand-in it uses."""

    config_dir: Path
    hass_url: str
    standin_url: str
    models_url: str
    """Where the model server serves Piper voices and Whisper models."""
    api_key: str
    token: str
    entry: dict[str, Any]
    pipeline: dict[str, Any]
    satellite_token_file: Path
    hass: subprocess.Popen[bytes]
    standin: subprocess.Popen[bytes]
    output: IO[str] | None

    def restart_hass(self) -> None:
        """Start Home Assistant again (after it exited to restart itself)."""
        stop_process(self.hass)
        self.hass = start_hass(self.config_dir, output=self.output)
        wait_for_http(
            f"{self.hass_url}/api/",
            self.hass,
            what="Home Assistant",
            timeout=HASS_START_TIMEOUT,
        )
        wait_until_running(self.hass_url, self.token, self.hass)
        check_http_config(self.hass_url, self.token)


@contextlib.contextmanager
def running_instance(
    config_dir: Path,
    *,
    ports: ServerPorts = ServerPorts(),
    output: IO[str] | None = None,
) -> Iterator[DevInstance]:
    """Bring the environment up; stop both servers on leaving, even on error.

    ``config_dir`` must hold a ``configuration.yaml``; its ``http:`` section
    says where Home Assistant serves. ``output`` receives both servers' logs
    (``None``: the caller's stdout).
    """
    configuration = load_configuration(config_dir)
    ensure_requirements(configuration, output=output)
    prepare_config_dir(config_dir)
    url = hass_url(configuration)

    standin = start_standin(ports.standin, output=output)
    # The on-device fallback downloads its models from here, as it would from
    # Hugging Face.
    models = start_model_server(ports.models, output=output)
    models_url = f"http://{LOOPBACK}:{ports.models}"
    hass: subprocess.Popen[bytes] | None = None
    try:
        standin_url = f"http://{LOOPBACK}:{ports.standin}/v1/"
        wait_for_http(
            f"{standin_url}models/",
            standin,
            what="the TTS.ai stand-in",
            timeout=STANDIN_START_TIMEOUT,
        )
        hass = start_hass(config_dir, output=output)
        wait_for_http(
            f"{url}/api/", hass, what="Home Assistant", timeout=HASS_START_TIMEOUT
        )
        token = onboard_or_log_in(url)
        wait_until_running(url, token, hass)
        check_http_config(url, token)
        api_key = DEFAULT_API_KEY
        wait_for_http(
            f"{models_url}/rhasspy/piper-voices/resolve/main/voices.json",
            models,
            what="the model server",
            timeout=STANDIN_START_TIMEOUT,
        )
        entry = ensure_tts_ai_entry(
            url, token, api_key=api_key, base_url=standin_url, models_url=models_url
        )
        remove_failed_onboarding_entries(url, token)
        pipeline = ensure_tts_ai_pipeline(url, token)
        satellite_token_file = config_dir / SATELLITE_TOKEN_FILE
        ensure_satellite_token(url, token, satellite_token_file)
        instance = DevInstance(
            config_dir=config_dir,
            hass_url=url,
            standin_url=standin_url,
            models_url=models_url,
            api_key=api_key,
            token=token,
            entry=entry,
            pipeline=pipeline,
            satellite_token_file=satellite_token_file,
            hass=hass,
            standin=standin,
            output=output,
        )
        try:
            yield instance
        finally:
            hass = instance.hass  # it may have been restarted
    finally:
        stop_process(hass)
        stop_process(standin)
        stop_process(models)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the developer's instance until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="scripts/develop", description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_DIR)
    parser.add_argument("--standin-port", type=int, default=DEFAULT_STANDIN_PORT)
    parser.add_argument("--models-port", type=int, default=DEFAULT_MODELS_PORT)
    parser.add_argument(
        "--install-requirements",
        action="store_true",
        help="only install what the configuration needs, then exit",
    )
    parser.add_argument(
        "--no-frontend",
        action="store_true",
        help="with --install-requirements: leave out the web UI (tests need none)",
    )
    args = parser.parse_args(argv)
    if args.install_requirements:
        configuration = load_configuration(args.config)
        ensure_requirements(
            configuration, output=sys.stdout, frontend=not args.no_frontend
        )
        return 0
    # A `kill` of `develop`, or its terminal closing, stops the servers as
    # Ctrl-C does (they run in their own sessions and would live on).
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGHUP, _raise_keyboard_interrupt)

    try:
        with running_instance(
            args.config, ports=ServerPorts(args.standin_port, args.models_port)
        ) as dev:
            print(
                "\n"
                f"Home Assistant: {dev.hass_url}"
                f"  (login: {DEV_USERNAME} / {DEV_PASSWORD})\n"
                f"TTS.ai stand-in: {dev.standin_url}  (key: {dev.api_key})\n"
                f"TTS.ai entry: {dev.entry.get('title')} ({dev.entry.get('state')})\n"
                f"Assist pipeline: {dev.pipeline['name']} (preferred)\n"
                f"Satellite (Enter talks): {satellite_command(dev)}\n"
                "Ctrl-C stops both.\n",
                flush=True,
            )
            while True:
                time.sleep(0.5)
                if dev.standin.poll() is not None:
                    print("The stand-in stopped; stopping Home Assistant.")
                    return 1
                if (code := dev.hass.poll()) == HASS_RESTART_EXIT_CODE:
                    print("Home Assistant asked to restart; starting it again.")
                    dev.restart_hass()
                elif code is not None:
                    print(f"Home Assistant exited with code {code}.")
                    return 0 if code == 0 else 1
    except KeyboardInterrupt:
        print("\nStopped.")
        return 0
    except DevEnvironmentError as err:
        print(f"develop: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
