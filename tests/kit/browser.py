"""A real browser for the console's tests: headless Chromium (Debian's, driven by its chromedriver through
Selenium; browsers cannot be downloaded here), and what an operator does with it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests import services

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


@contextmanager
def headless_chromium() -> Iterator[WebDriver]:
    chromium, driver = services.require_binary("chromium"), services.require_binary("chromedriver")
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download a browser
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.implicitly_wait(5)  # each element lookup waits this long for the element to appear
    try:
        yield browser
    finally:
        browser.quit()


def follow(browser: WebDriver, element: WebElement, to: str) -> None:
    """Click ``element`` and wait until the browser is on a page whose URL contains ``to`` (the old page's
    elements are then gone: nothing found later belongs to it)."""
    element.click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains(to))


def screenshot(browser: WebDriver, name: str) -> None:
    """With ``CLINIC_UPDATE_SCREENSHOTS=1``: the page as docs/console.md shows it."""
    if os.environ.get("CLINIC_UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
