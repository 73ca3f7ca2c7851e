"""A client that leaves a team run (`team:<name>` on /v1/chat/completions) stops every row of it at the next
step, streamed or not: through a real `streamlit run app.py` with the demo model and the shipped teams.json.

Both requests are dropped while the coordinator plans, long before any text of the answer: the time a team
sends nothing (minutes on a slow machine) is when a client that left was not noticed."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.browser import start_streamlit
from tests.test_api import decode_steps, stop, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.model]
TEAM = "team:ai-standards"
TASK = "Should a hospital chatbot log patient questions?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, url = start_streamlit("app.py", tmp_path_factory.mktemp("data"), {"CONTEXT_LENGTH": "1024"})
    wait_healthy(url)
    yield url
    log = stop(proc)
    assert "Traceback" not in log, log[-3000:]


def body(stream: bool) -> dict:
    return {
        "model": TEAM,
        "stream": stream,
        "max_tokens": 16,
        "temperature": 0,
        "messages": [{"role": "user", "content": TASK}],
    }


def wait_decoding(url: str, on_wait=lambda: time.sleep(0.2)) -> None:
    """Until the batch has made two more steps (the plan's first constrained step is slow: it is not the one
    the run is dropped in)."""
    start, deadline = decode_steps(url), time.time() + 120
    while decode_steps(url) < start + 2:
        assert time.time() < deadline, "the team run never started decoding"
        on_wait()


def assert_settles(url: str) -> None:
    """No more decode steps: the step in flight ends, then every row of the run has left the batch."""
    time.sleep(2.0)
    settled = decode_steps(url)
    time.sleep(3.0)
    assert decode_steps(url) == settled


def test_a_streamed_team_run_stops_computing_when_its_client_leaves(server):
    with requests.post(f"{server}/v1/chat/completions", json=body(stream=True), stream=True, timeout=60) as r:
        assert r.status_code == 200
        lines = (line for line in r.iter_lines(decode_unicode=True) if line)
        first = json.loads(next(lines).removeprefix("data: "))
        assert first["choices"][0]["delta"]["role"] == "assistant"

        def no_answer_text_yet() -> None:  # while the team plans, empty chunks keep coming
            chunk = json.loads(next(lines).removeprefix("data: "))
            assert chunk["choices"][0]["delta"] == {"content": ""}

        wait_decoding(server, no_answer_text_yet)
    # the connection is closed here, while the coordinator plans
    assert_settles(server)


def test_a_team_run_not_streamed_stops_computing_when_its_client_leaves(server):
    where = urlsplit(server)
    payload = json.dumps(body(stream=False)).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(head + payload)
        wait_decoding(server)
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)  # nothing has come back yet: the answer is sent whole, at the end
    assert_settles(server)
    # the run let go of everything it held: a new answer comes at once
    answer = requests.post(
        f"{server}/v1/chat/completions",
        json={"model": "SmolLM2-135M-Instruct", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] > 0
