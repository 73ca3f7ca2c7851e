"""What the API keeps in the pages' store (`core.api_store`): a schema-2 file migrates in place, chains are walked
safely, stored responses are bounded, appends are atomic, and the chat page reads API items back."""

from __future__ import annotations

import sqlite3
import threading
import time

from core.api_store import ApiObject, ApiStore, new_api_id
from core.store import Store
from server.api.items import read_items, to_items


def api(tmp_path, retention_s: float = 3600, max_responses: int = 100, prune_every: int = 1) -> ApiStore:
    return ApiStore(Store(tmp_path / "c.sqlite3"), retention_s, max_responses, prune_every)


def response(rid: str, parent: str | None = None, created: float | None = None) -> ApiObject:
    body = {"response": {"id": rid}, "input": [{"role": "user", "content": rid}], "output": []}
    return ApiObject(rid, "response", parent, None, time.time() if created is None else created, body)


def test_a_schema_2_file_gains_the_api_tables_and_keeps_its_conversations(tmp_path):
    path = tmp_path / "c.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(
            """CREATE TABLE conversations (id TEXT PRIMARY KEY, title TEXT NOT NULL, page TEXT NOT NULL,
               created REAL NOT NULL, updated REAL NOT NULL, version INTEGER NOT NULL DEFAULT 0);
               CREATE TABLE messages (conversation_id TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
               role TEXT NOT NULL, content TEXT NOT NULL, meta TEXT NOT NULL, created REAL NOT NULL,
               hidden INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (conversation_id, id));
               INSERT INTO conversations VALUES ('c1', 'Old', 'chat', 1, 2, 3);
               INSERT INTO messages VALUES ('c1', 'm1', 0, 'user', 'hello', '{}', 1, 0);
               PRAGMA user_version = 2;"""
        )
    store = ApiStore(Store(path), 3600, 10)
    assert store.conversation("c1").metadata == {} and store.store.messages("c1")[0]["content"] == "hello"
    assert store.append("c1", [{"id": "m2", "role": "assistant", "content": "hi"}])
    assert [m["content"] for m in store.store.messages("c1")] == ["hello", "hi"]


def test_a_chain_is_walked_oldest_first_and_a_loop_ends_the_walk(tmp_path):
    store = api(tmp_path)
    store.put(response("r1"))
    store.put(response("r2", "r1"))
    store.put(response("r3", "r2"))
    assert [o.id for o in store.chain("r3")] == ["r1", "r2", "r3"]
    assert store.chain("nope") is None
    with store.store._connect(write=True) as db:  # only a damaged file can hold a loop: make one
        db.execute("UPDATE api_objects SET parent = 'r3' WHERE id = 'r1'")
    assert sorted(o.id for o in store.chain("r3")) == ["r1", "r2", "r3"]  # each once, and the walk ends
    store.delete("response", "r1")
    assert [o.id for o in store.chain("r3")] == ["r2", "r3"]  # a pruned turn: the chain starts after it


def test_stored_responses_are_pruned_by_age_and_by_count(tmp_path):
    store = api(tmp_path, retention_s=60, max_responses=3)
    store.put(response("old", created=time.time() - 120))
    store.put(response("r0"))
    assert store.get("response", "old") is None  # past the retention
    for n in range(1, 5):
        store.put(response(f"r{n}", created=time.time() + n))
    assert [o.id for o in store.list("response")] == ["r2", "r3", "r4"]  # the newest three
    other = ApiObject("asst_x", "assistant", None, None, time.time() - 10**6, {"name": "kept"})
    store.put(other)
    store.put(response("r5", created=time.time() + 5))
    assert store.get("assistant", "asst_x").body == {"name": "kept"}  # only responses are pruned


def test_the_count_is_pruned_every_few_stores_and_never_runs_further_over(tmp_path):
    store = api(tmp_path, max_responses=5, prune_every=4)
    counts = []
    for n in range(20):
        store.put(response(f"r{n}", created=time.time() + n))
        counts.append(len(store.list("response")))
    assert max(counts) <= 5 + 4 - 1 and counts[-1] < 5 + 4  # over by at most prune_every - 1 between prunes
    assert [o.id for o in store.list("response")][-5:] == [f"r{n}" for n in range(15, 20)]  # the newest are kept


def test_appends_from_many_threads_lose_nothing_and_keep_order_per_writer(tmp_path):
    store = api(tmp_path)
    cid = store.create_conversation([], {})

    def add(who: str) -> None:
        for n in range(20):
            store.append(cid, [{"id": f"{who}{n}", "role": "user", "content": f"{who}-{n}"}])

    threads = [threading.Thread(target=add, args=(w,)) for w in "abcd"]
    [t.start() for t in threads]
    [t.join() for t in threads]
    texts = [m["content"] for m in store.store.messages(cid)]
    assert sorted(texts) == sorted(f"{w}-{n}" for w in "abcd" for n in range(20))
    for who in "abcd":
        mine = [t for t in texts if t.startswith(who)]
        assert mine == [f"{who}-{n}" for n in range(20)]
    assert not store.append("gone", [{"id": "x", "role": "user", "content": "x"}])


def test_items_round_trip_through_the_store_with_calls_and_outputs(tmp_path):
    store = api(tmp_path)
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Kyiv"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "5 C"},
        {"role": "developer", "content": "Be brief."},
    ]
    cid = store.create_conversation(read_items(items), {"k": "v"})
    messages = store.store.messages(cid)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "system"]
    shown = [item for m in messages for item in to_items(m)]
    assert [i["type"] for i in shown] == ["message", "function_call", "function_call_output", "message"]
    assert shown[1]["arguments"] == '{"city": "Kyiv"}' and shown[2]["call_id"] == "call_1"
    assert store.conversation(cid).title == "Weather?"
    exported = store.store.export_json(cid)
    again = store.store.messages(store.store.import_json(exported))
    assert [(m["role"], m["content"], m.get("tool_calls")) for m in again] == [
        (m["role"], m["content"], m.get("tool_calls")) for m in messages
    ]
    assert new_api_id("resp").startswith("resp_") and len(new_api_id("resp")) == 5 + 32
