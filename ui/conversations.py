"""Saved conversations in the pages: the URL's `?c=<id>` names one; the sidebar lists them.

The page's history is its `ChatSession`'s (ui/session.py, which names every key); these helpers load it
from the store and save it back, and keep chatting (unsaved, saying so) when the store cannot be used.

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
from typing import TYPE_CHECKING

import streamlit as st

from core.errors import text_of
from core.settings import get_settings
from core.store import (
    ConversationChanged,
    Store,
    StoreError,
    fingerprint,
    new_message_id,
)
from ui.i18n import N_, _

if TYPE_CHECKING:
    from ui.session import ChatSession

SAVE_EVERY_S = 1.0  # how often a streaming answer is saved (as cut) so a crash keeps it
# A save during streaming waits this long for a lock (the stream stalls meanwhile); the next one retries.
STREAM_WAIT_S = 0.25
# Notes for the sidebar, one set per browser session (not per conversation).
UNSAVED, ERROR, NOTICE = "conversations.unsaved", "conversations.error", "conversations.notice"
SAVE_LATER = N_("This conversation could not be saved yet, so it stays open. Try again in a moment.")
PAGE_NAMES = {"chat": N_("Chat"), "search": N_("Search answers"), "team": N_("Team")}


@dataclass
class Sync:
    """What this session knows the store holds of its conversation."""

    version: int | None = None  # the conversation's version after this session's last read or write
    # message id -> (fingerprint, beside the branch) as this session last wrote or read it
    saved: dict[str, tuple[int, bool]] = field(default_factory=dict)
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
    """Remember why saving failed (its message id and values: shown in the page's language); `finish` shows it
    once, in the sidebar (never mid-stream)."""
    st.session_state[UNSAVED] = text_of(exc)


def _sync(session: ChatSession) -> Sync:
    return st.session_state.setdefault(session.keys.sync, Sync())


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


def _adopt(
    session: ChatSession,
    cid: str | None,
    version: int | None = None,
    messages: list[dict] | None = None,
    others: list[dict] | None = None,
) -> None:
    """This session now shows `messages` of conversation `cid` (and keeps the `others` versions beside them), as
    stored at `version` (None: a new chat)."""
    messages, others = messages or [], others or []
    st.session_state[session.keys.messages] = messages
    st.session_state[session.keys.others] = others
    st.session_state[session.keys.sync] = Sync(version, _fingerprints(messages, others))
    if cid:
        st.session_state[session.keys.cid] = cid
    else:
        st.session_state.pop(session.keys.cid, None)


def _settle(session: ChatSession) -> bool:
    """Before the session's history is replaced: keep an interrupted answer, and save. False if the save
    failed: the caller keeps this conversation on the page (the next save retries) instead of losing it."""
    session.commit_pending()
    save(session)
    if store() is None:
        return True  # nothing is being saved at all (the sidebar says so): no reason to hold the page
    return not _unsaved_changes(session)


def bind(session: ChatSession) -> None:
    """Load the conversation named in the URL into this session (once), else keep the session's own."""
    own = session.cid
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
            _catch_up(db, session, cid)
            return
        loaded = db.load(cid)
        if loaded is None or loaded.summary.page != session.page:
            if loaded is None:
                st.warning(_("That conversation was not found (it may have been deleted). Starting a new one."))
            _point_url_at(own)
            return
        if not _settle(session):
            st.warning(_(SAVE_LATER))
            _point_url_at(own)
            return
        _adopt(session, cid, loaded.version, loaded.messages, loaded.others)
    except StoreError as exc:
        _unsaved(exc)


def _catch_up(db: Store, session: ChatSession, cid: str) -> None:
    """Show what another tab saved to this conversation, if this tab has nothing unsaved (if it has,
    its next save forks instead, see `save`)."""
    sync = _sync(session)
    version = db.version(cid)
    if version is None or version == sync.version or _unsaved_changes(session):
        return
    if loaded := db.load(cid):
        _adopt(session, cid, loaded.version, loaded.messages, loaded.others)


def _point_url_at(cid: str | None) -> None:
    if cid:
        st.query_params["c"] = cid
    elif "c" in st.query_params:
        del st.query_params["c"]


def _unsaved_changes(session: ChatSession) -> bool:
    changed, hide = _changes(session.history, session.others, _sync(session))
    return bool(changed or hide or session.pending())


def _fingerprints(messages: list[dict], others: list[dict]) -> dict[str, tuple[int, bool]]:
    return {m["id"]: (fingerprint(m), off) for off, group in ((False, messages), (True, others)) for m in group}


def _changes(messages: list[dict], others: list[dict], sync: Sync) -> tuple[list[tuple[int, dict]], list[str]]:
    """(position, message) pairs this session has not yet written as they are now (the branch's messages, then
    the versions beside it), and ids to hide."""
    changed = []
    for off, group in ((False, messages), (True, others)):
        for seq, m in enumerate(group):
            m.setdefault("id", new_message_id())  # every message has one from birth; this covers any other source
            if sync.saved.get(m["id"]) != (fingerprint(m), off):
                changed.append((seq, m))
    return changed, sync.hide


def save(session: ChatSession, streaming: dict | None = None, wait_s: float | None = None) -> None:
    """Write what this session has not yet saved (a streaming answer too, marked cut). Idempotent: a
    failed save leaves its messages unsaved in `Sync`, and the next save writes them."""
    messages = session.to_save(streaming)
    db = store()
    if db is None or not messages:
        return
    sync, others = _sync(session), session.others
    changed, hide = _changes(messages, others, sync)
    if not changed and not hide:
        return
    cid = session.cid
    off = {m["id"] for m in others}
    try:
        if cid is None:
            _start(db, session, messages)
            return
        try:
            sync.version = db.write(cid, changed, hide, sync.version, wait_s, off)
        except ConversationChanged as exc:
            _fork(db, session, messages, exc)
            return
        sync.saved.update((m["id"], (fingerprint(m), m["id"] in off)) for _at, m in changed)
        sync.hide = []
    except StoreError as exc:
        _unsaved(exc)


def _start(db: Store, session: ChatSession, messages: list[dict], title: str | None = None) -> str:
    """A new conversation holding `messages` (written in the same transaction), now this session's."""
    title = title or next((m["content"] for m in messages if m["role"] == "user"), _("New chat"))
    others = session.others
    cid = db.create(session.page, title, messages, others)
    st.session_state[session.keys.cid] = cid
    st.session_state[session.keys.sync] = Sync(0, _fingerprints(messages, others))
    st.query_params["c"] = cid
    return cid


def _fork(db: Store, session: ChatSession, messages: list[dict], exc: ConversationChanged) -> None:
    """Another tab wrote to (or deleted) this conversation: this tab's history goes on in a copy."""
    if exc.gone:
        note = _("This conversation was deleted in another tab or window, so it goes on here as a new conversation.")
        cid = _start(db, session, messages)
    else:
        note = _(
            "Another tab added to this conversation while this one was open. So that neither tab loses a turn, "
            "this tab goes on in a copy (“(copy)” in the list); the other tab's turns stay in the original."
        )
        cid = _start(db, session, messages, _("{title} (copy)").format(title=exc.title))
    st.session_state[session.keys.note] = (cid, note)
    st.toast(note, icon="🔀")


def retract(session: ChatSession, message: dict) -> None:
    """A message taken off the page (e.g. too long to answer) is hidden in the store at the next save."""
    if message.get("id"):
        _sync(session).hide.append(message["id"])


def saver(session: ChatSession):
    """A progress callback for streaming answers: saves at most every SAVE_EVERY_S seconds."""
    last = [0.0]

    def on_progress(pending: dict) -> None:
        if time.monotonic() - last[0] >= SAVE_EVERY_S:
            save(session, pending, STREAM_WAIT_S)
            last[0] = time.monotonic()  # after the save: a slow one is not followed at once by another

    return on_progress


def finish(session: ChatSession) -> None:
    """End of a page run: save, waiting the full busy timeout (the sidebar then shows whether saving works)."""
    st.session_state.pop(UNSAVED, None)  # this save decides whether saving works now
    save(session)


def start_new(session: ChatSession) -> None:
    if not _settle(session):
        st.session_state[ERROR] = _(SAVE_LATER)
        return
    _adopt(session, None)
    _point_url_at(None)


def delete(session: ChatSession, cid: str) -> None:
    if db := store():
        try:
            db.delete(cid)
        except StoreError as exc:
            st.session_state[ERROR] = text_of(exc)
            return
    session.drop_pending()
    _adopt(session, None)
    _point_url_at(None)
