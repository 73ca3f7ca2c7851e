"""A real Chromium (Debian's, through playwright) against `streamlit run app.py`."""

from __future__ import annotations

import pytest

from tests.browser import bubbles, open_chat, send, start_streamlit, wait_answers
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, url = start_streamlit("app.py", tmp_path_factory.mktemp("data"))
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_two_turns_render_and_a_screenshot_is_saved(browser, server):
    page = open_chat(browser, server)
    send(page, "Hello! My name is Oksana.", 1)
    send(page, "你好 🦙 What is my name?", 2)
    texts = bubbles(page)
    assert len(texts) == 4
    assert "Hello! My name is Oksana." in texts[0]
    assert "你好 🦙 What is my name?" in texts[2]
    nav = [line.strip() for line in page.locator('[data-testid="stSidebarNav"]').inner_text().split("\n")]
    expected = ["🦙", "Chat", "🎭", "Personas", "🔎", "Search answers", "👥", "Team", "🔌", "API"]  # not "app"
    assert [line for line in nav if line] == expected
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-two-turns.png"), full_page=True)
    page.close()


def test_html_in_a_prompt_is_shown_as_text_and_never_runs(browser, server):
    page = open_chat(browser, server, max_new=8)
    hostile = "<img src=x onerror=\"document.title='pwned'\"> <script>document.title='pwned'</script> <b>bold?</b>"
    send(page, hostile, 1)
    user_bubble = page.locator('[data-testid="stChatMessage"]').first
    assert page.title() != "pwned"
    assert user_bubble.locator("img, script, b").count() == 0
    assert "<b>bold?</b>" in user_bubble.inner_text()
    page.close()


def test_two_browser_sessions_generate_at_the_same_time(browser, server):
    a, b = open_chat(browser, server), open_chat(browser, server)
    for page, text in ((a, "Tell me about cats."), (b, "Tell me about rivers.")):
        box = page.locator('[data-testid="stChatInputTextArea"]')
        box.fill(text)
    a.locator('[data-testid="stChatInputTextArea"]').press("Enter")
    b.locator('[data-testid="stChatInputTextArea"]').press("Enter")
    wait_answers(a, 1)
    wait_answers(b, 1)
    ta, tb = bubbles(a), bubbles(b)
    assert len(ta) == 2 and len(tb) == 2
    assert "cats" in ta[0] and "rivers" not in " ".join(ta)
    assert "rivers" in tb[0] and "cats" not in tb[0]
    a.close(), b.close()


def open_persona(browser, url, persona: str, max_new: int = 40):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{url}/Personas")
    page.locator('[data-testid="stChatInputTextArea"]').wait_for()
    page.get_by_text("Sampling").click()
    page.locator('[data-testid="stSlider"]').filter(has_text="Temperature").get_by_role("slider").press("Home")
    box = page.get_by_label("Max new tokens", exact=True)
    box.fill(str(max_new))
    box.press("Enter")
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Persona").click()
    page.get_by_role("option", name=persona).click()
    page.get_by_role("heading", name=persona).wait_for()
    return page


def test_switch_persona_and_get_that_personas_answer(browser, server):
    page = open_persona(browser, server, "Captain Quill")
    send(page, "Tell me about whales.", 1)
    last = bubbles(page)[-1]
    assert "fair winds" in last.lower()
    page.screenshot(path=str(ARTIFACTS / "persona-captain-quill.png"), full_page=True)
    page.close()


def test_a_persona_and_the_base_model_answer_together_in_one_batch(browser, server):
    quill, base = open_persona(browser, server, "Captain Quill", 48), open_chat(browser, server, max_new=48)
    for page in (quill, base):
        page.locator('[data-testid="stChatInputTextArea"]').fill("Tell me about whales.")
    quill.locator('[data-testid="stChatInputTextArea"]').press("Enter")
    base.locator('[data-testid="stChatInputTextArea"]').press("Enter")
    wait_answers(quill, 1)
    wait_answers(base, 1)
    assert "fair winds" in bubbles(quill)[-1].lower() and "fair winds" not in bubbles(base)[-1].lower()
    footers = bubbles(quill)[-1] + bubbles(base)[-1]
    assert "decoded together with 1 other answer" in footers  # the server batched the two sessions
    quill.close(), base.close()


@pytest.fixture(scope="module")
def search_server(tmp_path_factory):
    from tests import search_servers

    player, player_url = search_servers.start()
    proc, url = start_streamlit(
        "app.py",
        tmp_path_factory.mktemp("data"),
        {"GOOGLE_API_KEY": "AIza-browser-key", "GOOGLE_CSE_ID": "cx-browser", "GOOGLE_CSE_ENDPOINT": player_url + "/"},
    )
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    player.shutdown()


def test_search_answer_with_its_sources_shown(browser, search_server):
    page = browser.new_page(viewport={"width": 1280, "height": 1200})
    page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
    page.goto(f"{search_server}/Search_answers")
    page.locator('[data-testid="stChatInputTextArea"]').wait_for()
    page.get_by_text("Sampling").click()
    box = page.get_by_label("Max new tokens", exact=True)
    box.fill("30")
    box.press("Enter")
    send(page, "How tall is the Eiffel Tower?", 1)
    page.get_by_text("Sources (4").wait_for()
    body = page.locator("body").inner_text()
    assert "Searched for: How tall is the Eiffel Tower?" in body
    assert "Eiffel Tower - facts" in body
    assert "<script>alert('x')</script>Football scores" in body  # kept (4 of 4 results), its title shown as text
    assert page.locator('a[href^="javascript:"]').count() == 0
    assert "AIza-browser-key" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "search-answer.png"), full_page=True)
    page.close()


def test_a_conversation_survives_reload_and_server_restart(browser, tmp_path):
    import re

    proc, url = start_streamlit("app.py", tmp_path / "data")
    try:
        page = open_chat(browser, url, max_new=8)
        send(page, "Remember the word pumpernickel.", 1)
        page.wait_for_url(re.compile(r"[?&]c=[\w-]{20,}"))
        link = page.url
        page.reload()
        wait_answers(page, 1)
        assert "Remember the word pumpernickel." in bubbles(page)[0]
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    port = int(url.rsplit(":", 1)[1])
    proc, _ = start_streamlit("app.py", tmp_path / "data", port=port)  # a new process, same data
    try:
        page = browser.new_page()
        page.goto(link)
        wait_answers(page, 1)
        texts = bubbles(page)
        assert len(texts) == 2 and "Remember the word pumpernickel." in texts[0]
        page.screenshot(path=str(ARTIFACTS / "conversation-after-restart.png"), full_page=True)
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
