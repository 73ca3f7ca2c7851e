"""Tool calls and JSON answers through the API, against a real `streamlit run app.py` with the demo model:
the official `openai` client (whole and streamed, `required`, named and `auto`, a call -> result -> answer
loop, json_object, json_schema and `parse` with a pydantic model), LangGraph's `create_react_agent` and
LangChain's `with_structured_output`. The demo model is tiny: these check shapes, not wisdom."""

from __future__ import annotations

import json

import openai
import pytest
from jsonschema import validate
from pydantic import BaseModel

from tests.browser import serving
from tests.test_api import BASE

pytestmark = [pytest.mark.slow, pytest.mark.model]
KEY = "tools-key-8d1e"
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"type": "string", "enum": ["C", "F"]}},
    "required": ["city", "unit"],
}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "The weather in a city.", "parameters": WEATHER_PARAMETERS},
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time in a time zone.",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 20}}},
        },
    },
]
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("data"), {"API_KEY": KEY, "CONTEXT_LENGTH": "2048"}) as url:
        yield url


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=120)


def chat(client, **extra):
    extra = {"messages": QUESTION, "max_tokens": 60, "temperature": 0, **extra}
    return client.chat.completions.create(model=BASE, **extra)


def check_call(call, name: str | None = None) -> dict:
    assert call.id.startswith("call_") and call.type == "function"
    tool = next(t["function"] for t in TOOLS if t["function"]["name"] == call.function.name)
    assert name in (None, tool["name"])
    arguments = json.loads(call.function.arguments)
    validate(arguments, tool["parameters"])
    return arguments


def test_required_gives_a_valid_call_to_one_of_the_tools(client):
    answer = chat(client, tools=TOOLS, tool_choice="required")
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    check_call(call)


def test_a_named_function_is_the_one_called(client):
    answer = chat(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_time"}})
    check_call(answer.choices[0].message.tool_calls[0], "get_time")


def test_a_streamed_call_comes_as_openais_deltas(client):
    chunks = list(chat(client, tools=TOOLS, tool_choice="required", stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    first = deltas[0].tool_calls[0]
    assert first.index == 0 and first.id.startswith("call_") and first.type == "function"
    assert first.function.name in ("get_weather", "get_time") and first.function.arguments == ""
    arguments = "".join(d.tool_calls[0].function.arguments or "" for d in deltas)
    validate(
        json.loads(arguments),
        next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == first.function.name),
    )
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_the_sdks_stream_helper_assembles_the_call(client):
    with client.chat.completions.stream(
        model=BASE, messages=QUESTION, tools=TOOLS, tool_choice="required", max_tokens=60, temperature=0
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    check_call(final.choices[0].message.tool_calls[0])


@pytest.mark.parametrize("stream", [False, True])
def test_auto_answers_in_text_or_with_a_valid_call(client, stream):
    if not stream:
        message = chat(client, tools=TOOLS, tool_choice="auto").choices[0].message
        assert message.tool_calls or isinstance(message.content, str)
        for call in message.tool_calls or []:
            check_call(call)
        return
    chunks = list(chat(client, tools=TOOLS, stream=True))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_none_answers_in_text(client):
    message = chat(client, tools=TOOLS, tool_choice="none").choices[0].message
    assert message.tool_calls is None and isinstance(message.content, str)


def test_a_call_its_result_and_the_final_answer(client):
    first = chat(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]
    history = [
        *QUESTION,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    final = chat(client, messages=history, tools=TOOLS, tool_choice="none")
    assert final.choices[0].message.content and final.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError) as caught:  # a result for a call never made
        chat(client, messages=[*QUESTION, {"role": "tool", "tool_call_id": "call_x", "content": "r"}])
    assert caught.value.body["param"] == "messages.1.role"


def test_json_object_and_json_schema_answers_parse(client):
    free = chat(client, response_format={"type": "json_object"}, max_tokens=80).choices[0]
    if free.finish_reason == "stop":  # any object: the demo model may ramble inside a string past max_tokens
        assert isinstance(json.loads(free.message.content), dict)
    assert free.message.content.lstrip().startswith("{")
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string", "maxLength": 30}, "population": {"type": "integer"}},
        "required": ["capital", "population"],
        "additionalProperties": False,
    }
    answer = chat(
        client,
        messages=[{"role": "user", "content": "The capital of France, as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
        max_tokens=80,
    )
    validate(json.loads(answer.choices[0].message.content), schema)
    small = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    given = {"type": "json_schema", "json_schema": {"name": "ok", "schema": small}}
    streamed = chat(client, response_format=given, max_tokens=40, stream=True)
    validate(json.loads("".join(c.choices[0].delta.content or "" for c in streamed if c.choices)), small)


class City(BaseModel):
    name: str
    country: str


def test_the_sdks_parse_gives_a_pydantic_object(client):
    answer = client.chat.completions.parse(
        model=BASE,
        messages=[{"role": "user", "content": "Name a city and its country."}],
        response_format=City,
        max_tokens=60,
        temperature=0,
    )
    assert isinstance(answer.choices[0].message.parsed, City)


def test_hostile_tools_are_refused_with_the_field_named(client):
    loop = {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
    cases = [
        ({"tools": [{"type": "function", "function": {"name": f"t{i}"}} for i in range(129)]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": loop}}]}, "tools"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "rm_rf"}}}, "tool_choice"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": loop}}}, "response_format"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            chat(client, **extra)
        assert caught.value.body["param"] == param


def langchain_model(url):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=BASE, base_url=f"{url}/v1", api_key=KEY, max_tokens=60, temperature=0, max_retries=0)


def test_langgraph_react_agent_calls_the_tool_and_finishes(url):
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import tool
    from langgraph.prebuilt import create_react_agent

    calls = []

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return "18 degrees and sunny"

    model = langchain_model(url)
    forced, free = (
        model.bind_tools([get_weather], tool_choice="get_weather"),
        model.bind_tools([get_weather], tool_choice="none"),
    )

    def pick(state, runtime):  # the demo model is too small to choose: call once, then answer
        return free if any(isinstance(m, ToolMessage) for m in state["messages"]) else forced

    agent = create_react_agent(pick, [get_weather])
    result = agent.invoke({"messages": [("user", "What is the weather in Paris?")]}, {"recursion_limit": 6})
    assert len(calls) == 1 and isinstance(calls[0], str)
    assert isinstance(result["messages"][-2], ToolMessage) and result["messages"][-1].content


def test_langchain_structured_output_gives_a_pydantic_object(url):
    model = langchain_model(url)
    for method in ("json_schema", "function_calling"):
        city = model.with_structured_output(City, method=method).invoke("Name a city and its country.")
        assert isinstance(city, City), method
