"""Shared by the tests that drive a real Chromium (Debian's, through playwright) against `streamlit run`:
starting the app, and opening, typing into and reading the chat page. The `browser` fixture is in conftest."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import MODELS_DIR, ROOT, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def start_streamlit(
    script: str, data_dir: Path, extra_env: dict | None = None, port: int | None = None
) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    env = {
        **os.environ,
        "LLM_MODEL": "demo",
        "DATA_DIR": str(data_dir),
        "MODEL_CACHE_DIR": str(MODELS_DIR),
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port), "--server.headless", "true"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"streamlit did not start: {proc.stdout.read().decode()[-2000:]}")


def wait_healthy(url: str, timeout: float = 120) -> list[int]:
    """Polls /health until 200; returns every status seen on the way."""
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        response = requests.get(f"{url}/health", timeout=5)
        seen.append(response.status_code)
        if response.status_code == 200:
            return seen
        assert response.status_code == 503 and "error" in response.json()
        time.sleep(0.2)
    raise AssertionError(f"/health never became 200: {seen[-5:]}")


def stop(proc) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    return out.decode(errors="replace")


@contextmanager
def serving(data_dir: Path, extra_env: dict | None = None) -> Iterator[str]:
    """`streamlit run app.py` with `extra_env`, once /health says the model answers; yields its URL."""
    proc, url = start_streamlit("app.py", data_dir, extra_env)
    try:
        wait_healthy(url)
        yield url
    finally:
        stop(proc)


def open_chat(browser, url, max_new: int = 30):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
    page.goto(url)
    page.get_by_text("Sampling").click()
    box = page.get_by_label("Max new tokens", exact=True)
    box.fill(str(max_new))
    box.press("Enter")
    page.locator('[data-testid="stChatInputTextArea"]').wait_for()
    return page


def send(page, text: str, answers_expected: int) -> None:
    box = page.locator('[data-testid="stChatInputTextArea"]')
    box.fill(text)
    box.press("Enter")
    wait_answers(page, answers_expected)


def wait_answers(page, n: int) -> None:
    page.get_by_text("tokens used").nth(n - 1).wait_for(timeout=180_000)


def until(check, timeout_s: float = 60.0, every_s: float = 0.25):
    """`check()`'s first truthy value, asked every `every_s` (what a page saves lands in the store in its own
    time, later on a loaded machine); AssertionError with its last value at the timeout."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(every_s)
    assert value, f"still {value!r} after {timeout_s} s"
    return value


def bubbles(page) -> list[str]:
    return page.locator('[data-testid="stChatMessage"]').all_inner_texts()
