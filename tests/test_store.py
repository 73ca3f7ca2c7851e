"""Saved conversations: the SQLite store for real, and the pages through AppTest."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from streamlit.testing.v1 import AppTest

from llm.store import Store, StoreError, to_markdown


@pytest.fixture
def db(tmp_path):
    return Store(tmp_path / "conversations.sqlite3")


def test_conversations_round_trip_with_their_metadata(db):
    cid = db.create("chat", "  What is   the capital of France?  ")
    messages = [{"role": "user", "content": "你好 🦙 <b>hi</b>", "time": 1.0},
                {"role": "assistant", "content": "Paris.", "stats": {"completion_tokens": 2}, "settings": {"temperature": 0.7},
                 "persona": "captain-quill", "cut": True}]
    db.save_messages(cid, messages)
    assert db.messages(cid) == messages
    assert db.summary(cid).title == "What is the capital of France?"
    assert len(cid) >= 20 and cid != db.create("chat", "x")  # unguessable, unique


def test_regenerate_replaces_and_truncates(db):
    cid = db.create("chat", "t")
    db.save_messages(cid, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"}])
    db.save_messages(cid, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a2"}], start=1)
    assert [m["content"] for m in db.messages(cid)] == ["q", "a2"]
    db.save_messages(cid, [{"role": "user", "content": "q"}], start=1)
    assert [m["content"] for m in db.messages(cid)] == ["q"]


def test_list_search_rename_delete(db):
    a = db.create("chat", "Cooking")
    db.save_messages(a, [{"role": "user", "content": "How do I bake bread?"}])
    b = db.create("chat", "Travel")
    db.save_messages(b, [{"role": "user", "content": "Trains in Japan"}])
    db.create("search", "Elsewhere")
    assert {s.id for s in db.list("chat")} == {a, b}
    assert [s.id for s in db.list("chat", "bread")] == [a]
    assert [s.id for s in db.list("chat", "TRAVEL")] == [b]
    assert db.list("chat", "100%_") == []  # LIKE wildcards are literal
    db.rename(a, "Baking")
    assert db.summary(a).title == "Baking"
    db.delete(a)
    assert db.summary(a) is None and db.messages(a) == []


def test_ten_sessions_writing_at_once_lose_nothing(db):
    def session(n: int) -> None:
        cid = db.create("chat", f"session {n}")
        history = []
        for i in range(10):
            history.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"s{n}-m{i}"})
            db.save_messages(cid, history, start=max(0, len(history) - 2))

    threads = [threading.Thread(target=session, args=(n,)) for n in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    with sqlite3.connect(db.path) as raw:
        contents = [row[0] for row in raw.execute("SELECT content FROM messages")]
    assert sorted(contents) == sorted(f"s{n}-m{i}" for n in range(10) for i in range(10))


def test_export_then_import_gives_the_same_conversation(db):
    cid = db.create("search", "Eiffel")
    messages = [{"role": "user", "content": "How tall?"},
                {"role": "assistant", "content": "330 m [1]", "sources": [{"title": "Facts", "link": "https://e.com", "snippet": "s"}], "cited": [1]}]
    db.save_messages(cid, messages)
    export = json.loads(json.dumps(db.export_json(cid)))
    copy = db.import_json(export)
    assert copy != cid and db.messages(copy) == messages and db.summary(copy).page == "search"
    markdown = to_markdown(export)
    assert "# Eiffel" in markdown and "330 m [1]" in markdown and "[1] Facts — https://e.com" in markdown


@pytest.mark.parametrize("data", [{"messages": []}, {"format": "llama-studio-conversation/1", "messages": [{"role": "system"}]}, [1, 2]])
def test_malformed_imports_are_refused(db, data):
    with pytest.raises(StoreError):
        db.import_json(data)


def test_corrupt_database_file_says_so(tmp_path):
    path = tmp_path / "conversations.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="corrupt. Move it away"):
        Store(path)


def test_locked_database_says_so(tmp_path):
    store = Store(tmp_path / "c.sqlite3", busy_timeout_s=0.2)
    cid = store.create("chat", "x")
    holder = sqlite3.connect(tmp_path / "c.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            store.save_messages(cid, [{"role": "user", "content": "hi"}])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.save_messages(cid, [{"role": "user", "content": "hi"}])  # and it recovers
    assert store.messages(cid)[0]["content"] == "hi"


# --- the pages ------------------------------------------------------------------------------

def chat_app() -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=180).run()
    assert not at.exception, at.exception
    at.slider(key="chat.temperature").set_value(0.0)
    at.number_input(key="chat.max_new").set_value(8)
    return at


def test_a_conversation_comes_back_from_its_url():
    at = chat_app()
    at.chat_input(key="chat.input").set_value("Remember the word pumpernickel.").run()
    cid = at.query_params["c"]
    cid = cid[0] if isinstance(cid, list) else cid
    assert cid and len(at.session_state["chat.messages"]) == 2
    fresh = AppTest.from_file("../app.py", default_timeout=180)  # a new browser session
    fresh.query_params["c"] = cid
    fresh.run()
    assert [m.markdown[0].value for m in fresh.chat_message][0] == "Remember the word pumpernickel."
    assert len(fresh.chat_message) == 2
    saved = fresh.session_state["chat.messages"][1]
    assert saved["stats"]["completion_tokens"] >= 1 and saved["settings"]["max_new_tokens"] == 8


def test_sidebar_new_rename_delete_with_confirmation():
    at = chat_app()
    at.chat_input(key="chat.input").set_value("First conversation").run()
    cid = at.session_state["chat.messages.cid"]
    at.text_input(key=f"chat.title.{cid}").set_value("Renamed chat").run()
    assert any(b.label.endswith("Renamed chat") for b in at.sidebar.button)
    at.button(key="chat.new").click().run()
    assert at.session_state["chat.messages"] == []
    at.button(key=f"chat.open.{cid}").click().run()
    assert len(at.session_state["chat.messages"]) == 2
    assert at.button(key="chat.delete").disabled  # not without confirming
    at.checkbox(key=f"chat.sure.{cid}").check().run()
    at.button(key="chat.delete").click().run()
    assert not any(b.label.endswith("Renamed chat") for b in at.sidebar.button)
    assert at.session_state["chat.messages"] == []


def test_corrupt_database_chat_still_works_and_says_unsaved(tmp_path, monkeypatch):
    data = tmp_path / "corrupt"
    data.mkdir()
    (data / "conversations.sqlite3").write_bytes(b"garbage" * 500)
    monkeypatch.setenv("DATA_DIR", str(data))
    at = chat_app()
    assert any("not being saved" in w.value and "corrupt" in w.value for w in at.sidebar.warning)
    at.chat_input(key="chat.input").set_value("Hello").run()
    assert not at.exception and [m.name for m in at.chat_message] == ["user", "assistant"]


def test_password_gate(monkeypatch):
    monkeypatch.setenv("APP_PASSWORD", "correct horse")
    for page in ("../app.py", "../pages/1_Personas.py", "../pages/2_Search_answers.py"):
        at = AppTest.from_file(page, default_timeout=180).run()
        assert not at.exception
        assert len(at.chat_input) == 0 and len(at.chat_message) == 0 and len(at.sidebar.button) == 0
        at.text_input(key="auth.password").input("wrong")
        at.button[0].click().run()  # the form's submit button
        assert at.error[0].value == "Wrong password." and len(at.chat_input) == 0
    at = AppTest.from_file("../app.py", default_timeout=180).run()
    at.text_input(key="auth.password").input("correct horse")
    at.button[0].click().run()
    assert len(at.chat_input) == 1 and "correct horse" not in str([e.value for e in at.main.children.values() if hasattr(e, "value")])
