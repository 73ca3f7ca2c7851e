"""Who may use the API: the key, and which web pages may call it through a browser.

Any page the user visits can make their browser send a request to 127.0.0.1. A "simple" cross-site POST
(a form, or `fetch` with a text/plain body) is sent without asking the server first, so without the
checks here it could spend the GPU, or with the page's password set, nothing would stop it. The browser
always names the page's origin in the `Origin` header, and scripts and servers send none, so a request
whose Origin is not this app's own host is refused unless it carries the API key.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

from core.settings import get_settings
from server.api.errors import ApiError
from server.host_guard import LOCAL_NAMES, host_name


def check_access(request: Request) -> None:
    """The Origin check, then API_KEY as a bearer token (constant-time); with only APP_PASSWORD set the API
    stays shut, so the page's password cannot be bypassed through it."""
    settings = get_settings()
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    password = settings.app_password.get_secret_value() if settings.app_password else ""
    keyed = bool(key) and has_key(request, key)
    if not keyed:
        check_origin(request, settings.allowed_hosts, key_set=bool(key))
    if key and not keyed:
        raise ApiError(
            401,
            "Missing or wrong API key. Send 'Authorization: Bearer <API_KEY>'.",
            code="invalid_api_key",
            kind="authentication_error",
        )
    if not key and password:
        raise ApiError(
            403,
            "The API is off because APP_PASSWORD is set and API_KEY is not. Set API_KEY to a "
            "secret and send it as 'Authorization: Bearer <key>'.",
            code="api_disabled",
            kind="permission_error",
        )


def has_key(request: Request, key: str) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def check_origin(request: Request, allowed_hosts: list[str], key_set: bool) -> None:
    """403 for a request sent by another site's page (also `Origin: null`, a sandboxed or local file page)."""
    origins = request.headers.getlist("origin")
    if not origins:
        return
    own = LOCAL_NAMES | {name for name in map(host_name, allowed_hosts) if name}
    if len(origins) == 1 and origin_host(origins[0]) in own:
        return
    fix = "send the API key as 'Authorization: Bearer <API_KEY>'" if key_set else "set API_KEY and send it"
    raise ApiError(
        403,
        f"Requests from other sites' pages are refused (Origin {ascii(', '.join(origins)[:100])}): a page you "
        "visit could otherwise use the model through your browser. Call the API from a script or a server, "
        f"which send no Origin, add the page's host name to ALLOWED_HOSTS if it is this app, or {fix}.",
        code="cross_origin_refused",
        kind="permission_error",
    )


def origin_host(origin: str) -> str:
    """`http://LocalHost:6006` -> `localhost`; "" for `null` or anything that is not an http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or parts.path or parts.query or "@" in parts.netloc:
        return ""
    return host_name(parts.netloc)
