"""An uncaught exception shows a generic message in the page; its details go only to the server log
(`client.showErrorDetails = "none"` in .streamlit/config.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import ROOT, free_port

RAISING = "import streamlit as st\nst.write('before')\nraise ValueError('secret detail 8841 from ' + '/home/owner/x')\n"


def test_the_project_config_hides_error_details_in_apptest():
    at = AppTest.from_string(RAISING).run()
    assert config.get_option("client.showErrorDetails") == "none"
    assert Path(config._config_options["client.showErrorDetails"].where_defined) == ROOT / ".streamlit" / "config.toml"
    shown = at.exception[0]
    assert shown.value.startswith("This app has encountered an error.")
    assert "secret detail" not in shown.value and shown.stack_trace == [] and "ValueError" not in str(shown.proto)


@pytest.mark.browser
@pytest.mark.slow
def test_a_real_server_with_this_config_shows_no_traceback_and_logs_it(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run `scripts/setup.sh --test`")
    from playwright.sync_api import sync_playwright

    shutil.copytree(ROOT / ".streamlit", tmp_path / ".streamlit", ignore=shutil.ignore_patterns("secrets.toml"))
    (tmp_path / "boom.py").write_text(RAISING, encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "boom.py", "--server.port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            for _ in range(60):
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:  # noqa: BLE001 - the server is still starting
                    page.wait_for_timeout(500)
            page.get_by_text("This app has encountered an error").wait_for(timeout=60_000)
            text = page.inner_text("body")
            assert "before" in text
            assert "secret detail" not in text and "ValueError" not in text and "Traceback" not in text
            assert "/home/owner" not in page.content()
            browser.close()
    finally:
        proc.terminate()
        log = proc.communicate(timeout=20)[0].decode()
    assert "ValueError" in log and "secret detail 8841" in log  # the owner can still find out what happened
