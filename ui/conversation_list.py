"""The sidebar's conversation list: new, this conversation (rename, export, delete), search, open, import.

Reserved at the top of a page (`sidebar_slot`) and drawn at its end (`draw`), after the run's last save, so it
shows what this run saved. Draws only, and keeps its own notes (`ERROR`, `NOTICE`); loading and saving are
ui/conversations.py's, a conversation's state is its `ChatSession`'s (ui/session.py). The page sequence
(ui/page.py) calls it; it calls nothing of the page's.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import streamlit as st

from core.access import GATE
from core.conversation_schema import parse_export, to_markdown
from core.errors import StudioError, text_of
from core.names import without_bidi_controls
from core.store import Store, StoreError, imported_messages
from ui import conversations
from ui.auth import session_id
from ui.conversations import SAVE_LATER, UNSAVED, store
from ui.i18n import N_, _, shown
from ui.safe_text import plain

if TYPE_CHECKING:
    from ui.session import ChatSession

# The sidebar's notes, one set per browser session (not per conversation): shown once, at the next draw.
ERROR, NOTICE = "conversations.error", "conversations.notice"
PAGE_NAMES = {"chat": N_("Chat"), "search": N_("Search answers"), "team": N_("Team")}


def sidebar_slot():
    """Reserve the sidebar's place; `draw` fills it."""
    return st.sidebar.container()


def draw(session: ChatSession, slot) -> None:
    with slot:
        _sidebar(session)


def _new(session: ChatSession) -> None:
    if not conversations.start_new(session):
        st.session_state[ERROR] = _(SAVE_LATER)


def _delete(session: ChatSession, cid: str) -> None:
    try:
        conversations.delete(session, cid)
    except StoreError as exc:
        st.session_state[ERROR] = text_of(exc)  # shown in the page's language


def _open(cid: str) -> None:
    st.query_params["c"] = cid  # bind() loads it at the top of the run this click starts


def _rename(cid: str, key: str) -> None:
    title = st.session_state.get(key, "")
    if title.strip() and (db := store()):
        try:
            db.rename(cid, title)
        except StoreError as exc:
            st.session_state[ERROR] = text_of(exc)  # shown in the page's language


def _import(session: ChatSession, key: str) -> None:
    """Check the file against the export schema (core.conversation_schema); refuse it with the reason."""
    upload = st.session_state.get(key)
    db = store()
    if upload is None or db is None:
        return
    try:
        export, dropped = parse_export(upload.getvalue())
        cid = db.create(export.page, export.title, *imported_messages(export))
    except StudioError as exc:
        st.session_state[ERROR] = text_of(exc)
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
        st.error(shown(error))
    if notice := st.session_state.pop(NOTICE, None):
        st.success(notice)
    if unsaved := st.session_state.get(UNSAVED):
        st.warning(
            _(
                "Conversations are not being saved: {reason} Chat still works; unsaved messages are written at "
                "the next save."
            ).format(reason=shown(unsaved))
        )
    note = session.note
    if note and note[0] == cid:
        st.info(note[1])


def _sidebar(session: ChatSession) -> None:
    """New, current (rename, export, delete with confirmation), search, open, import."""
    st.subheader(_("Conversations"))
    key = session.key
    st.button("➕ " + _("New chat"), key=key("new"), use_container_width=True, on_click=_new, args=(session,))
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
                st.button(
                    _("Delete"),
                    key=key("delete"),
                    disabled=not sure,
                    on_click=_delete,
                    args=(session, cid),
                )
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
        st.warning(_("Conversations are not being saved: {reason} Chat still works.").format(reason=shown(exc)))


def _export_text(db: Store, cid: str) -> str:
    return json.dumps(db.export_json(cid), ensure_ascii=False, indent=1)
