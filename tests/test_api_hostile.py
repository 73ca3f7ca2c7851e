"""Hostile requests against a real `streamlit run app.py` (demo model, no API_KEY, a small context), over real
HTTP: each is refused quickly with OpenAI's error shape naming the field, and the server goes on serving."""

from __future__ import annotations

import json
import socket
import threading
import time

import openai
import pytest
import requests

from tests.browser import start_streamlit
from tests.test_api import BASE, stop, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.model]
QUICK_S = 5  # "quickly": a refusal comes before any model work, so well within this even on a busy CPU
BODY_DEADLINE_S = 3  # REQUEST_TIMEOUT_S for this server, which bounds how long a body may take to arrive
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, url = start_streamlit(
        "app.py",
        tmp_path_factory.mktemp("data"),
        {"CONTEXT_LENGTH": "512", "REQUEST_TIMEOUT_S": str(BODY_DEADLINE_S), "API_KEY": "", "APP_PASSWORD": ""},
    )
    wait_healthy(url)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


def post(url: str, body=None, raw: bytes | None = None, **headers) -> tuple[requests.Response, float]:
    """POST to /v1/chat/completions (or the path in `url`); the response and the seconds it took."""
    headers = {"Content-Type": "application/json", **{k.replace("_", "-"): v for k, v in headers.items()}}
    data = raw if raw is not None else json.dumps(body).encode()
    started = time.perf_counter()
    response = requests.post(url, data=data, headers=headers, timeout=60)
    return response, time.perf_counter() - started


def refused(answer: tuple[requests.Response, float], status: int, param: str | None = None) -> dict:
    response, seconds = answer
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    assert seconds < QUICK_S, f"{seconds:.1f} s"
    return error


def chat_url(server: str) -> str:
    return f"{server}/v1/chat/completions"


def test_120000_stop_strings_are_refused_at_once(server):
    refused(post(chat_url(server), {"model": BASE, "messages": HI, "stop": ["x"] * 120_000}), 400, "stop")


def test_a_200k_character_stop_and_100k_short_ones_are_refused_at_once(server):
    body = {"model": BASE, "messages": HI, "stop": ["x" * 200_000] + ["y"] * 100_000}
    refused(post(chat_url(server), body), 400, "stop")
    refused(post(chat_url(server), {"model": BASE, "messages": HI, "stop": "x" * 200_000}), 400, "stop")


@pytest.mark.parametrize("count", [10_000, 5_000])
def test_thousands_of_messages_past_the_bound_are_refused_at_once(server, count):
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(count - 1)] + HI
    error = refused(post(chat_url(server), {"model": BASE, "messages": messages}), 400, "messages")
    assert "2048" in error["message"]


def test_messages_past_the_total_text_bound_are_refused(server):
    messages = [{"role": "user", "content": "word " * 120_000}] * 2  # 1.2 million characters
    refused(post(chat_url(server), {"model": BASE, "messages": messages}), 400, "messages")


def test_2048_messages_within_the_bounds_are_trimmed_to_the_context_and_answered(client):
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(2047)] + HI
    started = time.perf_counter()
    answer = client.chat.completions.create(model=BASE, messages=messages, max_tokens=2, temperature=0)
    assert answer.usage.prompt_tokens <= 512 - 2 and answer.choices[0].message.content is not None
    assert time.perf_counter() - started < 120  # the prefill of at most one (small) context, then 2 tokens


@pytest.mark.parametrize(
    "origin, content_type, status",
    [
        ("https://evil.example", "text/plain", 403),  # the "simple" cross-site POST a page can send unasked
        ("null", "application/json", 403),  # a sandboxed frame or a local file's page
        ("https://evil.example", "application/json", 403),
        ("http://localhost.evil.example", "application/json", 403),
        (None, "text/plain", 415),  # no page behind it, but not JSON
        (None, "application/x-www-form-urlencoded", 415),  # curl -d's default
    ],
)
def test_cross_site_and_non_json_posts_are_refused(server, origin, content_type, status):
    headers = {"Content-Type": content_type} | ({"Origin": origin} if origin else {})
    body = json.dumps({"model": BASE, "messages": HI, "max_tokens": 2}).encode()
    started = time.perf_counter()
    response = requests.post(chat_url(server), data=body, headers=headers, timeout=30)
    error = refused((response, time.perf_counter() - started), status)
    assert error["code"] == ("cross_origin_refused" if status == 403 else "unsupported_media_type")


def test_the_apps_own_origin_is_answered(server):
    answer = post(chat_url(server), {"model": BASE, "messages": HI, "max_tokens": 2}, Origin=server)[0]
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.parametrize(
    "path, raw, param",
    [
        (
            "chat/completions",
            b'{"model": "BASE", "messages": [{"role": "user", "content": "a\\ud800"}]}',
            "messages.0.content",
        ),
        (
            "chat/completions",
            b'{"model": "BASE", "messages": [{"role": "user", "content": "\\udfff"}]}',
            "messages.0.content",
        ),
        ("chat/completions", b'{"model": "BASE\\ud800", "messages": [{"role": "user", "content": "hi"}]}', "model"),
        (
            "chat/completions",
            b'{"model": "BASE", "messages": [{"role": "user", "content": "hi"}], "stop": ["\\udc00"]}',
            "stop.0",
        ),
        ("embeddings", b'{"model": "all-MiniLM-L6-v2", "input": ["ok", "\\ud800"]}', "input.1"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(server, path, raw, param):
    raw = raw.replace(b"BASE", BASE.encode())  # JSON escapes as they are sent: json.dumps would pair or refuse them
    refused(post(f"{server}/v1/{path}", raw=raw), 400, param)


@pytest.mark.parametrize(
    "field, value",
    [("max_tokens", True), ("temperature", True), ("seed", False), ("top_k", "5"), ("n", True), ("stream", "yes")],
)
def test_booleans_and_strings_are_not_numbers(server, field, value):
    refused(post(chat_url(server), {"model": BASE, "messages": HI, field: value}), 400, field)


def test_a_wrong_method_gets_405_not_the_page(server):
    started = time.perf_counter()
    response = requests.get(chat_url(server), timeout=30)
    error = refused((response, time.perf_counter() - started), 405)
    assert response.headers["allow"] == "POST" and error["code"] == "method_not_allowed"
    assert "<html" not in response.text.lower()


def test_unknown_routes_and_models_are_typed_errors_for_the_client(server, client):
    for method in ("GET", "POST", "DELETE"):
        started = time.perf_counter()
        response = requests.request(method, f"{server}/v1/batches", timeout=30)
        assert refused((response, time.perf_counter() - started), 404)["code"] == "unknown_url"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    model = client.models.retrieve(BASE)
    assert isinstance(model, openai.types.Model) and model.id == BASE and model.owned_by == "llama-studio"
    assert client.models.retrieve("team:ai-standards").id == "team:ai-standards"


def slow_request(port: int, body: bytes, interval_s: float, send_body: bool = True) -> tuple[bytes, float]:
    """Headers at once, then the body one byte every `interval_s` (or never): the answer and when it came."""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    done = threading.Event()

    def trickle():
        for byte in body if send_body else b"":
            if done.wait(interval_s):
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return

    started = time.perf_counter()
    sock.sendall(head)
    threading.Thread(target=trickle, daemon=True).start()
    try:
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < content_length(answer):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
        return answer, time.perf_counter() - started
    finally:
        done.set()
        sock.close()


def content_length(answer: bytes) -> int:
    head = answer.partition(b"\r\n\r\n")[0].lower()
    return int(head.partition(b"content-length:")[2].split(b"\r\n")[0] or 0)


@pytest.mark.parametrize("send_body", [True, False])
def test_a_body_sent_one_byte_at_a_time_is_cut_off_at_the_deadline(server, send_body):
    port = int(server.rsplit(":", 1)[1])
    body = json.dumps({"model": BASE, "messages": HI, "max_tokens": 2}).encode()
    answer, seconds = slow_request(port, body, 0.3, send_body)
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 408 " in status_line, answer[:300]
    assert b'"code":"request_timeout"' in rest.replace(b" ", b"")
    assert BODY_DEADLINE_S - 0.5 < seconds < BODY_DEADLINE_S + QUICK_S


def test_after_all_that_the_server_still_answers(server, client):
    assert requests.get(f"{server}/health", timeout=10).status_code == 200
    started = time.perf_counter()
    answer = client.chat.completions.create(model=BASE, messages=HI, max_tokens=8, temperature=0)
    assert answer.choices[0].message.content and time.perf_counter() - started < 60


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/responses"])
def test_a_non_streamed_answer_whose_client_leaves_while_it_waits_for_a_row_is_never_computed(tmp_path, path):
    """One row (MAX_BATCH_SIZE=1) held by a long streamed answer; a non-streamed request queued behind it and its
    connection closed: it is dropped while it waits, so it is never prefilled once the row frees (it used to be
    noticed only at its first token, after its whole prefill)."""
    proc, url = start_streamlit("app.py", tmp_path / "data", {"MAX_BATCH_SIZE": "1", "API_KEY": "", "APP_PASSWORD": ""})
    try:
        wait_healthy(url)
        prompt = {"/v1/completions": {"prompt": "Once"}, "/v1/responses": {"input": "Hi"}}.get(path, {"messages": HI})
        tokens = {"/v1/responses": "max_output_tokens"}.get(path, "max_tokens")
        story = {"model": BASE, "stream": True, "max_tokens": 900, "messages": [{"role": "user", "content": "A saga."}]}
        story["logit_bias"] = {"0": -100, "2": -100}  # no end-of-text: it holds the row for all 900 tokens
        with requests.post(f"{url}/v1/chat/completions", json=story, stream=True, timeout=60) as held:
            lines = (line for line in held.iter_lines() if line)
            next(lines), next(lines)  # decoding: the one row is taken
            prefilled = health(url)["prompts_prefilled"]
            body = json.dumps({"model": BASE, tokens: 64, **prompt}).encode()
            port = int(url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                time.sleep(1.5)  # queued behind the story
            time.sleep(1.5)  # gone: noticed within DISCONNECT_CHECK_S while it still waits
        steps, deadline = -1, time.monotonic() + 30  # the story's client left too: the row frees at its next step
        while steps != (steps := health(url)["decode_steps"]) and time.monotonic() < deadline:
            time.sleep(1.0)
        assert health(url)["prompts_prefilled"] == prefilled  # the request that left was never fed to the model
        answer = requests.post(f"{url}{path}", json={"model": BASE, tokens: 16, **prompt}, timeout=60)
        assert answer.status_code == 200 and health(url)["prompts_prefilled"] == prefilled + 1
    finally:
        stop(proc)


def health(url: str) -> dict:
    return requests.get(f"{url}/health", timeout=10).json()
