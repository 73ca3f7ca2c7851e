"""A raw Streamlit client for the tests: the websocket protocol a browser speaks (`/_stcore/stream`, one
protobuf `BackMsg` per frame up, `ForwardMsg`s down), with the messages that ship with Streamlit. It lets a test
send what a hostile client would (a `clear_cache`, forged widget states, uploads with its own session id) without
a browser in between."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import requests
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import connect


@dataclass
class Run:
    """What one script run drew: element texts and the widget ids by kind."""

    alerts: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    widgets: dict[str, list] = field(default_factory=dict)  # kind -> [element proto]
    finished: bool = False


class RawSession:
    """One browser session without a browser."""

    def __init__(self, url: str, page_name: str = ""):
        self.url = url
        self.ws = connect(
            url.replace("http://", "ws://") + "/_stcore/stream",
            subprotocols=["streamlit"],
            max_size=2**26,
            open_timeout=30,
        )
        self.session_id = ""
        self.page_hash = ""
        self.page_name = page_name
        self.http = requests.Session()  # the page sets the XSRF cookie that uploads must echo in a header
        self.http.get(url + "/_stcore/health", timeout=30)
        self.last = self.rerun()

    def send(self, message: BackMsg) -> None:
        self.ws.send(message.SerializeToString())

    def clear_cache(self) -> None:
        message = BackMsg()
        message.clear_cache = True
        self.send(message)

    def rerun(self, widgets: list | None = None, timeout: float = 60) -> Run:
        message = BackMsg()
        state = message.rerun_script
        state.query_string = ""
        state.page_script_hash = self.page_hash
        state.page_name = self.page_name
        for widget in widgets or []:
            state.widget_states.widgets.append(widget)
        self.send(message)
        self.last = self.read_run(timeout)
        return self.last

    def read_run(self, timeout: float) -> Run:
        run, deadline = Run(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            message = ForwardMsg()
            message.ParseFromString(data)
            kind = message.WhichOneof("type")
            if kind == "new_session":
                self.session_id = message.new_session.initialize.session_id or self.session_id
                self.page_hash = message.new_session.page_script_hash or self.page_hash
            elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                element = message.delta.new_element
                what = element.WhichOneof("type")
                if what == "alert":
                    run.alerts.append(element.alert.body)
                elif what == "heading":
                    run.titles.append(element.heading.body)
                else:
                    run.widgets.setdefault(what, []).append(getattr(element, what))
            elif kind == "script_finished":
                run.finished = True
                return run
        return run

    def widget(self, kind: str, label: str):
        return next(w for w in self.last.widgets.get(kind, []) if w.label == label)

    def submit_password(self, password: str, timeout: float = 60) -> Run:
        """Fill the password box and press Enter, as the form does."""
        box, button = self.widget("text_input", "Password"), self.widget("button", "Enter")
        text = BackMsg().rerun_script.widget_states.widgets.add()
        text.id, text.string_value = box.id, password
        press = BackMsg().rerun_script.widget_states.widgets.add()
        press.id, press.trigger_value = button.id, True
        return self.rerun([text, press], timeout)

    def upload(self, data: bytes, name: str = "export.json") -> int:
        """PUT a file to the upload route under this session's id, as the file uploader does. Returns the status
        (or 0 when the server closed the connection before answering)."""
        file_id = f"file-{time.monotonic_ns()}"
        try:
            response = self.http.put(
                f"{self.url}/_stcore/upload_file/{self.session_id}/{file_id}",
                files={"file": (name, data, "application/json")},
                headers={"X-Xsrftoken": self.http.cookies.get("_streamlit_xsrf", "")},
                timeout=60,
            )
        except requests.ConnectionError:
            return 0
        return response.status_code

    def close(self) -> None:
        self.ws.close()
        self.http.close()


def server_rss_mb(pid: int) -> float:
    """Resident memory of a process (and its children: `streamlit run` is one process), in MB."""
    for line in open(f"/proc/{pid}/status", encoding="ascii"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")
