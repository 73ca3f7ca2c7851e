"""Only requests addressed to this machine by an allowed name reach the app.

Any web page the user visits can point its own host name at 127.0.0.1 (DNS rebinding) and then read the
app as if it were that page's own site: the browser's same-origin rule sees one origin. The browser still
sends that name in the Host header, so refusing every name not on the list closes the hole, for the page,
its static files, the websocket and any API route alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

# Names that always mean this machine. An attacker cannot make a browser send these for their own site.
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
REFUSAL = (
    "This host name is not allowed: add it to ALLOWED_HOSTS (comma-separated names this app is "
    "served under), or browse to http://127.0.0.1 or http://localhost.\n"
)
_LOGGED_MAX = 64  # distinct refused names logged; a page can send any number of them

logger = logging.getLogger(__name__)


def host_name(value: str) -> str:
    """The name in a Host header or an ALLOWED_HOSTS entry, lower case, without port or brackets.

    `Chat.Example.com:443` -> `chat.example.com`, `[::1]:6006` -> `::1`; "" when it is not a host.
    """
    value = value.strip().lower()
    if value.startswith("["):  # an IPv6 literal, optionally with a port
        name, _, rest = value[1:].partition("]")
        return name if rest == "" or (rest[:1] == ":" and rest[1:].isdigit()) else ""
    if value.count(":") == 1:
        name, port = value.split(":")
        return name if port.isdigit() else ""
    return value  # a name, or a bare IPv6 address (valid in the setting; a browser never sends one)


class HostGuard:
    """Pure ASGI middleware (so it also sees websocket handshakes): refuses requests whose Host is not allowed."""

    def __init__(self, app, allowed: Iterable[str] = ()):
        self.app = app
        self.allowed = LOCAL_NAMES | {name for name in map(host_name, allowed) if name}
        self._logged: set[str] = set()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or self._is_allowed(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await _refuse_http(send)
        else:
            await _refuse_websocket(send)

    def _is_allowed(self, scope) -> bool:
        hosts = [value for key, value in scope["headers"] if key == b"host"]
        name = host_name(hosts[0].decode("latin-1")) if len(hosts) == 1 else ""
        if name and name in self.allowed:
            return True
        shown = ascii(b",".join(hosts).decode("latin-1")[:100])  # never a raw header in the log
        if len(self._logged) < _LOGGED_MAX and shown not in self._logged:
            self._logged.add(shown)
            logger.warning(
                "Refused a request for host %s: not in ALLOWED_HOSTS (a DNS rebinding page, or a "
                "name this app is served under that needs adding).",
                shown,
            )
        return False


_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]


async def _refuse_http(send) -> None:
    body = REFUSAL.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse_websocket(send) -> None:
    # Closing before accepting makes the server answer the handshake with 403. (A body with the reason would
    # be unreadable to the browser's script anyway, and uvicorn logs such a denial response as an error.)
    await send({"type": "websocket.close", "code": 1008})
