"""A real browser on the `scripts/develop` environment: what a user sees.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven with
Selenium) logs in through Home Assistant's login page and walks the
integration's forms, its device page, the media browser and the voice
assistant dialog. It asserts on the text a user sees, never on pixels, and
saves a screenshot of every step under ``build/browser/`` (CI keeps them).

Home Assistant's frontend is made of web components: the helpers below look
through their shadow roots, as a user's eyes would.
"""

from collections.abc import Callable, Iterator
import os
from pathlib import Path
import shutil
import time
from typing import Any

import pytest

from tests.harness import realhass as devenv
from tests.harness.realhass import free_port

SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "browser"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 30.0

# Every element's own text, through shadow roots, in document order; hidden
# elements (closed dialogs, collapsed sections) left out.
_DEEP_TEXT = """
const parts = [];
const walk = (node) => {
  if (node.nodeType === Node.TEXT_NODE) {
    const text = node.textContent.trim();
    if (text) parts.push(text);
    return;
  }
  if (node.nodeType !== Node.ELEMENT_NODE && node.nodeType !== 11) return;
  if (node.nodeType === Node.ELEMENT_NODE) {
    const style = getComputedStyle(node);
    if (style.display === 'none' || style.visibility === 'hidden') return;
    if (node.tagName === 'INPUT' || node.tagName === 'TEXTAREA') {
      if (node.value) parts.push(node.value);
    }
  }
  // A shadow root shows the element's own children through its slots.
  if (node.shadowRoot) { walk(node.shadowRoot); return; }
  const children = node.tagName === 'SLOT'
    ? node.assignedNodes({flatten: true}) : node.childNodes;
  for (const child of children) walk(child);
};
walk(document.body);
return parts.join('\\n');
"""

# All elements through shadow roots, for finding and clicking by text.
_DEEP_ELEMENTS = """
const all = [];
const walk = (root) => {
  for (const el of root.querySelectorAll('*')) {
    all.push(el);
    if (el.shadowRoot) walk(el.shadowRoot);
  }
};
walk(document);
"""

_CLICK_TEXT = (
    _DEEP_ELEMENTS
    + """
const wanted = arguments[0];
const nth = arguments[1];
const visible = (el) => {
  const r = el.getBoundingClientRect();
  return r.width > 0 && r.height > 0;
};
const own = (el) => Array.from(el.childNodes)
  .filter(n => n.nodeType === Node.TEXT_NODE)
  .map(n => n.textContent.trim()).join(' ').trim();
const named = (el) => ['label', 'aria-label', 'title']
  .some(a => el.getAttribute(a) === wanted);
const matches = all.filter(el => visible(el) && (own(el) === wanted || named(el)
  || (el.shadowRoot === null && el.children.length === 0
      && el.textContent.trim() === wanted)));
if (!matches.length) return false;
const target = matches.at(nth);
if (!target) return false;
const clickable = target.closest('button, a, ha-button, mwc-button, ha-list-item,'
  + ' ha-md-list-item, md-item, ha-clickable-list-item, ha-card, li') || target;
clickable.click();
return true;
"""
)

_FILL_INPUTS = (
    _DEEP_ELEMENTS
    + """
const values = arguments[0];
const inDialog = (el) => {
  for (let n = el; n; n = n.parentNode || n.host) {
    if (n.tagName && n.tagName.includes('DIALOG')) return true;
  }
  return false;
};
let inputs = all.filter(el => (el.tagName === 'TEXTAREA' || (el.tagName === 'INPUT'
  && ['text', 'password', 'url', 'email', ''].includes(el.type)))
  && el.getBoundingClientRect().width > 0);
// A dialog's fields, when one is open (not the page's search box behind it).
if (inputs.some(inDialog)) inputs = inputs.filter(inDialog);
values.forEach((value, i) => {
  if (value === null || !inputs[i]) return;
  inputs[i].focus();
  inputs[i].value = value;
  inputs[i].dispatchEvent(new Event('input', {bubbles: true, composed: true}));
  inputs[i].dispatchEvent(new Event('change', {bubbles: true, composed: true}));
});
return inputs.length;
"""
)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The developer's configuration.yaml on a free port, with the real web UI."""
    configuration = devenv.load_configuration(devenv.DEFAULT_CONFIG_DIR)
    # HA 2026.10 keeps the HTTP settings in its storage; develop stores them
    # from the internal URL's port (loopback), so the port is set there.
    configuration["homeassistant"] = {
        **configuration["homeassistant"],
        "internal_url": f"http://127.0.0.1:{free_port()}",
    }
    directory = tmp_path / "config"
    devenv.write_configuration(directory, configuration)
    return directory


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium; skipped outside CI when it is not installed."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not Path(CHROMEDRIVER).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium-driver is missing; .ci/run installs it")
        pytest.skip("chromium-driver is not installed (apt install chromium-driver)")
    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--autoplay-policy=no-user-gesture-required",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """What the user sees, and what the user does, in one browser tab."""

    def __init__(self, driver: Any, base_url: str) -> None:
        """Drive `driver` on the Home Assistant at `base_url`."""
        self.driver = driver
        self.base_url = base_url

    def open(self, path: str) -> None:
        """Go to a page of Home Assistant."""
        self.driver.get(f"{self.base_url}{path}")

    def text(self) -> str:
        """Return the visible text, shadow roots included."""
        return str(self.driver.execute_script(_DEEP_TEXT))

    def wait_for(self, *texts: str, timeout: float = WAIT) -> str:
        """Wait until every text is visible; return the page's text."""
        return self.wait_until(lambda page: all(t in page for t in texts), texts)

    def wait_until(
        self, check: Callable[[str], bool], what: Any, timeout: float = WAIT
    ) -> str:
        """Wait until the visible text passes `check`."""
        deadline = time.monotonic() + timeout
        while True:
            page = self.text()
            if check(page):
                return page
            if time.monotonic() > deadline:
                self.shot("failed")
                pytest.fail(f"not seen: {what!r}\n--- the page shows:\n{page}")
            time.sleep(0.3)

    def click(self, text: str, nth: int = -1, timeout: float = WAIT) -> None:
        """Click the visible element that reads `text` (the last, or the nth)."""
        deadline = time.monotonic() + timeout
        while not self.driver.execute_script(_CLICK_TEXT, text, nth):
            if time.monotonic() > deadline:
                self.shot("failed")
                pytest.fail(f"nothing to click reads {text!r}:\n{self.text()}")
            time.sleep(0.3)
        time.sleep(0.5)  # the click's effect starts rendering

    def fill(self, *values: str | None) -> None:
        """Type into the visible text inputs in order (None skips one)."""
        assert self.driver.execute_script(_FILL_INPUTS, list(values)) >= len(values)

    def shot(self, name: str) -> None:
        """Save a screenshot for the CI artefacts."""
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def _template(dev: Any, template: str) -> str:
    answer = devenv.http_request(
        "POST",
        f"{dev.hass_url}/api/template",
        token=dev.token,
        json_body={"template": template},
    )
    assert answer.status == 200, answer
    return answer.body.decode() if isinstance(answer.body, bytes) else answer.body


def test_a_user_walks_the_integration_in_a_browser(
    socket_enabled: None, config_dir: Path, tmp_path: Path, browser: Any
) -> None:
    """Log in, add (a wrong key), options, device, media browser, assistant."""
    log = tmp_path / "servers.log"
    with (
        log.open("w") as output,
        devenv.running_instance(
            config_dir, ports=devenv.ServerPorts.free(), output=output
        ) as dev,
    ):
        page = Page(browser, dev.hass_url)

        # Home Assistant's own login page.
        page.open("/")
        page.wait_for("Username", "Password")
        page.fill(devenv.DEV_USERNAME, devenv.DEV_PASSWORD)
        page.shot("01-login")
        page.click("Log in")
        shown = page.wait_for("Overview")
        if "Confirm new HTTP server configuration" in shown:
            # develop's loopback-only HTTP settings, new to this instance.
            page.click("Confirm")

        # Add the integration: the menu, then the cloud form, with a wrong key.
        page.open("/config/integrations/dashboard/add?domain=tts_ai")
        page.wait_for("Do you want to set up TTS.ai?")
        page.click("OK")
        page.wait_for("TTS.ai cloud with on-device fallback", "On this device only")
        page.shot("02-add-menu")
        page.click("TTS.ai cloud with on-device fallback")
        page.wait_for("Connect to TTS.ai", "API key", "Starts with sk-tts-.")
        page.fill("sk-tts-not-a-key", dev.standin_url)
        page.click("Submit")
        page.wait_for("Invalid API key")
        page.shot("03-cloud-form-invalid-key")
        browser.switch_to.active_element.send_keys("\ue00c")  # Escape

        # The options: names and descriptions; then the mode first.
        page.open("/config/integrations/integration/tts_ai")
        page.click("Configure")
        shown = page.wait_for(
            "TTS.ai options", "Text-to-speech model", "A voice of the chosen model."
        )
        assert "Kokoro" in shown
        assert "English" in shown  # the language by name
        assert "MP3" in shown  # the format by its label
        assert "Bella" in shown and "af_bella" not in shown
        page.shot("04-options-voice")
        page.click("Submit")
        shown = page.wait_for("On-device fallback", "Mode", "On-device models")
        assert shown.index("Mode") < shown.index("Hedge deadline")
        assert shown.index("Hedge deadline") < shown.index("On-device engine")
        assert "Piper voice download URL" not in shown  # collapsed
        assert "Text-to-speech entity" not in shown  # only for another engine
        page.shot("05-options-fallback")
        page.click("On-device models")
        page.wait_for("Piper voice download URL")
        page.shot("06-options-fallback-models")
        browser.switch_to.active_element.send_keys("\ue00c")

        # The media browser speaks a message through TTS.ai.
        page.open("/media-browser/browser")
        page.click("Text-to-speech")
        page.wait_for("Text to speech")
        page.shot("07-media-browser")
        page.click("Text to speech")
        page.wait_for("Message")
        message = "The washing machine has finished."
        page.fill(message)
        page.click("Say")
        # The browser's player bar plays it: the message as its title, a length.
        page.wait_until(
            lambda text: text.count(message) >= 2 and "Web browser" in text,
            "the message playing in the browser",
        )
        page.shot("08-media-browser-spoken")

        # The device page: every sensor shows a value.
        device_id = _template(
            dev,
            "{{ device_id(integration_entities('tts_ai')"
            " | select('match', 'tts[.]') | first) }}",
        )
        page.open(f"/config/devices/device/{device_id}")
        shown = page.wait_for("Active engine", "Cloud reachable", "Local models")
        sensors = shown.split("Sensors", 1)[1].split("Add to dashboard", 1)[0]
        diagnostic = shown.split("Diagnostic", 1)[1].split("Add to dashboard", 1)[0]
        engine = sensors.split("Active engine", 1)[1].split()[0]
        assert engine in {"Cloud", "Device"}, sensors
        assert "Unknown" not in diagnostic, diagnostic
        # Credits are known only from a billed cloud answer (the API has no
        # balance endpoint): until the first one, "Unknown" is the truth.
        assert sensors.replace("Credits remaining\nUnknown", "").count("Unknown") == 0
        page.shot("09-device")

        # A voice assistant can use TTS.ai to listen and to speak.
        page.open("/config/voice-assistants/assistants")
        page.click("Add assistant")
        page.wait_for("Speech-to-text", "Text-to-speech")
        page.click("None", nth=0)  # the speech-to-text picker
        page.wait_for("TTS.ai Speech to text")
        page.shot("10-assistant-stt")
        browser.switch_to.active_element.send_keys("\ue00c")
        page.click("None", nth=-1)  # the text-to-speech picker
        page.wait_for("TTS.ai Text to speech")
        page.shot("11-assistant-tts")
