"""The form of a URL that may be shown, logged or stored."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def display_url(url: str) -> str:
    """The form of a URL that may be shown, logged or stored: no user name or password, no query.

    `http://user:pw@host:8000/v1?api_key=sk-1` -> `http://host:8000/v1?***`. The URL itself (with
    its credentials) is still what requests use; this is only what people see.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # e.g. a port that is not a number: show nothing that could be a secret
        return "(an invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    # A query may hold a key (`?api_key=...`, or `?sk-...` alone): it is shown only as being there.
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))
