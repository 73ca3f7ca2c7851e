"""A page's conversation and the store: the URL's `?c=<id>` names one; this loads it and saves it back.

The conversation's state is its `ChatSession`'s (ui/session.py, which names every key and alone writes
them); this module only syncs that state with the store, through the session's methods, and keeps chatting
(unsaved, saying so) when the store cannot be used. It points the URL's `?c=` at the session's conversation
and keeps the note on why saving fails (`UNSAVED`). The page sequence (ui/page.py), the answer flow
(ui/answer.py) and the sidebar's list (ui/conversation_list.py) call it; it calls nothing of theirs.

What a session has saved is tracked per message (the session's `Sync`): each save writes only the messages
that are new or changed since this session last wrote them, so a save that failed (the database locked) is
simply retried by the next one, and nothing this tab did not write is ever overwritten. Two tabs on one
conversation: a tab with nothing unsaved first catches up with what the other saved (at the top of each
run); a tab whose write finds that another tab wrote in between (or deleted the conversation) continues
in a copy, with a note, so neither tab's turns are lost or interleaved.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import streamlit as st

from core.errors import text_of
from core.settings import get_settings
from core.store import ConversationChanged, Store, StoreError
from ui.i18n import N_, _

if TYPE_CHECKING:
    from ui.session import ChatSession

SAVE_EVERY_S = 1.0  # how often a streaming answer is saved (as cut) so a crash keeps it
# A save during streaming waits this long for a lock (the stream stalls meanwhile); the next one retries.
STREAM_WAIT_S = 0.25
# Why saving fails now, for the sidebar (one per browser session, not per conversation).
UNSAVED = "conversations.unsaved"
SAVE_LATER = N_("This conversation could not be saved yet, so it stays open. Try again in a moment.")


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
        session.adopt(cid, loaded.version, loaded.messages, loaded.others)
    except StoreError as exc:
        _unsaved(exc)


def _catch_up(db: Store, session: ChatSession, cid: str) -> None:
    """Show what another tab saved to this conversation, if this tab has nothing unsaved (if it has,
    its next save forks instead, see `save`)."""
    version = db.version(cid)
    if version is None or version == session.sync.version or _unsaved_changes(session):
        return
    if loaded := db.load(cid):
        session.adopt(cid, loaded.version, loaded.messages, loaded.others)


def _point_url_at(cid: str | None) -> None:
    if cid:
        st.query_params["c"] = cid
    elif "c" in st.query_params:
        del st.query_params["c"]


def _unsaved_changes(session: ChatSession) -> bool:
    changed, hide = session.sync.changes(session.history, session.others)
    return bool(changed or hide or session.pending())


def save(session: ChatSession, streaming: dict | None = None, wait_s: float | None = None) -> None:
    """Write what this session has not yet saved (a streaming answer too, marked cut). Idempotent: a
    failed save leaves its messages unsaved in `Sync`, and the next save writes them."""
    messages = session.to_save(streaming)
    db = store()
    if db is None or not messages:
        return
    others = session.others
    changed, hide = session.sync.changes(messages, others)
    if not changed and not hide:
        return
    cid = session.cid
    off = {m["id"] for m in others}
    try:
        if cid is None:
            _start(db, session, messages)
            return
        try:
            version = db.write(cid, changed, hide, session.sync.version, wait_s, off)
        except ConversationChanged as exc:
            _fork(db, session, messages, exc)
            return
        session.wrote(version, changed, off)
    except StoreError as exc:
        _unsaved(exc)


def _start(db: Store, session: ChatSession, messages: list[dict], title: str | None = None) -> str:
    """A new conversation holding `messages` (written in the same transaction), now this session's."""
    title = title or next((m["content"] for m in messages if m["role"] == "user"), _("New chat"))
    cid = db.create(session.page, title, messages, session.others)
    session.started(cid, messages)
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
    session.goes_on_in(cid, note)
    st.toast(note, icon="🔀")


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


def start_new(session: ChatSession) -> bool:
    """A new chat in place of this one, once this one is saved; False (nothing changed) if it could not be."""
    if not _settle(session):
        return False
    session.adopt(None)
    _point_url_at(None)
    return True


def delete(session: ChatSession, cid: str) -> None:
    """Delete conversation `cid` and start a new chat; raises StoreError (nothing changed) if the store refuses."""
    if db := store():
        db.delete(cid)
    session.drop_pending()
    session.adopt(None)
    _point_url_at(None)
