"""Real browser tabs against `streamlit run app.py`: two tabs on one conversation URL keep every turn of
both (checked through the Store API on the server's DATA_DIR); hostile imports get a reason in the sidebar."""

from __future__ import annotations

import json
import re
import time

import pytest

from core.store import Store
from tests.browser import open_chat, send, start_streamlit, wait_answers

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app's URL and the Store on its DATA_DIR."""
    data = tmp_path_factory.mktemp("data")
    proc, url = start_streamlit("app.py", data)
    yield url, Store(data / "conversations.sqlite3")
    proc.terminate()
    proc.wait(timeout=20)


def user_texts(store: Store, first: str) -> dict[str, list[str]]:
    """The user messages of each chat conversation that starts with `first`."""
    texts = {s.id: [m["content"] for m in store.messages(s.id) if m["role"] == "user"] for s in store.list("chat")}
    return {cid: ts for cid, ts in texts.items() if ts[:1] == [first]}


def answered(store: Store, text: str) -> bool:
    """Some conversation holds `text` with a finished answer after it."""
    for summary in store.list("chat"):
        messages = store.messages(summary.id)
        after = [m for i, m in enumerate(messages) if any(p["content"] == text for p in messages[:i])]
        if any(
            m["role"] == "assistant" and (m.get("stats") or {}).get("finish_reason") in ("stop", "length")
            for m in after
        ):
            return True
    return False


def test_two_tabs_on_one_conversation_keep_every_turn_of_both(browser, served):  # noqa: F811
    url, store = served
    a = open_chat(browser, url, max_new=8)
    send(a, "Tab A, first.", 1)
    a.wait_for_url(re.compile(r"[?&]c=[\w-]{20,}"))
    cid = re.search(r"[?&]c=([\w-]+)", a.url).group(1)
    b = open_chat(browser, a.url, max_new=8)  # the same conversation in a second tab
    wait_answers(b, 1)

    send(a, "Tab A, second.", 2)
    send(b, "Tab B, a turn behind.", 3)  # B is stale: it catches up with A's turn, then adds its own
    assert user_texts(store, "Tab A, first.")[cid] == ["Tab A, first.", "Tab A, second.", "Tab B, a turn behind."]

    for page, text in ((a, "Race from A."), (b, "Race from B.")):  # both send at the same moment
        page.locator('[data-testid="stChatInputTextArea"]').fill(text)
    a.locator('[data-testid="stChatInputTextArea"]').press("Enter")
    b.locator('[data-testid="stChatInputTextArea"]').press("Enter")
    wait_answers(a, 3)
    wait_answers(b, 4)
    deadline = time.time() + 30
    while not (answered(store, "Race from A.") and answered(store, "Race from B.")) and time.time() < deadline:
        time.sleep(0.5)

    texts = user_texts(store, "Tab A, first.")
    everything = [t for ts in texts.values() for t in ts]
    for text in ("Tab A, first.", "Tab A, second.", "Tab B, a turn behind.", "Race from A.", "Race from B."):
        assert text in everything and answered(store, text), f"{text!r} or its answer is missing: {texts}"
    assert texts[cid][:3] == ["Tab A, first.", "Tab A, second.", "Tab B, a turn behind."]
    assert len(texts) <= 2  # the original, and at most one copy for the tab that lost the race
    if len(texts) == 2:  # that tab says so, and its URL names the copy
        forked = a if "goes on in a copy" in a.locator("body").inner_text() else b
        assert "goes on in a copy" in forked.locator("body").inner_text()
        assert re.search(r"[?&]c=([\w-]+)", forked.url).group(1) != cid
    a.close(), b.close()


def upload(page, name: str, content: bytes, tmp_path, expect: str) -> str:
    """Import `content` through the sidebar's uploader; returns the sidebar's text once `expect` shows."""
    path = tmp_path / name
    path.write_bytes(content)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text(expect, exact=False).first.wait_for(timeout=30_000)
    return sidebar.inner_text()


def test_hostile_imports_get_a_reason_in_the_sidebar_and_a_good_one_opens(browser, served, tmp_path):  # noqa: F811
    url, store = served
    page = open_chat(browser, url, max_new=8)
    before = len(store.list())
    nested = b'{"format": "llama-studio-conversation/1", "messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    upload(page, "deep.json", nested, tmp_path, "nests too deeply")
    bad = {
        "format": "llama-studio-conversation/1",
        "title": "t",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "sources": [{"title": 5}]},
        ],
    }
    upload(
        page,
        "bad.json",
        json.dumps(bad).encode(),
        tmp_path,
        "messages[1].sources[0].title: Input should be a valid string",
    )
    assert len(store.list()) == before and "Traceback" not in page.locator("body").inner_text()
    good = {
        **bad,
        "title": "Imported pair",
        "messages": [
            {"role": "user", "content": "Imported question", "mood": "odd"},
            {"role": "assistant", "content": "Imported answer"},
        ],
    }
    sidebar = upload(page, "good.json", json.dumps(good).encode(), tmp_path, "Imported a conversation of 2 messages")
    assert "Unknown fields were left out: messages[0].mood" in sidebar
    page.get_by_text("Imported answer").wait_for()
    assert len(store.list()) == before + 1
    page.close()
