"""The conversation database's tables (core/store.py reads and writes them) and the steps that bring an older
file up to them in place, keeping every message."""

from __future__ import annotations

import json
import re
import sqlite3

# 1: rows keyed by (conversation, position); 2: no API objects, no conversation metadata; 3: a regenerated answer's
# predecessor hidden as taken back (1), not kept as another version, and old model names with credentials
SCHEMA_VERSION = 4
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        page TEXT NOT NULL,             -- chat, persona:<name>, search
        created REAL NOT NULL,
        updated REAL NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,  -- bumped by every write of its messages
        metadata TEXT NOT NULL DEFAULT '{}'  -- JSON: the API's metadata (string keys and values)
    )""",
    """CREATE TABLE IF NOT EXISTS messages (
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        id TEXT NOT NULL,               -- given when the message is created, the same in every save
        seq INTEGER NOT NULL,           -- its position in the conversation
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        meta TEXT NOT NULL,             -- JSON: stats, settings, persona, sources, cut
        created REAL NOT NULL,
        hidden INTEGER NOT NULL DEFAULT 0,  -- 0: on the branch; 1: taken back; 2: another version (OTHER)
        PRIMARY KEY (conversation_id, id)
    )""",
    """CREATE TABLE IF NOT EXISTS api_objects (
        id TEXT PRIMARY KEY,            -- resp_/asst_/run_ and 128 random bits
        kind TEXT NOT NULL,             -- response, assistant, run
        parent TEXT,                    -- a response: the one it continues (previous_response_id)
        conversation_id TEXT REFERENCES conversations(id) ON DELETE CASCADE,  -- its conversation or thread
        created REAL NOT NULL,
        body TEXT NOT NULL              -- JSON: the object as the API returns it, and what it needs besides
    )""",
    "CREATE INDEX IF NOT EXISTS api_objects_kind ON api_objects(kind, created)",
    "CREATE INDEX IF NOT EXISTS messages_order ON messages(conversation_id, seq)",
    "CREATE INDEX IF NOT EXISTS conversations_updated ON conversations(updated DESC)",
]

# `<model> @ <netloc>` where the netloc kept a URL's user info (everything up to its last "@").
_SERVED_AT = re.compile(r"(?P<model>.*) @ (?P<credentials>\S*)@(?P<host>[^@\s]+)", re.DOTALL)
OTHER = 2  # the `hidden` of a version beside the branch: an edited question's old text, a regenerated answer


def migrate(db: sqlite3.Connection) -> bool:
    """Bring the file to SCHEMA_VERSION in place, keeping every message (once; other openers wait). False, and the
    file untouched, when a newer version of the app made it."""
    if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return True  # the usual case: no write lock taken, so a busy database does not stop the app starting
    db.execute("BEGIN IMMEDIATE")
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        db.execute("ROLLBACK")
        return False
    if found < SCHEMA_VERSION:
        old = _columns(db, "messages")
        moved = bool(old) and "id" not in old
        if moved:  # version 1: keyed by position; its positions become ids
            db.execute("ALTER TABLE messages RENAME TO messages_v1")
        if _columns(db, "conversations") and "version" not in _columns(db, "conversations"):
            db.execute("ALTER TABLE conversations ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
        if _columns(db, "conversations") and "metadata" not in _columns(db, "conversations"):
            db.execute("ALTER TABLE conversations ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'")
        for statement in SCHEMA:
            db.execute(statement)
        if moved:
            db.execute(
                "INSERT INTO messages (conversation_id, id, seq, role, content, meta, created)"
                " SELECT conversation_id, 'v1-' || seq, seq, role, content, meta, created FROM messages_v1"
            )
            db.execute("DROP TABLE messages_v1")
        _replaced_answers_as_versions(db)
        _no_credentials_in_model_names(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.execute("COMMIT")
    return True


def _replaced_answers_as_versions(db: sqlite3.Connection) -> None:
    """Up to version 3, a regenerated answer hid the one it replaced as if taken back (hidden=1): each such answer
    becomes another version (OTHER) beside its replacement, following the message before it, so it is shown as
    ‹ 1/2 › and exported again instead of lying unseen."""
    replaced = set()
    for cid, meta in db.execute("SELECT conversation_id, meta FROM messages WHERE meta LIKE '%\"replaces\"%'"):
        old = _json_object(meta).get("replaces")
        if isinstance(old, str):
            replaced.add((cid, old))
    for cid, mid in sorted(replaced):
        row = db.execute(
            "SELECT seq, meta FROM messages WHERE conversation_id = ? AND id = ? AND hidden = 1", (cid, mid)
        ).fetchone()
        if row is None:
            continue
        before = db.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND hidden = 0 AND seq < ? ORDER BY seq DESC, created"
            " DESC LIMIT 1",
            (cid, row[0]),
        ).fetchone()
        meta = {**_json_object(row[1]), "parent": before[0] if before else None}
        db.execute(
            "UPDATE messages SET hidden = ?, meta = ? WHERE conversation_id = ? AND id = ?",
            (OTHER, json.dumps(meta, ensure_ascii=False), cid, mid),
        )


def _no_credentials_in_model_names(db: sqlite3.Connection) -> None:
    """Before 2026-11-23 an answer from an OpenAI-compatible server was stored with the model's name as
    `<model> @ <user>:<password>@<host>`, the credentials of OPENAI_BASE_URL included: they are cut out of every
    such name, and SQLite overwrites the old text instead of leaving it in free pages."""
    db.execute("PRAGMA secure_delete = ON")
    rows = db.execute("SELECT conversation_id, id, meta FROM messages WHERE meta LIKE '%\"model\"%@%@%'").fetchall()
    for cid, mid, text in rows:
        meta = _json_object(text)
        found = _SERVED_AT.fullmatch(meta["model"]) if isinstance(meta.get("model"), str) else None
        if found:
            meta["model"] = f"{found['model']} @ {found['host']}"
            db.execute(
                "UPDATE messages SET meta = ? WHERE conversation_id = ? AND id = ?",
                (json.dumps(meta, ensure_ascii=False), cid, mid),
            )


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _json_object(text: object) -> dict:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
