"""The Personas page's side-by-side view in Chromium against `streamlit run app.py` with the real demo model and
the shipped Captain Quill adapter: one question, both columns filling while the one run is in flight (two rows of
one batch, each column's figures say so), the comparison drawn again after a trip to the Chat view, and gone after
"Clear comparisons"; in zh-CN on a phone's width, with a prompt persona, the view speaks Chinese, both answers
come and the columns fit the screen."""

from __future__ import annotations

import pytest

from tests.browser import start_streamlit, stop
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]
BOX = '[data-testid="stChatInputTextArea"]'
VIEW = ".st-key-persona-view"
CLEAR = ".st-key-persona-compare_clear button:visible"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'

# The comparisons on the page, oldest first: for each, its two columns (the base model's first, found by its 🦙
# header), each as the texts of its markdown (the header, then the answer) and of its captions.
MAIN = '[data-testid="stMainBlockContainer"]'
COMPARISONS = """() => [...document.querySelectorAll('MAIN [data-testid="stHorizontalBlock"]')]
  .map(block => [...block.querySelectorAll('[data-testid="stColumn"]')].map(column => {
    const captions = [...column.querySelectorAll('[data-testid="stCaptionContainer"]')];
    const markdown = [...column.querySelectorAll('[data-testid="stMarkdown"]')]
      .filter(m => !captions.some(c => c.contains(m) || m.contains(c)));
    return {
      markdown: markdown.map(m => m.innerText.trim()),
      captions: captions.map(c => c.innerText.trim()),
      box: (({left, right, top, bottom}) => ({left, right, top, bottom}))(column.getBoundingClientRect()),
    };
  }))
  .filter(columns => columns.length === 2 && (columns[0].markdown[0] || '').startsWith('🦙'))""".replace("MAIN", MAIN)

# Watches the page from before the question is sent: `both` once the newest comparison's two columns both have
# answer text while neither has a caption yet (the figures come when an answer ends) and the message box still
# offers to stop the run; `caption` once one has one.
WATCH = f"""() => {{
  const comparisons = {COMPARISONS};
  const seen = window.__flight = {{both: false, caption: false, before: comparisons().length}};
  const check = () => {{
    const all = comparisons();
    if (all.length <= seen.before) return;
    const columns = all[all.length - 1];
    if (columns.some(c => c.captions.length)) seen.caption = true;
    const running = document.querySelector('[data-testid="stChatInputStopButton"]') !== null;
    if (!seen.caption && running && columns.every(c => (c.markdown[1] || '').length)) seen.both = true;
  }};
  new MutationObserver(check).observe(document.body, {{subtree: true, childList: true, characterData: true}});
}}"""


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    proc, url = start_streamlit("app.py", tmp_path_factory.mktemp("data"))
    yield url
    stop(proc)


def comparisons(page) -> list:
    return page.evaluate(COMPARISONS)


def settle(page, captions: str, count: int) -> list:
    """Waits until `count` comparisons are drawn and the newest has `captions` in both columns; returns them all."""
    page.wait_for_function(
        f"(() => {{ const all = ({COMPARISONS})(); return all.length === {count} && all[all.length - 1]"
        f".every(c => c.captions.some(t => t.includes({captions!r}))); }})()",
        timeout=180_000,
    )
    page.locator(IDLE).wait_for(timeout=30_000)  # the run is over
    return comparisons(page)


def ask(page, placeholder: str, text: str) -> None:
    page.locator(IDLE).wait_for(timeout=30_000)  # the view's own run is over: the question starts the next
    page.evaluate(WATCH)
    box = page.get_by_placeholder(placeholder)
    box.fill(text)
    box.press("Enter")


def set_max_new(page, sampling: str, label: str, value: int) -> None:
    page.get_by_text(sampling, exact=True).click()
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")


def pick(page, option: str, heading: str) -> None:
    page.locator(".st-key-persona-current [data-testid=stSelectbox]").click()
    page.get_by_role("option", name=option).click()
    page.get_by_role("heading", name=heading).wait_for(timeout=60_000)


def choose_view(page, name: str) -> None:
    page.locator(VIEW).get_by_text(name, exact=True).click()


def test_both_columns_fill_at_once_stay_across_views_and_clear(browser, url):
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
    page.goto(f"{url}/Personas")
    page.locator(BOX).wait_for(timeout=180_000)
    set_max_new(page, "Sampling", "Max new tokens", 12)
    pick(page, "⚓ Captain Quill (LoRA)", "Captain Quill")
    choose_view(page, "Side by side")
    page.get_by_placeholder("Ask both").wait_for(timeout=30_000)
    assert comparisons(page) == [] and page.locator(CLEAR).count() == 0
    ask(page, "Ask both", "Tell me about whales.")
    page.get_by_text("You: Tell me about whales.").wait_for(timeout=60_000)
    (done,) = settle(page, "decoded together with 1 other answer(s)", 1)
    flight = page.evaluate("window.__flight")
    assert flight["both"], flight  # both columns had text before either answer ended, in one run: both at once
    base, quill = done
    assert base["markdown"][0] == "🦙 Base model" and quill["markdown"][0] == "⚓ Captain Quill"
    assert base["markdown"][1] and quill["markdown"][1] and base["markdown"][1] != quill["markdown"][1]
    for column in done:  # each answer's figures: 12 new tokens at most, decoded beside the other row
        assert any("tokens used" in t for t in column["captions"]), column
        assert not any("cut off" in t for t in column["captions"]), column
    assert base["box"]["right"] <= quill["box"]["left"] and base["box"]["top"] == quill["box"]["top"]  # side by side
    page.locator(CLEAR).filter(has_text="Clear comparisons").wait_for(timeout=10_000)  # with the first one already
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare-en.png"), full_page=True)

    choose_view(page, "Chat")
    page.get_by_placeholder("Message Captain Quill").wait_for(timeout=30_000)
    page.wait_for_function(f"({COMPARISONS})().length === 0", timeout=30_000)  # the chat view draws none
    choose_view(page, "Side by side")
    page.get_by_placeholder("Ask both").wait_for(timeout=30_000)
    page.wait_for_function(f"({COMPARISONS})().length === 1", timeout=30_000)
    again = comparisons(page)[0]
    assert [c["markdown"] for c in again] == [c["markdown"] for c in done]  # drawn again, just as it came
    assert [c["captions"] for c in again] == [c["captions"] for c in done]
    assert page.get_by_text("You: Tell me about whales.").count() == 1

    page.locator(CLEAR).click()
    page.wait_for_function(f"({COMPARISONS})().length === 0", timeout=30_000)
    page.locator(CLEAR).wait_for(state="detached", timeout=30_000)
    assert page.get_by_text("You: Tell me about whales.").count() == 0
    context.close()


def test_on_a_chinese_phone_the_view_speaks_chinese_and_fits(browser, url):
    width = 390
    context = browser.new_context(
        viewport={"width": width, "height": 844}, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    page = context.new_page()
    page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
    page.goto(f"{url}/Personas")
    page.locator(BOX).wait_for(timeout=180_000)
    page.get_by_test_id("stExpandSidebarButton").click()
    set_max_new(page, "采样", "最多生成的 token 数", 12)
    pick(page, "🤖 Dummy（提示词）", "Dummy")
    assert page.locator(VIEW).get_by_text("视图").count() == 1
    choose_view(page, "并排对比")
    page.get_by_placeholder("同时提问").wait_for(timeout=30_000)
    page.get_by_test_id("stSidebarCollapseButton").locator("button").click()  # the sidebar covers the page
    page.get_by_test_id("stExpandSidebarButton").wait_for(timeout=10_000)
    ask(page, "同时提问", "鲸鱼是什么？")
    page.get_by_text("你： 鲸鱼是什么？").wait_for(timeout=60_000)
    (done,) = settle(page, "与另外 1 个回答一起解码", 1)
    base, dummy = done
    assert base["markdown"][0].startswith("🦙") and dummy["markdown"][0] == "🤖 Dummy"
    assert base["markdown"][1] and dummy["markdown"][1]
    for column in done:
        assert any("个 token" in t for t in column["captions"]), column  # its figures, in Chinese
        assert not any("tokens used" in t for t in column["captions"]), column
    page.locator(CLEAR).filter(has_text="清除对比").wait_for(timeout=10_000)
    for column in done:  # nothing wider than the screen: each column, and the page as a whole
        assert 0 <= column["box"]["left"] < column["box"]["right"] <= width, column
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    overflowing = page.evaluate(
        f"[...document.querySelectorAll('{MAIN} *')].filter(e => e.getBoundingClientRect().right > {width} + 0.5"
        f" && getComputedStyle(e).visibility !== 'hidden').map(e => e.dataset.testid || e.tagName)"
    )
    assert overflowing == []
    page.screenshot(path=str(ARTIFACTS / "compare-zh-phone.png"), full_page=True)
    context.close()
