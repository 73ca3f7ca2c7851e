"""OpenAI's presence/frequency penalties, logit_bias, logprobs and `n` on /v1/chat/completions, through the official
`openai` client against a real `streamlit run app.py` with the demo model; hostile values get a 400 naming the
field while the server keeps serving."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from tests.browser import serving
from tests.conftest import MODELS_DIR
from tests.test_api import BASE

pytestmark = [pytest.mark.slow, pytest.mark.model]
KEY = "test-sampling-key-81d2"
HEADERS = {"Authorization": f"Bearer {KEY}"}
FRUITS = "Write a list of fruits, one per line."


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("data"), {"API_KEY": KEY, "CONTEXT_LENGTH": "1024"}) as url:
        yield url


@pytest.fixture(scope="module")
def client(api):
    return openai.OpenAI(base_url=f"{api}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODELS_DIR / "smollm2-135m-instruct")


def ask(client, text=FRUITS, **extra):
    extra = {"temperature": 0, "max_tokens": 16, **extra}
    return client.chat.completions.create(model=BASE, messages=[{"role": "user", "content": text}], **extra)


def test_penalties_change_a_greedy_answer(client):
    plain = ask(client).choices[0].message.content
    assert ask(client).choices[0].message.content == plain
    assert ask(client, frequency_penalty=2.0).choices[0].message.content != plain
    assert ask(client, presence_penalty=2.0).choices[0].message.content != plain
    assert ask(client, presence_penalty=0.0, frequency_penalty=0.0).choices[0].message.content == plain


def test_logit_bias_forces_a_token_or_bans_it(client, tokenizer):
    paris = tokenizer.encode(" Paris", add_special_tokens=False)
    assert len(paris) == 1
    forced = ask(client, "What is the capital of France?", max_tokens=5, logit_bias={str(paris[0]): 100})
    assert forced.choices[0].message.content.split() == ["Paris"] * 5
    plain = ask(client, "What is the capital of France?", max_tokens=8).choices[0].message.content
    first = tokenizer.encode(plain, add_special_tokens=False)[0]
    banned = ask(client, "What is the capital of France?", max_tokens=8, logit_bias={str(first): -100})
    assert first not in tokenizer.encode(banned.choices[0].message.content, add_special_tokens=False)


def test_logprobs_in_a_whole_answer(client):
    answer = ask(client, "Say hello in Ukrainian.", logprobs=True, top_logprobs=3)
    choice = answer.choices[0]
    content = choice.logprobs.content
    assert len(content) == answer.usage.completion_tokens
    assert b"".join(bytes(e.bytes) for e in content).decode() == choice.message.content
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token  # greedy: the chosen token is the likeliest
        assert all(t.logprob <= 0 and isinstance(t.bytes, list) for t in entry.top_logprobs)
    assert ask(client, "Say hello in Ukrainian.").choices[0].logprobs is None  # only when asked


def test_logprobs_streamed_with_each_chunk(client):
    stream = ask(
        client,
        "Tell me a story.",
        stream=True,
        stream_options={"include_usage": True},
        logprobs=True,
        top_logprobs=5,
        temperature=0.9,
        seed=4,
        extra_body={"top_k": 5},
    )
    text, content, usage = "", [], None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.logprobs is not None:
                content += choice.logprobs.content or []
    assert content and len(content) == usage.completion_tokens
    assert b"".join(bytes(e.bytes) for e in content).decode() == text
    for entry in content:
        assert entry.logprob <= 0 and entry.token in [t.token for t in entry.top_logprobs]


def test_logprobs_stop_with_the_text_a_stop_string_cuts(client):
    whole = ask(client, "Count from 1 to 10, separated by commas.", max_tokens=30, logprobs=True)
    text = whole.choices[0].message.content
    cut = ask(client, "Count from 1 to 10, separated by commas.", max_tokens=30, logprobs=True, stop=["5"])
    kept = cut.choices[0].message.content
    assert kept == text[: text.find("5")]
    given = b"".join(bytes(e.bytes) for e in cut.choices[0].logprobs.content)
    assert given.startswith(kept.encode()) and len(cut.choices[0].logprobs.content) < len(
        whole.choices[0].logprobs.content
    )


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"presence_penalty": -2.01}, "presence_penalty"),
        ({"presence_penalty": True}, "presence_penalty"),
        ({"frequency_penalty": "1"}, "frequency_penalty"),
        ({"frequency_penalty": False}, "frequency_penalty"),
        ({"frequency_penalty": 9}, "frequency_penalty"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"-1": 1}}, "logit_bias"),
        ({"logit_bias": {"1e3": 1}}, "logit_bias"),
        ({"logit_bias": {"49152": 1}}, "logit_bias"),  # one past the demo model's vocabulary
        ({"logit_bias": {"99999999999": 1}}, "logit_bias"),
        ({"logit_bias": {"9" * 400: 1}}, "logit_bias"),
        ({"logit_bias": {"5": True}}, "logit_bias"),
        ({"logit_bias": {"5": 100.5}}, "logit_bias"),
        ({"logit_bias": {"5": "10"}}, "logit_bias"),
        ({"logit_bias": {str(i): 1 for i in range(10_000)}}, "logit_bias"),
        ({"logit_bias": [1, 2]}, "logit_bias"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"logprobs": True, "top_logprobs": True}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 1000}, "top_logprobs"),
        ({"n": 10**6}, "n"),
        ({"n": 9}, "n"),  # one past MAX_CHOICES' default
        ({"n": 0}, "n"),
        ({"n": -3}, "n"),
        ({"n": "2"}, "n"),
        ({"n": 2.0}, "n"),
        ({"n": True}, "n"),
    ],
)
def test_hostile_values_are_a_400_naming_the_field(api, extra, param):
    body = {"model": BASE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}
    response = requests.post(f"{api}/v1/chat/completions", json=body, headers=HEADERS, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"]
    assert "Traceback" not in response.text and "Value error" not in error["message"]


def test_the_server_still_serves_after_hostile_values(client):
    answer = ask(client, max_tokens=4, logit_bias={"5": -100}, presence_penalty=1.0, logprobs=True, top_logprobs=20)
    assert answer.choices[0].message.content and len(answer.choices[0].logprobs.content[0].top_logprobs) == 20


def health(api) -> dict:
    return requests.get(f"{api}/health", timeout=10).json()


def test_n_answers_share_one_prefill_and_are_seeded_one_after_another(api, client):
    before = health(api)
    answer = ask(client, "Tell me a story about a cat.", n=3, temperature=1.0, seed=21, max_tokens=12, logprobs=True)
    after = health(api)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    texts = [c.message.content for c in answer.choices]
    assert all(texts) and len(set(texts)) == 3  # three different samples
    assert after["prompts_prefilled"] - before["prompts_prefilled"] == 1  # one prefill, not three
    assert after["prefill_tokens"] - before["prefill_tokens"] == answer.usage.prompt_tokens
    counts = [len(c.logprobs.content) for c in answer.choices]
    assert answer.usage.completion_tokens == sum(counts) and all(0 < count <= 12 for count in counts)
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    # choice i is the request's answer with seed + i
    for index, text in enumerate(texts):
        alone = ask(client, "Tell me a story about a cat.", temperature=1.0, seed=21 + index, max_tokens=12)
        assert alone.choices[0].message.content == text


def test_n_answers_streamed_each_under_its_index(client):
    stream = ask(
        client,
        FRUITS,
        n=2,
        temperature=1.0,
        seed=5,
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
        logprobs=True,
        top_logprobs=2,
    )
    texts, finish, tokens, usage = ["", ""], [None, None], [0, 0], None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            finish[choice.index] = choice.finish_reason or finish[choice.index]
            if choice.logprobs is not None:
                tokens[choice.index] += len(choice.logprobs.content or [])
    whole = ask(client, FRUITS, n=2, temperature=1.0, seed=5, max_tokens=10)
    assert texts == [c.message.content for c in whole.choices]
    assert finish == [c.finish_reason for c in whole.choices]
    assert sum(tokens) == usage.completion_tokens == whole.usage.completion_tokens


def test_n_forced_tool_calls_are_each_valid(client):
    tool = {
        "type": "function",
        "function": {
            "name": "pick_fruit",
            "parameters": {
                "type": "object",
                "properties": {"fruit": {"type": "string", "enum": ["apple", "pear", "plum"]}},
                "required": ["fruit"],
            },
        },
    }
    answer = ask(
        client, "Pick a fruit.", n=3, temperature=1.0, seed=2, max_tokens=30, tools=[tool], tool_choice="required"
    )
    assert len(answer.choices) == 3
    for choice in answer.choices:
        assert choice.finish_reason == "tool_calls"
        call = choice.message.tool_calls[0]
        assert call.function.name == "pick_fruit"
        assert json.loads(call.function.arguments)["fruit"] in ("apple", "pear", "plum")
