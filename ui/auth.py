"""The optional password gate (APP_PASSWORD) every page calls first, and the process-wide limit on guesses."""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time

import streamlit as st

from core.errors import StudioError
from core.settings import get_settings

logger = logging.getLogger(__name__)

# Guesses from every session together: a few at once (the owner's typos), then one per second. Counting per
# session let eight parallel sessions guess eight times as fast.
FREE_GUESSES = 5
GUESS_INTERVAL_S = 1.0
# A guess whose turn is this close waits for it (the owner gets in without retrying); later ones are refused.
MAX_WAIT_S = 3.0


class GuessLimiter:
    """One queue of password checks for the whole process (GCRA: a burst, then a steady rate). Thread-safe."""

    def __init__(self, burst: int = FREE_GUESSES, interval_s: float = GUESS_INTERVAL_S, max_wait_s: float = MAX_WAIT_S):
        self.interval_s, self.max_wait_s = interval_s, max_wait_s
        self.tolerance_s = (burst - 1) * interval_s
        self._full_at = time.monotonic()  # when the burst allowance is whole again ("theoretical arrival time")
        self._lock = threading.Lock()
        self._warned = False

    def reserve(self) -> float:
        """Book the next turn. Returns the seconds to wait for it (0: now); negative: refused, retry in -value s."""
        with self._lock:
            now = time.monotonic()
            full_at = max(self._full_at, now)
            wait = full_at - self.tolerance_s - now
            if wait > self.max_wait_s:
                if not self._warned:
                    self._warned = True
                    logger.warning("Password guesses are being limited: many wrong passwords in a short time.")
                return -(wait - self.max_wait_s)
            self._full_at = full_at + self.interval_s
            return max(wait, 0.0)

    def give_back(self) -> None:
        """A right password does not use up the allowance (the owner opening tabs is never slowed)."""
        with self._lock:
            self._full_at -= self.interval_s
            self._warned = False


class TooManyGuesses(StudioError):
    """Too many guesses are queued; this one was not checked."""

    def __init__(self, retry_after_s: float):
        super().__init__(f"Too many wrong passwords; try again in {math.ceil(retry_after_s)} s.")
        self.retry_after_s = retry_after_s


@st.cache_resource(show_spinner=False)
def guess_limiter() -> GuessLimiter:
    """The one limiter of this process, shared by every session."""
    return GuessLimiter()


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


def require_password() -> None:
    """Stop the page, showing only a password box, until this browser session has the password."""
    password = get_settings().app_password
    if password is None or not password.get_secret_value() or st.session_state.get("auth.ok"):
        return
    st.title("🔒 Llama Studio")
    with st.form("auth.form"):
        given = st.text_input("Password", type="password", key="auth.password")
        submitted = st.form_submit_button("Enter")
    if submitted and given:
        try:
            right = check_password(given, password.get_secret_value(), guess_limiter())
        except TooManyGuesses as exc:
            st.warning(str(exc))
        else:
            if right:
                st.session_state["auth.ok"] = True
                st.rerun()
            st.error("Wrong password.")
    elif submitted:
        st.error("Enter the password.")
    st.stop()
