"""How a provider's request goes out: within one total deadline, and never redirected off its own host.

A socket timeout bounds each read only, so a server sending one byte every few seconds could hold the page
for minutes. `within` runs the whole request (connect, headers, body, redirects) in a worker thread and gives
up at the deadline; it then shuts down the sockets the request opened, so the worker's blocked read ends at
once rather than whenever the server stops sending.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

T = TypeVar("T")
# After a deadline, sockets that a retrying library opens anew are shut down too, for this long at most.
_KEEP_CUTTING_S = 30.0
_PLAIN_HOST = re.compile(r"[a-z0-9.-]{1,253}|\[[0-9a-f:.]{2,45}\]")  # what a message may name


class DeadlinePassed(Exception):
    """The request did not finish in time; its sockets are being shut down."""


class OffHostRedirect(Exception):
    """A redirect to another scheme, host or port; `shown` is the target as a message may name it."""

    def __init__(self, target: str):
        super().__init__(target)
        self.shown = shown_origin(target)


def within(seconds: float, call: Callable[[], T], sockets: Callable[[], Iterable[socket.socket | None]]) -> T:
    """`call()`'s result, or DeadlinePassed once `seconds` have passed in all; `call`'s own errors are raised
    here as they are. `sockets()` lists the sockets the request has open at that moment (None: not yet)."""
    outcome: dict[str, object] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["value"] = call()
        except Exception as exc:  # raised again in the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="search-request", daemon=True).start()
    if not done.wait(seconds):
        threading.Thread(target=_cut, args=(sockets, done), name="search-cut", daemon=True).start()
        raise DeadlinePassed
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _cut(sockets: Callable[[], Iterable[socket.socket | None]], done: threading.Event) -> None:
    """Shut the request's sockets down until its worker ends: a read blocked on one returns at once."""
    give_up = time.monotonic() + _KEEP_CUTTING_S
    while True:
        for sock in list(sockets()):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if done.wait(0.05) or time.monotonic() > give_up:
            return


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, with the scheme's default port filled in; None otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def redirect_target(base: str, location: str) -> str:
    """Where a redirect from `base` goes ("" when its Location cannot be read as a URL)."""
    try:
        return urljoin(base, location)
    except ValueError:
        return ""


def same_origin(url: str, configured: str) -> bool:
    """Whether `url` has the scheme, host and port of `configured`: 127.0.0.1 and localhost differ, and so do
    two ports of one host (another port is another server)."""
    return origin(url) is not None and origin(url) == origin(configured)


def shown_origin(url: str) -> str:
    """`scheme://host:port` of a URL from outside, for a message: only when it is made of plain characters."""
    found = origin(url)
    if found is None:
        return "an address that cannot be shown"
    scheme, host, port = found
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}" if _PLAIN_HOST.fullmatch(host) else "an address that cannot be shown"
