"""Saved conversations in the pages: the URL's `?c=<id>` names one; the sidebar lists them.

The page's history stays in `st.session_state[history_key]`; these helpers load it from the store
and save it back, and keep chatting (unsaved, saying so) when the store cannot be used.
"""

from __future__ import annotations

import json
import time

import streamlit as st

from llm.settings import get_settings
from llm.store import Store, StoreError, to_markdown
from ui.safe_text import plain

SAVE_EVERY_S = 1.0  # how often a streaming answer is saved (as cut) so a crash keeps it


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
    st.sidebar.warning(f"Conversations are not being saved: {exc} Chat still works.")


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


def _settle(page: str, history_key: str) -> None:
    """Before the session's history is replaced: keep an interrupted answer, in its own conversation."""
    from ui.chat import commit_pending

    commit_pending(history_key)
    save(page, history_key)


def bind(page: str, history_key: str) -> None:
    """Load the conversation named in the URL into this session (once), else keep the session's own."""
    st.session_state.setdefault(history_key, [])
    bound = f"{history_key}.cid"
    own = st.session_state.get(bound)
    cid = st.query_params.get("c")
    if cid == own:
        return
    if not cid:
        if own:
            st.query_params["c"] = own  # keep the URL naming this session's conversation
        return
    db = store()
    if db is None:
        return
    try:
        summary = db.summary(cid)
        if summary is None or summary.page != page:
            if summary is None:
                st.warning("That conversation was not found (it may have been deleted). Starting a new one.")
            _point_url_at(own)
            return
        _settle(page, history_key)
        st.session_state[history_key] = db.messages(cid)
        st.session_state[bound] = cid
    except StoreError as exc:
        _unsaved(exc)


def _point_url_at(cid: str | None) -> None:
    if cid:
        st.query_params["c"] = cid
    elif "c" in st.query_params:
        del st.query_params["c"]


def save(page: str, history_key: str, pending: dict | None = None) -> None:
    """Write the history's last two messages (and a streaming answer, marked cut) to the store."""
    history = st.session_state.get(history_key) or []
    db = store()
    if db is None or not history:
        return
    bound = f"{history_key}.cid"
    last = history[-1]
    signature = (len(history), last["role"], len(last["content"]), bool(last.get("cut")), pending is not None)
    if pending is None and st.session_state.get(f"{history_key}.saved") == (st.session_state.get(bound), signature):
        return  # nothing new since the last save
    try:
        cid = st.session_state.get(bound)
        if not cid:
            first = next((m["content"] for m in history if m["role"] == "user"), "New chat")
            cid = db.create(page, first)
            st.session_state[bound] = cid
            st.query_params["c"] = cid
        messages = history + ([{**pending, "cut": True}] if pending else [])
        db.save_messages(cid, messages, start=max(0, len(history) - 2))
        st.session_state[f"{history_key}.saved"] = (cid, signature)
    except StoreError as exc:
        _unsaved(exc)


def saver(page: str, history_key: str):
    """A progress callback for streaming answers: saves at most every SAVE_EVERY_S seconds."""
    last = [0.0]

    def on_progress(pending: dict) -> None:
        if time.monotonic() - last[0] >= SAVE_EVERY_S:
            last[0] = time.monotonic()
            save(page, history_key, pending)

    return on_progress


# --- the sidebar: reserved at the top of a page, drawn at its end (so it shows this run's saves) ---

def sidebar_slot():
    """Reserve the sidebar's place; `finish` fills it."""
    return st.sidebar.container()


def finish(slot, page: str, history_key: str, prefix: str) -> None:
    """End of a page run: save, then draw the conversation list into `slot`."""
    save(page, history_key)
    with slot:
        _sidebar(page, history_key, prefix)


def start_new(page: str, history_key: str) -> None:
    _settle(page, history_key)
    st.session_state[history_key] = []
    st.session_state.pop(f"{history_key}.cid", None)
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
    st.session_state[history_key] = []
    st.session_state.pop(f"{history_key}.pending", None)
    st.session_state.pop(f"{history_key}.cid", None)
    _point_url_at(None)


def _import(page: str, history_key: str, key: str) -> None:
    upload = st.session_state.get(key)
    db = store()
    if upload is None or db is None:
        return
    try:
        cid = db.import_json(json.loads(upload.getvalue().decode("utf-8")))
    except (ValueError, UnicodeDecodeError):
        st.session_state["conversations.error"] = "That file is not valid JSON."
        return
    except StoreError as exc:
        st.session_state["conversations.error"] = str(exc)
        return
    st.query_params["c"] = cid


def _sidebar(page: str, history_key: str, prefix: str) -> None:
    """New, current (rename, export, delete with confirmation), search, open, import."""
    st.subheader("Conversations")
    st.button("➕ New chat", key=f"{prefix}.new", use_container_width=True, on_click=start_new, args=(page, history_key))
    if error := st.session_state.pop("conversations.error", None):
        st.error(error)
    db = store()
    if db is None:
        return
    cid = st.session_state.get(f"{history_key}.cid")
    try:
        if cid and (summary := db.summary(cid)):
            with st.expander("This conversation"):
                key = f"{prefix}.title.{cid}"
                st.text_input("Title", summary.title, key=key, on_change=_rename, args=(cid, key))
                name = "".join(c if c.isalnum() else "-" for c in summary.title)[:40] or "conversation"
                # Built only when clicked (on another thread): not on every rerun of the page.
                st.download_button("Export Markdown", lambda: to_markdown(db.export_json(cid)), f"{name}.md",
                                   "text/markdown", key=f"{prefix}.md")
                st.download_button("Export JSON", lambda: json.dumps(db.export_json(cid), ensure_ascii=False, indent=1),
                                   f"{name}.json", "application/json", key=f"{prefix}.json")
                sure = st.checkbox("Yes, delete this conversation", key=f"{prefix}.sure.{cid}")
                st.button("Delete", key=f"{prefix}.delete", disabled=not sure, on_click=_delete, args=(page, history_key, cid))
        text = st.text_input("Search conversations", key=f"{prefix}.conv_search", placeholder="Search by text")
        for item in db.list(page, text, limit=20):
            # A button label renders markdown (images too): a title, maybe imported, is shown as text only.
            label = ("▸ " if item.id == cid else "") + plain(item.title)
            st.button(label, key=f"{prefix}.open.{item.id}", use_container_width=True, on_click=_open,
                      args=(page, history_key, item.id))
        key = f"{prefix}.import"
        st.file_uploader("Import a JSON export", type=["json"], key=key, on_change=_import, args=(page, history_key, key))
    except StoreError as exc:
        _unsaved(exc)

