"""The tutorial's assistants, threads and runs through the official `openai` client (`client.beta`) against a real
`streamlit run app.py` with the demo model. What a run answers from is checked through the prompt the engine gets
(its token count equals `llm.prompts.build_prompt`'s for the thread's messages and the assistant's instructions);
the SDK's typed parsing of every answer is the shape test. A thread is a chat-page conversation: the
Conversations API reads it back as `conv_<id>`."""

from __future__ import annotations

import json
import time
import warnings

import openai
import pytest
import requests

from tests.browser import start_streamlit
from tests.conftest import MODELS_DIR
from tests.test_api import BASE, stop, wait_healthy
from tests.test_api_responses import CONTEXT, KEY, prompt_tokens, user

pytestmark = [pytest.mark.slow, pytest.mark.model]
warnings.filterwarnings("ignore", category=DeprecationWarning)  # the SDK marks client.beta.* as retired
INSTRUCTIONS = "You are a terse harbour clerk."
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 20}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    proc, url = start_streamlit("app.py", data, {"API_KEY": KEY, "CONTEXT_LENGTH": str(CONTEXT)})
    wait_healthy(url)
    yield url, data
    stop(proc)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODELS_DIR / "smollm2-135m-instruct")


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def clerk(client):
    return client.beta.assistants.create(model=BASE, name="Clerk", instructions=INSTRUCTIONS, metadata={"desk": "3"})


def test_assistants_are_created_listed_updated_and_deleted(client, clerk):
    assert clerk.id.startswith("asst_") and len(clerk.id) >= 5 + 32 and clerk.object == "assistant"
    assert clerk.model == BASE and clerk.instructions == INSTRUCTIONS and clerk.tools == []
    assert client.beta.assistants.retrieve(clerk.id).metadata == {"desk": "3"}
    other = client.beta.assistants.create(model="captain-quill", name="Quill", tools=[WEATHER])
    assert other.tools[0].function.name == "get_weather"
    changed = client.beta.assistants.update(other.id, name="Captain", temperature=0.5)
    assert changed.name == "Captain" and changed.temperature == 0.5 and changed.model == "captain-quill"
    listed = [a.id for a in client.beta.assistants.list(limit=100)]
    assert listed.index(other.id) < listed.index(clerk.id)  # newest first, as OpenAI lists them
    assert client.beta.assistants.delete(other.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.retrieve(other.id)


def test_an_assistant_with_an_unknown_model_or_a_hosted_tool_is_refused(client):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.beta.assistants.create(model="gpt-9")
    assert unknown.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as hosted:
        client.beta.assistants.create(model=BASE, tools=[{"type": "code_interpreter"}])
    assert hosted.value.body["param"] == "tools.0.type"


def test_a_run_answers_from_the_thread_and_the_instructions_and_its_answer_joins_the_thread(client, clerk, tokenizer):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Which pier is open?"}])
    assert thread.id.startswith("thread_")
    client.beta.threads.messages.create(thread.id, role="user", content=[{"type": "text", "text": "Be brief."}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=clerk.id, max_completion_tokens=10, temperature=0, poll_interval_ms=200
    )
    assert run.status in ("completed", "incomplete") and run.object == "thread.run"
    asked = [{"role": "system", "content": INSTRUCTIONS}, user("Which pier is open?"), user("Be brief.")]
    assert run.usage.prompt_tokens == prompt_tokens(tokenizer, asked, 10)
    messages = client.beta.threads.messages.list(thread.id)  # newest first
    answer = messages.data[0]
    assert [m.role for m in messages.data] == ["assistant", "user", "user"]
    assert answer.content[0].text.value.strip() and answer.thread_id == thread.id
    assert (answer.run_id, answer.assistant_id) == (run.id, clerk.id)  # what a client filters its run's answer by
    assert [m.run_id for m in messages.data[1:]] == [None, None]  # a person's messages belong to no run
    assert [m.id for m in client.beta.threads.messages.list(thread.id, run_id=run.id).data] == [answer.id]
    assert client.beta.threads.messages.retrieve(answer.id, thread_id=thread.id).run_id == run.id
    assert [r.id for r in client.beta.threads.runs.list(thread.id)] == [run.id]
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == run.status
    # the thread is a chat-page conversation: the Conversations API reads the same messages
    items = client.conversations.items.list("conv_" + thread.id.removeprefix("thread_"), order="asc")
    assert [i.role for i in items.data] == ["user", "user", "assistant"]


def test_a_streamed_run_sends_openais_events_and_the_text_it_streamed_is_kept(client, clerk):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Say hello."}])
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=clerk.id, max_completion_tokens=12, temperature=0
    ) as stream:
        events = [event.event for event in stream]
        final = stream.get_final_run()
        streamed = stream.get_final_messages()[0].content[0].text.value
    assert events[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert events[3:5] == ["thread.message.created", "thread.message.in_progress"]
    assert "thread.message.delta" in events and events[-2:] == [
        "thread.message.completed",
        f"thread.run.{final.status}",
    ]
    assert final.status in ("completed", "incomplete")
    kept = client.beta.threads.messages.list(thread.id).data[0]
    assert kept.content[0].text.value == streamed and kept.role == "assistant"
    assert (kept.run_id, kept.assistant_id) == (final.id, clerk.id)
    assert stream.get_final_messages()[0].run_id == final.id  # the streamed message says so too


def test_a_run_with_a_tool_stops_for_its_output_and_then_answers(client, tokenizer):
    agent = client.beta.assistants.create(model=BASE, instructions="Use the tools.", tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather in Oslo?"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=agent.id, tool_choice="required", max_completion_tokens=40,
        temperature=0, poll_interval_ms=200,
    )  # fmt: skip
    assert run.status == "requires_action" and run.required_action.type == "submit_tool_outputs"
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    assert call.function.name == "get_weather" and set(json.loads(call.function.arguments)) == {"city"}
    with pytest.raises(openai.BadRequestError) as wrong:
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_not_asked", "output": "x"}]
        )
    assert wrong.value.body["param"] == "tool_outputs"
    with pytest.raises(openai.BadRequestError) as busy:  # one run at a time: answers would interleave
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=agent.id)
    assert busy.value.body["code"] == "invalid_state" and run.id in busy.value.body["message"]
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "Sunny, 21 C"}],
        poll_interval_ms=200,
    )  # fmt: skip
    assert done.id == run.id and done.status in ("completed", "incomplete", "requires_action")
    assert done.usage.completion_tokens > run.usage.completion_tokens  # both turns are counted
    items = client.conversations.items.list("conv_" + thread.id.removeprefix("thread_"), order="asc").data
    assert [i.type for i in items[:3]] == ["message", "function_call", "function_call_output"]
    assert items[2].output == "Sunny, 21 C" and items[2].call_id == call.id
    shown = client.beta.threads.messages.list(thread.id, order="asc").data  # tool steps are not messages
    assert shown[0].content[0].text.value == "Weather in Oslo?" and all(m.role in ("user", "assistant") for m in shown)


def test_a_run_in_progress_is_cancelled_and_a_finished_one_is_not(client, clerk):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Tell a very long story."}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=clerk.id, max_completion_tokens=900)
    assert run.status == "queued"
    with pytest.raises(openai.BadRequestError) as busy:  # the thread's run is computing
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=clerk.id)
    assert busy.value.body["code"] == "invalid_state" and busy.value.body["param"] == "thread_id"
    cancelling = client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert cancelling.status in ("cancelling", "cancelled")
    ended = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=200)
    assert ended.status == "cancelled" and ended.cancelled_at and ended.usage.completion_tokens < 900
    with pytest.raises(openai.BadRequestError) as again:
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert again.value.body["code"] == "invalid_state"


def test_create_and_run_makes_the_thread_and_its_run_at_once(client, clerk):
    run = client.beta.threads.create_and_run_poll(
        assistant_id=clerk.id, thread={"messages": [{"role": "user", "content": "Hi!"}]}, max_completion_tokens=6,
        poll_interval_ms=200,
    )  # fmt: skip
    assert run.status in ("completed", "incomplete")
    assert [m.role for m in client.beta.threads.messages.list(run.thread_id).data] == ["assistant", "user"]


def test_threads_are_updated_and_deleted_and_unknown_ids_get_openais_404(client, clerk):
    thread = client.beta.threads.create(metadata={"topic": "piers"})
    assert client.beta.threads.update(thread.id, metadata={"topic": "fog"}).metadata == {"topic": "fog"}
    other = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=other.id, assistant_id=clerk.id, max_completion_tokens=2, poll_interval_ms=200
    )
    for call in (
        lambda: client.beta.threads.retrieve("thread_nope"),
        lambda: client.beta.threads.runs.retrieve(run.id, thread_id=thread.id),  # another thread's run
        lambda: client.beta.threads.messages.retrieve("msg_nope", thread_id=thread.id),
        lambda: client.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_nope"),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert set(caught.value.body) >= {"message", "type", "param", "code"}
    assert client.beta.threads.delete(thread.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list(thread.id)


def test_hostile_bodies_are_refused_naming_the_field(server, clerk):
    url, headers = server[0], {"Authorization": f"Bearer {KEY}"}
    empty = requests.post(f"{url}/v1/threads", json={}, headers=headers, timeout=30).json()["id"]
    nothing = requests.post(f"{url}/v1/threads/{empty}/runs", json={"assistant_id": clerk.id}, headers=headers)
    assert nothing.status_code == 400 and "no user message" in nothing.json()["error"]["message"]
    said = {"messages": [{"role": "user", "content": "hi"}]}
    thread = requests.post(f"{url}/v1/threads", json=said, headers=headers, timeout=30).json()["id"]
    cases = [
        ("/v1/threads", {"messages": [{"role": "user", "content": "x"}] * 21}, "messages"),
        ("/v1/threads", {"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        (f"/v1/threads/{thread}/messages", {"role": "user", "content": 5}, "messages.0.content"),
        (f"/v1/threads/{thread}/runs", {"assistant_id": clerk.id, "temperature": 9}, "temperature"),
        (f"/v1/threads/{thread}/runs", {"assistant_id": clerk.id, "tools": [{"type": "file_search"}]}, "tools.0.type"),
        (f"/v1/threads/{thread}/runs", {}, "assistant_id"),
        (f"/v1/threads/{thread}/runs/run_nope/submit_tool_outputs", {"tool_outputs": []}, "tool_outputs"),
    ]
    for path, body, param in cases:
        answer = requests.post(url + path, json=body, headers=headers, timeout=30)
        assert answer.status_code == 400, (path, body, answer.text)
        assert answer.json()["error"]["param"] == param, (path, body, answer.text)


def test_a_run_waiting_for_tool_outputs_survives_a_server_restart(tmp_path):
    env = {"API_KEY": KEY, "CONTEXT_LENGTH": str(CONTEXT)}

    def connect():
        proc, url = start_streamlit("app.py", tmp_path / "data", env)
        wait_healthy(url)
        return proc, openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=120)

    proc, client = connect()
    try:
        agent, thread, run = stopped_for_the_weather(client)
        assert run.status == "requires_action"
    finally:
        stop(proc)
    proc, client = connect()
    try:
        waiting = client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
        assert waiting.status == "requires_action" and client.beta.assistants.retrieve(agent.id).tools
        call = waiting.required_action.submit_tool_outputs.tool_calls[0]
        done = client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "Snow"}],
            poll_interval_ms=200,
        )  # fmt: skip
        assert done.status in ("completed", "incomplete", "requires_action")
        assert client.beta.threads.messages.list(thread.id, order="asc").data[0].content[0].text.value == (
            "Weather in Oslo?"
        )
    finally:
        stop(proc)


def test_a_run_not_given_its_tool_outputs_in_time_expires_and_refuses_them(tmp_path):
    env = {"API_KEY": KEY, "CONTEXT_LENGTH": str(CONTEXT), "TOOL_OUTPUTS_WAIT_S": "5"}
    proc, url = start_streamlit("app.py", tmp_path / "data", env)
    try:
        wait_healthy(url)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=120)
        agent, thread, run = stopped_for_the_weather(client)
        assert run.status == "requires_action" and run.expires_at is not None
        assert run.expires_at - time.time() <= 6
        call = run.required_action.submit_tool_outputs.tool_calls[0]
        time.sleep(max(0.0, run.expires_at - time.time()) + 1.5)
        late = client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
        assert late.status == "expired" and late.required_action is None
        assert client.beta.threads.runs.list(thread.id).data[0].status == "expired"
        with pytest.raises(openai.BadRequestError) as refused:
            client.beta.threads.runs.submit_tool_outputs(
                run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "Snow"}]
            )
        assert refused.value.body["code"] == "invalid_state" and "start a new run" in refused.value.body["message"]
        again = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=agent.id, tool_choice="required", max_completion_tokens=40,
            temperature=0, poll_interval_ms=200,
        )  # fmt: skip
        assert again.status == "requires_action"  # the thread goes on with a new run
    finally:
        stop(proc)


def stopped_for_the_weather(client):
    """An assistant with the weather tool, a thread asking for it, and its run, polled until it stops."""
    agent = client.beta.assistants.create(model=BASE, tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather in Oslo?"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=agent.id, tool_choice="required", max_completion_tokens=40,
        temperature=0, poll_interval_ms=200,
    )  # fmt: skip
    return agent, thread, run
