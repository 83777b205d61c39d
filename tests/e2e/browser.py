"""Headless Chromium for the UI tests, and the web servers they look at.

Debian's ``chromium`` and ``chromium-driver`` (``infra/provision-browser.sh``) driven by Selenium:
the driver path is given explicitly, so Selenium Manager never tries to download one. Every wait
is on text a person would read; a timeout fails with what the page showed instead and a debug
screenshot in ``var/browser/``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from btc_core.settings import PROJECT_ROOT
from deployments.processes import stop, wait_until_ok

SCREENSHOTS = PROJECT_ROOT / "docs" / "img"
DEBUG = PROJECT_ROOT / "var" / "browser"
CHROMIUM = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"
WIDTH, HEIGHT = 1400, 900

# Counts the green pixels of a PNG (base64) inside the page: canvases drawn with WebGL cannot be
# read back (toDataURL gives a blank), but a screenshot of them can.
_GREEN_PIXELS_JS = """
const [png, done] = arguments;
const img = new Image();
img.onload = () => {
  const canvas = Object.assign(document.createElement("canvas"), {width: img.width, height: img.height});
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, img.width, img.height).data;
  let green = 0;
  for (let i = 0; i < px.length; i += 4) if (px[i + 1] > px[i] + 60 && px[i + 1] > px[i + 2] + 40) green++;
  done(green);
};
img.onerror = () => done(-1);
img.src = "data:image/png;base64," + png;
"""


def browser_missing() -> str | None:
    """Why no browser test can run here, or None."""
    if not any(shutil.which(name) for name in CHROMIUM):
        return "no chromium on PATH: run infra/provision-browser.sh (as root)"
    if not shutil.which(CHROMEDRIVER):
        return "no chromedriver on PATH: run infra/provision-browser.sh (as root)"
    return None


def _xpath_literal(text: str) -> str:
    """``text`` as an XPath string literal (quotes included)."""
    if "'" not in text:
        return f"'{text}'"
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in text.split("'")) + ")"


class Browser:
    """One headless Chromium window with a fixed viewport."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver
        self._debug_shots = 0

    @classmethod
    @contextmanager
    def start(cls) -> Iterator[Browser]:
        binary = next(filter(None, map(shutil.which, CHROMIUM)))
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for arg in (
            "--headless=new",
            "--no-sandbox",  # root in CI containers
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={WIDTH},{HEIGHT}",
        ):
            options.add_argument(arg)
        service = Service(executable_path=shutil.which(CHROMEDRIVER))
        driver = webdriver.Chrome(service=service, options=options)
        try:
            # The window size includes the browser's frame: fix the page's viewport instead.
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
            )
            yield cls(driver)
        finally:
            driver.quit()

    def open(self, url: str, *texts: str, timeout_s: float = 60) -> None:
        """Load ``url`` and wait until every one of ``texts`` is visible."""
        self.driver.get(url)
        self.wait_for(*texts, timeout_s=timeout_s)

    def page_text(self) -> str:
        try:
            return self.driver.find_element(By.TAG_NAME, "body").text
        except WebDriverException:
            return ""

    def wait_until(self, shown: Callable[[str], bool], what: str, timeout_s: float = 60) -> None:
        """Wait until ``shown(page text)`` holds (single-page apps render late)."""
        try:
            WebDriverWait(self.driver, timeout_s, poll_frequency=0.25).until(
                lambda _: shown(self.page_text())
            )
        except TimeoutException:
            self.fail(f"not shown: {what}", timeout_s)

    def wait_for(self, *texts: str, timeout_s: float = 60) -> None:
        """Wait until the page shows every one of ``texts``."""
        self.wait_until(lambda page: all(t in page for t in texts), " and ".join(texts), timeout_s)

    def element(self, text: str, timeout_s: float = 30) -> WebElement:
        """A visible element with a text node of its own that is exactly ``text``."""
        # Any of its text nodes: frameworks leave empty ones beside the visible text.
        xpath = f"//*[text()[normalize-space()={_xpath_literal(text)}]]"

        def visible(driver: webdriver.Chrome) -> WebElement | bool:
            return next(
                (e for e in driver.find_elements(By.XPATH, xpath) if e.is_displayed()), False
            )

        try:
            return WebDriverWait(self.driver, timeout_s, poll_frequency=0.25).until(visible)
        except TimeoutException:
            self.fail(f"no visible element with the text {text!r}", timeout_s)
            raise  # unreachable: fail() raises

    def click(self, text: str, timeout_s: float = 30) -> None:
        """Click what shows ``text`` (a link, a tab, a button), once it can take the click."""
        target = self.element(text, timeout_s)
        try:
            WebDriverWait(self.driver, timeout_s).until(
                expected_conditions.element_to_be_clickable(target)
            )
            target.click()
        except (TimeoutException, WebDriverException) as exc:
            self.fail(f"could not click {text!r}: {exc.__class__.__name__}", timeout_s)

    def wait_drawn_green(
        self, css: str, what: str, min_pixels: int = 1000, timeout_s: float = 60
    ) -> None:
        """Wait until the element at ``css`` shows green (Completed) on screen and has stopped
        changing: for graphs drawn on a canvas, which no text wait can see."""
        previous = ""

        def drawn(driver: webdriver.Chrome) -> bool:
            nonlocal previous
            found = driver.find_elements(By.CSS_SELECTOR, css)
            if not found:
                return False
            png = found[0].screenshot_as_base64
            stable, previous = png == previous, png
            return stable and driver.execute_async_script(_GREEN_PIXELS_JS, png) >= min_pixels

        try:
            WebDriverWait(self.driver, timeout_s, poll_frequency=0.5).until(drawn)
        except TimeoutException:
            self.fail(f"not drawn: {what}", timeout_s)

    def wait_image(self, src_prefix: str, what: str, timeout_s: float = 60) -> None:
        """Wait until an image whose ``src`` starts with ``src_prefix`` has loaded and shows."""
        script = (
            "return [...document.images].some(i => i.src.startsWith(arguments[0]) "
            "&& i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0)"
        )
        try:
            WebDriverWait(self.driver, timeout_s, poll_frequency=0.25).until(
                lambda driver: driver.execute_script(script, src_prefix)
            )
        except TimeoutException:
            self.fail(f"no image shown: {what}", timeout_s)

    def screenshot(self, name: str) -> Path:
        """Save the viewport as ``docs/img/<name>.png``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), f"Chromium did not write {path}"
        return path

    def fail(self, what: str, timeout_s: float) -> None:
        """Raise with the URL, what the page shows instead, and a debug screenshot."""
        DEBUG.mkdir(parents=True, exist_ok=True)
        self._debug_shots += 1
        shot = DEBUG / f"timeout-{time.strftime('%H%M%S')}-{self._debug_shots}.png"
        self.driver.save_screenshot(str(shot))
        shown = " | ".join(self.page_text().split("\n"))[:1500]
        raise AssertionError(
            f"after {timeout_s:.0f} s at {self.driver.current_url}: {what}\n"
            f"the page shows: {shown}\nscreenshot: {shot}"
        )


@contextmanager
def service(
    cmd: list[str], env: dict[str, str], log: Path, health_url: str, cwd: Path = PROJECT_ROOT
) -> Iterator[subprocess.Popen]:
    """A web server in its own process group, up once ``health_url`` answers; stopped by PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_ok(health_url, 120, proc, log=log)
        yield proc
    finally:
        stop(proc.pid, sigints=1)
