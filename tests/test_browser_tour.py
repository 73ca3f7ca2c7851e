"""Every page in Chromium against `streamlit run app.py`, in English on a desktop and in 简体中文 on a phone's
width: each opens with its title in the browser's language, nothing on it is wider than the screen, and the
Chinese pages carry none of the English page words. Screenshots go to test-artifacts/."""

from __future__ import annotations

import pytest

from tests.browser import start_streamlit, stop
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]
# path -> (English title, Chinese title, English words the page shows that a Chinese page must not)
PAGES = {
    "": ("Chat", "聊天", ("Message the model", "System prompt")),
    "Personas": ("Base model", "基础模型", ("View", "Side by side")),
    "Search_answers": ("Search answers", "搜索问答", ("Ask about anything recent",)),
    "Team": ("Team of experts", "专家团队", ("Give the team a task",)),
    "API": ("API", "API", ("the loaded model", "model id")),
}
SCREENS = {
    "en-US": {"viewport": {"width": 1280, "height": 1000}},
    "zh-CN": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    proc, url = start_streamlit("app.py", tmp_path_factory.mktemp("data"))
    yield url
    stop(proc)


@pytest.mark.parametrize("locale", list(SCREENS))
def test_every_page_in_its_language_fits_the_screen(browser, url, locale):
    context = browser.new_context(locale=locale, **SCREENS[locale])
    page = context.new_page()
    for path, (english, chinese, words) in PAGES.items():
        page.goto(f"{url}/{path}")
        title = english if locale == "en-US" else chinese
        page.locator("h1").filter(has_text=title).first.wait_for(timeout=180_000)
        page.wait_for_timeout(1500)  # the rest of the run drawn
        width = page.evaluate("innerWidth")
        overflow = page.evaluate(
            "[...document.querySelectorAll('[data-testid=stMainBlockContainer] *')]"
            ".filter(e => e.getBoundingClientRect().right > innerWidth + 1 && e.getClientRects().length)"
            ".filter(e => !e.closest('pre'))"  # a code block scrolls sideways inside its own box
            ".map(e => e.dataset.testid || e.tagName).slice(0, 5)"
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1 and not overflow, (path, overflow)
        main = page.locator('[data-testid="stMainBlockContainer"]').inner_text()
        if locale == "zh-CN":
            assert not [w for w in words if w in main], (path, [w for w in words if w in main])
        page.screenshot(path=ARTIFACTS / f"tour-{locale}-{path or 'Chat'}.png", full_page=True)
    context.close()
