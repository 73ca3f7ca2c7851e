"""Saved conversations in the pages: the URL's `?c=<id>` names one; the sidebar lists them.

The page's history stays in `st.session_state[history_key]`; these helpers load it from the store and
save it back, and keep chatting (unsaved, saying so) when the store cannot be used.

What a session has saved is tracked per message (`Sync`): each save writes only the messages that are new
or changed since this session last wrote them, so a save that failed (the database locked) is simply
retried by the next one, and nothing this tab did not write is ever overwritten. Two tabs on one
conversation: a tab with nothing unsaved first catches up with what the other saved (at the top of each
run); a tab whose write finds that another tab wrote in between (or deleted the conversation) continues
in a copy, with a note, so neither tab's turns are lost or interleaved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import streamlit as st

from core.conversation_schema import parse_export
from core.errors import StudioError
from core.settings import get_settings
from core.store import (
    ConversationChanged,
    Store,
    StoreError,
    fingerprint,
    imported_messages,
    new_message_id,
    to_markdown,
)
from ui.safe_text import plain

SAVE_EVERY_S = 1.0  # how often a streaming answer is saved (as cut) so a crash keeps it
STREAM_WAIT_S = (
    0.25  # a save during streaming waits this long for a lock (the stream stalls meanwhile); the next retries
)
PAGE_NAMES = {"chat": "Chat", "search": "Search answers", "team": "Team"}


@dataclass
class Sync:
    """What this session knows the store holds of its conversation."""

    version: int | None = None  # the conversation's version after this session's last read or write
    saved: dict[str, int] = field(default_factory=dict)  # message id -> fingerprint as this session last wrote it
    hide: list[str] = field(default_factory=list)  # ids taken off the page, to hide in the store at the next save


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    from pathlib import Path

    return Store(Path(path))


def store() -> Store | None:
    try:
        return _store(str(get_settings().database_path))
    except StoreError as exc:
        _unsaved(exc)
        return None


def _unsaved(exc: StoreError) -> None:
    """Remember why saving failed; `finish` shows it once, in the sidebar (never mid-stream)."""
    st.session_state["conversations.unsaved"] = str(exc)


def _sync(history_key: str) -> Sync:
    return st.session_state.setdefault(f"{history_key}.sync", Sync())


def conversation_page(cid: str | None) -> str | None:
    """The page a stored conversation belongs to (persona pages use it to pick the persona first)."""
    db = store()
    if not cid or db is None:
        return None
    try:
        summary = db.summary(cid)
    except StoreError:
        return None
    return summary.page if summary else None


def _adopt(history_key: str, cid: str | None, version: int | None = None, messages: list[dict] | None = None) -> None:
    """This session now shows `messages` of conversation `cid`, as stored at `version` (None: a new chat)."""
    messages = messages or []
    st.session_state[history_key] = messages
    st.session_state[f"{history_key}.sync"] = Sync(version, {m["id"]: fingerprint(m) for m in messages})
    if cid:
        st.session_state[f"{history_key}.cid"] = cid
    else:
        st.session_state.pop(f"{history_key}.cid", None)


def _settle(page: str, history_key: str) -> bool:
    """Before the session's history is replaced: keep an interrupted answer, and save. False if the save
    failed: the caller keeps this conversation on the page (the next save retries) instead of losing it."""
    from ui.chat import commit_pending

    commit_pending(history_key)
    save(page, history_key)
    if store() is None:
        return True  # nothing is being saved at all (the sidebar says so): no reason to hold the page
    return not _unsaved_changes(history_key)


def bind(page: str, history_key: str) -> None:
    """Load the conversation named in the URL into this session (once), else keep the session's own."""
    st.session_state.setdefault(history_key, [])
    own = st.session_state.get(f"{history_key}.cid")
    cid = st.query_params.get("c")
    if not cid:
        if own:
            st.query_params["c"] = own  # keep the URL naming this session's conversation
        return
    db = store()
    if db is None:
        return
    try:
        if cid == own:
            _catch_up(db, history_key, cid)
            return
        loaded = db.load(cid)
        if loaded is None or loaded.summary.page != page:
            if loaded is None:
                st.warning("That conversation was not found (it may have been deleted). Starting a new one.")
            _point_url_at(own)
            return
        if not _settle(page, history_key):
            st.warning("This conversation could not be saved yet, so it stays open. Try again in a moment.")
            _point_url_at(own)
            return
        _adopt(history_key, cid, loaded.version, loaded.messages)
    except StoreError as exc:
        _unsaved(exc)


def _catch_up(db: Store, history_key: str, cid: str) -> None:
    """Show what another tab saved to this conversation, if this tab has nothing unsaved (if it has,
    its next save forks instead, see `save`)."""
    sync = _sync(history_key)
    version = db.version(cid)
    if version is None or version == sync.version or _unsaved_changes(history_key):
        return
    if loaded := db.load(cid):
        _adopt(history_key, cid, loaded.version, loaded.messages)


def _point_url_at(cid: str | None) -> None:
    if cid:
        st.query_params["c"] = cid
    elif "c" in st.query_params:
        del st.query_params["c"]


def _unsaved_changes(history_key: str) -> bool:
    changed, hide = _changes(st.session_state.get(history_key) or [], _sync(history_key))
    return bool(changed or hide or st.session_state.get(f"{history_key}.pending"))


def _changes(messages: list[dict], sync: Sync) -> tuple[list[tuple[int, dict]], list[str]]:
    """(position, message) pairs this session has not yet written as they are now, and ids to hide."""
    changed = []
    for seq, m in enumerate(messages):
        m.setdefault("id", new_message_id())  # every message has one from birth; this covers any other source
        if sync.saved.get(m["id"]) != fingerprint(m):
            changed.append((seq, m))
    return changed, sync.hide


def save(page: str, history_key: str, pending: dict | None = None, wait_s: float | None = None) -> None:
    """Write what this session has not yet saved (a streaming answer too, marked cut). Idempotent: a
    failed save leaves its messages unsaved in `Sync`, and the next save writes them."""
    history = st.session_state.get(history_key) or []
    db = store()
    if db is None or not (history or pending):
        return
    messages = history + ([{**pending, "cut": True}] if pending else [])
    sync = _sync(history_key)
    changed, hide = _changes(messages, sync)
    if not changed and not hide:
        return
    cid = st.session_state.get(f"{history_key}.cid")
    try:
        if cid is None:
            _start(db, page, history_key, messages)
            return
        try:
            sync.version = db.write(cid, changed, hide, sync.version, wait_s)
        except ConversationChanged as exc:
            _fork(db, page, history_key, messages, exc)
            return
        sync.saved.update((m["id"], fingerprint(m)) for _, m in changed)
        sync.hide = []
    except StoreError as exc:
        _unsaved(exc)


def _start(db: Store, page: str, history_key: str, messages: list[dict], title: str | None = None) -> str:
    """A new conversation holding `messages` (written in the same transaction), now this session's."""
    title = title or next((m["content"] for m in messages if m["role"] == "user"), "New chat")
    cid = db.create(page, title, messages)
    st.session_state[f"{history_key}.cid"] = cid
    st.session_state[f"{history_key}.sync"] = Sync(0, {m["id"]: fingerprint(m) for m in messages})
    st.query_params["c"] = cid
    return cid


def _fork(db: Store, page: str, history_key: str, messages: list[dict], exc: ConversationChanged) -> None:
    """Another tab wrote to (or deleted) this conversation: this tab's history goes on in a copy."""
    if exc.gone:
        note = "This conversation was deleted in another tab or window, so it goes on here as a new conversation."
        cid = _start(db, page, history_key, messages)
    else:
        note = (
            "Another tab added to this conversation while this one was open. So that neither tab loses a turn, "
            "this tab goes on in a copy (“(copy)” in the list); the other tab's turns stay in the original."
        )
        cid = _start(db, page, history_key, messages, f"{exc.title} (copy)")
    st.session_state[f"{history_key}.note"] = (cid, note)
    st.toast(note, icon="🔀")


def retract(history_key: str, message: dict) -> None:
    """A message taken off the page (e.g. too long to answer) is hidden in the store at the next save."""
    if message.get("id"):
        _sync(history_key).hide.append(message["id"])


def saver(page: str, history_key: str):
    """A progress callback for streaming answers: saves at most every SAVE_EVERY_S seconds."""
    last = [0.0]

    def on_progress(pending: dict) -> None:
        if time.monotonic() - last[0] >= SAVE_EVERY_S:
            save(page, history_key, pending, STREAM_WAIT_S)
            last[0] = time.monotonic()  # after the save: a slow one is not followed at once by another

    return on_progress


# --- the sidebar: reserved at the top of a page, drawn at its end (so it shows this run's saves) ---


def sidebar_slot():
    """Reserve the sidebar's place; `finish` fills it."""
    return st.sidebar.container()


def finish(slot, page: str, history_key: str, prefix: str) -> None:
    """End of a page run: save (waiting the full busy timeout), then draw the conversation list into `slot`."""
    st.session_state.pop("conversations.unsaved", None)  # this save decides whether saving works now
    save(page, history_key)
    with slot:
        _sidebar(page, history_key, prefix)


def start_new(page: str, history_key: str) -> None:
    if not _settle(page, history_key):
        st.session_state["conversations.error"] = (
            "This conversation could not be saved yet, so it stays open. Try again in a moment."
        )
        return
    _adopt(history_key, None)
    _point_url_at(None)


def _open(page: str, history_key: str, cid: str) -> None:
    st.query_params["c"] = cid  # bind() loads it at the top of the run this click starts


def _rename(cid: str, key: str) -> None:
    title = st.session_state.get(key, "")
    if title.strip() and (db := store()):
        try:
            db.rename(cid, title)
        except StoreError as exc:
            st.session_state["conversations.error"] = str(exc)


def _delete(page: str, history_key: str, cid: str) -> None:
    if db := store():
        try:
            db.delete(cid)
        except StoreError as exc:
            st.session_state["conversations.error"] = str(exc)
            return
    st.session_state.pop(f"{history_key}.pending", None)
    _adopt(history_key, None)
    _point_url_at(None)


def _import(page: str, history_key: str, key: str) -> None:
    """Check the file against the export schema (core.conversation_schema); refuse it with the reason."""
    upload = st.session_state.get(key)
    db = store()
    if upload is None or db is None:
        return
    try:
        export, dropped = parse_export(upload.getvalue())
        cid = db.create(export.page, export.title, imported_messages(export))
    except StudioError as exc:
        st.session_state["conversations.error"] = str(exc)
        return
    notice = f"Imported a conversation of {len(export.messages)} messages."
    if dropped:
        names = ", ".join(dropped[:5]) + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
        notice += f" Unknown fields were left out: {names}."
    if export.page == page:
        st.query_params["c"] = cid
    else:
        where = PAGE_NAMES.get(export.page) or f"Personas ({export.page.removeprefix('persona:')})"
        notice += f" It belongs to the {where} page and is listed there."
    st.session_state["conversations.notice"] = notice


def _notes(history_key: str, cid: str | None) -> None:
    if error := st.session_state.pop("conversations.error", None):
        st.error(error)
    if notice := st.session_state.pop("conversations.notice", None):
        st.success(notice)
    if unsaved := st.session_state.get("conversations.unsaved"):
        st.warning(
            f"Conversations are not being saved: {unsaved} Chat still works; unsaved messages are "
            "written at the next save."
        )
    note = st.session_state.get(f"{history_key}.note")
    if note and note[0] == cid:
        st.info(note[1])


def _sidebar(page: str, history_key: str, prefix: str) -> None:
    """New, current (rename, export, delete with confirmation), search, open, import."""
    st.subheader("Conversations")
    st.button(
        "➕ New chat", key=f"{prefix}.new", use_container_width=True, on_click=start_new, args=(page, history_key)
    )
    cid = st.session_state.get(f"{history_key}.cid")
    _notes(history_key, cid)
    db = store()
    if db is None:
        return
    try:
        if cid and (summary := db.summary(cid)):
            with st.expander("This conversation"):
                key = f"{prefix}.title.{cid}"
                st.text_input("Title", summary.title, key=key, on_change=_rename, args=(cid, key))
                name = "".join(c if c.isalnum() else "-" for c in summary.title)[:40] or "conversation"
                # Built only when clicked (on another thread): not on every rerun of the page.
                st.download_button(
                    "Export Markdown",
                    lambda: to_markdown(db.export_json(cid)),
                    f"{name}.md",
                    "text/markdown",
                    key=f"{prefix}.md",
                )
                st.download_button(
                    "Export JSON",
                    lambda: _export_text(db, cid),
                    f"{name}.json",
                    "application/json",
                    key=f"{prefix}.json",
                )
                sure = st.checkbox("Yes, delete this conversation", key=f"{prefix}.sure.{cid}")
                st.button(
                    "Delete", key=f"{prefix}.delete", disabled=not sure, on_click=_delete, args=(page, history_key, cid)
                )
        text = st.text_input("Search conversations", key=f"{prefix}.conv_search", placeholder="Search by text")
        for item in db.list(page, text, limit=20):
            # A button label renders markdown (images too): a title, maybe imported, is shown as text only.
            label = ("▸ " if item.id == cid else "") + plain(item.title)
            st.button(
                label,
                key=f"{prefix}.open.{item.id}",
                use_container_width=True,
                on_click=_open,
                args=(page, history_key, item.id),
            )
        key = f"{prefix}.import"
        st.file_uploader(
            "Import a JSON export", type=["json"], key=key, on_change=_import, args=(page, history_key, key)
        )
    except StoreError as exc:
        st.warning(f"Conversations are not being saved: {exc} Chat still works.")


def _export_text(db: Store, cid: str) -> str:
    import json

    return json.dumps(db.export_json(cid), ensure_ascii=False, indent=1)
