"""The OpenAI-compatible API on the page's own port, through the official `openai` client against a
real `streamlit run app.py` with the demo model."""

from __future__ import annotations

import base64
import json
import shutil
import time

import numpy
import openai
import pytest
import requests

from llm.options import GenerationOptions
from llm.prompts import conversation
from tests.browser import start_streamlit, stop, wait_healthy
from tests.concurrency import at_once
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.model]
BASE = "SmolLM2-135M-Instruct"
KEY = "test-api-key-4f9c"
QUILL_PROMPT = json.loads((ROOT / "adapters/captain-quill/persona.json").read_text())["system_prompt"]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """The shipped persona, plus one that fails its checks (corrupt weights): it must not be listed."""
    folder = tmp_path_factory.mktemp("adapters")
    shutil.copytree(ROOT / "adapters/captain-quill", folder / "captain-quill")
    shutil.copytree(ROOT / "adapters/captain-quill", folder / "broken")
    (folder / "broken/adapter_model.safetensors").write_bytes(b"not a safetensors file")
    return folder


@pytest.fixture(scope="module")
def api(tmp_path_factory, adapters):
    """A server with API_KEY set; yields (base url, first /health statuses, the process)."""
    proc, url = start_streamlit(
        "app.py",
        tmp_path_factory.mktemp("data"),
        {"API_KEY": KEY, "ADAPTERS_DIR": str(adapters), "CONTEXT_LENGTH": "1024"},
    )
    statuses = wait_healthy(url)
    yield url, statuses, proc
    log = stop(proc)
    assert KEY not in log  # the key never reaches the server's log


@pytest.fixture(scope="module")
def client(api):
    return openai.OpenAI(base_url=f"{api[0]}/v1", api_key=KEY, max_retries=0, timeout=120)


def ask(client, model=BASE, text="What is the capital of France?", **extra):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **extra)


def test_the_model_loads_when_the_server_starts_and_health_says_so(api):
    _, statuses, _ = api
    assert statuses[0] == 503 and statuses[-1] == 200  # loading began with the server, no page was opened


def test_models_lists_the_base_model_and_every_available_persona(client):
    models = {m.id: m for m in client.models.list()}
    assert BASE in models and "captain-quill" in models and "dummy" in models and "tutor" in models
    assert "broken" not in models  # failed its checks: not listed
    quill = models["captain-quill"].model_dump()
    assert quill["parent"] == BASE and quill["owned_by"] == "llama-studio"
    assert "all-MiniLM-L6-v2" in models


def test_greedy_answers_equal_the_in_process_backend(client, quill_backend):
    """The page calls backend.stream with these messages and options; the API must give the same text."""
    system = "You are a helpful assistant."
    options = GenerationOptions(temperature=0, max_new_tokens=24, repetition_penalty=1.1)
    for model, prompt in ((BASE, system), ("captain-quill", QUILL_PROMPT)):
        expected = "".join(
            quill_backend.stream(
                conversation(prompt, [{"role": "user", "content": "Who are you?"}]),
                options,
                model=None if model == BASE else model,
            )
        )
        messages = [{"role": "user", "content": "Who are you?"}]
        if model == BASE:
            messages.insert(0, {"role": "system", "content": system})  # a LoRA persona brings its own
        answer = client.chat.completions.create(
            model=model, messages=messages, temperature=0, max_tokens=24, extra_body={"repetition_penalty": 1.1}
        )
        assert answer.choices[0].message.content == expected
        assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0


def test_a_stream_equals_the_whole_answer_and_sends_usage_only_when_asked(api, client):
    poem = "Write a long poem about the sea."
    whole = ask(client, text=poem, temperature=0, max_tokens=16).choices[0].message.content
    chunks = list(ask(client, text=poem, temperature=0, max_tokens=16, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "length"
    with_usage = list(
        ask(client, text=poem, temperature=0, max_tokens=16, stream=True, stream_options={"include_usage": True})
    )
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens == 16
    raw = requests.post(
        f"{api[0]}/v1/chat/completions",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
        json={"model": BASE, "messages": [{"role": "user", "content": "Hi"}], "stream": True, "max_tokens": 4},
    )
    assert raw.text.rstrip().endswith("data: [DONE]")


def test_stop_strings_end_the_answer_before_them(client):
    whole = ask(client, text="Count from 1 to 10, separated by commas.", temperature=0, max_tokens=40)
    text = whole.choices[0].message.content
    cut = text[len(text) // 2 :][:3].strip() or text[-3:]
    stopped = ask(
        client, text="Count from 1 to 10, separated by commas.", temperature=0, max_tokens=40, stop=[cut, "zzz"]
    )
    assert stopped.choices[0].message.content == text[: text.find(cut)]
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.usage.completion_tokens < whole.usage.completion_tokens


def test_seeded_sampling_repeats(client):
    one = ask(client, temperature=0.9, seed=7, max_tokens=12, extra_body={"top_k": 40}).choices[0].message.content
    two = ask(client, temperature=0.9, seed=7, max_tokens=12, extra_body={"top_k": 40}).choices[0].message.content
    assert one == two


@pytest.mark.parametrize(
    "extra, status, param",
    [
        ({"n": 9}, 400, "n"),  # past MAX_CHOICES (8)
        ({"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]}, 400, "tools"),
        ({"logprobs": True, "top_logprobs": 21}, 400, "top_logprobs"),
        ({"temperature": 7}, 400, "temperature"),
        ({"max_tokens": 100_000}, 400, "max_tokens"),
        ({"model": "no-such-model"}, 404, "model"),
        ({"messages": []}, 400, "messages"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
                ]
            },
            400,
            "messages.0.content",
        ),
        ({"messages": [{"role": "user", "content": "word " * 3000}]}, 400, "messages"),  # past CONTEXT_LENGTH=1024
        ({"max_tokens": 1024}, 400, "messages"),  # leaves no room in the context
    ],
)
def test_bad_requests_get_openais_error_shape(client, extra, status, param):
    body = {"model": BASE, "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**body)
    error = caught.value.body
    assert caught.value.status_code == status
    assert set(error) >= {"message", "type", "param", "code"} and error["param"] == param and error["message"]


def test_malformed_and_huge_bodies(api):
    url = f"{api[0]}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bad_json = requests.post(url, headers=headers, data=b'{"model": ', timeout=30)
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    nested = requests.post(url, headers=headers, data=b"[" * 100_000 + b"]" * 100_000, timeout=30)
    assert nested.status_code in (400, 413) and "error" in nested.json()
    huge = requests.post(url, headers=headers, data=b" " * (5 * 2**20), timeout=30)
    assert huge.status_code == 413
    unknown = requests.post(
        url,
        headers=headers,
        timeout=60,
        json={"model": BASE, "max_tokens": 2, "surprise": {"x": 1}, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert unknown.status_code == 200  # unknown fields are ignored


def test_the_key_is_required_and_compared(api):
    url = f"{api[0]}/v1/models"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = requests.get(url, headers=headers, timeout=10)
        assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
    assert requests.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10).status_code == 200


def test_a_foreign_host_name_is_refused_on_the_api(api):
    response = requests.get(
        f"{api[0]}/v1/models", headers={"Authorization": f"Bearer {KEY}", "Host": "evil.example"}, timeout=10
    )
    assert response.status_code == 403


def test_a_foreign_page_is_answered_only_with_the_key(api):
    url, body = f"{api[0]}/v1/chat/completions", {"model": BASE, "messages": [{"role": "user", "content": "hi"}]}
    body["max_tokens"] = 2
    origin = {"Origin": "https://tool.example"}
    keyed = requests.post(url, json=body, headers={**origin, "Authorization": f"Bearer {KEY}"}, timeout=60)
    assert keyed.status_code == 200  # the key's holder chose to let this page call
    refused = requests.post(url, json=body, headers=origin, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_origin_refused"
    wrong = requests.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST" and "error" in wrong.json()


def test_one_model_is_retrieved_by_id_and_an_unknown_one_is_not_found(client):
    assert client.models.retrieve("captain-quill").parent == BASE
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("broken")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0).models.retrieve(BASE)


def test_embeddings_are_the_bundled_models_vectors(client):
    from sentence_transformers import SentenceTransformer

    from rag.rerank import bundled_model_path

    texts = ["The cat sat on the mat.", "A feline rested on a rug."]
    got = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    expected = SentenceTransformer(str(bundled_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    assert [d.index for d in got.data] == [0, 1] and got.usage.prompt_tokens > 0
    for row, vector in zip(got.data, expected):
        assert max(abs(a - b) for a, b in zip(row.embedding, vector)) < 1e-4
    packed = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="base64")
    unpacked = numpy.frombuffer(base64.b64decode(packed.data[0].embedding), dtype="<f4")
    assert numpy.abs(unpacked - expected[0]).max() < 1e-4
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[])


def long_story(url: str, timeout: float, **extra) -> requests.Response:
    """A streamed request that keeps its row decoding for a long while (900 tokens); use it in a `with`."""
    body = {
        "model": BASE,
        "stream": True,
        "max_tokens": 900,
        "temperature": 0.8,
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        **extra,
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    return requests.post(f"{url}/v1/chat/completions", headers=headers, timeout=timeout, stream=True, json=body)


def decode_steps(url: str) -> int:
    return requests.get(f"{url}/health", timeout=10).json()["decode_steps"]


def test_a_client_that_disconnects_stops_its_rows_computation(api):
    url = api[0]
    with long_story(url, timeout=60) as r:
        lines = (line for line in r.iter_lines(decode_unicode=True) if line)
        got = [next(lines) for _ in range(12)]
        assert any('"content"' in line for line in got)
        running = decode_steps(url)
        time.sleep(1.0)
        assert decode_steps(url) > running  # it is decoding while we listen
    time.sleep(1.0)  # gone: the row leaves the batch at its next step
    settled = decode_steps(url)
    time.sleep(2.0)
    assert decode_steps(url) == settled


def test_api_rows_join_the_same_batch_as_other_requests(client):
    """Four requests at once are decoded together: the engine's batch held them side by side."""
    answers = at_once(
        [
            lambda i=i: ask(client, text=f"Tell me a fact about the number {i}.", temperature=0, max_tokens=24)
            for i in range(4)
        ]
    )
    assert len(answers) == 4
    assert requests.get(f"{client.base_url}".replace("/v1/", "/health"), timeout=10).json()["most_rows_together"] >= 2
    alone = (
        ask(client, text="Tell me a fact about the number 2.", temperature=0, max_tokens=24).choices[0].message.content
    )
    assert alone in [a.choices[0].message.content for a in answers]  # batching changed no answer


@pytest.fixture(scope="module")
def password_only(tmp_path_factory):
    proc, url = start_streamlit("app.py", tmp_path_factory.mktemp("data"), {"APP_PASSWORD": "page-secret"})
    yield url
    stop(proc)


def test_with_only_a_page_password_the_api_is_shut(password_only):
    response = requests.post(
        f"{password_only}/v1/chat/completions",
        timeout=10,
        json={"model": BASE, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 403 and "API_KEY" in response.json()["error"]["message"]
    assert requests.get(f"{password_only}/v1/models", timeout=10).status_code == 403


def test_with_only_a_page_password_the_stored_conversations_and_assistants_are_shut_too(password_only):
    for method, path, body in [
        ("POST", "/v1/responses", {"model": BASE, "input": "hi"}),
        ("GET", "/v1/responses/resp_0123456789abcdef0123456789abcdef", None),
        ("POST", "/v1/conversations", {}),
        ("GET", "/v1/conversations/conv_x/items", None),
        ("DELETE", "/v1/conversations/conv_x", None),
        ("POST", "/v1/assistants", {"model": BASE}),
        ("GET", "/v1/assistants", None),
        ("POST", "/v1/threads", {}),
        ("POST", "/v1/threads/runs", {"assistant_id": "asst_x"}),
        ("GET", "/v1/threads/thread_x/runs/run_x", None),
    ]:
        response = requests.request(method, password_only + path, json=body, timeout=10)
        assert response.status_code == 403 and "API_KEY" in response.json()["error"]["message"], path


@pytest.fixture(scope="module")
def forwarding(tmp_path_factory):
    """LLM_BACKEND=openai: the studio in front of another OpenAI-compatible server (a local player)."""
    from tests import fake_servers

    upstream, upstream_url = fake_servers.start()
    proc, url = start_streamlit(
        "app.py",
        tmp_path_factory.mktemp("data"),
        {"LLM_BACKEND": "openai", "OPENAI_BASE_URL": f"{upstream_url}/ok/v1", "OPENAI_MODEL": "alpha"},
    )
    wait_healthy(url)
    yield url
    stop(proc)
    upstream.shutdown()


def test_on_the_openai_backend_the_api_forwards_to_the_server(forwarding):
    client = openai.OpenAI(base_url=f"{forwarding}/v1", api_key="unused", max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert {"alpha", "beta", "dummy"} <= set(ids)
    answer = client.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Half an answer"
    streamed = client.chat.completions.create(model="dummy", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "Half an answer"


def test_a_team_is_a_model_and_its_answer_is_the_synthesis(client, quill_backend):
    ids = [m.id for m in client.models.list()]
    assert "team:ai-standards" in ids and "team:harbour-council" in ids
    answer = client.chat.completions.create(
        model="team:ai-standards",
        temperature=0,
        max_tokens=24,
        messages=[{"role": "user", "content": "Should a hospital chatbot log patient questions?"}],
    )
    text = answer.choices[0].message.content
    # max_tokens bounds the synthesis at 24 tokens: cut there it is "length"; ended by the model before, "stop"
    # (usage counts the plan and the experts too, so the synthesis' own length is read from its text)
    synthesis_tokens = len(quill_backend.loaded.tokenizer.encode(text, add_special_tokens=False))
    assert text.strip() and answer.choices[0].finish_reason == ("length" if synthesis_tokens >= 24 else "stop")
    assert answer.usage.completion_tokens > 24  # the plan and both experts' answers were generated too
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="team:no-such-team", messages=[{"role": "user", "content": "hi"}])


@pytest.mark.browser
def test_an_api_request_and_a_browser_session_are_decoded_in_one_batch(api, client):
    """The page's answer says it was decoded together with the API's answer streaming at the same moment."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS, open_chat, send

    url = api[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = open_chat(browser, url, max_new=12)  # the page is ready before the API's row starts (a slow
        with long_story(url, timeout=120, seed=1) as r:  # machine must not let the story end first)
            lines = (line for line in r.iter_lines(decode_unicode=True) if line)
            assert any('"content"' in next(lines) for _ in range(6))  # the API's row is decoding now
            send(page, "Hello!", 1)
            footer = page.get_by_text("tokens used").first.inner_text()
        browser.close()
    assert "decoded together with" in footer
