"""The interface in the reader's language, in Chromium against `streamlit run app.py`: a zh-CN browser gets
简体中文 without choosing; the sidebar's switch changes it, and the choice survives a reload and a page change."""

from __future__ import annotations

import pytest

from tests.browser import start_streamlit
from tests.conftest import ARTIFACTS
from tests.test_api import stop

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    proc, url = start_streamlit("app.py", tmp_path_factory.mktemp("data"))
    yield url
    stop(proc)


def test_a_chinese_browser_gets_chinese_and_the_switch_keeps_its_choice(browser, url):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url)
    page.get_by_placeholder("给模型发消息").wait_for(timeout=180_000)  # the model loaded, the page in Chinese
    assert page.get_by_text("新对话").count() and page.get_by_text("系统提示词").count()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-zh-CN.png"))

    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_text("Українська").last.click()
    page.get_by_text("Нова розмова").first.wait_for(timeout=30_000)
    assert "lang=uk" in page.url
    page.reload()
    page.get_by_placeholder("Напишіть моделі").wait_for(timeout=60_000)
    page.get_by_role("link", name="Команда").click()  # the navigation, in the language chosen
    page.get_by_text("Команда експертів").first.wait_for(timeout=60_000)
    assert "lang=uk" in page.url  # put back after the page change, so a reload here keeps it too
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_text("简体中文").last.click()  # the browser's own language: the URL needs no parameter
    page.get_by_text("专家团队").first.wait_for(timeout=30_000)
    assert "lang=" not in page.url
    context.close()
