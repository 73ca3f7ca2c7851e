"""Saved conversations in SQLite (standard library, WAL mode) under DATA_DIR.

One connection per operation, so any thread may call any method. A message row is keyed by
(conversation, position): a streaming answer is saved as "cut" while it grows and replaced once it
completes, so a stop or a crash keeps what was shown.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from llm.errors import StudioError

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    page TEXT NOT NULL,            -- chat, persona:<name>, search
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,          -- position in the conversation
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    meta TEXT NOT NULL,            -- JSON: stats, settings, persona, sources, cut
    created REAL NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations(updated DESC);
"""
EXPORT_FORMAT = "llama-studio-conversation/1"


class StoreError(StudioError):
    """The conversation database cannot be used; chat goes on unsaved."""


@dataclass(frozen=True)
class Summary:
    id: str
    title: str
    page: str
    updated: float


def new_id() -> str:
    """Unguessable: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


class Store:
    def __init__(self, path: Path, busy_timeout_s: float = 5.0):
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"Cannot create {path.parent} ({exc.strerror}). Set DATA_DIR to a writable folder.") from None
        with self._connect(transaction=False) as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self, transaction: bool = True) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._explain(exc) from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            if transaction:
                db.execute("BEGIN IMMEDIATE")
            yield db
            if db.in_transaction:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise self._explain(exc) from None
        finally:
            db.close()

    def _explain(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc).lower()
        if "not a database" in text or "malformed" in text or "file is encrypted" in text:
            return StoreError(f"The conversation database {self.path.name} is corrupt. Move it away (a fresh one is made) to save again.")
        if "readonly" in text or "read-only" in text:
            return StoreError(f"The conversation database {self.path.name} is read-only. Make it writable, or set DATA_DIR.")
        if "locked" in text or "busy" in text:
            return StoreError("The conversation database is locked by another program. Saving resumes when it is free.")
        if "unable to open" in text or "disk" in text:
            return StoreError(f"Cannot open {self.path} ({exc}). Check DATA_DIR and free disk space.")
        return StoreError(f"The conversation database failed ({type(exc).__name__}).")

    # --- conversations -------------------------------------------------------------------

    def create(self, page: str, title: str) -> str:
        cid, now = new_id(), time.time()
        with self._connect() as db:
            db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?)", (cid, _title(title), page, now, now))
        return cid

    def rename(self, cid: str, title: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (_title(title), cid))

    def delete(self, cid: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (cid,))

    def summary(self, cid: str) -> Summary | None:
        with self._connect() as db:
            row = db.execute("SELECT id, title, page, updated FROM conversations WHERE id = ?", (cid,)).fetchone()
        return Summary(*row) if row else None

    def list(self, page: str | None = None, text: str = "", limit: int = 50) -> list[Summary]:
        """Newest first; `text` matches titles and message contents."""
        sql = "SELECT id, title, page, updated FROM conversations c WHERE 1=1"
        args: list = []
        if page:
            sql += " AND page = ?"
            args.append(page)
        if text.strip():
            pattern = "%" + text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            sql += (" AND (title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id"
                    " AND m.content LIKE ? ESCAPE '\\'))")
            args += [pattern, pattern]
        sql += " ORDER BY updated DESC LIMIT ?"
        with self._connect() as db:
            return [Summary(*row) for row in db.execute(sql, (*args, limit))]

    # --- messages ------------------------------------------------------------------------

    def save_messages(self, cid: str, messages: list[dict], start: int = 0) -> None:
        """Write messages[start:] at their positions and drop any stored beyond the end (regenerate)."""
        now = time.time()
        rows = [(cid, seq, m["role"], m["content"], json.dumps(_meta(m), ensure_ascii=False), now)
                for seq, m in enumerate(messages) if seq >= start]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.execute("DELETE FROM messages WHERE conversation_id = ? AND seq >= ?", (cid, len(messages)))
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, cid))

    def messages(self, cid: str) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT role, content, meta FROM messages WHERE conversation_id = ? ORDER BY seq", (cid,)).fetchall()
        return [{"role": role, "content": content, **json.loads(meta)} for role, content, meta in rows]

    # --- export / import -----------------------------------------------------------------

    def export_json(self, cid: str) -> dict:
        summary = self.summary(cid)
        if summary is None:
            raise StoreError("That conversation no longer exists.")
        return {"format": EXPORT_FORMAT, "title": summary.title, "page": summary.page, "messages": self.messages(cid)}

    def import_json(self, data: object) -> str:
        """Store an export as a new conversation; returns its id. Refuses anything malformed."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise StoreError(f"Not a conversation export (expected \"format\": \"{EXPORT_FORMAT}\").")
        messages = data.get("messages")
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str) for m in messages
        ):
            raise StoreError("The export's messages must each have role user/assistant and text content.")
        cid = self.create(str(data.get("page") or "chat")[:64], str(data.get("title") or "Imported"))
        self.save_messages(cid, messages)
        return cid


def _title(text: str) -> str:
    return " ".join(text.split())[:80] or "New chat"


def _meta(message: dict) -> dict:
    return {k: v for k, v in message.items() if k not in ("role", "content")}


def to_markdown(export: dict) -> str:
    lines = [f"# {export['title']}", ""]
    for m in export["messages"]:
        who = "You" if m["role"] == "user" else "Assistant"
        lines += [f"**{who}:**" + (" *(cut off)*" if m.get("cut") else ""), "", m["content"], ""]
        for n, source in enumerate(m.get("sources") or [], 1):
            lines.append(f"[{n}] {source.get('title', '')} — {source.get('link', '')}")
        if m.get("sources"):
            lines.append("")
    return "\n".join(lines)
