"""Saved conversations: the SQLite store for real, the import schema, and the pages through AppTest (with a
scripted backend, tests/fake_backend.py: what is saved does not depend on which model answered)."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from streamlit.testing.v1 import AppTest

from core.conversation_schema import ImportRefused, parse_export
from core.store import ConversationChanged, Store, StoreError, to_markdown
from core.versions import versions
from llm.interface import PromptTooLongError
from tests.fake_backend import Reply, install

NO_ROOM = PromptTooLongError("Max new tokens (8192) leaves no room in the 8192-token context. Lower it.")

# The schema of the first release, verbatim: a database made by it must still open, messages and all.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, page TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, meta TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (conversation_id, seq));
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations(updated DESC);
"""
# What the first release's import kept as metadata: anything, including wrong types.
BAD_META = {
    "stats": "fast",
    "sources": [1, 2],
    "cited": ["one"],
    "settings": {"a": {"b": 1}},
    "cut": "yes",
    "time": "noon",
    "model": 5,
    "custom": {"kept": True},
}


@pytest.fixture
def db(tmp_path):
    return Store(tmp_path / "conversations.sqlite3")


def contents(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages]


def test_conversations_round_trip_with_their_metadata(db):
    messages = [
        {"role": "user", "content": "你好 🦙 <b>hi</b>", "time": 1.0},
        {
            "role": "assistant",
            "content": "Paris.",
            "stats": {"completion_tokens": 2},
            "settings": {"temperature": 0.7},
            "persona": "captain-quill",
            "cut": True,
        },
    ]
    cid = db.create("chat", "  What is   the capital of France?  ")
    db.save_messages(cid, messages)  # gives each message its id
    assert db.messages(cid) == messages and all(m["id"] for m in messages)
    assert db.summary(cid).title == "What is the capital of France?"
    assert len(cid) >= 20 and cid != db.create("chat", "x")  # unguessable, unique


def test_writes_are_idempotent_upserts_by_message_id(db):
    cid = db.create("chat", "t", [{"role": "user", "content": "q", "id": "u1"}])
    for text in ("Par", "Paris", "Paris."):  # a streaming answer saved as it grows, then once more
        db.write(cid, [(1, {"role": "assistant", "content": text, "id": "a1"})])
    db.write(cid, [(1, {"role": "assistant", "content": "Paris.", "id": "a1"})])
    assert contents(db.messages(cid)) == ["q", "Paris."]
    db.write(cid, [(0, {"role": "user", "content": "q", "id": "u1"})])  # a short write deletes nothing
    assert contents(db.messages(cid)) == ["q", "Paris."]


def test_regenerate_hides_the_old_answer_only_once_the_new_one_has_text(db):
    cid = db.create(
        "chat", "t", [{"role": "user", "content": "q", "id": "u"}, {"role": "assistant", "content": "old", "id": "a"}]
    )
    db.write(cid, [(1, {"role": "assistant", "content": "", "id": "b", "replaces": "a"})])  # failed before any text
    assert contents(db.messages(cid)) == ["q", "old", ""]  # nothing hidden (the page drops an empty one)
    db.write(cid, [(1, {"role": "assistant", "content": "new", "id": "c", "replaces": "a"})])
    assert contents(db.messages(cid)) == ["q", "", "new"]
    with sqlite3.connect(db.path) as raw:  # kept, not deleted
        assert raw.execute("SELECT hidden FROM messages WHERE id = 'a'").fetchone() == (2,)  # another version
    assert [m["id"] for m in db.load(cid).others] == ["a"]


def test_version_compare_and_swap(db):
    cid = db.create("chat", "t")
    v1 = db.write(cid, [(0, {"role": "user", "content": "mine", "id": "m"})], version=0)
    with pytest.raises(ConversationChanged) as stale:
        db.write(cid, [(0, {"role": "user", "content": "theirs", "id": "t"})], version=0)
    assert not stale.value.gone and stale.value.title == "t"
    assert contents(db.messages(cid)) == ["mine"] and db.version(cid) == v1
    db.delete(cid)
    with pytest.raises(ConversationChanged) as gone:
        db.write(cid, [(0, {"role": "user", "content": "late", "id": "l"})], version=v1)
    assert gone.value.gone and db.version(cid) is None


def test_list_search_rename_delete(db):
    a = db.create("chat", "Cooking", [{"role": "user", "content": "How do I bake bread?"}])
    b = db.create("chat", "Travel", [{"role": "user", "content": "Trains in Japan"}])
    db.create("search", "Elsewhere")
    assert {s.id for s in db.list("chat")} == {a, b}
    assert [s.id for s in db.list("chat", "bread")] == [a]
    assert [s.id for s in db.list("chat", "TRAVEL")] == [b]
    assert db.list("chat", "100%_") == []  # LIKE wildcards are literal
    db.rename(a, "Baking")
    assert db.summary(a).title == "Baking"
    db.delete(a)
    assert db.summary(a) is None and db.messages(a) == []
    with sqlite3.connect(db.path) as raw:
        assert raw.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", (a,)).fetchone() == (0,)


def test_ten_sessions_writing_at_once_lose_nothing(db):
    def session(n: int) -> None:
        cid = db.create("chat", f"session {n}")
        version = 0
        for i in range(10):
            message = {"role": "user" if i % 2 == 0 else "assistant", "content": f"s{n}-m{i}", "id": f"m{i}"}
            version = db.write(cid, [(i, message)], version=version)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    with sqlite3.connect(db.path) as raw:
        stored = [row[0] for row in raw.execute("SELECT content FROM messages")]
    assert sorted(stored) == sorted(f"s{n}-m{i}" for n in range(10) for i in range(10))


def test_a_database_of_the_first_schema_opens_and_keeps_its_messages(tmp_path):
    path = tmp_path / "conversations.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(SCHEMA_V1)
        old.execute("PRAGMA journal_mode=WAL")
        old.execute("INSERT INTO conversations VALUES ('c1', 'Old chat', 'chat', 1.0, 2.0)")
        old.executemany(
            "INSERT INTO messages VALUES ('c1', ?, ?, ?, ?, 1.5)",
            [
                (0, "user", "hello", json.dumps({"time": 1.0})),
                (1, "assistant", "hi there", json.dumps({"stats": {"completion_tokens": 2}, "cut": True})),
                (2, "user", "imported oddity", json.dumps(BAD_META)),
                (3, "assistant", "deep", "[" * 5000 + "]" * 5000),  # not an object, and too deep to parse
            ],
        )
    store = Store(path)
    messages = store.messages("c1")
    assert contents(messages) == ["hello", "hi there", "imported oddity", "deep"]
    assert messages[1]["stats"] == {"completion_tokens": 2} and messages[1]["cut"] is True
    assert messages[2] == {"role": "user", "content": "imported oddity", "custom": {"kept": True}, "id": "v1-2"}
    version = store.write("c1", [(4, {"role": "user", "content": "new turn", "id": "n"})], version=store.version("c1"))
    assert version == 1 and contents(Store(path).messages("c1"))[-1] == "new turn"  # and it opens again
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (4,)


def test_answers_regenerated_before_versions_existed_become_versions_and_taken_back_ones_stay_hidden(tmp_path):
    path = tmp_path / "c.sqlite3"
    cid = Store(path).create("chat", "t")
    rows = [  # as the app wrote them up to schema 3: the replaced answer hidden as if taken back
        ("u", 0, "user", "q", {"time": 1.0}, 0),
        ("a", 1, "assistant", "first", {"time": 2.0}, 1),
        ("b", 1, "assistant", "second", {"time": 3.0, "replaces": "a"}, 1),
        ("c", 1, "assistant", "third", {"time": 4.0, "replaces": "b"}, 0),
        ("long", 2, "user", "too long", {"time": 5.0}, 1),  # taken back: no answer replaced it
        ("odd", 3, "assistant", "x", "[" * 3000 + "]" * 3000, 1),  # meta that is not an object
        ("stray", 4, "assistant", "y", {"time": 6.0, "replaces": "not-there"}, 0),
    ]
    with sqlite3.connect(path) as raw:
        raw.executemany(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, 1.0, ?)",
            [(cid, i, seq, role, text, meta if isinstance(meta, str) else json.dumps(meta), h)
             for i, seq, role, text, meta, h in rows],
        )  # fmt: skip
        raw.execute("PRAGMA user_version = 3")
    loaded = Store(path).load(cid)
    assert [m["id"] for m in loaded.messages] == ["u", "c", "stray"]
    assert [(m["id"], m["parent"]) for m in loaded.others] == [("a", "u"), ("b", "u")]
    assert [m["content"] for m in versions(loaded.messages, loaded.others, 1)] == ["first", "second", "third"]
    with sqlite3.connect(path) as raw:
        hidden = dict(raw.execute("SELECT id, hidden FROM messages"))
        assert (hidden["long"], hidden["odd"]) == (1, 1) and raw.execute("PRAGMA user_version").fetchone() == (4,)
    assert Store(path).load(cid).others == loaded.others  # once: opening again changes nothing


def test_model_names_stored_with_a_servers_credentials_lose_them_and_the_file_keeps_no_copy(tmp_path):
    path = tmp_path / "c.sqlite3"
    cid = Store(path).create("chat", "t")
    names = {
        "a": "llama3 @ admin:hunter2@gpu.lan:8000",  # as answers from a server were named before 2026-11-23
        "b": "llama3 @ me:p@ss-hunter2@[::1]:8000",  # a password holding "@": the host is after the last one
        "c": "model@v2 @ gpu.lan:8000",  # no credentials: left as it is
    }
    with sqlite3.connect(path) as raw:
        raw.executemany(
            "INSERT INTO messages VALUES (?, ?, ?, 'assistant', 'hi', ?, 1.0, 0)",
            [(cid, mid, n, json.dumps({"model": name, "time": 1.0})) for n, (mid, name) in enumerate(names.items())],
        )
        raw.execute("PRAGMA user_version = 3")
    store = Store(path)
    assert [m["model"] for m in store.messages(cid)] == ["llama3 @ gpu.lan:8000", "llama3 @ [::1]:8000", names["c"]]
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert b"hunter2" not in path.read_bytes()


def test_a_database_from_a_newer_app_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "c.sqlite3"
    Store(path)
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer version"):
        Store(path)


def test_export_then_import_gives_the_same_conversation(db):
    messages = [
        {"role": "user", "content": "How tall?"},
        {
            "role": "assistant",
            "content": "330 m [1]",
            "sources": [{"title": "Facts", "link": "https://e.com", "snippet": "s"}],
            "cited": [1],
            "stats": {"prompt_tokens": 40, "first_token_s": 0.2, "finish_reason": "stop"},
        },
    ]
    cid = db.create("search", "Eiffel", messages)
    export = json.loads(json.dumps(db.export_json(cid)))
    assert all(m["id"] for m in export["messages"]) and "versions" not in export  # ids: the tree's links
    copy = db.import_json(export)
    strip = lambda ms: [{k: v for k, v in m.items() if k != "id"} for m in ms]  # noqa: E731
    assert copy != cid and strip(db.messages(copy)) == messages and db.summary(copy).page == "search"
    markdown = to_markdown(export)
    assert "# Eiffel" in markdown and "330 m [1]" in markdown and "[1] Facts — https://e.com" in markdown


GOOD = {
    "format": "llama-studio-conversation/1",
    "title": "t",
    "page": "chat",
    "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
}


def with_message(**fields) -> bytes:
    return json.dumps({**GOOD, "messages": [GOOD["messages"][0], {**GOOD["messages"][1], **fields}]}).encode()


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b'{"messages": []}', 'expected "format"'),
        (b"[1, 2]", 'expected "format"'),
        (
            json.dumps({**GOOD, "messages": [{"role": "robot", "content": "x"}]}).encode(),
            "messages[0].role: Input should be 'user', 'assistant', 'system' or 'tool'",
        ),
        (json.dumps({**GOOD, "messages": [{"role": "user"}]}).encode(), "messages[0].content: Field required"),
        (with_message(stats="fast"), "messages[1].stats: Input should be a valid dictionary"),
        (
            with_message(stats={"first_token_s": "0.2"}),
            "messages[1].stats.first_token_s: Input should be a valid number",
        ),
        (
            with_message(stats={"prompt_tokens": -1}),
            "messages[1].stats.prompt_tokens: Input should be greater than or equal to 0",
        ),
        (with_message(sources=[{"title": 5}]), "messages[1].sources[0].title: Input should be a valid string"),
        (with_message(sources="http://x"), "messages[1].sources: Input should be a valid list"),
        (with_message(cited=["1"]), "messages[1].cited[0]: Input should be a valid integer"),
        (with_message(cut="yes"), "messages[1].cut: Input should be a valid boolean"),
        (
            with_message(settings={"temperature": {"deep": 1}}),
            "messages[1].settings: setting temperature must be",
        ),
        (with_message(time=float("nan")), "messages[1].time: Input should be a finite number"),
        (with_message(settings={"![x](http://evil/i.png)": [1]}), "setting ??x??http???evil?i?png? must be"),
        (
            json.dumps(
                {**GOOD, "messages": [{"role": "user", "content": "q", "![x](http://e/)" * 10: "x" * 1000}] * 1}
            ).encode(),
            None,
        ),
        (
            json.dumps({**GOOD, "page": "../etc"}).encode(),
            "page: must be chat, search, team or persona:NAME",
        ),
        (json.dumps({**GOOD, "messages": "hi"}).encode(), "messages: Input should be a valid list"),
        (
            b'{"format": "llama-studio-conversation/1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "nests too deeply",
        ),
        (b"\xff\xfe not text", "not UTF-8"),
        (b"{not json", "not valid JSON (Expecting property name enclosed in double quotes at line 1, column 2)"),
        (b'{"format": "llama-studio-conversation/1", "x": ' + b"9" * 5000 + b"}", "a number too long to read"),
        (b"1" * (33 * 2**20), "imports are limited to 32 MB"),
    ],
)
def test_malformed_imports_are_refused_with_the_reason(db, raw, reason):
    if reason is None:  # not refused: an unknown key is dropped, and its name is shown without markdown
        [name] = parse_export(raw)[1]
        assert name.startswith("messages[0].??x??http") and not set(name[12:]) & set("![]():/") and len(name) == 52
        return
    with pytest.raises(ImportRefused) as refused:
        parse_export(raw)
    assert reason in str(refused.value)
    assert db.list() == []


def test_unknown_import_keys_are_dropped_and_named():
    raw = json.dumps(
        {
            **GOOD,
            "extra": 1,
            "messages": [
                {
                    "role": "user",
                    "content": "q",
                    "mood": "happy",
                    "sources": [{"title": "t", "link": "l", "snippet": "s", "rank": 1}],
                }
            ],
        }
    )
    export, dropped = parse_export(raw.encode())
    assert dropped == ["extra", "messages[0].mood", "messages[0].sources[0].rank"]
    assert export.messages[0].model_dump(exclude_unset=True) == {
        "role": "user",
        "content": "q",
        "sources": [{"title": "t", "link": "l", "snippet": "s"}],
    }


def test_corrupt_database_file_says_so(tmp_path):
    path = tmp_path / "conversations.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="corrupt. Move it away"):
        Store(path)


def test_locked_database_says_so_and_reads_still_work(tmp_path):
    store = Store(tmp_path / "c.sqlite3", busy_timeout_s=0.2)
    cid = store.create("chat", "x", [{"role": "user", "content": "before", "id": "b"}])
    holder = sqlite3.connect(tmp_path / "c.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            store.write(cid, [(1, {"role": "user", "content": "hi", "id": "h"})])
        assert contents(store.messages(cid)) == ["before"] and store.list(text="before")  # readers never wait
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.write(cid, [(1, {"role": "user", "content": "hi", "id": "h"})])  # and it recovers
    assert contents(store.messages(cid)) == ["before", "hi"]


# --- the pages ------------------------------------------------------------------------------


def open_page(page: str | None = None, query: dict | None = None) -> AppTest:
    """The app's entry point (as `streamlit run app.py`), run once at `page` (a file under pages/)."""
    at = AppTest.from_file("../app.py", default_timeout=180)
    at.query_params.update(query or {})
    if page:
        at.switch_page(page)
    return at.run()


def chat_app(max_new: int = 8) -> AppTest:
    at = open_page()
    assert not at.exception, at.exception
    at.slider(key="chat.temperature").set_value(0.0)
    at.number_input(key="chat.max_new").set_value(max_new)
    return at


def url_cid(at: AppTest) -> str:
    cid = at.query_params["c"]
    return cid[0] if isinstance(cid, list) else cid


def stored(cid: str) -> list[dict]:
    from ui.conversations import store

    return store().messages(cid)


def test_a_conversation_comes_back_from_its_url(monkeypatch):
    install(monkeypatch)
    at = chat_app()
    at.chat_input(key="chat.input").set_value("Remember the word pumpernickel.").run()
    cid = url_cid(at)
    assert cid and len(at.session_state["chat.messages"]) == 2
    fresh = open_page(query={"c": cid})  # a new browser session
    assert [m.markdown[0].value for m in fresh.chat_message][0] == "Remember the word pumpernickel."
    assert len(fresh.chat_message) == 2
    saved = fresh.session_state["chat.messages"][1]
    assert saved["stats"]["completion_tokens"] >= 1 and saved["settings"]["max_new_tokens"] == 8


def test_a_stored_message_with_bad_fields_still_opens(tmp_path, monkeypatch):
    from ui.conversations import store

    install(monkeypatch)
    cid = store().create("search", "odd", [{"role": "user", "content": "q", "id": "u"}])
    with sqlite3.connect(store().path) as raw:  # as a first-release import could have stored it
        raw.execute(
            "INSERT INTO messages (conversation_id, id, seq, role, content, meta, created) VALUES (?, 'a', 1, "
            "'assistant', 'answer [1]', ?, 0)",
            (cid, json.dumps(BAD_META)),
        )
    for page in (None, "pages/2_Search_answers.py"):  # the chat page refuses it; the search page opens it
        at = open_page(page, {"c": cid})
        assert not at.exception, at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]  # the search page owns it
    assert at.session_state["search.messages"][1] == {
        "role": "assistant",
        "content": "answer [1]",
        "custom": {"kept": True},
        "id": "a",
    }


def test_regenerate_that_fails_keeps_the_old_answer_then_one_that_works_replaces_it(monkeypatch):
    install(monkeypatch, Reply(["Hello."]), Reply([], error=NO_ROOM), Reply(["Hello", " again."]))
    at = chat_app()
    at.chat_input(key="chat.input").set_value("Say hello.").run()
    cid, old = url_cid(at), at.session_state["chat.messages"][1]
    at.number_input(key="chat.max_new").set_value(8192).run()  # = the context length: no room for a prompt
    at.button(key="chat.regen").click().run()
    assert not at.exception and "leaves no room" in at.error[0].value
    assert at.session_state["chat.messages"][1]["id"] == old["id"]
    # the old answer is still shown, then the failed attempt with its error
    assert [m.name for m in at.chat_message] == ["user", "assistant", "assistant"] and at.chat_message[2].error
    assert [m["id"] for m in stored(cid)] == [m["id"] for m in at.session_state["chat.messages"]]
    at.number_input(key="chat.max_new").set_value(8).run()
    assert [m.name for m in at.chat_message] == ["user", "assistant"]  # the old one is still on the page
    at.button(key="chat.regen").click().run()
    assert [m.name for m in at.chat_message] == ["user", "assistant"]  # the new answer in the old one's place
    new = at.session_state["chat.messages"]
    assert len(new) == 2 and new[1]["id"] != old["id"] and new[1]["replaces"] == old["id"]
    assert [m["id"] for m in stored(cid)] == [new[0]["id"], new[1]["id"]]


def test_a_message_too_long_to_answer_is_taken_back_from_the_store_too(monkeypatch):
    install(monkeypatch, Reply(["One."]), Reply([], error=NO_ROOM), Reply(["Two."]))
    at = chat_app()
    at.chat_input(key="chat.input").set_value("First.").run()
    cid = url_cid(at)
    at.number_input(key="chat.max_new").set_value(8192).run()
    at.chat_input(key="chat.input").set_value("This cannot fit.").run()
    assert "leaves no room" in at.error[0].value and len(at.session_state["chat.messages"]) == 2
    at.number_input(key="chat.max_new").set_value(8).run()
    at.chat_input(key="chat.input").set_value("Second.").run()
    assert [m["content"] for m in stored(cid) if m["role"] == "user"] == ["First.", "Second."]


def test_sidebar_new_rename_delete_with_confirmation(monkeypatch):
    install(monkeypatch)
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
    install(monkeypatch)
    at = chat_app()
    assert any("not being saved" in w.value and "corrupt" in w.value for w in at.sidebar.warning)
    at.chat_input(key="chat.input").set_value("Hello").run()
    assert not at.exception and [m.name for m in at.chat_message] == ["user", "assistant"]
    at.button(key="chat.new").click().run()  # nothing can be saved: New chat still works
    assert at.session_state["chat.messages"] == []


def test_password_gate(monkeypatch):
    monkeypatch.setenv("APP_PASSWORD", "correct horse")
    install(monkeypatch)
    # AppTest's first run names no page, so the navigation picks one and the form's widget ids settle from the
    # second run on (a browser names its page from the first run: test_gate_ws.py and test_auth.py cover that).
    for page in (None, "pages/1_Personas.py", "pages/2_Search_answers.py", "pages/3_Team.py"):
        at = open_page(page) if page else open_page().run()
        assert not at.exception
        assert len(at.chat_input) == 0 and len(at.chat_message) == 0 and len(at.sidebar.button) == 0
        at.text_input(key="auth.password").input("wrong")
        at.button[0].click().run()  # the form's submit button
        assert at.error[0].value == "Wrong password." and len(at.chat_input) == 0
    at = open_page().run()
    at.text_input(key="auth.password").input("correct horse")
    at.button[0].click().run()
    assert len(at.chat_input) == 1 and "correct horse" not in str(
        [e.value for e in at.main.children.values() if hasattr(e, "value")]
    )
