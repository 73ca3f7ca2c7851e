"""The store under real concurrency: threads, processes, a held write lock, a large store being searched,
and two browser sessions (AppTest, with a scripted backend) on one conversation."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.store import ConversationChanged, Store
from tests.fake_backend import install
from tests.test_store import chat_app, contents, open_page, stored, url_cid


@pytest.fixture
def db(tmp_path):
    return Store(tmp_path / "conversations.sqlite3")


@contextmanager
def write_locked(path: Path):
    """Another program holding the database's write lock (BEGIN EXCLUSIVE) until the block ends."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# --- the store, from threads and processes ---------------------------------------------------


def test_of_racing_writers_at_one_version_exactly_one_wins_and_the_others_fork(db):
    cid = db.create("chat", "race", [{"role": "user", "content": "start", "id": "s"}])
    barrier, outcomes = threading.Barrier(8), {}

    def tab(n: int) -> None:
        mine = {"role": "user", "content": f"tab {n}", "id": f"t{n}"}
        barrier.wait()
        try:
            db.write(cid, [(1, mine)], version=0)
            outcomes[n] = cid
        except ConversationChanged:  # what ui.conversations.save does: go on in a copy
            outcomes[n] = db.create("chat", "race (copy)", [{"role": "user", "content": "start", "id": "s"}, mine])

    threads = [threading.Thread(target=tab, args=(n,)) for n in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert list(outcomes.values()).count(cid) == 1 and len(set(outcomes.values())) == 8
    for n, where in outcomes.items():
        assert contents(db.messages(where)) == ["start", f"tab {n}"]  # every history linear, none lost


def append_turns(path: str, cid: str, who: str, turns: int) -> None:
    """A process appending turns to one conversation; on a lost race it re-reads and retries (CAS)."""
    store = Store(Path(path))
    for n in range(turns):
        while True:
            loaded = store.load(cid)
            message = {"role": "user", "content": f"{who}-{n}", "id": f"{who}-{n}"}
            try:
                store.write(cid, [(len(loaded.messages), message)], version=loaded.version)
                break
            except ConversationChanged:
                continue


def test_two_processes_appending_to_one_conversation_lose_nothing(db):
    cid = db.create("chat", "shared")
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=append_turns, args=(str(db.path), cid, who, 60)) for who in ("a", "b")]
    [w.start() for w in workers]
    [w.join(60) for w in workers]
    assert [w.exitcode for w in workers] == [0, 0]
    messages = db.messages(cid)
    assert sorted(contents(messages)) == sorted(f"{who}-{n}" for who in "ab" for n in range(60))
    for who in "ab":  # each process's turns in its own order, none overwritten
        mine = [m for m in contents(messages) if m.startswith(who)]
        assert mine == [f"{who}-{n}" for n in range(60)]
    with sqlite3.connect(db.path) as raw:
        assert [r[0] for r in raw.execute("SELECT seq FROM messages ORDER BY seq")] == list(range(120))


@pytest.mark.slow  # seconds of waiting (a lock, a rate limit, a timeout): not in the fast tier
def test_many_searches_on_a_large_store_never_make_saves_fail(db):
    body = "The quick brown fox jumps over the lazy dog. " * 2300  # ~100 KB: rows spill into overflow pages
    with sqlite3.connect(db.path) as raw:  # ~300 MB in a second or two
        raw.executemany(
            "INSERT INTO conversations (id, title, page, created, updated) VALUES (?, ?, 'chat', 0, ?)",
            [(f"c{i}", f"old {i}", i) for i in range(300)],
        )
        raw.executemany(
            "INSERT INTO messages (conversation_id, id, seq, role, content, meta, created) VALUES (?, ?, ?, "
            "'user', ?, '{}', 0)",
            [(f"c{i}", f"m{j}", j, body) for i in range(300) for j in range(10)],
        )
    assert db.path.stat().st_size > 280 * 2**20
    cid, version = db.create("chat", "live"), 0
    stop, searches, errors = threading.Event(), [], []

    def search() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                assert db.list(text="a needle that is nowhere") == []
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
            searches.append(time.perf_counter() - started)

    threads = [threading.Thread(target=search) for _ in range(8)]
    [t.start() for t in threads]
    waits = []
    try:
        for n in range(40):  # a streaming answer's saves, a bit faster than the page's one a second
            started = time.perf_counter()
            version = db.write(cid, [(0, {"role": "assistant", "content": "x" * n, "id": "a"})], version=version)
            waits.append(time.perf_counter() - started)
            time.sleep(0.1)
    finally:
        stop.set()
        [t.join() for t in threads]
    assert errors == [] and len(searches) >= 16 and max(searches) > 0.05  # real, heavy, concurrent scans
    assert version == 40 and contents(db.messages(cid)) == ["x" * 39]
    assert max(waits) < 1.0, f"a save waited {max(waits):.2f} s behind searches"


# --- two sessions on one conversation, through the page (AppTest) ------------------------------


def chat_session(cid: str) -> AppTest:
    """A second browser session opened on the conversation's URL."""
    at = open_page(query={"c": cid})
    at.slider(key="chat.temperature").set_value(0.0)
    at.number_input(key="chat.max_new").set_value(8).run()
    return at


def send(at: AppTest, text: str) -> None:
    at.chat_input(key="chat.input").set_value(text).run()
    assert not at.exception, at.exception


def users(cid: str) -> list[str]:
    return [m["content"] for m in stored(cid) if m["role"] == "user"]


@pytest.mark.slow  # seconds of waiting (a lock, a rate limit, a timeout): not in the fast tier
def test_a_turn_saved_while_the_database_is_locked_is_written_by_the_next_save(monkeypatch):
    install(monkeypatch)
    at = chat_app()
    send(at, "Before the lock.")
    cid = url_cid(at)
    from ui.conversations import store

    with write_locked(store().path):
        send(at, "While locked.")  # every save of this turn fails after waiting
        assert [m.name for m in at.chat_message] == ["user", "assistant"] * 2  # chat goes on
        assert any("locked" in w.value for w in at.sidebar.warning)
        assert users(cid) == ["Before the lock."]
    at.run()  # the next run of the page (any click) saves what is missing
    assert users(cid) == ["Before the lock.", "While locked."] and len(stored(cid)) == 4
    assert stored(cid)[3]["stats"]["completion_tokens"] >= 1 and not at.sidebar.warning


def test_a_conversation_deleted_in_another_session_goes_on_as_a_new_one(monkeypatch):
    install(monkeypatch)
    a = chat_app()
    send(a, "One.")
    cid = url_cid(a)
    b = chat_session(cid)
    b.checkbox(key=f"chat.sure.{cid}").check().run()
    b.button(key="chat.delete").click().run()
    assert stored(cid) == []
    send(a, "Two.")
    new = url_cid(a)
    assert new != cid and users(new) == ["One.", "Two."] and len(stored(new)) == 4
    assert any("deleted in another tab" in i.value for i in a.sidebar.info)
    send(a, "Three.")  # and it keeps saving there
    assert users(new) == ["One.", "Two.", "Three."]


@pytest.mark.slow  # seconds of waiting (a lock, a rate limit, a timeout): not in the fast tier
def test_a_stale_session_catches_up_and_one_that_raced_forks_without_losing_a_turn(monkeypatch):
    install(monkeypatch)
    a = chat_app()
    send(a, "Start.")
    cid = url_cid(a)
    b = chat_session(cid)
    send(a, "From A.")
    send(b, "From B, a turn behind.")  # nothing unsaved in B: it catches up first, then appends
    assert users(cid) == ["Start.", "From A.", "From B, a turn behind."] and len(stored(cid)) == 6
    assert len(b.session_state["chat.messages"]) == 6

    from ui.conversations import store

    with write_locked(store().path):  # B's next turn cannot be saved...
        send(b, "B, unsaved.")
    send(a, "A, meanwhile.")  # ...and A, who has seen none of it, writes first
    b.run()  # B's retry finds the conversation changed: B goes on in a copy
    copy = url_cid(b)
    assert copy != cid and any("copy" in i.value for i in b.sidebar.info)
    assert users(cid) == ["Start.", "From A.", "From B, a turn behind.", "A, meanwhile."]
    assert users(copy) == ["Start.", "From A.", "From B, a turn behind.", "B, unsaved."]
    assert [m["role"] for m in stored(copy)] == ["user", "assistant"] * 4
    assert store().summary(copy).title.endswith("(copy)")
