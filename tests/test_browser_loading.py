"""The first minutes: on a fresh model folder the page shows the load's progress, even though the API's own loader
(which starts with the server) is the one converting the demo model. Chromium against `streamlit run app.py`."""

from __future__ import annotations

import pytest

from tests.browser import start_streamlit
from tests.conftest import ROOT
from tests.test_api import stop

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]


def test_a_fresh_start_shows_the_loads_progress_instead_of_a_blank_page(browser, tmp_path):
    # A models folder of its own: the bundled GGUF is converted again (about 30 s), by the server's loader.
    proc, url = start_streamlit("app.py", tmp_path / "data", {"MODEL_CACHE_DIR": str(tmp_path / "models")})
    try:
        page = browser.new_page()
        page.goto(url)
        shown = page.get_by_text("Converting the bundled demo model")
        shown.wait_for(timeout=20_000)  # drawn while the conversion runs, not after it
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "test-artifacts" / "loading-progress.png"))
        page.get_by_test_id("stChatInput").wait_for(timeout=180_000)  # and the chat once the model is loaded
        assert not shown.is_visible()
        page.close()
    finally:
        stop(proc)
