"""Who may do what, for the whole process: the limit on password guesses, and which browser sessions passed the
password gate and may upload a file.

This state lives in plain module objects, not in a Streamlit cache, so nothing a browser sends (a websocket
`clear_cache`, a rerun) can reset it. The pages write it (`ui/auth.py`, the import box); the HTTP layer in front
of Streamlit's own routes reads it (`server/session_guard.py`)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict

from core.errors import N_, StudioError

logger = logging.getLogger(__name__)

# Guesses from every session together: a few at once (the owner's typos), then one per second. Counting per
# session let eight parallel sessions guess eight times as fast.
FREE_GUESSES = 5
GUESS_INTERVAL_S = 1.0
# A guess whose turn is this close waits for it (the owner gets in without retrying); later ones are refused.
MAX_WAIT_S = 3.0
MAX_SESSIONS = 10_000  # sessions remembered as admitted; the oldest are forgotten first (they re-enter the password)


class GuessLimiter:
    """One queue of password checks for the whole process (GCRA: a burst, then a steady rate). Thread-safe."""

    def __init__(self, burst: int = FREE_GUESSES, interval_s: float = GUESS_INTERVAL_S, max_wait_s: float = MAX_WAIT_S):
        self.interval_s, self.max_wait_s = interval_s, max_wait_s
        self.tolerance_s = (burst - 1) * interval_s
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """A whole allowance again (tests; a restart does the same)."""
        with self._lock:
            self._full_at = time.monotonic()  # when the burst allowance is whole again ("theoretical arrival time")
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
        super().__init__(N_("Too many wrong passwords; try again in {seconds} s."), seconds=math.ceil(retry_after_s))
        self.retry_after_s = retry_after_s


GUESSES = GuessLimiter()  # the one limiter of this process, shared by every session


class SessionGate:
    """The browser sessions (Streamlit session ids) that passed the password gate, and those among them whose
    page shows the import box, the one widget that uploads. Thread-safe; bounded."""

    def __init__(self, max_sessions: int = MAX_SESSIONS):
        self._lock = threading.Lock()
        self._admitted: OrderedDict[str, None] = OrderedDict()
        self._uploading: set[str] = set()
        self.max_sessions = max_sessions

    def admit(self, session_id: str) -> None:
        with self._lock:
            self._admitted[session_id] = None
            self._admitted.move_to_end(session_id)
            while len(self._admitted) > self.max_sessions:
                gone, _ = self._admitted.popitem(last=False)
                self._uploading.discard(gone)

    def admitted(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._admitted

    def offer_upload(self, session_id: str) -> None:
        """This session's page shows the import box (only an admitted session's can)."""
        with self._lock:
            if session_id in self._admitted:
                self._uploading.add(session_id)

    def may_upload(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._uploading

    def forget(self, session_ids) -> None:
        """Sessions that ended."""
        with self._lock:
            for session_id in session_ids:
                self._admitted.pop(session_id, None)
                self._uploading.discard(session_id)

    def known(self) -> list[str]:
        with self._lock:
            return list(self._admitted)


GATE = SessionGate()
