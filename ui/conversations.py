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
            st.session_state["conversations.created"] = True
            st.query_params["c"] = cid
        messages = history + ([{**pending, "cut": True}] if pending else [])
        db.save_messages(cid, messages, start=max(0, len(history) - 2))
        st.session_state[f"{history_key}.saved"] = (cid, signature)
    except StoreError as exc:
        _unsaved(exc)


def finish(page: str, history_key: str) -> None:
    """End of a page run: save, and redraw once if this run created the conversation (sidebar list)."""
    save(page, history_key)
    if st.session_state.pop("conversations.created", False):
        st.rerun()


def saver(page: str, history_key: str):
    """A progress callback for streaming answers: saves at most every SAVE_EVERY_S seconds."""
    last = [0.0]

    def on_progress(pending: dict) -> None:
        if time.monotonic() - last[0] >= SAVE_EVERY_S:
            last[0] = time.monotonic()
            save(page, history_key, pending)

    return on_progress


def start_new(history_key: str) -> None:
    st.session_state[history_key] = []
    st.session_state.pop(f"{history_key}.cid", None)
    _point_url_at(None)


def sidebar(page: str, history_key: str, prefix: str) -> None:
    """New, search, open, rename, delete (confirmed), export and import."""
    with st.sidebar:
        st.subheader("Conversations")
        if st.button("➕ New chat", key=f"{prefix}.new", use_container_width=True):
            start_new(history_key)
        db = store()
        if db is None:
            return
        cid = st.session_state.get(f"{history_key}.cid")
        try:
            if cid:
                _current(db, cid, history_key, prefix)
            text = st.text_input("Search conversations", key=f"{prefix}.conv_search", placeholder="Search by text")
            for item in db.list(page, text, limit=20):
                label = ("▸ " if item.id == cid else "") + item.title
                if st.button(label, key=f"{prefix}.open.{item.id}", use_container_width=True):
                    st.query_params["c"] = item.id
                    st.rerun()
            _import(db, prefix)
        except StoreError as exc:
            _unsaved(exc)


def _current(db: Store, cid: str, history_key: str, prefix: str) -> None:
    export = db.export_json(cid)
    with st.expander("This conversation"):
        title = st.text_input("Title", export["title"], key=f"{prefix}.title.{cid}")
        if title.strip() and title != export["title"]:
            db.rename(cid, title)
        name = "".join(c if c.isalnum() else "-" for c in export["title"])[:40] or "conversation"
        st.download_button("Export Markdown", to_markdown(export), f"{name}.md", "text/markdown", key=f"{prefix}.md")
        st.download_button("Export JSON", json.dumps(export, ensure_ascii=False, indent=1), f"{name}.json",
                           "application/json", key=f"{prefix}.json")
        sure = st.checkbox("Yes, delete this conversation", key=f"{prefix}.sure.{cid}")
        if st.button("Delete", key=f"{prefix}.delete", disabled=not sure):
            db.delete(cid)
            start_new(history_key)
            st.rerun()


def _import(db: Store, prefix: str) -> None:
    upload = st.file_uploader("Import a JSON export", type=["json"], key=f"{prefix}.import")
    if upload is None or st.session_state.get(f"{prefix}.imported") == upload.file_id:
        return
    st.session_state[f"{prefix}.imported"] = upload.file_id
    try:
        cid = db.import_json(json.loads(upload.getvalue().decode("utf-8")))
    except (ValueError, UnicodeDecodeError):
        st.error("That file is not valid JSON.")
        return
    except StoreError as exc:
        st.error(str(exc))
        return
    st.query_params["c"] = cid
    st.rerun()
