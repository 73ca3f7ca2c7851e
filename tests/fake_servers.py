"""Local HTTP servers that play outside services badly: refusals, stalls, cut streams."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _chunk(text: str) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
    event = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}
    body = f"data: {json.dumps(event)}\n\n".encode()
    return f"{len(body):x}\r\n".encode() + body + b"\r\n"


class OpenAIPlayer(BaseHTTPRequestHandler):
    """The first path segment picks the behaviour: /ok401/v1/..., /stall/v1/..., /cut/v1/..."""

    protocol_version = "HTTP/1.1"
    seen_auth: list[str] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._json(
            200, {"object": "list", "data": [{"id": "alpha", "object": "model"}, {"id": "beta", "object": "model"}]}
        )

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        OpenAIPlayer.seen_auth.append(self.headers.get("Authorization", ""))
        mode = self.path.strip("/").split("/")[0]
        if mode == "unauthorized":
            return self._json(401, {"error": {"message": "Invalid API key", "type": "invalid_request_error"}})
        if mode == "missing":
            return self._json(404, {"error": {"message": "model not found", "type": "invalid_request_error"}})
        if mode == "busy":
            return self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        if mode == "stall":
            time.sleep(6)
            return self._json(500, {"error": {"message": "too late"}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for word in ("Half ", "an ", "answer"):
            self.wfile.write(_chunk(word))
            self.wfile.flush()
            time.sleep(0.05)
        if mode == "cut":  # drop the connection mid-body: no final chunk, no [DONE]
            self.wfile.write(b"5\r\nda")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if mode == "nofinish":  # a clean end of body, but no finish_reason ever came
            self.wfile.write(b"0\r\n\r\n")
            return
        if mode == "ok":  # a well-behaved end: finish_reason, [DONE], end of body
            body = json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": "m",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
            )
            for event in (f"data: {body}\n\n".encode(), b"data: [DONE]\n\n"):
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return


def start(handler=OpenAIPlayer) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
