"""The `openai` backend against a real `transformers serve` and against misbehaving local servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from streamlit.testing.v1 import AppTest

from core.settings import Settings
from llm.config import ServerConfig
from llm.interface import BackendError
from llm.openai_backend import OpenAIBackend
from llm.options import GenerationOptions
from tests import fake_servers
from tests.conftest import MODELS_DIR, free_port

GREEDY = GenerationOptions(temperature=0, max_new_tokens=20)
SECRET = "sk-test-secret-value-123"

SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def served(demo_model, tmp_path_factory):
    """`transformers serve` running the bundled demo model on CPU: a real OpenAI-compatible server."""
    port = free_port()
    folder = str(MODELS_DIR / "smollm2-135m-instruct")
    hub = tmp_path_factory.mktemp("hf-hub")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
            folder,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read().decode()[-3000:])
            time.sleep(0.5)
    yield {"url": f"http://127.0.0.1:{port}/v1", "model": folder}
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def player():
    server, url = fake_servers.start()
    yield url
    server.shutdown()


def backend_for(url: str, model: str = "alpha", timeout: float = 30) -> OpenAIBackend:
    return OpenAIBackend(
        ServerConfig(openai_base_url=url, openai_model=model, openai_api_key=SECRET, request_timeout_s=timeout)
    )


def chat(backend, messages, options=GREEDY):
    stream = backend.stream(messages, options)
    return list(stream), stream.stats


@pytest.mark.model
def test_streamed_multi_turn_chat_through_a_real_server(served):
    backend = backend_for(served["url"], served["model"])
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    pieces, stats = chat(backend, messages)
    assert len(pieces) > 2 and "Paris" in "".join(pieces)
    assert stats.prompt_tokens > 10 and stats.completion_tokens > 2 and stats.first_token_s is not None
    assert stats.finish_reason in {"stop", "length"}
    messages += [{"role": "assistant", "content": "".join(pieces)}, {"role": "user", "content": "And of Italy?"}]
    pieces2, stats2 = chat(backend, messages)
    assert pieces2 and stats2.prompt_tokens > stats.prompt_tokens  # the whole history went to the server


@pytest.mark.model
def test_chat_page_on_the_openai_backend(served, monkeypatch):
    monkeypatch.setenv("LLM_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", served["url"])
    monkeypatch.setenv("OPENAI_MODEL", served["model"])
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    at = AppTest.from_file("../app.py", default_timeout=180).run()
    at.slider(key="chat.temperature").set_value(0.0)
    at.number_input(key="chat.max_new").set_value(16)
    at.text_area(key="chat.system").set_value("You are a helpful assistant.")
    for text in ("What is the capital of France?", "Thanks! And of Germany?"):
        at.chat_input(key="chat.input").set_value(text).run()
        assert not at.exception and not at.error
    roles = [m.name for m in at.chat_message]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert "Paris" in at.chat_message[1].markdown[0].value
    assert "tokens used" in at.chat_message[3].caption[-1].value
    page_text = " ".join(str(e.value) for e in at.main.children.values() if hasattr(e, "value"))
    assert SECRET not in page_text


def test_models_are_listed_from_v1_models(player):
    assert backend_for(f"{player}/ok/v1").list_models() == ["alpha", "beta"]
    assert backend_for(f"{player}/ok/v1", model="").resolve_model(None) == "alpha"


@pytest.mark.slow  # the client's connection retries, with their back-off
def test_nothing_listening_says_so():
    backend = backend_for(f"http://127.0.0.1:{free_port()}/v1", timeout=3)
    with pytest.raises(BackendError, match="Cannot reach the server .* OPENAI_BASE_URL"):
        chat(backend, [{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    "mode, words",
    [
        ("unauthorized", "refused the API key \\(401\\). Set OPENAI_API_KEY"),
        ("missing", "404: no model named 'alpha'"),
        pytest.param("busy", "rate limiting requests \\(429\\)", marks=pytest.mark.slow),  # retried with back-off
    ],
)
def test_refusals_have_their_own_message_and_never_show_the_key(player, mode, words):
    with pytest.raises(BackendError, match=words) as info:
        chat(backend_for(f"{player}/{mode}/v1"), [{"role": "user", "content": "hi"}])
    assert SECRET not in str(info.value)
    assert fake_servers.OpenAIPlayer.seen_auth[-1] == f"Bearer {SECRET}"  # the key was sent, only to the server


@pytest.mark.slow  # seconds of waiting (a lock, a rate limit, a timeout): not in the fast tier
def test_a_server_that_stalls_past_the_timeout(player):
    started = time.time()
    with pytest.raises(BackendError, match="did not answer within 1 s"):
        chat(backend_for(f"{player}/stall/v1", timeout=1), [{"role": "user", "content": "hi"}])
    assert time.time() - started < 15  # bounded retries


@pytest.mark.parametrize("mode", ["cut", "nofinish"])
def test_a_stream_cut_half_way_keeps_what_arrived(player, mode):
    got = []
    stream = backend_for(f"{player}/{mode}/v1").stream([{"role": "user", "content": "hi"}], GREEDY)
    with pytest.raises(BackendError, match="What arrived is kept"):
        for piece in stream:
            got.append(piece)
    assert "".join(got) == "Half an answer"
    assert stream.stats.finish_reason == "error"


def test_cut_stream_in_the_page_is_kept_and_marked(player, monkeypatch):
    monkeypatch.setenv("LLM_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{player}/cut/v1")
    monkeypatch.setenv("OPENAI_MODEL", "alpha")
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    at.chat_input(key="chat.input").set_value("hi").run()
    assert not at.exception
    assert "stopped in the middle" in at.error[0].value
    assert at.session_state["chat.messages"][-1]["content"] == "Half an answer"
    assert at.session_state["chat.messages"][-1]["cut"] is True
    at.run()  # the app keeps serving, and the kept answer renders marked as cut
    assert "cut off" in at.chat_message[1].caption[0].value


def test_the_key_never_appears_in_settings_output():
    settings = Settings(openai_api_key=SECRET)
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


def test_personas_on_the_openai_backend(player, tmp_path):
    """A LoRA persona is the server's model of that name; prompt-only personas work as they are."""
    import json
    import shutil

    from personas.registry import PersonaRegistry
    from tests.conftest import ROOT

    for name, served in (("served", "beta"), ("not-served", None)):
        shutil.copytree(ROOT / "adapters" / "captain-quill", tmp_path / name)
        card = json.loads((tmp_path / name / "persona.json").read_text())
        (tmp_path / name / "persona.json").write_text(json.dumps({**card, "served_model": served}))
    registry = PersonaRegistry(backend_for(f"{player}/ok/v1"), tmp_path, ROOT / "personas.json")
    assert registry.get("served").available and registry.get("served").model == "beta"
    assert "--lora-modules not-served=adapters/not-served" in registry.get("not-served").problem
    assert registry.get("dummy").available and registry.get("dummy").model is None


@pytest.mark.model
def test_persona_page_on_the_openai_backend(served, monkeypatch):
    monkeypatch.setenv("LLM_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", served["url"])
    monkeypatch.setenv("OPENAI_MODEL", served["model"])
    at = AppTest.from_file("../pages/1_Personas.py", default_timeout=180).run()
    assert not at.exception
    assert "captain-quill" not in at.selectbox(key="persona.current").options  # transformers serve has no LoRA
    assert any("--lora-modules captain-quill" in c.value for c in at.sidebar.caption)
    at.selectbox(key="persona.current").set_value("dummy").run()
    at.number_input(key="persona.max_new").set_value(12)
    at.chat_input(key="persona.input").set_value("Hello!").run()
    assert not at.exception and not at.error
    assert [m.name for m in at.chat_message] == ["assistant", "user", "assistant"]  # greeting, question, answer
    assert "tokens used" in at.chat_message[-1].caption[-1].value


@pytest.mark.model
def test_search_page_on_the_openai_backend(served, monkeypatch):
    from tests import search_servers

    player, url = search_servers.start()
    try:
        monkeypatch.setenv("LLM_BACKEND", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", served["url"])
        monkeypatch.setenv("OPENAI_MODEL", served["model"])
        monkeypatch.setenv("GOOGLE_API_KEY", "AIza-x")
        monkeypatch.setenv("GOOGLE_CSE_ID", "cx-x")
        monkeypatch.setenv("GOOGLE_CSE_ENDPOINT", url + "/")
        at = AppTest.from_file("../pages/2_Search_answers.py", default_timeout=180).run()
        at.number_input(key="search.max_new").set_value(16)
        at.chat_input(key="search.input").set_value("How tall is the Eiffel Tower?").run()
        assert not at.exception and not at.error
        answer = at.session_state["search.messages"][-1]
        assert answer["content"] and answer["sources"][0]["link"] == "https://example.com/eiffel"
    finally:
        player.shutdown()


# --- credentials inside OPENAI_BASE_URL -----------------------------------------------------------

PASSWORD = "pa55-in-the-url-789"
QUERY_SECRET = "qs-secret-456"


class BasicAuthServer(fake_servers.OpenAIPlayer):
    """A proxy-style server that wants the URL's user and password (HTTP basic auth). /echo/ answers 400 with
    everything it was sent, the way careless servers put the request into their error text."""

    def do_GET(self):
        self._json(200, {"object": "list", "data": [{"id": "alpha", "object": "model"}]})

    def do_POST(self):
        import base64
        import json

        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        sent = self.headers.get("Authorization", "")
        decoded = base64.b64decode(sent.removeprefix("Basic ")).decode() if sent.startswith("Basic ") else ""
        if decoded != f"alice:{PASSWORD}":
            return self._json(401, {"error": {"message": "who are you?"}})
        if self.path.startswith("/echo/"):
            return self._json(400, {"error": {"message": f"bad request {self.path} from {decoded}: {body[:50]!r}"}})
        chunks = [{"delta": {"content": "Hello"}, "finish_reason": None}, {"delta": {}, "finish_reason": "stop"}]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for choice in chunks:
            event = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "alpha",
                "choices": [{"index": 0, **choice}],
            }
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


@pytest.fixture(scope="module")
def basic_auth_server():
    server, url = fake_servers.start(BasicAuthServer)
    yield url.replace("http://", f"http://alice:{PASSWORD}@")
    server.shutdown()


@pytest.mark.parametrize(
    "url, shown",
    [
        (f"http://alice:{PASSWORD}@127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        (f"https://:{PASSWORD}@api.example.com/v1/", "https://api.example.com/v1/"),
        (f"http://h/v1?api_key={QUERY_SECRET}&x=1#frag", "http://h/v1?***"),
        (f"http://h/v1?{QUERY_SECRET}", "http://h/v1?***"),
        (f"http://u:{PASSWORD}@[::1]:9/v1", "http://[::1]:9/v1"),
        (f"http://u:{PASSWORD}@h:notaport/v1", "(an invalid URL)"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ],
)
def test_the_display_form_of_a_url_has_no_secrets(url, shown):
    from core.urls import display_url

    assert display_url(url) == shown


def test_credentials_in_the_url_are_used_but_never_shown(basic_auth_server):
    backend = backend_for(f"{basic_auth_server}/ok/v1")
    pieces, stats = chat(backend, [{"role": "user", "content": "hi"}])
    assert "".join(pieces) == "Hello" and stats.finish_reason == "stop"  # the server got the password
    assert backend.list_models() == ["alpha"]
    shown = f"{backend.name} {backend.where} {backend.notes}"
    assert PASSWORD not in shown and "alice" not in shown and "127.0.0.1" in backend.name


@pytest.mark.parametrize(
    "url, words",
    [
        ("{server}/echo/v1", "rejected the request \\(400"),
        (
            "{server}/echo/v1?api_key=" + QUERY_SECRET,
            "rejected the request \\(400: .*bad request /echo/v1/\\?\\*\\*\\*",
        ),
        pytest.param(  # nothing listening: the client's connection retries, with their back-off
            f"http://alice:{PASSWORD}@127.0.0.1:{{free}}/v1", "Cannot reach the server at http://127.0.0.1:", marks=SLOW
        ),
        pytest.param(
            f"http://alice:{PASSWORD}@127.0.0.1:{{free}}/v1?key={QUERY_SECRET}",
            "Cannot reach the server at http://127.0.0.1:\\d+/v1\\?\\*\\*\\*",
            marks=SLOW,
        ),
    ],
)
def test_error_text_never_carries_the_urls_secrets(basic_auth_server, url, words):
    backend = backend_for(url.format(server=basic_auth_server, free=free_port()), timeout=3)
    with pytest.raises(BackendError, match=words) as info:
        chat(backend, [{"role": "user", "content": f"my text {PASSWORD}"}])
    for secret in (PASSWORD, QUERY_SECRET, SECRET, "alice"):
        assert secret not in str(info.value)


def test_the_page_and_the_saved_conversation_never_carry_the_urls_password(basic_auth_server, monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{basic_auth_server}/ok/v1")
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    at.chat_input(key="chat.input").set_value("hello").run()
    assert not at.exception and not at.error
    answer = at.session_state["chat.messages"][-1]
    assert answer["content"] == "Hello" and PASSWORD not in answer["model"] and "127.0.0.1" in answer["model"]
    shown = " ".join(str(getattr(e, "value", "")) for e in [*at.main.children.values(), *at.sidebar.children.values()])
    shown += " ".join(c.value for c in at.sidebar.caption)
    assert "Model: server default @ 127.0.0.1" in shown and PASSWORD not in shown
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("conversations.sqlite3*"))
    assert b"Hello" in stored and PASSWORD.encode() not in stored and b"alice" not in stored
