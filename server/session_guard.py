"""What a browser session may ask of Streamlit's own routes, whoever it is.

Streamlit acts on some websocket messages and routes for any client, before our pages run: `clear_cache` empties
every `st.cache_resource` for everyone (the message Streamlit's "Clear cache" menu sends), `set_run_on_save` and
`load_git_info` touch the process, `backend_operation_request` can ask to install files into the project,
`/_stcore/upload_file` stores a file in memory for any session id, and `/_stcore/metrics` lists the caches. This
pure ASGI middleware keeps the messages a page needs (reruns, stop, heartbeats, upload URLs, dataframe chunks) and
drops the others unless Streamlit's developer mode is on; it accepts uploads only for a session that passed the
password gate and shows the import box (`core.access.GATE`), one file at a time; and it frees a session's
uploaded files when its websocket closes.
"""

from __future__ import annotations

import logging
import re

from streamlit.proto.BackMsg_pb2 import BackMsg

from core.access import GATE

log = logging.getLogger(__name__)

# BackMsg types every session may send; the rest are for developers.
ALLOWED_MESSAGES = frozenset(
    {"rerun_script", "stop_script", "app_heartbeat", "file_urls_request", "backend_operation_request"}
)
ALLOWED_OPERATIONS = frozenset({"dataframe_chunk", "deferred_file"})  # backend_operation_request payloads
UPLOAD = re.compile(r"/_stcore/upload_file/([^/]+)/([^/]+)/?$")
MAX_PARSED_FRAME = 256 * 2**20  # larger frames are left to Streamlit, which closes the connection for them
_LOGGED_MAX = 32

UPLOAD_REFUSAL = b"Uploads are accepted only from a page that passed the password and shows the import box.\n"


def developer_mode() -> bool:
    from streamlit import config

    return bool(config.get_option("global.developmentMode"))


def allowed(data: bytes) -> str | None:
    """None when the frame may reach Streamlit; else the message type refused. A frame that is not a BackMsg is
    passed on: Streamlit itself closes the connection for it."""
    if len(data) > MAX_PARSED_FRAME:
        return None
    message = BackMsg()
    try:
        message.ParseFromString(data)
    except Exception:
        return None
    kind = message.WhichOneof("type")
    if kind is None or kind not in ALLOWED_MESSAGES:
        return kind or "empty"
    if kind == "backend_operation_request":
        payload = message.backend_operation_request.WhichOneof("payload")
        if payload not in ALLOWED_OPERATIONS:
            return f"backend_operation_request.{payload}"
    return None


def _runtime():
    from streamlit.runtime import Runtime

    return Runtime.instance() if Runtime.exists() else None


def free_ended_sessions() -> None:
    """Uploaded files and gate entries of sessions that are no longer connected. Streamlit keeps a disconnected
    session for a reconnect and, with it, every file it uploaded, until the process ends."""
    runtime = _runtime()
    if runtime is None:
        return
    manager = runtime.uploaded_file_mgr
    storage = getattr(manager, "file_storage", {})
    for session_id in list(storage):
        if not runtime.is_active_session(session_id):
            manager.remove_session_files(session_id)
    GATE.forget([s for s in GATE.known() if not runtime.is_active_session(s)])


def make_room_for_upload(session_id: str) -> None:
    """The import box takes one file: the session's earlier uploads go before a new one is stored."""
    runtime = _runtime()
    if runtime is not None:
        runtime.uploaded_file_mgr.remove_session_files(session_id)


class SessionGuard:
    def __init__(self, app):
        self.app = app
        self._logged = 0

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if developer_mode() or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket" and path.rstrip("/").endswith("/_stcore/stream"):
            try:
                await self.app(scope, self._filtered(receive), send)
            finally:
                free_ended_sessions()
        elif scope["type"] == "http" and path.rstrip("/").endswith("/_stcore/metrics"):
            await _answer(send, 404, b"Not found.\n")
        elif scope["type"] == "http" and scope["method"] == "PUT" and (match := UPLOAD.search(path)):
            if not GATE.may_upload(match.group(1)):
                self._log("Refused an upload from a session that has not passed the password or shows no import box.")
                await _answer(send, 403, UPLOAD_REFUSAL)
                return
            make_room_for_upload(match.group(1))
            await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _filtered(self, receive):
        async def filtered_receive():
            while True:
                message = await receive()
                data = message.get("bytes") if message["type"] == "websocket.receive" else None
                refused = allowed(data) if data else None
                if refused is None:
                    return message
                self._log(f"Ignored a {refused!r} message from a browser session (developer mode is off).")

        return filtered_receive

    def _log(self, text: str) -> None:
        if self._logged < _LOGGED_MAX:
            self._logged += 1
            log.warning(text)


async def _answer(send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
