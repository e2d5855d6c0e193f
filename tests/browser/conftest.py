"""A real browser against a real server, with the network off: Debian's headless Chromium, driven by Debian's
chromedriver through selenium, talking to uvicorn on loopback (ThreadedServer, the tiny bundle).

"Network off" is enforced and then checked: every non-loopback request goes to a proxy on 127.0.0.1:9 where
nothing listens (so it fails), and each test reads the browser's network log (goog:loggingPrefs
"performance") to assert that every URL the page asked for was on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.bundles import build_bundle
from tests.integration.conftest import fast_settings
from tests.integration.live import ThreadedServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")  # Debian's, matching the browser: Selenium Manager never runs
API_KEY = "playground-secret"
NO_NETWORK = (
    "--proxy-server=http://127.0.0.1:9",  # the discard port: nothing listens, every proxied request fails
    "--proxy-bypass-list=127.0.0.1",  # only loopback goes direct (Chromium's implicit rule, made explicit)
)
HEADLESS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=1280,1000",
    # a fake microphone (a beep) that needs no permission prompt: the playground's recorder
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
)
LOCAL_SCHEMES = ("data", "blob", "about", "chrome")  # never leave the browser


def chrome_options(profile: Path) -> Options:
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*HEADLESS, *NO_NETWORK, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return options


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make chromium` (part of `make test`) installs Debian's chromium")
    driver = webdriver.Chrome(
        service=Service(executable_path=str(CHROMEDRIVER)), options=chrome_options(tmp_path_factory.mktemp("profile"))
    )
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def browser_models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_bundle(root, "tiny", "1")
    return root


@pytest.fixture(scope="session")
def server(browser_models):
    with ThreadedServer(fast_settings(browser_models)) as live:
        yield live


@pytest.fixture
def keyed_server(browser_models):
    with ThreadedServer(fast_settings(browser_models, api_key=API_KEY)) as live:
        yield live


class NetworkLog:
    """The requests the browser's pages made since the last `drain` (Chromium's DevTools Network events)."""

    def __init__(self, driver):
        self.driver = driver
        self.sent: dict[str, dict] = {}  # requestId → Network.requestWillBeSent "request" (url, headers…)
        self.failed: dict[str, dict] = {}  # requestId → Network.loadingFailed params (errorText, blockedReason)

    def drain(self) -> NetworkLog:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.sent[message["params"]["requestId"]] = message["params"]["request"]
            elif message["method"] == "Network.loadingFailed":
                self.failed[message["params"]["requestId"]] = message["params"]
        return self

    def urls(self) -> list[str]:
        return [request["url"] for request in self.sent.values()]

    def blocked(self) -> list[str]:
        """URLs the browser itself refused to fetch (a Content-Security-Policy): they never left it."""
        return [self.sent[i]["url"] for i, f in self.failed.items() if f.get("blockedReason") and i in self.sent]

    def assert_only_loopback(self) -> None:
        self.drain()
        assert self.sent, "the network log recorded no request at all"
        left = [
            u for i, u in zip(self.sent, self.urls(), strict=True) if not self.failed.get(i, {}).get("blockedReason")
        ]
        outside = [u for u in left if urlsplit(u).scheme not in LOCAL_SCHEMES and urlsplit(u).hostname != "127.0.0.1"]
        assert not outside, f"the page asked for non-loopback URLs: {outside}"
        failed = [f"{f.get('type')}: {f['errorText']}" for f in self.failed.values() if not f.get("blockedReason")]
        assert not failed, f"requests failed: {failed}"


@pytest.fixture
def network(browser) -> NetworkLog:
    browser.get_log("performance")  # what earlier tests left
    return NetworkLog(browser)


@pytest.fixture
def wait(browser) -> WebDriverWait:
    return WebDriverWait(browser, 20)


def wait_for_text(wait: WebDriverWait, locator: tuple[str, str], expected: str) -> None:
    """Until the element at `locator` shows `expected`; else fail with what it shows instead."""
    try:
        wait.until(ec.text_to_be_present_in_element(locator, expected))
    except TimeoutException:
        shown = [e.text for e in wait._driver.find_elements(*locator)]
        raise AssertionError(f"{locator[1]!r} never showed {expected!r}; it shows {shown}") from None


@pytest.fixture
def screenshot(browser, tmp_path):
    """screenshot(name) → a PNG of the page under this test's tmp_path (never in the repository)."""

    def take(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        assert browser.save_screenshot(str(path)), f"no screenshot written to {path}"
        return path

    return take
