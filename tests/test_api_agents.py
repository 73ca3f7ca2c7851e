"""Agent SDKs and client libraries against a real `streamlit run app.py` with the demo model: OpenAI's
`openai-agents` (a function tool and a typed output, on its chat-completions model and on its Responses model),
`instructor` (tools, JSON-schema and JSON modes, and its streamed partial objects), litellm (chat with tools,
streaming, `text_completion`, embeddings) and pydantic-ai (typed output as a tool call and as a JSON schema, on
both of its OpenAI models). The demo model is tiny: a named `tool_choice`
makes the first turn a call, as a small model needs; these check that each SDK's own parsing accepts ours."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from pydantic import BaseModel, Field

from tests.browser import serving
from tests.test_api import BASE

pytestmark = [pytest.mark.slow, pytest.mark.model]
KEY = "agents-key-3e7b"
QUESTION = "What is the weather in Paris?"
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]}


class City(BaseModel):
    name: str = Field(max_length=40)
    country: str = Field(max_length=40)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("data"), {"API_KEY": KEY, "CONTEXT_LENGTH": "2048"}) as url:
        yield url


def run_agent(url: str, model_class: str, text: str, max_turns: int, **fields):
    """One `Runner.run` of an agent on the SDK's `model_class` (its chat-completions or Responses model)."""
    import agents

    agents.set_tracing_disabled(True)  # the SDK would send traces to OpenAI

    async def run():
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=300)
        model = getattr(agents, model_class)(model=BASE, openai_client=client)
        try:
            return await agents.Runner.run(
                agents.Agent(name="studio", model=model, **fields), text, max_turns=max_turns
            )
        finally:
            await client.close()

    return asyncio.run(run())


@pytest.mark.parametrize("model_class", ["OpenAIChatCompletionsModel", "OpenAIResponsesModel"])
def test_openai_agents_calls_the_tool_then_answers(url, model_class):
    from agents import MessageOutputItem, ModelSettings, ToolCallItem, ToolCallOutputItem, function_tool

    calls = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"18 degrees and sunny in {city}"

    settings = ModelSettings(tool_choice="get_weather", max_tokens=400, temperature=0)  # the SDK resets it to auto
    result = run_agent(
        url,
        model_class,
        QUESTION,
        4,
        tools=[get_weather],
        model_settings=settings,
        instructions="You answer questions about the weather.",
    )
    assert len(calls) == 1 and isinstance(calls[0], str) and calls[0].strip()
    kinds = [type(item) for item in result.new_items]
    assert kinds[:2] == [ToolCallItem, ToolCallOutputItem] and kinds[-1] is MessageOutputItem
    assert isinstance(result.final_output, str) and result.final_output.strip()


@pytest.mark.parametrize("model_class", ["OpenAIChatCompletionsModel", "OpenAIResponsesModel"])
def test_openai_agents_typed_output_is_a_pydantic_object(url, model_class):
    from agents import ModelSettings

    settings = ModelSettings(max_tokens=80, temperature=0)
    result = run_agent(url, model_class, "Name a city and its country.", 1, output_type=City, model_settings=settings)
    assert isinstance(result.final_output, City) and result.final_output.name


def instructor_client(url, mode_name: str):
    import instructor

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=300)
    return instructor.from_openai(client, mode=getattr(instructor.Mode, mode_name))


@pytest.mark.parametrize("mode_name", ["TOOLS", "JSON_SCHEMA", "JSON"])
def test_instructor_gives_a_pydantic_object(url, mode_name):
    city = instructor_client(url, mode_name).chat.completions.create(
        model=BASE,
        response_model=City,
        messages=[{"role": "user", "content": "Name a city and its country."}],
        max_tokens=80,
        temperature=0,
        max_retries=1,
    )
    assert isinstance(city, City) and city.name


def test_instructor_streams_partial_objects(url):
    parts = list(
        instructor_client(url, "TOOLS").chat.completions.create_partial(
            model=BASE,
            response_model=City,
            messages=[{"role": "user", "content": "Name a city and its country."}],
            max_tokens=80,
            temperature=0,
        )
    )
    assert parts and isinstance(parts[-1], City) and parts[-1].name and parts[-1].country


def litellm_module(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # it would fetch its price list from GitHub
    import litellm

    return litellm


def test_litellm_chat_tools_stream_text_completion_and_embeddings(url, monkeypatch):
    litellm = litellm_module(monkeypatch)
    where = {"api_base": f"{url}/v1", "api_key": KEY}
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}
    called = litellm.completion(
        model=f"openai/{BASE}",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[tool],
        tool_choice="required",
        max_tokens=60,
        temperature=0,
        **where,
    )
    [call] = called.choices[0].message.tool_calls
    assert called.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments)["city"]
    chunks = litellm.completion(
        model=f"openai/{BASE}", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, stream=True, **where
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks).strip()
    text = litellm.text_completion(model=f"openai/{BASE}", prompt="The capital of France is", max_tokens=8, **where)
    assert text.choices[0].text and text.usage.completion_tokens <= 8
    vectors = litellm.embedding(model="openai/all-MiniLM-L6-v2", input=["hello", "world"], **where)
    assert [len(item["embedding"]) for item in vectors.data] == [384, 384]


@pytest.mark.parametrize("model_class", ["OpenAIChatModel", "OpenAIResponsesModel"])
@pytest.mark.parametrize("output", ["tool", "native"])
def test_pydantic_ai_typed_output(url, model_class, output):
    import pydantic_ai.models.openai as models
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.settings import ModelSettings

    model = getattr(models, model_class)(BASE, provider=OpenAIProvider(base_url=f"{url}/v1", api_key=KEY))
    output_type = City if output == "tool" else NativeOutput(City)  # a `final_result` tool call, or a JSON schema
    agent = Agent(model, output_type=output_type, model_settings=ModelSettings(max_tokens=80, temperature=0))
    assert isinstance(agent.run_sync("Name a city and its country.").output, City)
