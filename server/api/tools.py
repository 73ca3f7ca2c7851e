"""`tools`, `tool_choice` and `response_format` of a chat request: checked and turned into what the engine takes
(tool definitions for the prompt, a JSON schema to constrain the answer), and the answer's text turned back into
OpenAI's shapes (`message.tool_calls`, tool-call deltas). The Llama-3.1 JSON format itself is `llm.tools`."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import problems
from llm.tools import SchemaError, call_schema, check_schema, parse_calls
from server.api.errors import ApiError

MAX_TOOLS = 128  # OpenAI's own bound on a request's tools
MAX_TOOLS_CHARS = 80_000  # every definition together, as JSON: a forced call's schema must stay compilable
ARGUMENT_PIECE = 64  # characters of a call's arguments per streamed delta


class Function(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: Annotated[str, Field(max_length=10_000)] | None = None
    parameters: dict | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: Function


@dataclass(frozen=True)
class ToolPlan:
    """What one request asks of its answer. `tools`: definitions for the prompt (none for tool_choice none);
    `json_schema`: the constraint (a forced call or a JSON answer); `mode`: "text", "auto" (calls parsed when
    the model writes them) or "call" (the answer is a call, by construction); `answer_schema`: what a JSON
    answer must match (checked too, since a server may not hold to it)."""

    mode: str = "text"
    tools: list[dict] = field(default_factory=list)
    json_schema: str | None = None
    answer_schema: dict | None = None
    parallel: bool = True  # parallel_tool_calls: false keeps the first call an "auto" answer makes

    @property
    def names(self) -> set[str]:
        return {t["function"]["name"] for t in self.tools}


def plan(request) -> ToolPlan:
    """The request's tools and answer format, checked (a 400 naming the field), or a plain text plan."""
    answer_schema = _answer_schema(request.response_format)
    tools = _tools(request.tools)
    choice = request.tool_choice
    name = None if choice in (None, "none", "auto", "required") else _named(choice)
    if choice is not None and not tools:
        if choice == "none":
            choice = None
        else:
            raise ApiError(400, "tool_choice needs tools.", param="tool_choice", code="invalid_value")
    if not tools or choice == "none":
        schema = json.dumps(answer_schema) if answer_schema is not None else None
        return ToolPlan(json_schema=schema, answer_schema=answer_schema)
    if answer_schema is not None and choice != "auto" and choice is not None:
        raise ApiError(400, "response_format cannot be combined with a forced tool call.", param="response_format")
    if choice in (None, "auto"):
        schema = json.dumps(answer_schema) if answer_schema is not None else None
        parallel = request.parallel_tool_calls is not False
        return ToolPlan("auto" if schema is None else "text", tools, schema, answer_schema, parallel)
    if choice == "required":
        return ToolPlan("call", tools, json.dumps(call_schema(tools)))
    if name not in {t["function"]["name"] for t in tools}:
        raise ApiError(
            400, f"tool_choice names {name[:64]!r}, which is not in tools.", param="tool_choice", code="invalid_value"
        )
    return ToolPlan("call", tools, json.dumps(call_schema(tools, name)))


def _named(choice: Any) -> str:
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if isinstance(name, str):
            return name
    raise ApiError(
        400,
        'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}.',
        param="tool_choice",
        code="invalid_value",
    )


def _tools(raw: list | None) -> list[dict]:
    if not raw:
        return []
    if len(raw) > MAX_TOOLS:
        raise ApiError(400, f"tools: at most {MAX_TOOLS} tools are accepted, not {len(raw):,}.", param="tools")
    tools = []
    for index, item in enumerate(raw):
        try:
            tool = Tool.model_validate(item)
        except ValidationError as exc:
            where, problem = problems(exc)[0]
            raise ApiError(400, f"tools.{index}.{where}: {problem}.", param="tools", code="invalid_value") from None
        function = tool.function
        parameters = function.parameters or {"type": "object", "properties": {}}
        try:
            check_schema(parameters)
        except SchemaError as exc:
            raise ApiError(
                400, f"tools.{index} ({function.name}) parameters: {exc}.", param="tools", code="invalid_value"
            ) from None
        definition = {"name": function.name, "parameters": parameters}
        if function.description:
            definition = {"name": function.name, "description": function.description, "parameters": parameters}
        tools.append({"type": "function", "function": definition})
    if len({t["function"]["name"] for t in tools}) < len(tools):
        raise ApiError(400, "tools: two tools have the same name.", param="tools", code="invalid_value")
    if len(json.dumps(tools)) > MAX_TOOLS_CHARS:
        raise ApiError(400, f"tools: the definitions are over {MAX_TOOLS_CHARS:,} characters of JSON.", param="tools")
    return tools


def _answer_schema(response_format: dict | None) -> dict | None:
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise ApiError(
            400,
            "response_format: type must be 'text', 'json_object' or 'json_schema'.",
            param="response_format",
            code="invalid_value",
        )
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if schema is None:
        raise ApiError(
            400, "response_format: json_schema needs a `schema`.", param="response_format", code="invalid_value"
        )
    try:
        check_schema(schema)
    except SchemaError as exc:
        raise ApiError(400, f"response_format: {exc}.", param="response_format", code="invalid_value") from None
    return schema


class AnswerShape:
    """The answer's text pieces in, OpenAI's deltas (streamed) or message (whole) out.

    "auto": a streamed answer whose first non-blank character opens a JSON object is held back and read as calls
    at its end (vLLM streams only calls that start the answer too); any other is content as it comes. A whole
    answer is read for calls anywhere in it. Whatever does not parse as valid calls is returned as content."""

    def __init__(self, plan: ToolPlan):
        self.plan = plan
        self.held: list[str] = []
        self.streaming = plan.mode == "text"  # content goes out as it comes
        self.calls: list[dict] = []

    def feed(self, piece: str) -> list[dict]:
        if self.streaming:
            return [{"content": piece}]
        self.held.append(piece)
        text = "".join(self.held)
        if self.plan.mode == "auto" and text.strip() and not text.lstrip().startswith(("{", "<|python_tag|>")):
            self.streaming, self.held = True, []
            return [{"content": text}]
        return []

    def finish(self, complete: bool) -> list[dict]:
        """The deltas left once the pieces end. `complete`: the answer was not cut short (by length or a stop)."""
        if self.streaming:
            return []
        text = "".join(self.held)
        self.calls = self._calls(text)
        if not self.calls:
            self.check(text, complete)
            return [{"content": text}] if text else []
        deltas = []
        for index, call in enumerate(self.calls):
            function = call["function"]
            head = {"index": index, "id": call["id"], "type": "function"}
            deltas.append({"tool_calls": [{**head, "function": {"name": function["name"], "arguments": ""}}]})
            arguments = function["arguments"]
            for start in range(0, len(arguments), ARGUMENT_PIECE):
                piece = arguments[start : start + ARGUMENT_PIECE]
                deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return deltas

    def message(self, text: str, complete: bool) -> dict:
        self.calls = [] if self.plan.mode == "text" else self._calls(text)
        if self.calls:
            return {"role": "assistant", "content": None, "tool_calls": self.calls}
        self.check(text, complete)
        return {"role": "assistant", "content": text}

    def finish_reason(self, reason: str) -> str:
        return "tool_calls" if self.calls else reason

    def check(self, text: str, complete: bool) -> None:
        """A JSON answer that ended on its own must be what response_format asked for (constrained decoding
        makes it so here; a server on LLM_BACKEND=openai may not hold to it)."""
        schema = self.plan.answer_schema
        if schema is None or not complete or self.plan.mode != "text":
            return
        from jsonschema import Draft202012Validator

        try:
            problems = list(Draft202012Validator(schema).iter_errors(json.loads(text)))
        except ValueError:
            problems = ["not JSON"]
        if problems:
            raise ApiError(
                502,
                "The model's answer is not JSON matching response_format.",
                param="response_format",
                code="invalid_answer",
                kind="server_error",
            )

    def _calls(self, text: str) -> list[dict]:
        found = parse_calls(text, self.plan.names) or []
        if self.plan.mode == "call" or not self.plan.parallel:
            found = found[:1]  # a forced call is one call: its schema describes exactly one
        return [
            {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": {"name": n, "arguments": a}}
            for n, a in found
        ]
