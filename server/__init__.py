"""The HTTP layer in front of the pages: what `streamlit run app.py` serves (see app.py's `app`).

The host guard in front of every route, the session guard in front of Streamlit's own websocket and upload
routes, and the OpenAI-compatible API (`server/api`) beside the pages.
"""

from __future__ import annotations

from pydantic import ValidationError
from starlette.middleware import Middleware

from core.errors import problems
from core.settings import Settings, get_settings
from server.host_guard import HostGuard
from server.session_guard import SessionGuard


def middleware() -> list[Middleware]:
    """The middleware wrapped around every route (page, static files, websocket, API), outermost first."""
    return [Middleware(HostGuard, allowed=startup_settings().allowed_hosts), Middleware(SessionGuard)]


def startup_settings() -> Settings:
    """The settings, or a one-line reason on the terminal and no server (the guard cannot run without them)."""
    try:
        return get_settings()
    except (ValidationError, ValueError) as exc:
        found = problems(exc) if isinstance(exc, ValidationError) else [("", str(exc))]
        reasons = "; ".join(f"{where.upper() or 'settings'}: {what}" for where, what in found)
        raise SystemExit(f"Cannot start: {reasons}. Fix the environment variable or .streamlit/secrets.toml.") from None
