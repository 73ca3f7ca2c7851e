"""Versions as a tree (core/versions.py) and in the store (core/store.py): pure logic, no page, no model."""

from __future__ import annotations

import json

import pytest

from core import versions
from core.conversation_schema import parse_export
from core.store import Store, imported_messages


def msg(mid: str, role: str, parent: str | None, t: float, **fields) -> dict:
    return {"id": mid, "role": role, "content": mid, "parent": parent, "time": t, **fields}


def test_an_edit_cuts_the_branch_and_keeps_what_followed_beside_it():
    q1, a1 = msg("q1", "user", None, 1), msg("a1", "assistant", "q1", 2)
    q2, a2 = msg("q2", "user", "a1", 3), msg("a2", "assistant", "q2", 4)
    branch, others = versions.cut_at([q1, a1, q2, a2], [], 2)
    assert branch == [q1, a1] and others == [q2, a2]
    q2b = msg("q2b", "user", "a1", 5)
    branch = [*branch, q2b]
    assert [m["id"] for m in versions.versions(branch, others, 2)] == ["q2", "q2b"]
    # back to the first version: the branch goes on through what followed it
    branch, others = versions.switch(branch, others, 2, q2)
    assert [m["id"] for m in branch] == ["q1", "a1", "q2", "a2"] and [m["id"] for m in others] == ["q2b"]


def test_legacy_messages_without_parents_follow_the_one_before():
    q, a = {"id": "q", "role": "user", "content": "q"}, {"id": "a", "role": "assistant", "content": "a"}
    a2 = msg("a2", "assistant", "q", 9)
    assert [m["id"] for m in versions.versions([q, a], [a2], 1)] == ["a", "a2"]
    branch, others = versions.switch([q, a], [a2], 1, a2)
    assert branch == [q, a2] and others == [a] and a["parent"] == "q"  # it keeps its place off the branch


def test_a_question_left_without_its_answer_goes_on_through_the_newest_one():
    q, a_old, a_new = msg("q", "user", None, 1), msg("a", "assistant", "q", 2), msg("b", "assistant", "q", 3)
    branch, others = versions.resume([q], [a_old, a_new])
    assert branch == [q, a_new] and others == [a_old]
    assert versions.resume([q, a_new], [a_old]) is None  # nothing to follow: it ends in an answer


def test_loops_and_missing_parents_in_a_hostile_tree_end():
    q = msg("q", "user", None, 1)
    loop_a, loop_b = msg("x", "assistant", "y", 2), msg("y", "user", "x", 3)
    stray = msg("s", "assistant", "nowhere", 4)
    assert versions.newest_line(loop_a, versions.children([q], [loop_a, loop_b, stray]), 10)[:2] == [loop_a, loop_b]
    assert len(versions.newest_line(loop_a, versions.children([q], [loop_a, loop_b]), 10)) == 2
    assert versions.versions([q], [stray], 0) == [q]


@pytest.fixture
def db(tmp_path):
    return Store(tmp_path / "conversations.sqlite3")


def test_the_store_keeps_every_version_and_export_import_carry_the_tree(db):
    q, a1, a2 = msg("q", "user", None, 1), msg("a1", "assistant", "q", 2), msg("a2", "assistant", "q", 3)
    cid = db.create("chat", "t", [q, a2], [a1])
    loaded = db.load(cid)
    assert [m["id"] for m in loaded.messages] == ["q", "a2"] and [m["id"] for m in loaded.others] == ["a1"]
    db.write(cid, [(1, a1), (0, a2)], off={"a2"})  # the user switched back to the first answer
    loaded = db.load(cid)
    assert [m["id"] for m in loaded.messages] == ["q", "a1"] and [m["id"] for m in loaded.others] == ["a2"]
    export = json.loads(json.dumps(db.export_json(cid)))
    assert [m["content"] for m in export["versions"]] == ["a2"]
    copy, _ = parse_export(json.dumps(export).encode())
    new = db.load(db.create(copy.page, copy.title, *imported_messages(copy)))
    assert [m["content"] for m in new.messages] == ["q", "a1"] and [m["content"] for m in new.others] == ["a2"]
    # fresh ids, and the version still hangs under the copied question
    assert new.messages[0]["id"] != "q" and new.others[0]["parent"] == new.messages[0]["id"]
    assert [m["content"] for m in versions.versions(new.messages, new.others, 1)] == ["a1", "a2"]


def test_an_import_whose_versions_name_unknown_parents_leaves_them_out(db):
    raw = {
        "format": "llama-studio-conversation/1",
        "messages": [
            {"role": "user", "content": "q", "id": "q"},
            {"role": "assistant", "content": "a", "parent": "zz"},
        ],
        "versions": [
            {"role": "assistant", "content": "kept", "id": "k", "parent": "q"},
            {"role": "assistant", "content": "stray", "parent": "not-in-the-file"},
        ],
    }
    cid = db.import_json(raw)
    loaded = db.load(cid)
    assert [m["content"] for m in loaded.messages] == ["q", "a"] and "parent" not in loaded.messages[1]
    assert [m["content"] for m in loaded.others] == ["kept"]
