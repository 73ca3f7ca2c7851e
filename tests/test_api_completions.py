"""`POST /v1/completions` (OpenAI's legacy text completion) against a real `streamlit run app.py` with the demo
model: the official `openai` client (whole and streamed; its typed parsing is the shape check), simonw's `llm`
CLI with a `completion: true` model, the OpenAI-compatible backend forwarding to it, and the refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import openai
import pytest
import requests

from llm.config import ServerConfig
from llm.openai_backend import OpenAIBackend
from llm.options import GenerationOptions
from tests.browser import start_streamlit
from tests.conftest import MODELS_DIR
from tests.test_api import BASE, stop, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.model]
PROMPT = "Once upon a time, in a small village by the sea, there lived"
LLM_CLI = os.path.join(os.path.dirname(sys.executable), "llm")  # simonw's, from requirements-dev.txt


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    proc, url = start_streamlit("app.py", tmp_path_factory.mktemp("data"), {"CONTEXT_LENGTH": "1024"})
    wait_healthy(url)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODELS_DIR / "smollm2-135m-instruct")


def complete(client, prompt=PROMPT, model=BASE, **extra):
    return client.completions.create(model=model, prompt=prompt, **{"max_tokens": 12, "temperature": 0, **extra})


@pytest.fixture(scope="module")
def greedy(client):
    """The greedy 12-token continuation of PROMPT, the reference the other tests compare with."""
    return complete(client).choices[0].text


def test_the_prompt_is_continued_as_raw_text_with_no_chat_template(client, tokenizer):
    answer = complete(client)
    assert answer.object == "text_completion" and answer.id.startswith("cmpl-") and answer.model == BASE
    [choice] = answer.choices
    assert choice.index == 0 and choice.logprobs is None and choice.text.strip()
    assert choice.finish_reason == "length" and answer.usage.completion_tokens == 12
    raw = len(tokenizer(PROMPT)["input_ids"])
    chat = [{"role": "user", "content": PROMPT}]
    templated = len(tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False))
    assert answer.usage.prompt_tokens == raw < templated  # the text as it is: no template around it
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert not choice.text.startswith(("<|im_start|>", "assistant"))


def test_max_tokens_defaults_to_openais_16(client):
    answer = client.completions.create(model=BASE, prompt=PROMPT, temperature=0)
    assert answer.usage.completion_tokens == 16 and answer.choices[0].finish_reason == "length"


def test_a_stream_is_the_whole_answer_in_pieces_with_usage_when_asked(client, greedy):
    chunks = list(complete(client, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" and c.id == chunks[0].id for c in chunks)
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len(texts) > 2 and "".join(texts) == greedy
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])
    plain = list(complete(client, stream=True))
    assert plain[-1].choices and all(c.usage is None for c in plain)  # usage only when asked


def test_a_stop_string_cuts_the_text_before_it(client, greedy):
    word = greedy.split()[2]
    answer = complete(client, stop=[word, "never-written"])
    assert answer.choices[0].text == greedy[: greedy.index(word)] and answer.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in complete(client, stop=word, stream=True) if c.choices)
    assert streamed == answer.choices[0].text


def test_echo_puts_the_prompt_in_front(client, greedy):
    assert complete(client, echo=True).choices[0].text == PROMPT + greedy
    streamed = list(complete(client, echo=True, stream=True))
    assert streamed[0].choices[0].text == PROMPT and "".join(c.choices[0].text for c in streamed) == PROMPT + greedy


def test_a_prompt_in_a_list_and_a_seed(client, greedy):
    assert complete(client, prompt=[PROMPT]).choices[0].text == greedy
    sampled = [complete(client, temperature=1.0, seed=7).choices[0].text for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_a_lora_persona_continues_through_its_adapter_and_others_are_refused(client):
    ids = {m.id for m in client.models.list()}
    assert {"captain-quill", "tutor", "team:ai-standards"} <= ids
    assert complete(client, model="captain-quill").choices[0].text.strip()
    for model in ("tutor", "team:ai-standards"):  # a prompt persona, a team: both need a chat
        with pytest.raises(openai.BadRequestError) as refused:
            complete(client, model=model)
        assert refused.value.param == "model" and "/v1/chat/completions" in refused.value.message
    with pytest.raises(openai.NotFoundError):
        complete(client, model="gpt-3.5-turbo-instruct")


@pytest.mark.parametrize(
    "extra, param, words",
    [
        ({"prompt": ""}, "prompt", "empty"),
        ({"prompt": ["one", "two", "three"]}, "prompt", "one prompt per request"),
        ({"prompt": [1, 2, 3]}, "prompt", "send the prompt as text"),
        ({"prompt": [[1, 2], [3]]}, "prompt", "send the prompt as text"),
        ({"prompt": "word " * 3000}, "prompt", "context"),  # past the 1,024-token context
        ({"max_tokens": 1024}, "prompt", "fewer tokens"),  # the prompt and the answer past the context
        ({"n": 10**6}, "n", "send n requests"),
        ({"best_of": 3}, "best_of", "best_of"),
        ({"suffix": "The end."}, "suffix", "not supported"),
        ({"extra_body": {"echo": "yes"}}, "echo", "boolean"),
        ({"logprobs": 2}, "logprobs", "/v1/chat/completions"),
        ({"temperature": 9.0}, "temperature", "2"),
        ({"max_tokens": 0}, "max_tokens", "greater than"),
        ({"stop": ["s"] * 17}, "stop", "16"),
    ],
)
def test_bad_completion_requests_are_refused_naming_the_field(client, extra, param, words):
    with pytest.raises(openai.BadRequestError) as refused:
        complete(client, **extra)
    assert refused.value.param == param and words in refused.value.message


def test_simonws_llm_with_a_completion_model(url, greedy, tmp_path):
    assert os.path.exists(LLM_CLI), "simonw's llm is missing: run scripts/setup.sh --test"
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: studio-text\n  model_name: {BASE}\n  api_base: {url}/v1\n  completion: true\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(LLM_USER_PATH=str(tmp_path), LLM_LOAD_PLUGINS="")  # no plugins: only its own OpenAI models
    for extra in ([], ["--no-stream"]):
        command = [LLM_CLI, "-m", "studio-text", "-o", "max_tokens", "12", "-o", "temperature", "0", *extra, PROMPT]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.rstrip("\n") == greedy.rstrip("\n")  # it sends the prompt as it is


def test_the_openai_backend_forwards_raw_text_to_a_servers_completions(url, greedy, tokenizer):
    backend = OpenAIBackend(ServerConfig(openai_base_url=f"{url}/v1", openai_model=BASE, request_timeout_s=60))
    openais = {"top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0}  # the API's defaults, not the page's
    stream = backend.complete(PROMPT, GenerationOptions(max_new_tokens=12, temperature=0, **openais))
    assert stream.text() == greedy
    assert stream.stats.prompt_tokens == len(tokenizer(PROMPT)["input_ids"]) and stream.stats.completion_tokens == 12
    assert stream.stats.finish_reason == "length"


@pytest.fixture(scope="module")
def forwarding(url, tmp_path_factory):
    """A second studio on LLM_BACKEND=openai in front of the first: /v1/completions forwarded."""
    proc, front = start_streamlit(
        "app.py",
        tmp_path_factory.mktemp("front"),
        {"LLM_BACKEND": "openai", "OPENAI_BASE_URL": f"{url}/v1", "OPENAI_MODEL": BASE},
    )
    wait_healthy(front)
    yield front
    stop(proc)


def test_on_the_openai_backend_the_route_forwards(forwarding, greedy):
    client = openai.OpenAI(base_url=f"{forwarding}/v1", api_key="unused", max_retries=0, timeout=120)
    answer = complete(client)
    assert answer.choices[0].text == greedy and answer.choices[0].finish_reason == "length"
    assert "".join(c.choices[0].text for c in complete(client, stream=True) if c.choices) == greedy


def decode_steps(url: str) -> int:
    return requests.get(f"{url}/health", timeout=10).json()["decode_steps"]


def test_a_client_that_leaves_a_stream_stops_its_rows_computation(url):
    body = {"model": BASE, "prompt": PROMPT, "max_tokens": 900, "temperature": 0.8, "stream": True}
    with requests.post(f"{url}/v1/completions", json=body, timeout=60, stream=True) as r:
        lines = (line for line in r.iter_lines(decode_unicode=True) if line)
        assert all('"text_completion"' in next(lines) for _ in range(8))
        running = decode_steps(url)
        time.sleep(1.0)
        assert decode_steps(url) > running  # it is decoding while we listen
    time.sleep(1.0)  # gone: the row leaves the batch at its next step
    settled = decode_steps(url)
    time.sleep(2.0)
    assert decode_steps(url) == settled
