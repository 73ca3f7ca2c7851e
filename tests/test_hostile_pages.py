"""Hostile or careless input that reaches the pages: a conversation of 20,000 messages (the import limit) opens
quickly (the page draws the latest ones and offers the rest a click at a time; none of it is lost), and text with
lone surrogates is refused with its field before it can reach Streamlit (whose protobuf cannot carry it)."""

from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from core.conversation_schema import EXPORT_FORMAT, MAX_MESSAGES, ImportRefused, parse_export
from tests.fake_backend import install
from ui.page import RENDER_AT_ONCE


def test_a_20000_message_import_opens_quickly_and_keeps_every_message(monkeypatch):
    install(monkeypatch)
    from ui.conversations import store

    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}\nline two"}
        for i in range(MAX_MESSAGES)
    ]
    cid = store().import_json({"format": EXPORT_FORMAT, "title": "long", "page": "chat", "messages": turns})
    at = AppTest.from_file("../app.py", default_timeout=180)
    at.query_params["c"] = cid
    began = time.monotonic()
    at.run()
    first_run = time.monotonic() - began
    assert not at.exception
    assert len(at.chat_message) == RENDER_AT_ONCE
    assert at.chat_message[-1].markdown[0].value.startswith(f"message {MAX_MESSAGES - 1}")
    assert any("earlier messages are not shown" in c.value for c in at.caption)
    began = time.monotonic()
    at.sidebar.slider(key="chat.temperature").set_value(0.5).run()  # a sidebar change: answered at once
    assert time.monotonic() - began < 10 and first_run < 20, (first_run, time.monotonic() - began)
    at.button(key="chat.more").click().run()
    assert len(at.chat_message) == 2 * RENDER_AT_ONCE
    assert len(store().messages(cid)) == MAX_MESSAGES  # nothing dropped from the store


@pytest.mark.parametrize("where", ["title", "content"])
def test_an_import_with_lone_surrogates_is_refused_naming_the_field(where):
    message = {"role": "user", "content": "hi \udfff" if where == "content" else "hi"}
    data = {"format": EXPORT_FORMAT, "title": "t\ud800" if where == "title" else "t", "messages": [message]}
    with pytest.raises(ImportRefused, match="messages.0.content|title") as refused:
        parse_export(json.dumps(data).encode())
    assert "lone UTF-16 surrogate" in str(refused.value)
