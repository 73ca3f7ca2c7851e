"""The gestures under a message in Chromium against `streamlit run app.py` with the real demo model: continue a
length-stopped answer, copy it, 👍 it, edit the question (a second version), ‹ back to the first, and find it all
again after a reload; in zh-CN on a phone's width the row speaks Chinese and fits the screen."""

from __future__ import annotations

import json
import re

import pytest

from core.store import Store
from tests.browser import bubbles, send, start_streamlit, stop, until
from tests.conftest import ARTIFACTS
from ui import prefs

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]
ROW = '[class*="st-key-chat-gestures-"]'


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    proc, url = start_streamlit("app.py", data)
    yield url, data
    stop(proc)


def said(page, n: int) -> str:
    """The text of the `n`th message, without its avatar's icon name."""
    return bubbles(page)[n].split("\n\n", 1)[-1].strip()


def popover(page, row: int, n: int):
    """The `n`th popover button of the `row`th gesture row."""
    return page.locator(ROW).nth(row).locator('[data-testid="stPopover"]').nth(n).locator("button:visible").first


def as_shown(markdown: str) -> str:
    """An answer's Markdown as its bubble's text reads: a list's numbers and bullets are drawn, not text, and
    emphasis marks are not shown (a sampled answer to "Name three colours." is often "1. Red...")."""
    text = re.sub(r"(?m)^[ \t]*(?:\d+[.)]|[-*+])[ \t]+", "", markdown)
    return re.sub(r"\*\*|__", "", text)


def test_continue_copy_feedback_edit_and_versions(browser, served):
    url, data = served
    context = browser.new_context(
        viewport={"width": 1280, "height": 1000}, permissions=["clipboard-read", "clipboard-write"], locale="en-US"
    )
    page = context.new_page()
    page.goto(url)
    page.get_by_text("Sampling").click()
    page.get_by_label("Max new tokens", exact=True).fill("6")
    page.get_by_label("Max new tokens", exact=True).press("Enter")
    page.locator('[data-testid="stChatInputTextArea"]').wait_for(timeout=180_000)
    send(page, "Name three colours.", 1)
    before = bubbles(page)[1]
    assert "stopped at max new tokens" in before
    page.locator(ROW).nth(1).get_by_role("button", name=re.compile("Continue")).click()
    page.wait_for_function(  # done: its figures count the tokens of both parts
        "(document.querySelectorAll('[data-testid=stChatMessage]')[1].innerText"
        ".match(/\\+ (\\d+) answer/) || [0, 0])[1] > 6",
        timeout=120_000,
    )
    page.wait_for_url(re.compile(r"[?&]c=[\w-]{20,}"))
    cid = re.search(r"[?&]c=([\w-]+)", page.url)[1]
    db = Store(data / "conversations.sqlite3")
    grown = until(lambda: next((m for m in db.load(cid).messages[1:2] if tokens_of(m) > 6), None))
    assert len(bubbles(page)) == 2  # the same answer, grown, and saved (the run's last save)
    assert as_shown(grown["content"]).startswith(re.sub(r"^smart_toy\s+", "", before).split("\n")[0].rstrip())
    # copy: the popover's code block has the copy button
    popover(page, 1, 0).click()
    page.locator('[data-testid="stPopoverBody"] [data-testid="stCode"]').hover()
    page.locator('[data-testid="stPopoverBody"] button[aria-label="Copy to clipboard"]').click()
    answer = page.evaluate("navigator.clipboard.readText()")
    assert answer.rstrip() == grown["content"].rstrip()  # the code block drops trailing blank lines, nothing else
    page.keyboard.press("Escape")
    thumbs_up = page.locator(ROW).nth(1).get_by_role("radio", name="Thumbs up")
    thumbs_up.click()
    until(lambda: db.load(cid).messages[1].get("feedback") == "up")
    # edit the question: a second version, then back to the first
    popover(page, 0, 1).click()
    page.locator('[data-testid="stPopoverBody"] textarea').fill("Name three animals.")
    page.locator('[data-testid="stPopoverBody"]').get_by_role("button", name="Send").click()
    page.get_by_text("2/2").first.wait_for(timeout=120_000)
    page.wait_for_function(  # the edited question's answer is done (its figures are drawn last)
        f"(b => b && b.innerText.includes('tokens used') && !b.innerText.includes({json.dumps(grown['content'][:12])}))"
        "(document.querySelectorAll('[data-testid=stChatMessage]')[1])",
        timeout=120_000,
    )
    assert said(page, 0) == "Name three animals."
    page.locator(ROW).nth(0).locator('[class*="-previous"] button:visible').first.click()
    page.get_by_text("1/2").first.wait_for(timeout=30_000)
    assert said(page, 0) == "Name three colours." and as_shown(grown["content"])[:10] in bubbles(page)[1]
    until(lambda: db.load(cid).messages[0]["content"] == "Name three colours.")  # the switch saved
    page.reload()  # a new browser session: the branch, its versions and the 👍 come back from the store
    page.get_by_text("1/2").first.wait_for(timeout=120_000)
    assert said(page, 0) == "Name three colours."
    assert thumbs_up.get_attribute("aria-checked") == "true"
    stored = db.load(cid)
    assert stored.messages[1]["feedback"] == "up" and len(stored.others) == 2
    page.screenshot(path=ARTIFACTS / "gestures-en.png", full_page=True)
    # another server process on the same data (a restart): the same branch, both versions, the 👍
    proc, other = start_streamlit("app.py", data)
    try:
        page.goto(f"{other}/?c={cid}")
        page.get_by_text("1/2").first.wait_for(timeout=180_000)
        assert said(page, 0) == "Name three colours."
        assert page.locator(ROW).nth(1).get_by_role("radio", name="Thumbs up").get_attribute("aria-checked") == "true"
        page.locator(ROW).nth(0).locator('[class*="-next"] button:visible').first.click()
        page.get_by_text("2/2").first.wait_for(timeout=30_000)
        assert said(page, 0) == "Name three animals."
    finally:
        stop(proc)
    context.close()


def test_the_row_speaks_chinese_and_fits_a_phone(browser, served):
    url, _ = served
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    # short answers, kept in this browser as the sidebar would keep them (ui/prefs.py's cookie)
    kept = prefs.encode({"max_new_tokens": 8, "temperature": 0.0})
    context.add_cookies([{"name": prefs.COOKIE_PREFIX + "chat", "value": kept, "url": url}])
    page = context.new_page()
    page.goto(url)
    box = page.locator('[data-testid="stChatInputTextArea"]')
    box.wait_for(timeout=180_000)
    box.fill("你好")
    box.press("Enter")
    page.get_by_text("个 token").first.wait_for(timeout=180_000)
    row = page.locator(ROW).nth(1)
    row.wait_for()
    right = row.evaluate(
        "el => Math.max(...[...el.querySelectorAll('button')].map(b => b.getBoundingClientRect().right))"
    )
    assert right <= 390  # every gesture on the screen
    popover(page, 0, 1).click()  # the question's edit box, in Chinese
    page.locator('[data-testid="stPopoverBody"]').get_by_role("button", name="发送").wait_for(timeout=10_000)
    assert page.locator('[data-testid="stPopoverBody"]').get_by_text("你的消息").count() == 1
    page.screenshot(path=ARTIFACTS / "gestures-zh-phone.png", full_page=True)
    context.close()


def tokens_of(message: dict) -> int:
    return (message.get("stats") or {}).get("completion_tokens", 0)
