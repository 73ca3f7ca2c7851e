"""Saved conversations in SQLite (standard library, WAL mode) under DATA_DIR.

One connection per operation, so any thread may call any method. Reads are plain WAL reads: they never
take the write lock, so a search over a large store neither waits for a save nor makes one wait.

A message row is keyed by (conversation, message id), the id a message gets when it is created, so a
write is an idempotent upsert: saving a message again (a streaming answer growing, a save retried after
the database was locked) replaces only that message. No row is deleted except with its conversation: a
message taken back (too long to answer) is hidden, and the versions an edit or a regenerate left beside
the conversation's branch (core/versions.py) are kept as other versions, loaded and exported with it.
Every write bumps the conversation's version; a writer that names the version it last saw
(compare-and-swap) learns that another tab wrote in between, or deleted the conversation, and forks
instead of mixing two histories (see ui/conversations.py).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.conversation_schema import EXPORT_FORMAT, check_export, clean_message
from core.conversation_schema import to_markdown as to_markdown  # tests import it from here
from core.errors import N_, StudioError
from core.message import Message
from core.message import new_message_id as new_message_id  # pages import it from here
from core.store_schema import OTHER, migrate

UPSERT = """INSERT INTO messages (conversation_id, id, seq, role, content, meta, created, hidden)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (conversation_id, id) DO UPDATE SET seq = excluded.seq, role = excluded.role,
    content = excluded.content, meta = excluded.meta, hidden = excluded.hidden"""
VISIBLE = "SELECT id, role, content, meta FROM messages WHERE conversation_id = ? AND hidden = 0 ORDER BY seq, created"
OTHERS = f"SELECT id, role, content, meta FROM messages WHERE conversation_id = ? AND hidden = {OTHER} ORDER BY created"
# What SQLite's error says -> what the page says; the values: the file's name and path, SQLite's error, its kind.
SQLITE_PROBLEMS = [
    (
        ("not a database", "malformed", "file is encrypted"),
        N_("The conversation database {name} is corrupt. Move it away (a fresh one is made) to save again."),
    ),
    (
        ("readonly", "read-only"),
        N_("The conversation database {name} is read-only. Make it writable, or set DATA_DIR."),
    ),
    (
        ("locked", "busy"),
        N_("The conversation database is locked by another program. Saving resumes when it is free."),
    ),
    (("unable to open", "disk"), N_("Cannot open {path} ({reason}). Check DATA_DIR and free disk space.")),
]
SQLITE_FAILED = N_(
    "The conversation database failed ({kind}). Check that DATA_DIR is writable and has free space; chat goes on "
    "unsaved until then."
)


class StoreError(StudioError):
    """The conversation database cannot be used; chat goes on unsaved."""


class ConversationChanged(StoreError):
    """Another tab wrote to (or deleted) the conversation since this writer last saw it."""

    def __init__(self, gone: bool, title: str = ""):
        self.gone, self.title = gone, title
        super().__init__(
            N_("That conversation was deleted in another tab.")
            if gone
            else N_("That conversation was changed in another tab.")
        )


@dataclass(frozen=True)
class Summary:
    id: str
    title: str
    page: str
    updated: float


@dataclass(frozen=True)
class Loaded:
    """One consistent snapshot of a conversation: its branch, the other versions beside it, and the version of
    the conversation they are at."""

    summary: Summary
    version: int
    messages: list[dict]
    others: list[dict] = field(default_factory=list)


def new_id() -> str:
    """Unguessable: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def fingerprint(message: dict) -> int:
    """Changes whenever anything saved about the message changes (a session compares it to skip rewrites)."""
    return hash((message["role"], message["content"], _meta_json(message)))


class Store:
    def __init__(self, path: Path, busy_timeout_s: float = 5.0):
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                N_("Cannot create {folder} ({reason}). Set DATA_DIR to a writable folder."),
                folder=path.parent,
                reason=exc.strerror,
            ) from None
        with self._connect(foreign_keys=False) as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: set once for the file, not per connection
            if not migrate(db):
                raise StoreError(
                    N_(
                        "The conversation database was made by a newer version of this app. Update the app, or set "
                        "DATA_DIR."
                    )
                )

    @contextmanager
    def _connect(
        self, write: bool = False, wait_s: float | None = None, foreign_keys: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """A connection; with `write`, inside BEGIN IMMEDIATE (the only lock), committed on success."""
        try:
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s if wait_s is None else wait_s, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise self._explain(exc) from None
        try:
            if foreign_keys:
                db.execute("PRAGMA foreign_keys=ON")  # deleting a conversation deletes its messages
            if write:
                db.execute("BEGIN IMMEDIATE")
            yield db
            if db.in_transaction:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._explain(exc) from None
        finally:
            if db.in_transaction:
                db.rollback()
            db.close()

    def _explain(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc).lower()
        message = next((m for words, m in SQLITE_PROBLEMS if any(w in text for w in words)), SQLITE_FAILED)
        return StoreError(message, name=self.path.name, path=self.path, reason=str(exc), kind=type(exc).__name__)

    # --- conversations -------------------------------------------------------------------

    def create(self, page: str, title: str, messages: Iterable[dict] = (), others: Iterable[dict] = ()) -> str:
        """A new conversation, with `messages` (kept ids, or new ones) and the `others` versions beside them, in
        the same transaction."""
        cid, now = new_id(), time.time()
        with self._connect(write=True) as db:
            db.execute(
                "INSERT INTO conversations (id, title, page, created, updated) VALUES (?, ?, ?, ?, ?)",
                (cid, _title(title), page, now, now),
            )
            others = list(others)
            _put(db, cid, [*enumerate(messages), *enumerate(others)], (), now, {m.get("id") for m in others} - {None})
        return cid

    def rename(self, cid: str, title: str) -> None:
        with self._connect(write=True) as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (_title(title), cid))

    def delete(self, cid: str) -> None:
        with self._connect(write=True) as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (cid,))

    def summary(self, cid: str) -> Summary | None:
        with self._connect() as db:
            row = db.execute("SELECT id, title, page, updated FROM conversations WHERE id = ?", (cid,)).fetchone()
        return Summary(*row) if row else None

    def version(self, cid: str) -> int | None:
        """The conversation's version (None once deleted): one indexed read, cheap on every rerun."""
        with self._connect() as db:
            row = db.execute("SELECT version FROM conversations WHERE id = ?", (cid,)).fetchone()
        return row[0] if row else None

    def list(self, page: str | None = None, text: str = "", limit: int = 50) -> list[Summary]:
        """Newest first; `text` matches titles and the contents of shown messages."""
        sql = "SELECT id, title, page, updated FROM conversations c WHERE 1=1"
        args: list = []
        if page:
            sql += " AND page = ?"
            args.append(page)
        if text.strip():
            pattern = "%" + text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            sql += (
                " AND (title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id"
                " AND m.hidden = 0 AND m.content LIKE ? ESCAPE '\\'))"
            )
            args += [pattern, pattern]
        sql += " ORDER BY updated DESC LIMIT ?"
        with self._connect() as db:
            return [Summary(*row) for row in db.execute(sql, (*args, limit))]

    # --- messages ------------------------------------------------------------------------

    def write(
        self,
        cid: str,
        items: Iterable[tuple[int, dict]],
        hide: Iterable[str] = (),
        version: int | None = None,
        wait_s: float | None = None,
        off: Iterable[str] = (),
    ) -> int:
        """Upsert (position, message) pairs, each message with its "id": those in `off` as other versions, the
        rest on the branch. Hide the ids in `hide`; the answers that written ones (with text) replace become
        other versions. With `version`, only if that is still the conversation's version, else
        ConversationChanged. Returns the new version."""
        now = time.time()
        with self._connect(write=True, wait_s=wait_s) as db:
            row = db.execute("SELECT version, title FROM conversations WHERE id = ?", (cid,)).fetchone()
            if row is None:
                raise ConversationChanged(gone=True)
            if version is not None and row[0] != version:
                raise ConversationChanged(gone=False, title=row[1])
            _put(db, cid, items, hide, now, set(off))
            db.execute("UPDATE conversations SET version = version + 1, updated = ? WHERE id = ?", (now, cid))
        return row[0] + 1

    def save_messages(self, cid: str, messages: list[dict]) -> int:
        """Write every message at its position (ids given where missing); returns the new version."""
        for m in messages:
            m.setdefault("id", new_message_id())
        return self.write(cid, enumerate(messages))

    def load(self, cid: str) -> Loaded | None:
        """The conversation's shown messages and version, read in one snapshot (no lock taken)."""
        with self._connect() as db:
            db.execute("BEGIN")  # deferred: a read snapshot, never the write lock
            row = db.execute(
                "SELECT id, title, page, updated, version FROM conversations WHERE id = ?", (cid,)
            ).fetchone()
            rows = db.execute(VISIBLE, (cid,)).fetchall() if row else []
            other_rows = db.execute(OTHERS, (cid,)).fetchall() if row else []
        if row is None:
            return None
        messages = [m for m in (clean_message(*r) for r in rows) if m is not None]
        others = [m for m in (clean_message(*r) for r in other_rows) if m is not None]
        return Loaded(Summary(*row[:4]), row[4], messages, others)

    def messages(self, cid: str) -> list[dict]:
        loaded = self.load(cid)
        return loaded.messages if loaded else []

    # --- export / import -----------------------------------------------------------------

    def export_json(self, cid: str) -> dict:
        loaded = self.load(cid)
        if loaded is None:
            raise StoreError(
                N_("That conversation no longer exists (deleted, perhaps in another tab). Pick another one.")
            )
        export = {
            "format": EXPORT_FORMAT,
            "title": loaded.summary.title,
            "page": loaded.summary.page,
            "messages": [_exported(m) for m in loaded.messages],
        }
        if loaded.others:  # the tree: ids and parents link the versions to the branch
            export["versions"] = [_exported(m) for m in loaded.others]
        return export

    def import_json(self, data: object) -> str:
        """Store an export (checked by core.conversation_schema) as a new conversation; returns its id."""
        export, _ = check_export(data)
        return self.create(export.page, export.title, *imported_messages(export))


def _exported(message: dict) -> dict:
    return {k: v for k, v in message.items() if k != "replaces"}


def imported_messages(export) -> tuple[list[dict], list[dict]]:
    """An export's branch and other versions with fresh ids, their parents following them (a version whose
    parent the file does not hold is left out: it has no place in the tree)."""
    fresh = {m.id: new_message_id() for m in [*export.messages, *(export.versions or [])] if m.id}

    def renewed(m) -> dict:
        message = {**m.model_dump(mode="json", exclude_unset=True, exclude={"id", "replaces", "parent"})}
        if m.id:
            message["id"] = fresh[m.id]
        if m.parent is None or m.parent in fresh:
            message["parent"] = fresh.get(m.parent)
        return message

    branch = [renewed(m) for m in export.messages]
    for m, message in zip(export.messages, branch):
        if "parent" not in m.model_fields_set or (m.parent is not None and m.parent not in fresh):
            message.pop("parent", None)  # follows the message before it
    others = [renewed(m) for m in export.versions or [] if m.parent is None or m.parent in fresh]
    return branch, others


def _put(
    db: sqlite3.Connection,
    cid: str,
    items: Iterable[tuple[int, dict]],
    hide: Iterable[str],
    now: float,
    off=frozenset(),
) -> None:
    """Upsert the messages (those in `off` as other versions); hide `hide`; the answers that written ones (with
    text) replace become other versions."""
    items = list(items)
    db.executemany(UPSERT, [_row(cid, seq, m, now, OTHER if m.get("id") in off else 0) for seq, m in items])
    replaced = [m["replaces"] for _, m in items if m.get("replaces") and m["content"] and m.get("id") not in off]
    db.executemany("UPDATE messages SET hidden = 1 WHERE conversation_id = ? AND id = ?", [(cid, i) for i in hide])
    db.executemany(
        f"UPDATE messages SET hidden = {OTHER} WHERE conversation_id = ? AND id = ? AND hidden = 0",
        [(cid, i) for i in replaced],
    )


def _row(cid: str, seq: int, message: dict, now: float, hidden: int = 0) -> tuple:
    # Every message saved (a page's, an import's, the API's through core/api_store.py) is checked by the one
    # model when it is written, not only when it is read back; a wrong field is a bug, never a stranger's data.
    Message.stored(message)
    return (
        cid,
        message.get("id") or new_message_id(),
        seq,
        message["role"],
        message["content"],
        _meta_json(message),
        now,
        hidden,
    )


def _meta_json(message: dict) -> str:
    meta = {k: v for k, v in message.items() if k not in ("role", "content", "id")}
    return json.dumps(meta, ensure_ascii=False, default=str)


def _title(text: str) -> str:
    return " ".join(text.split())[:80] or "New chat"
