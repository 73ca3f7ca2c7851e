"""The optional password gate (APP_PASSWORD) every page calls first. The limit on guesses and the list of
sessions that passed live in `core.access`, where no cache clear reaches them."""

from __future__ import annotations

import hmac
import time

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.access import FREE_GUESSES, GATE, GUESS_INTERVAL_S, GUESSES, MAX_WAIT_S, GuessLimiter, TooManyGuesses
from core.settings import get_settings
from ui.i18n import _, shown

__all__ = [
    "FREE_GUESSES",
    "GUESS_INTERVAL_S",
    "MAX_WAIT_S",
    "GuessLimiter",
    "TooManyGuesses",
    "check_password",
    "guess_limiter",
    "passed_gate",
    "require_password",
    "session_id",
]


def guess_limiter() -> GuessLimiter:
    """The one limiter of this process, shared by every session."""
    return GUESSES


def session_id() -> str | None:
    """This browser session's id (None outside a script run)."""
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx else None


def check_password(given: str, expected: str, limiter: GuessLimiter) -> bool:
    """Whether `given` is the password, checked when this guess's turn comes (waiting up to MAX_WAIT_S for it).

    Raises TooManyGuesses, without checking, when the turn is further away than that."""
    wait = limiter.reserve()
    if wait < 0:
        raise TooManyGuesses(-wait)
    time.sleep(wait)
    if hmac.compare_digest(given.encode(), expected.encode()):  # constant time
        limiter.give_back()
        return True
    return False


def _admit() -> None:
    if (sid := session_id()) is not None:
        GATE.admit(sid)


def passed_gate() -> bool:
    """Whether this browser session may see the pages (no password is set, or it was given)."""
    password = get_settings().app_password
    return password is None or not password.get_secret_value() or bool(st.session_state.get("auth.ok"))


def require_password() -> None:
    """Stop the page, showing only a password box, until this browser session has the password."""
    if passed_gate():
        _admit()
        return
    password = get_settings().app_password
    st.title("🔒 Llama Studio")
    with st.form("auth.form"):
        given = st.text_input(_("Password"), type="password", key="auth.password")
        submitted = st.form_submit_button(_("Enter"))
    if submitted and given:
        try:
            right = check_password(given, password.get_secret_value(), guess_limiter())
        except TooManyGuesses as exc:
            st.warning(shown(exc))
        else:
            if right:
                st.session_state["auth.ok"] = True
                _admit()
                st.rerun()
            st.error(_("Wrong password."))
    elif submitted:
        st.error(_("Enter the password."))
    st.stop()
