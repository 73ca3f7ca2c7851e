"""The HTTP layer in front of the pages: what `streamlit run app.py` serves (see app.py's `app`).

Today it is the host guard alone; API routes are added here later, to the same `st.App`.
"""

from __future__ import annotations

from starlette.middleware import Middleware

from llm.settings import get_settings
from server.host_guard import HostGuard


def middleware() -> list[Middleware]:
    """The middleware wrapped around every route (page, static files, websocket, API), outermost first."""
    return [Middleware(HostGuard, allowed=get_settings().allowed_hosts)]
