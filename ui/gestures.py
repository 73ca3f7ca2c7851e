"""The gestures under a message: copy, edit (a question), regenerate, continue, 👍/👎 (an answer), and ‹ 2/3 ›
between its versions. Draws only: a click calls the session's `ask`, `switch` or `rate` (ui/session.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from core import versions
from ui.i18n import _

if TYPE_CHECKING:
    from ui.session import ChatSession

ALL = frozenset({"copy", "edit", "regenerate", "continue", "feedback", "versions"})
WITHOUT_CONTINUE = ALL - {"continue"}  # pages whose answer is not one model turn (search, team)
THUMBS = {"up": 1, "down": 0}  # st.feedback's values


def can_continue(message: dict) -> bool:
    """An answer that stopped before it finished: cut by a stop, or at max new tokens."""
    return bool(message.get("cut")) or (message.get("stats") or {}).get("finish_reason") == "length"


def bar(session: ChatSession, history: list[dict], at: int, kids: dict, allowed: frozenset[str]) -> None:
    """The row of gestures under the history's message at `at`."""
    message = history[at]
    mid = message.get("id")
    if not mid or not allowed or message["role"] not in ("user", "assistant"):
        return
    with st.container(horizontal=True, gap="small", vertical_alignment="center", key=session.key(f"gestures.{mid}")):
        if "copy" in allowed:
            with st.popover("", icon=":material/content_copy:", help=_("Copy")):
                st.code(message["content"], language=None, wrap_lines=True)  # its button copies the text
        if message["role"] == "user" and "edit" in allowed:
            _edit(session, message)
        if message["role"] == "assistant" and "regenerate" in allowed and at and history[at - 1]["role"] == "user":
            help_ = _("Regenerate this answer (the current one is kept as a version)")
            _ask(session, "regenerate", "regen", mid, "", ":material/refresh:", help_)
        last = at == len(history) - 1
        if "continue" in allowed and message["role"] == "assistant" and last and can_continue(message):
            help_ = _("Go on writing this answer from where it stopped")
            _ask(session, "continue", "continue", mid, _("Continue"), ":material/fast_forward:", help_)
        if message["role"] == "assistant" and "feedback" in allowed:
            key = session.key(f"feedback.{mid}")
            if key not in st.session_state and message.get("feedback") in THUMBS:
                st.session_state[key] = THUMBS[message["feedback"]]
            st.feedback("thumbs", key=key, on_change=session.rate, args=(mid, key))
        if "versions" in allowed:
            _versions(session, history, at, kids)


def _ask(session: ChatSession, kind: str, name: str, mid: str, label: str, icon: str, help_: str) -> None:
    """A button asking the session to redo the message `mid` (`kind`) in the run its click starts."""
    key = session.key(f"{name}.{mid}")
    st.button(label, icon=icon, help=help_, key=key, type="tertiary", on_click=session.ask, args=(kind, mid))


def _edit(session: ChatSession, message: dict) -> None:
    mid = message["id"]
    with st.popover("", icon=":material/edit:", help=_("Edit and send again (the current one is kept as a version)")):
        with st.form(session.key(f"edit.{mid}.form"), border=False):
            key = session.key(f"edit.{mid}")
            st.text_area(_("Your message"), message["content"], key=key, height=120)
            st.form_submit_button(
                _("Send"), key=f"{key}.send", type="primary", on_click=session.ask, args=("edit", mid, key)
            )


def _versions(session: ChatSession, history: list[dict], at: int, kids: dict) -> None:
    """‹ k/n › when the message has other versions."""
    found = versions.versions(history, [], at, kids)
    if len(found) < 2:
        return
    mid = history[at]["id"]
    k = next((n for n, m in enumerate(found) if m is history[at]), 0)
    earlier, later = (found[k - 1] if k else None), (found[k + 1] if k + 1 < len(found) else None)
    _step(session, mid, earlier, ":material/chevron_left:", _("Previous version"), "previous")
    st.caption(f"{k + 1}/{len(found)}", width="content")
    _step(session, mid, later, ":material/chevron_right:", _("Next version"), "next")


def _step(session: ChatSession, mid: str, target: dict | None, icon: str, label: str, name: str) -> None:
    st.button(
        "",
        icon=icon,
        help=label,
        key=session.key(f"version.{mid}.{name}"),
        type="tertiary",
        disabled=target is None,
        on_click=session.switch,
        args=(mid, target["id"] if target else ""),
    )
