"""The Responses and Conversations APIs through the official `openai` client against a real `streamlit run app.py`
with the demo model. What a response continues is checked through the prompt the engine receives (its token count
equals the one `llm.prompts.build_prompt` gives for the expected turns), not through a 135M model's recall. The
SDK's typed parsing of every answer is the shape test."""

from __future__ import annotations

import json
import threading

import openai
import pytest
import requests

from llm.prompts import build_prompt
from tests.browser import start_streamlit
from tests.conftest import MODELS_DIR
from tests.test_api import BASE, stop, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.model]
KEY = "responses-key-5a0e"
HEADERS = {"Authorization": f"Bearer {KEY}"}
CONTEXT = 2048
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 20}},
        "required": ["city"],
    },
}
EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
CLOSING = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    proc, url = start_streamlit("app.py", data, {"API_KEY": KEY, "CONTEXT_LENGTH": str(CONTEXT)})
    wait_healthy(url)
    yield url, data
    stop(proc)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODELS_DIR / "smollm2-135m-instruct")


def prompt_tokens(tokenizer, messages: list[dict], max_new: int, tools=None) -> int:
    return len(build_prompt(tokenizer, messages, max_new, CONTEXT, tools).input_ids)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def said(text: str) -> dict:
    return {"role": "assistant", "content": text}


def test_a_response_is_stored_read_back_and_deleted(client, tokenizer):
    answer = client.responses.create(model=BASE, input="Say hello.", max_output_tokens=12)
    assert answer.id.startswith("resp_") and len(answer.id) >= 5 + 32  # 128 random bits in hex
    assert answer.status in ("completed", "incomplete") and answer.output_text
    assert answer.usage.input_tokens == prompt_tokens(tokenizer, [user("Say hello.")], 12)
    assert 0 < answer.usage.output_tokens <= 12
    if answer.status == "incomplete":
        assert answer.incomplete_details.reason == "max_output_tokens" and answer.usage.output_tokens == 12
    again = client.responses.retrieve(answer.id)
    assert (again.id, again.output_text, again.status) == (answer.id, answer.output_text, answer.status)
    items = client.responses.input_items.list(answer.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [("message", "user", "Say hello.")]
    client.responses.delete(answer.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(answer.id)


def test_streamed_events_come_in_the_documented_order(client):
    stream = client.responses.create(model=BASE, input="Count to five.", max_output_tokens=16, stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert kinds[:4] == EVENTS and deltas
    assert kinds[4 : 4 + len(deltas)] == ["response.output_text.delta"] * len(deltas)
    assert kinds[4 + len(deltas) :] in (CLOSING + ["response.completed"], CLOSING + ["response.incomplete"])
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    text = "".join(d.delta for d in deltas)
    assert final.output_text == text == events[-2].item.content[0].text
    assert {d.item_id for d in deltas} == {final.output[0].id}
    assert client.responses.retrieve(final.id).output_text == text
    with client.responses.stream(model=BASE, input="Name a colour.", max_output_tokens=60) as helper:
        seen = list(helper)  # the SDK's own accumulator reads every event
        last = seen[-1]
        assert last.type in ("response.completed", "response.incomplete") and last.response.output_text
        if last.type == "response.completed":  # the helper hands a final response only for a completed one
            assert helper.get_final_response().output_text == last.response.output_text


def test_a_previous_response_id_chain_gives_the_engine_every_earlier_turn(client, tokenizer):
    first = client.responses.create(model=BASE, input="My name is Olena.", max_output_tokens=10)
    second = client.responses.create(
        model=BASE, input="I live in Lviv.", previous_response_id=first.id, max_output_tokens=10
    )
    third = client.responses.create(
        model=BASE,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Where do I live?"}]}],
        previous_response_id=second.id,
        instructions="Answer in one word.",
        max_output_tokens=10,
    )
    turns = [user("My name is Olena."), said(first.output_text), user("I live in Lviv."), said(second.output_text)]
    assert second.usage.input_tokens == prompt_tokens(tokenizer, turns[:3], 10)
    expected = [{"role": "system", "content": "Answer in one word."}, *turns, user("Where do I live?")]
    assert third.usage.input_tokens == prompt_tokens(tokenizer, expected, 10)  # instructions: this turn only
    assert third.previous_response_id == second.id


def test_store_false_writes_nothing(client):
    answer = client.responses.create(model=BASE, input="Hi", max_output_tokens=4, store=False)
    assert answer.store is False and answer.output_text
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(answer.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=BASE, input="Hi", previous_response_id=answer.id, max_output_tokens=4)
    assert caught.value.body["param"] == "previous_response_id"


def test_function_calls_and_their_outputs_travel_along_the_chain(client, tokenizer):
    call = client.responses.create(
        model=BASE, input="Weather in Paris?", tools=[TOOL], tool_choice="required", max_output_tokens=40
    )
    item = call.output[0]
    assert item.type == "function_call" and item.name == "get_weather"
    assert json.loads(item.arguments)["city"]
    answer = client.responses.create(
        model=BASE,
        previous_response_id=call.id,
        input=[{"type": "function_call_output", "call_id": item.call_id, "output": "22 C, sunny"}],
        tools=[TOOL],
        tool_choice="none",
        max_output_tokens=12,
    )
    assert answer.output_text and answer.output[0].type == "message"
    calls = [{"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}]
    expected = [
        user("Weather in Paris?"),
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": "22 C, sunny", "tool_call_id": item.call_id},
    ]
    assert answer.usage.input_tokens == prompt_tokens(tokenizer, expected, 12)  # tool_choice none: no tools shown
    streamed = client.responses.create(
        model=BASE, input="Weather in Rome?", tools=[TOOL], tool_choice="required", max_output_tokens=40, stream=True
    )
    events = list(streamed)
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    pieces = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert pieces == events[-2].item.arguments == events[-1].response.output[0].arguments
    assert json.loads(pieces)["city"]


def test_a_conversation_holds_its_items_and_the_responses_in_it(client, tokenizer):
    conversation = client.conversations.create(items=[user("Hello, I am Taras.")], metadata={"topic": "intro"})
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "intro"}
    answer = client.responses.create(
        model=BASE, input="What is my name?", conversation=conversation.id, max_output_tokens=10
    )
    expected = [user("Hello, I am Taras."), user("What is my name?")]
    assert answer.usage.input_tokens == prompt_tokens(tokenizer, expected, 10)
    assert answer.conversation.id == conversation.id
    items = client.conversations.items.list(conversation.id, order="asc")
    assert [(i.type, i.role) for i in items.data] == [("message", "user")] * 2 + [("message", "assistant")]
    assert items.data[2].content[0].text == answer.output_text and items.data[2].id == answer.output[0].id
    newest = client.conversations.items.list(conversation.id, limit=1)
    assert newest.data[0].id == items.data[2].id and newest.has_more
    added = client.conversations.items.create(conversation.id, items=[user("One more thing.")])
    assert len(client.conversations.items.list(conversation.id).data) == 4
    got = client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    assert got.content[0].text == "One more thing."
    client.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)
    assert len(client.conversations.items.list(conversation.id).data) == 3
    updated = client.conversations.update(conversation.id, metadata={"topic": "names"})
    assert client.conversations.retrieve(conversation.id).metadata == updated.metadata == {"topic": "names"}
    bare = conversation.id.removeprefix("conv_")  # the chat page's ?c= id opens it too
    assert client.conversations.retrieve(bare).id == conversation.id
    other = client.conversations.create()
    with pytest.raises(openai.NotFoundError):  # another conversation's item id opens nothing here
        client.conversations.items.retrieve(items.data[0].id, conversation_id=other.id)
    client.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_two_clients_adding_items_at_once_lose_nothing(client):
    conversation = client.conversations.create()

    def add(who: str) -> None:
        for n in range(8):
            client.conversations.items.create(conversation.id, items=[user(f"{who}-{n}")])

    threads = [threading.Thread(target=add, args=(who,)) for who in ("a", "b")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    texts = [i.content[0].text for i in client.conversations.items.list(conversation.id, limit=100).data]
    assert sorted(texts) == sorted(f"{w}-{n}" for w in "ab" for n in range(8))


def test_cancel_stops_a_response_in_progress(server, client):
    url = server[0]
    stream = client.responses.create(model=BASE, input="Tell me a long story.", max_output_tokens=600, stream=True)
    created = next(iter(stream))
    rid = created.response.id
    assert client.responses.retrieve(rid).status == "in_progress"
    cancelled = client.responses.cancel(rid)
    assert cancelled.status == "cancelled"
    rest = list(stream)
    assert rest[-1].response.status == "cancelled" and rest[-1].type == "response.failed"
    assert client.responses.retrieve(rid).status == "cancelled"
    assert client.responses.retrieve(rid).usage.output_tokens < 600
    steps = requests.get(f"{url}/health", timeout=10).json()["decode_steps"]
    assert requests.get(f"{url}/health", timeout=10).json()["decode_steps"] - steps < 5  # no row left running
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(rid)  # a finished response cannot be cancelled
    assert "only a response in progress" in caught.value.body["message"]


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({"input": [{"role": "user", "content": "x"}] * 10_000}, 400, "input"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            400,
            "input.0.content.0",
        ),
        ({"input": [{"type": "reasoning", "summary": []}]}, 400, "input.0.type"),
        ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}, 400, "input"),
        ({"input": "hi", "previous_response_id": "resp_" + "0" * 32}, 404, "previous_response_id"),
        ({"input": "hi", "conversation": "conv_nope"}, 404, "conversation"),
        ({"input": "hi", "conversation": "conv_x", "previous_response_id": "resp_x"}, 400, "conversation"),
        ({"input": "hi", "background": True}, 400, "background"),
        ({"input": "hi", "max_output_tokens": 0}, 400, "max_output_tokens"),
        ({"input": "hi", "metadata": {"k": "v" * 600}}, 400, "metadata"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, 400, "tools.0.type"),
        ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, 400, "text.format"),
        ({"input": None}, 400, "input"),
        ({"input": 5}, 400, "input"),
    ],
)
def test_hostile_requests_get_a_clear_refusal(server, body, status, param):
    response = requests.post(f"{server[0]}/v1/responses", json={"model": BASE, **body}, headers=HEADERS, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and "Traceback" not in response.text


def test_unknown_ids_and_huge_bodies(server):
    url = server[0]
    for method, path in [
        ("GET", "/v1/responses/resp_nope"),
        ("DELETE", "/v1/responses/resp_nope"),
        ("POST", "/v1/responses/resp_nope/cancel"),
        ("GET", "/v1/responses/resp_nope/input_items"),
        ("GET", "/v1/conversations/conv_nope"),
        ("GET", "/v1/conversations/conv_nope/items"),
        ("DELETE", "/v1/conversations/conv_nope/items/msg_nope"),
    ]:
        response = requests.request(method, url + path, headers=HEADERS, timeout=30)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    huge = {"model": BASE, "input": "x" * (4 * 2**20 + 10)}
    assert requests.post(f"{url}/v1/responses", json=huge, headers=HEADERS, timeout=60).status_code == 413
    many = {"items": [user("x")] * 21}
    response = requests.post(f"{url}/v1/conversations", json=many, headers=HEADERS, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "items"
    assert requests.get(f"{url}/v1/responses/x", timeout=30).status_code == 401  # nothing opens without the key


def test_a_chain_survives_a_server_restart(tmp_path, tokenizer):
    env = {"API_KEY": KEY, "CONTEXT_LENGTH": str(CONTEXT)}
    proc, url = start_streamlit("app.py", tmp_path / "data", env)
    try:
        wait_healthy(url)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=120)
        first = client.responses.create(model=BASE, input="Remember: blue.", max_output_tokens=8)
    finally:
        stop(proc)
    proc, url = start_streamlit("app.py", tmp_path / "data", env)
    try:
        wait_healthy(url)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=120)
        second = client.responses.create(
            model=BASE, input="Which colour?", previous_response_id=first.id, max_output_tokens=8
        )
        expected = [user("Remember: blue."), said(first.output_text), user("Which colour?")]
        assert second.usage.input_tokens == prompt_tokens(tokenizer, expected, 8)
        assert client.responses.retrieve(first.id).output_text == first.output_text
    finally:
        stop(proc)
