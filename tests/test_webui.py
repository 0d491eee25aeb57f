"""The web chat UI in headless Chromium: send a message, see it answered, keep a screenshot."""

import shutil
import subprocess
import sys
import time

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from devtools.launcher import ROOT, free_port
from tests.constants import API_KEYS

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def web_ui(server, tmp_path):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "clients.webui",
        "--url",
        server.url,
        "--port",
        str(port),
    ]
    command += ["--api-key", API_KEYS[0], "--max-tokens", "24"]
    with (tmp_path / "webui.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("web UI did not start:\n" + (tmp_path / "webui.log").read_text())
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
def browser():
    assert CHROMIUM and CHROMEDRIVER, "scripts/test.sh installs Debian's chromium and chromedriver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def bot_texts(driver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, '[data-testid="bot"]')]


def test_web_ui_streams_an_answer(web_ui, browser):
    browser.get(web_ui)
    wait = WebDriverWait(browser, 90)
    box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#q textarea"))
    box.send_keys("什么是CUDA中的warp？", Keys.ENTER)
    wait.until(lambda d: any(text.strip() for text in bot_texts(d)))
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "webui-fast.png"))
    assert "什么是CUDA中的warp？" in browser.find_element(By.ID, "chat").text

    browser.find_element(By.CSS_SELECTOR, "#mode input[value='slow']").click()
    box.send_keys("为什么要合并访问？", Keys.ENTER)
    wait.until(lambda d: "Reasoning" in d.find_element(By.ID, "chat").text)
    browser.save_screenshot(str(ARTIFACTS / "webui-slow.png"))
    assert (ARTIFACTS / "webui-slow.png").stat().st_size > 10_000
