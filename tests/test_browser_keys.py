"""Keyboard gestures in Chromium against `streamlit run app.py`: the message box has the focus when the page
opens (typing starts a message), and Esc stops the answer being written, keeping what came."""

from __future__ import annotations

import re

import pytest

from tests.browser import start_streamlit
from tests.test_api import stop

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]
BOX = '[data-testid="stChatInputTextArea"]'


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    proc, url = start_streamlit("app.py", tmp_path_factory.mktemp("data"))
    yield url
    stop(proc)


def focused_test_id(page) -> str | None:
    return page.evaluate("document.activeElement && document.activeElement.dataset.testid")


def test_the_box_is_focused_on_load_and_esc_stops_the_answer(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.locator(BOX).wait_for(timeout=180_000)
    page.wait_for_function(f"document.activeElement === document.querySelector('{BOX}')", timeout=10_000)
    page.keyboard.type("Write a long story about a lighthouse keeper.")  # straight into the box
    page.keyboard.press("Enter")
    page.locator('[data-testid="stChatInputStopButton"]').wait_for(timeout=60_000)
    page.get_by_test_id("stChatMessage").nth(1).wait_for(timeout=60_000)  # the answer has begun
    page.wait_for_timeout(2000)  # saved at least once (every second) while streaming
    page.keyboard.press("Escape")
    page.locator('[data-testid="stChatInputStopButton"]').wait_for(state="detached", timeout=10_000)
    stopped = page.get_by_test_id("stChatMessage").nth(1).inner_text()
    page.wait_for_timeout(2000)
    assert page.get_by_test_id("stChatMessage").nth(1).inner_text() == stopped  # no more text came
    page.wait_for_url(re.compile(r"[?&]c=[\w-]{20,}"))
    page.reload()  # the stopped answer was kept, marked as cut
    page.get_by_text("Stopped: this answer was cut off before it finished.").wait_for(timeout=60_000)
    page.close()


def sidebar_open(page) -> bool:
    state = "(document.querySelector('[data-testid=stSidebarCollapseButton] button') || {}).ariaExpanded"
    return page.evaluate(state) == "true"


def test_on_a_phone_choosing_a_page_closes_the_sidebar(browser, url):
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(url)
    page.locator(BOX).wait_for(timeout=180_000)
    page.get_by_test_id("stExpandSidebarButton").click()
    page.wait_for_function(
        "(document.querySelector('[data-testid=stSidebarCollapseButton] button') || {}).ariaExpanded === 'true'",
        timeout=10_000,
    )
    page.get_by_test_id("stSidebarNavLink").filter(has_text="Team").click()
    page.get_by_text("Team of experts").first.wait_for(timeout=60_000)
    page.wait_for_function(
        "!document.querySelector('[data-testid=stSidebarCollapseButton] button')"
        " || document.querySelector('[data-testid=stSidebarCollapseButton] button')"
        ".ariaExpanded !== 'true'",
        timeout=10_000,
    )
    assert not sidebar_open(page)  # the page is visible, not covered
    page.close()
