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

from core.access import GATE
from core.conversation_schema import parse_export
from core.errors import StudioError
from core.names import without_bidi_controls
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
from ui.auth import session_id
from ui.i18n import N_, _
from ui.safe_text import plain

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
    st.session_state[UNSAVED] = str(exc)


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
    session: ChatSession, cid: str | None, version: int | None = None, messages: list[dict] | None = None
) -> None:
    """This session now shows `messages` of conversation `cid`, as stored at `version` (None: a new chat)."""
    messages = messages or []
    st.session_state[session.keys.messages] = messages
    st.session_state[session.keys.sync] = Sync(version, {m["id"]: fingerprint(m) for m in messages})
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
        _adopt(session, cid, loaded.version, loaded.messages)
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
        _adopt(session, cid, loaded.version, loaded.messages)


def _point_url_at(cid: str | None) -> None:
    if cid:
        st.query_params["c"] = cid
    elif "c" in st.query_params:
        del st.query_params["c"]


def _unsaved_changes(session: ChatSession) -> bool:
    changed, hide = _changes(session.history, _sync(session))
    return bool(changed or hide or session.pending())


def _changes(messages: list[dict], sync: Sync) -> tuple[list[tuple[int, dict]], list[str]]:
    """(position, message) pairs this session has not yet written as they are now, and ids to hide."""
    changed = []
    for seq, m in enumerate(messages):
        m.setdefault("id", new_message_id())  # every message has one from birth; this covers any other source
        if sync.saved.get(m["id"]) != fingerprint(m):
            changed.append((seq, m))
    return changed, sync.hide


def save(session: ChatSession, streaming: dict | None = None, wait_s: float | None = None) -> None:
    """Write what this session has not yet saved (a streaming answer too, marked cut). Idempotent: a
    failed save leaves its messages unsaved in `Sync`, and the next save writes them."""
    messages = session.to_save(streaming)
    db = store()
    if db is None or not messages:
        return
    sync = _sync(session)
    changed, hide = _changes(messages, sync)
    if not changed and not hide:
        return
    cid = session.cid
    try:
        if cid is None:
            _start(db, session, messages)
            return
        try:
            sync.version = db.write(cid, changed, hide, sync.version, wait_s)
        except ConversationChanged as exc:
            _fork(db, session, messages, exc)
            return
        sync.saved.update((m["id"], fingerprint(m)) for _at, m in changed)
        sync.hide = []
    except StoreError as exc:
        _unsaved(exc)


def _start(db: Store, session: ChatSession, messages: list[dict], title: str | None = None) -> str:
    """A new conversation holding `messages` (written in the same transaction), now this session's."""
    title = title or next((m["content"] for m in messages if m["role"] == "user"), _("New chat"))
    cid = db.create(session.page, title, messages)
    st.session_state[session.keys.cid] = cid
    st.session_state[session.keys.sync] = Sync(0, {m["id"]: fingerprint(m) for m in messages})
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


# --- the sidebar: reserved at the top of a page, drawn at its end (so it shows this run's saves) ---


def sidebar_slot():
    """Reserve the sidebar's place; `finish` fills it."""
    return st.sidebar.container()


def finish(session: ChatSession, slot) -> None:
    """End of a page run: save (waiting the full busy timeout), then draw the conversation list into `slot`."""
    st.session_state.pop(UNSAVED, None)  # this save decides whether saving works now
    save(session)
    with slot:
        _sidebar(session)


def start_new(session: ChatSession) -> None:
    if not _settle(session):
        st.session_state[ERROR] = _(SAVE_LATER)
        return
    _adopt(session, None)
    _point_url_at(None)


def _open(cid: str) -> None:
    st.query_params["c"] = cid  # bind() loads it at the top of the run this click starts


def _rename(cid: str, key: str) -> None:
    title = st.session_state.get(key, "")
    if title.strip() and (db := store()):
        try:
            db.rename(cid, title)
        except StoreError as exc:
            st.session_state[ERROR] = str(exc)


def _delete(session: ChatSession, cid: str) -> None:
    if db := store():
        try:
            db.delete(cid)
        except StoreError as exc:
            st.session_state[ERROR] = str(exc)
            return
    session.drop_pending()
    _adopt(session, None)
    _point_url_at(None)


def _import(session: ChatSession, key: str) -> None:
    """Check the file against the export schema (core.conversation_schema); refuse it with the reason."""
    upload = st.session_state.get(key)
    db = store()
    if upload is None or db is None:
        return
    try:
        export, dropped = parse_export(upload.getvalue())
        cid = db.create(export.page, export.title, imported_messages(export))
    except StudioError as exc:
        st.session_state[ERROR] = str(exc)
        return
    notice = _("Imported a conversation of {count} messages.").format(count=len(export.messages))
    if dropped:
        more = _(" and {count} more").format(count=len(dropped) - 5) if len(dropped) > 5 else ""
        notice += " " + _("Unknown fields were left out: {names}.").format(names=", ".join(dropped[:5]) + more)
    if export.page == session.page:
        st.query_params["c"] = cid
    else:
        persona = export.page.removeprefix("persona:")
        where = _(PAGE_NAMES[export.page]) if export.page in PAGE_NAMES else _("Personas ({name})").format(name=persona)
        notice += " " + _("It belongs to the {page} page and is listed there.").format(page=where)
    st.session_state[NOTICE] = notice


def _notes(session: ChatSession, cid: str | None) -> None:
    if error := st.session_state.pop(ERROR, None):
        st.error(error)
    if notice := st.session_state.pop(NOTICE, None):
        st.success(notice)
    if unsaved := st.session_state.get(UNSAVED):
        st.warning(
            _(
                "Conversations are not being saved: {reason} Chat still works; unsaved messages are written at "
                "the next save."
            ).format(reason=unsaved)
        )
    note = st.session_state.get(session.keys.note)
    if note and note[0] == cid:
        st.info(note[1])


def _sidebar(session: ChatSession) -> None:
    """New, current (rename, export, delete with confirmation), search, open, import."""
    st.subheader(_("Conversations"))
    key = session.key
    st.button("➕ " + _("New chat"), key=key("new"), use_container_width=True, on_click=start_new, args=(session,))
    cid = session.cid
    _notes(session, cid)
    db = store()
    if db is None:
        return
    try:
        if cid and (summary := db.summary(cid)):
            with st.expander(_("This conversation")):
                title_key = key(f"title.{cid}")
                st.text_input(
                    _("Title"),
                    without_bidi_controls(summary.title),
                    key=title_key,
                    on_change=_rename,
                    args=(cid, title_key),
                )
                name = "".join(c if c.isalnum() else "-" for c in summary.title)[:40] or "conversation"
                # Built only when clicked (on another thread): not on every rerun of the page.
                st.download_button(
                    _("Export Markdown"),
                    lambda: to_markdown(db.export_json(cid)),
                    f"{name}.md",
                    "text/markdown",
                    key=key("md"),
                )
                st.download_button(
                    _("Export JSON"),
                    lambda: _export_text(db, cid),
                    f"{name}.json",
                    "application/json",
                    key=key("json"),
                )
                sure = st.checkbox(_("Yes, delete this conversation"), key=key(f"sure.{cid}"))
                st.button(_("Delete"), key=key("delete"), disabled=not sure, on_click=_delete, args=(session, cid))
        text = st.text_input(_("Search conversations"), key=key("conv_search"), placeholder=_("Search by text"))
        for item in db.list(session.page, text, limit=20):
            # A button label renders markdown (images too): a title, maybe imported, is shown as text only.
            label = ("▸ " if item.id == cid else "") + plain(item.title)
            st.button(
                label,
                key=key(f"open.{item.id}"),
                use_container_width=True,
                on_click=_open,
                args=(item.id,),
            )
        GATE.offer_upload(session_id())  # the one widget that uploads: the session guard lets its files in
        st.file_uploader(
            _("Import a JSON export"),
            type=["json"],
            key=key("import"),
            on_change=_import,
            args=(session, key("import")),
        )
    except StoreError as exc:
        st.warning(_("Conversations are not being saved: {reason} Chat still works.").format(reason=exc))


def _export_text(db: Store, cid: str) -> str:
    import json

    return json.dumps(db.export_json(cid), ensure_ascii=False, indent=1)
