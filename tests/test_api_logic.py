"""The API's pure translation steps: messages, options, stop strings, model ids, the bounds and checks on a
request body, and the /v1 dispatch's refusals (no model, no server process)."""

from __future__ import annotations

import random
import time

import pytest
from pydantic import ValidationError

from core.text import surrogate_at
from personas.registry import BASE, Persona, PersonaCard
from server.api.body import first_problem
from server.api.catalog import base_id, targets
from server.api.errors import ApiError
from server.api.messages import to_messages
from server.api.schemas import (
    MAX_CHARS,
    MAX_ITEMS,
    MAX_STOP_CHARS,
    MAX_STOPS,
    ChatMessage,
    ChatRequest,
    EmbeddingRequest,
)
from server.api.stops import StopStrings
from server.api.translate import to_options


def request(**fields) -> ChatRequest:
    return ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


@pytest.mark.parametrize(
    "pieces, stops, expected, hit",
    [
        (["Hello", " wor", "ld. Bye"], ["world"], "Hello ", True),
        (["Hel", "lo"], ["lo w"], "Hello", False),  # a held-back tail that never became the stop string
        (["ab", "cSTO", "P de"], ["STOP", "zz"], "abc", True),
        (["STOP"], ["STOP"], "", True),
        (["one"], [], "one", False),
        (["xab", "cd"], ["bcd", "abc"], "x", True),  # the earliest start wins, whichever stop ends first
        (["a", "bcd"], ["bc", "abcd"], "", True),
        (["ab", "c"], ["c", "c", ""], "ab", True),  # repeats and empty strings change nothing
    ],
)
def test_stop_strings_cut_across_pieces(pieces, stops, expected, hit):
    closed = []

    def source():
        try:
            yield from pieces
        finally:
            closed.append(True)

    stopper = StopStrings(source(), stops)
    assert "".join(stopper) == expected and stopper.hit == hit
    assert closed  # ending early closes the source (which stops its computation)


def test_system_messages_join_and_a_persona_prompt_fills_in_only_when_none_came():
    chat = [ChatMessage(role="user", content="hi")]
    assert to_messages(chat, "I am Quill.")[0] == {"role": "system", "content": "I am Quill."}
    given = [ChatMessage(role="system", content="A"), ChatMessage(role="developer", content="B"), *chat]
    assert to_messages(given, "I am Quill.") == [
        {"role": "system", "content": "A\n\nB"},
        {"role": "user", "content": "hi"},
    ]
    parts = ChatMessage.model_validate(
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    )
    assert to_messages([parts], None) == [{"role": "user", "content": "ab"}]


@pytest.mark.parametrize(
    "messages, param",
    [
        ([{"role": "system", "content": "only a system prompt"}], "messages"),
        ([{"role": "tool", "content": "x"}], "messages.0.role"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "messages.0.content"),
    ],
)
def test_messages_that_cannot_be_answered_are_refused(messages, param):
    with pytest.raises(ApiError) as caught:
        to_messages([ChatMessage.model_validate(m) for m in messages], None)
    assert caught.value.status == 400 and caught.value.param == param


def test_options_take_openais_defaults_and_vllms_extras():
    options = to_options(request())
    assert (options.temperature, options.top_p, options.top_k, options.repetition_penalty) == (1.0, 1.0, 0, 1.0)
    options = to_options(request(max_completion_tokens=7, max_tokens=9, top_k=-1, repetition_penalty=1.2, seed=3))
    assert (options.max_new_tokens, options.top_k, options.repetition_penalty, options.seed) == (7, 0, 1.2, 3)
    for bad, param in (({"top_p": 0}, "top_p"), ({"seed": -1}, "seed"), ({"max_tokens": 10**6}, "max_tokens")):
        with pytest.raises(ApiError) as caught:
            to_options(request(**bad))
        assert caught.value.param == param


def test_unsupported_fields_are_named():
    assert request(n=2).unsupported() is None  # n is served (as rows of one batch), up to MAX_CHOICES
    assert request(functions=[{"name": "f"}]).unsupported()[0] == "functions"  # tools are supported; this is not
    assert request(n=1, tools=[], logprobs=False, response_format={"type": "text"}).unsupported() is None


class Local:
    name, base_name = "SmolLM2-135M-Instruct (demo)", "SmolLM2-135M-Instruct (demo)"
    is_server = False


def test_model_ids_are_the_base_and_available_personas():
    card = PersonaCard(display_name="Quill", system_prompt="Arr.")
    personas = [
        BASE,
        Persona("quill", card, "lora", model="quill"),
        Persona("tutor", card, "prompt"),
        Persona("broken", card, "lora", problem="corrupt"),
    ]
    found = targets(Local(), personas)
    assert list(found) == ["SmolLM2-135M-Instruct", "quill", "tutor"]
    assert found["quill"].backend_model == "quill" and found["tutor"].backend_model is None
    assert found["tutor"].system_prompt == "Arr." and found["quill"].parent == "SmolLM2-135M-Instruct"


def test_a_local_folder_is_never_shown_as_a_model_id():
    class Folder:
        name = "/home/someone/models/Meta-Llama-3.1-8B-Instruct"

    class Hub:
        name = "LLM-Research/Meta-Llama-3.1-8B-Instruct"

    assert base_id(Folder()) == "Meta-Llama-3.1-8B-Instruct"
    assert base_id(Hub()) == "LLM-Research/Meta-Llama-3.1-8B-Instruct"


def naive_stop(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    """Searching all the text so far after each piece, cutting at the earliest stop in it: what the streaming
    version must agree with (a stop that completes first wins over one that would start earlier but is not
    complete yet, as the model cannot take text back)."""
    text = ""
    for piece in pieces:
        text += piece
        found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
        if found:
            return text[: min(found)], True
    return text, False


def test_stop_strings_agree_with_cutting_the_whole_text():
    rng = random.Random(5)
    for _ in range(3000):
        text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 40)))
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 8))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        stops = ["".join(rng.choice("abc") for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 4))]
        stopper = StopStrings(iter(pieces), stops)
        assert ("".join(stopper), stopper.hit) == naive_stop(pieces, stops), (pieces, stops)


def test_sixteen_long_stop_strings_cost_time_linear_in_the_text():
    """The longest stops allowed, over a long answer given one character at a time: no search through what
    came before (120,000 stops once took 100 s)."""
    stops = [f"{i:02d}" + "z" * (MAX_STOP_CHARS - 2) for i in range(MAX_STOPS)]

    def seconds(chars: int) -> float:
        text = "abcdefghij" * (chars // 10)
        started = time.perf_counter()
        assert "".join(StopStrings(iter(text), stops)) == text
        return time.perf_counter() - started

    short, long = seconds(20_000), seconds(80_000)
    assert long < 3, f"{long:.2f} s for 80,000 characters"
    assert long < 4 * short * 2 + 0.2, (short, long)  # 4x the text, about 4x the time
    adversarial = [chr(98 + i) + "a" * (MAX_STOP_CHARS - 1) for i in range(MAX_STOPS)]  # each one fails late
    started = time.perf_counter()
    assert "".join(StopStrings(iter("a" * 20_000), adversarial)) == "a" * 20_000
    assert time.perf_counter() - started < 3


def problem(model, body: dict) -> tuple[str | None, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return first_problem(caught.value)


def chat(**fields) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.mark.parametrize(
    "body, param",
    [
        (chat(stop=["x"] * 120_000), "stop"),
        (chat(stop=["x" * 200_000] + ["y"] * 100_000), "stop"),
        (chat(stop=["y"] * (MAX_STOPS + 1)), "stop"),
        (chat(stop="x" * (MAX_STOP_CHARS + 1)), "stop"),
        (chat(stop=["ok", "x" * (MAX_STOP_CHARS + 1)]), "stop.1"),
        (chat(messages=[{"role": "user", "content": "hi"}] * 10_000), "messages"),
        (chat(messages=[{"role": "user", "content": "hi"}] * (MAX_ITEMS + 1)), "messages"),
        (chat(messages=[{"role": "user", "content": "x" * (MAX_CHARS // 2 + 1)}] * 2), "messages"),
        (
            chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}] * (MAX_ITEMS + 1)}]),
            "messages.0.content",
        ),
        (chat(messages=[{"role": "user", "content": 5}]), "messages.0.content"),
        (chat(messages=[{"role": "user", "content": [{"type": 1}]}]), "messages.0.content.0.type"),
        (chat(tools=[{}] * (MAX_ITEMS + 1)), "tools"),
    ],
)
def test_requests_past_their_bounds_are_refused_at_once_naming_the_field(body, param):
    started = time.perf_counter()
    assert problem(ChatRequest, body)[0] == param
    assert time.perf_counter() - started < 1


def test_requests_at_their_bounds_are_taken():
    body = chat(stop=["x" * MAX_STOP_CHARS] * MAX_STOPS, messages=[{"role": "user", "content": "hi"}] * MAX_ITEMS)
    assert len(ChatRequest.model_validate(body).stop_strings()) == MAX_STOPS
    assert ChatRequest.model_validate(chat(stop="END")).stop_strings() == ["END"]
    assert EmbeddingRequest.model_validate({"model": "m", "input": ["a"] * MAX_ITEMS}).texts() == ["a"] * MAX_ITEMS


@pytest.mark.parametrize(
    "body, param",
    [
        ({"input": ["a"] * (MAX_ITEMS + 1)}, "input"),
        ({"input": []}, "input"),
        ({"input": ["a", ""]}, "input"),
        ({"input": ["x" * (MAX_CHARS // 2 + 1)] * 2}, "input"),
        ({"input": [1, 2]}, "input.0"),
    ],
)
def test_embedding_inputs_past_their_bounds_are_refused(body, param):
    assert problem(EmbeddingRequest, {"model": "m", **body})[0] == param


NUMBERS = [
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "top_k",
    "repetition_penalty",
    "n",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
]


@pytest.mark.parametrize("field", NUMBERS)
@pytest.mark.parametrize("value", [True, False, "1", [1], {"value": 1}])
def test_numbers_are_strict_so_true_is_not_1(field, value):
    assert problem(ChatRequest, chat(**{field: value}))[0] == field


def test_a_float_field_still_takes_an_int_and_switches_are_strict():
    assert ChatRequest.model_validate(chat(temperature=1, top_p=1)).temperature == 1.0
    assert problem(ChatRequest, chat(max_tokens=2.0))[0] == "max_tokens"
    assert problem(ChatRequest, chat(stream="yes"))[0] == "stream"
    assert problem(ChatRequest, chat(stream_options={"include_usage": 1}))[0] == "stream_options.include_usage"
    assert problem(ChatRequest, chat(logprobs=1))[0] == "logprobs"


def test_lone_surrogates_are_found_where_they_are():
    assert surrogate_at(chat(messages=[{"role": "user", "content": "a\ud800"}])) == "messages.0.content"
    assert surrogate_at({"model": "m", "input": ["ok", "\udfff"]}) == "input.1"
    assert surrogate_at({"stop": ["\udbff"], "model": "x"}) == "stop.0"
    assert surrogate_at({"surprise": {"\ud800": 1}}) == "surprise.\\ud800"  # a key; spelled so it can be sent
    assert surrogate_at(chat(messages=[{"role": "user", "content": "\U0001f600 \u00e9"}])) is None  # a pair is text
    deep: list = ["\ud800"]
    for _ in range(20_000):
        deep = [deep]
    assert surrogate_at({"tool_choice": deep}) == "tool_choice" + ".0" * 20_001  # iterative: no recursion limit


@pytest.fixture
def v1():
    """The API's routes in front of a catch-all page (as Streamlit's is), in process: only refusals are sent,
    so no model is needed."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from server.api.routes import api_routes

    async def page(request):
        return HTMLResponse("<html>the page</html>")

    app = Starlette(routes=[*api_routes(), Route("/{path:path}", page)])
    return TestClient(app, base_url="http://127.0.0.1:6006")


def refusal(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def test_a_wrong_method_or_an_unknown_v1_route_is_refused_in_openais_shape(v1):
    wrong = v1.get("/v1/chat/completions")
    assert refusal(wrong, 405)["code"] == "method_not_allowed" and wrong.headers["allow"] == "POST"
    assert v1.delete("/v1/models").headers["allow"] == "GET, HEAD"
    for method, path in (("GET", "/v1/batches"), ("POST", "/v1/images/generations"), ("PUT", "/v1"), ("GET", "/v1/")):
        assert refusal(v1.request(method, path), 404)["code"] == "unknown_url"
    assert v1.get("/somewhere").text == "<html>the page</html>"  # the page's own routes are untouched


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""])
def test_a_body_that_is_not_declared_json_is_refused(v1, content_type):
    response = v1.post("/v1/chat/completions", content=b'{"model": "m"}', headers={"content-type": content_type})
    assert "application/json" in refusal(response, 415)["message"]


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost.evil.example", "file://"])
def test_another_sites_page_is_refused_without_the_key(v1, origin):
    body = chat(max_tokens=True)
    error = refusal(v1.post("/v1/chat/completions", json=body, headers={"origin": origin}), 403)
    assert error["code"] == "cross_origin_refused" and "API_KEY" in error["message"]
    assert refusal(v1.get("/v1/models", headers={"origin": origin}), 403)["code"] == "cross_origin_refused"


def test_own_origins_pass_and_a_foreign_one_passes_with_the_key(v1, monkeypatch):
    from core.settings import get_settings

    body = chat(max_tokens=True)  # refused after the access checks: shows they passed
    for origin in ("http://localhost:6006", "http://127.0.0.1:8501", "http://[::1]:6006"):
        assert refusal(v1.post("/v1/chat/completions", json=body, headers={"origin": origin}), 400)["param"] == (
            "max_tokens"
        )
    monkeypatch.setenv("ALLOWED_HOSTS", "chat.example.com")
    monkeypatch.setenv("API_KEY", "k-123")
    get_settings.cache_clear()
    headers = {"origin": "https://chat.example.com", "authorization": "Bearer k-123"}
    assert refusal(v1.post("/v1/chat/completions", json=body, headers=headers), 400)["param"] == "max_tokens"
    headers["origin"] = "https://evil.example"  # with the right key a foreign page may call (it holds the key)
    assert refusal(v1.post("/v1/chat/completions", json=body, headers=headers), 400)["param"] == "max_tokens"
    del headers["authorization"]
    assert refusal(v1.post("/v1/chat/completions", json=body, headers=headers), 403)["code"] == "cross_origin_refused"
    headers["origin"] = "https://chat.example.com"
    assert refusal(v1.post("/v1/chat/completions", json=body, headers=headers), 401)["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "raw, param, code",
    [
        (b'{"model": "m", "messages": [{"role": "user", "content": "a\\ud800"}]}', "messages.0.content", None),
        (b'{"model": "m", "messages": [{"role": "user", "content": "\\udfff"}]}', "messages.0.content", None),
        (b'{"model": "\\ud800", "messages": []}', "model", None),
        (b'{"model": "m", "messages": [], "stop": ["\\udc00"]}', "stop.0", None),
        (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', None, "invalid_json"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}', None, "invalid_json"),
    ],
)
def test_text_that_is_not_unicode_is_refused_naming_the_field(v1, raw, param, code):
    response = v1.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    error = refusal(response, 400)
    assert error["param"] == param and error["code"] == (code or "invalid_value")


def test_a_declared_body_past_the_limit_is_refused_before_it_is_read(v1):
    headers = {"content-type": "application/json", "content-length": str(5 * 2**20)}
    assert refusal(v1.post("/v1/chat/completions", content=b"{}", headers=headers), 413)["code"] == "request_too_large"
