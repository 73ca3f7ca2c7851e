"""What the API keeps, in the pages' own store (`core.store`, the same SQLite file): conversations made or continued
through the API are ordinary conversations of the chat page (their items are its messages), and stored responses,
assistants and runs are `api_objects` rows beside them.

Items are messages: a message item is a user, assistant or system message; a function call is an assistant message
holding `tool_calls`; a function call's output is a `tool` message naming its `tool_call_id`. So the chat page shows
and continues an API conversation, and the API reads back what the page wrote.

Bounded: a stored response older than the retention, or past the newest `max_responses`, is pruned as
responses are stored (the count every PRUNE_EVERY stores); a response with `store: false` is never written.
Appends are one transaction each (positions are taken inside it), so two clients adding items to one conversation at
once lose nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from core.store import Store, _put, _title

API_PAGE = "chat"  # conversations made through the API show in the chat page's sidebar and continue there
MAX_CHAIN = 1000  # responses followed back through previous_response_id (each one is a turn of history)
PRUNE_EVERY = 64  # stored responses between two prunes to RESPONSES_MAX_STORED


def new_api_id(prefix: str) -> str:
    """`prefix_` and 128 random bits (hex): unguessable, and still nothing opens without the API key."""
    return f"{prefix}_{secrets.token_hex(16)}"


@dataclass(frozen=True)
class StoredConversation:
    id: str  # the store's id (the chat page's `?c=`)
    title: str
    created: float
    metadata: dict


@dataclass(frozen=True)
class ApiObject:
    id: str
    kind: str
    parent: str | None
    conversation_id: str | None
    created: float
    body: dict


class ApiStore:
    def __init__(self, store: Store, retention_s: float, max_responses: int, prune_every: int = PRUNE_EVERY):
        self.store, self.retention_s, self.max_responses = store, retention_s, max_responses
        self.prune_every = prune_every
        self._stored = 0  # responses stored since the last prune to the cap, modulo prune_every

    # --- conversations -----------------------------------------------------------------------

    def create_conversation(self, messages: list[dict], metadata: dict, title: str = "") -> str:
        first = next((m["content"] for m in messages if m["role"] == "user" and m["content"].strip()), "")
        cid = self.store.create(API_PAGE, title or first or "API conversation", messages)
        self.set_metadata(cid, metadata)
        return cid

    def conversation(self, cid: str) -> StoredConversation | None:
        with self.store._connect() as db:
            row = db.execute("SELECT id, title, created, metadata FROM conversations WHERE id = ?", (cid,)).fetchone()
        if row is None:
            return None
        return StoredConversation(row[0], row[1], row[2], _object(row[3]))

    def set_metadata(self, cid: str, metadata: dict) -> bool:
        with self.store._connect(write=True) as db:
            changed = db.execute(
                "UPDATE conversations SET metadata = ? WHERE id = ?", (json.dumps(metadata, ensure_ascii=False), cid)
            ).rowcount
        return bool(changed)

    def append(self, cid: str, messages: list[dict]) -> bool:
        """Add messages (each with its "id") after the last one, in one transaction; False: no such conversation."""
        with self.store._connect(write=True) as db:
            return _append(db, cid, messages)

    def hide(self, cid: str, mid: str) -> bool:
        """Take one message out of the conversation (the API's item delete); False: no such item."""
        now = time.time()
        with self.store._connect(write=True) as db:
            hidden = db.execute(
                "UPDATE messages SET hidden = 1 WHERE conversation_id = ? AND id = ? AND hidden = 0", (cid, mid)
            ).rowcount
            if hidden:
                db.execute("UPDATE conversations SET version = version + 1, updated = ? WHERE id = ?", (now, cid))
        return bool(hidden)

    # --- responses, assistants, runs ---------------------------------------------------------

    def put(self, obj: ApiObject, items: list[dict] | None = None) -> None:
        """Write (or replace) an object, and with `items`, append them to its conversation in the same transaction
        (a stored turn is its response and its items, or nothing; one commit, not two). Storing a response prunes
        those past the retention (an indexed range, at every store) and, every `prune_every` stores, those past the
        newest `max_responses`: the count never runs more than `prune_every` over, and a store does not walk the
        whole table each time."""
        body = json.dumps(obj.body, ensure_ascii=False)
        with self.store._connect(write=True) as db:
            db.execute(
                "INSERT OR REPLACE INTO api_objects (id, kind, parent, conversation_id, created, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (obj.id, obj.kind, obj.parent, obj.conversation_id, obj.created, body),
            )
            if items and obj.conversation_id:
                _append(db, obj.conversation_id, items)
            if obj.kind == "response":
                db.execute(
                    "DELETE FROM api_objects WHERE kind = 'response' AND created < ?", (time.time() - self.retention_s,)
                )
                self._stored = (self._stored + 1) % self.prune_every
                if self._stored == 0:
                    self._prune_to_cap(db)

    def _prune_to_cap(self, db) -> None:
        oldest_kept = db.execute(
            "SELECT created FROM api_objects WHERE kind = 'response' ORDER BY created DESC LIMIT 1 OFFSET ?",
            (self.max_responses - 1,),
        ).fetchone()
        if oldest_kept is not None:
            db.execute("DELETE FROM api_objects WHERE kind = 'response' AND created < ?", oldest_kept)

    def get(self, kind: str, oid: str) -> ApiObject | None:
        with self.store._connect() as db:
            return _read(db, kind, oid)

    def delete(self, kind: str, oid: str) -> bool:
        with self.store._connect(write=True) as db:
            return bool(db.execute("DELETE FROM api_objects WHERE id = ? AND kind = ?", (oid, kind)).rowcount)

    def list(self, kind: str, conversation_id: str | None = None, limit: int = 10_000) -> list[ApiObject]:
        """Oldest first."""
        sql = "SELECT id, kind, parent, conversation_id, created, body FROM api_objects WHERE kind = ?"
        args: list = [kind]
        if conversation_id is not None:
            sql += " AND conversation_id = ?"
            args.append(conversation_id)
        with self.store._connect() as db:
            rows = db.execute(sql + " ORDER BY created, id LIMIT ?", (*args, limit)).fetchall()
        return [ApiObject(*row[:5], _object(row[5])) for row in rows]

    def chain(self, rid: str) -> list[ApiObject] | None:
        """The response and every one it continues, oldest first (at most MAX_CHAIN; a loop, which only a damaged
        file can hold, ends the walk). None when `rid` is not stored. One connection for the whole walk."""
        found: list[ApiObject] = []
        seen: set[str] = set()
        current: str | None = rid
        with self.store._connect() as db:
            while current is not None and current not in seen and len(found) < MAX_CHAIN:
                seen.add(current)
                obj = _read(db, "response", current)
                if obj is None:
                    if not found:
                        return None
                    break  # an older turn was pruned: the chain starts after it
                found.append(obj)
                current = obj.parent
        return found[::-1]


def _append(db, cid: str, messages: list[dict]) -> bool:
    now = time.time()
    if db.execute("SELECT 1 FROM conversations WHERE id = ?", (cid,)).fetchone() is None:
        return False
    last = db.execute("SELECT COALESCE(MAX(seq), -1) FROM messages WHERE conversation_id = ?", (cid,)).fetchone()
    _put(db, cid, enumerate(messages, start=last[0] + 1), (), now)
    title = db.execute("SELECT title FROM conversations WHERE id = ?", (cid,)).fetchone()[0]
    if messages and title in ("API conversation", "New chat"):
        if first := next((m["content"] for m in messages if m["role"] == "user" and m["content"]), ""):
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (_title(first), cid))
    db.execute("UPDATE conversations SET version = version + 1, updated = ? WHERE id = ?", (now, cid))
    return True


def _read(db, kind: str, oid: str) -> ApiObject | None:
    row = db.execute(
        "SELECT id, kind, parent, conversation_id, created, body FROM api_objects WHERE id = ? AND kind = ?",
        (oid, kind),
    ).fetchone()
    return None if row is None else ApiObject(*row[:5], _object(row[5]))


def _object(text: str) -> dict:
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
