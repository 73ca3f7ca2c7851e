"""A request's messages as the engine's history: system and developer prompts joined, text parts joined, and
tool calls with their results kept together (a result must answer an earlier call)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import problems
from llm.prompts import Message
from server.api.errors import ApiError
from server.api.schemas import ChatMessage


def to_messages(messages: list[ChatMessage], persona_prompt: str | None) -> list[Message]:
    """System (and developer) messages joined into one leading system prompt; the persona's own prompt
    when the request has none (a LoRA persona then answers as it does on its page)."""
    system, chat = [], []
    for index, message in enumerate(messages):
        if message.role == "function":
            raise ApiError(
                400,
                "function messages (OpenAI's deprecated function calling) are not supported; use tools.",
                param=f"messages.{index}.role",
                code="unsupported_parameter",
            )
        text = _text(message, index)
        if message.role in ("system", "developer"):
            system.append(text)
        elif message.role == "tool" or message.tool_calls:
            chat.append(tool_turn(message, index, text, chat))
        else:
            chat.append({"role": message.role, "content": text})
    if not chat:
        raise ApiError(400, "messages needs at least one user message.", param="messages")
    prompt = "\n\n".join(system) if system else persona_prompt
    return ([{"role": "system", "content": prompt}] if prompt else []) + chat


def _text(message: ChatMessage, index: int) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = message.content or []
    if any(part.type != "text" or part.text is None for part in parts):
        raise ApiError(
            400,
            "Only text content parts are supported.",
            param=f"messages.{index}.content",
            code="unsupported_parameter",
        )
    return "".join(part.text for part in parts)


def tool_turn(message, index: int, text: str, earlier: list[dict]) -> dict:
    """An assistant message with `tool_calls`, or a `tool` message answering one of them, as a history message.
    A result must name an earlier call by its id, so no result reaches the model without its call."""
    if message.role == "tool":
        known = {call["id"] for m in earlier for call in m.get("tool_calls") or []}
        if message.tool_call_id not in known:
            raise ApiError(
                400,
                f"messages.{index}: a tool message must answer an earlier assistant tool call by its tool_call_id "
                f"({str(message.tool_call_id)[:64]!r} is none of them).",
                param=f"messages.{index}.role",
                code="invalid_value",
            )
        return {"role": "tool", "content": text, "tool_call_id": message.tool_call_id}
    if message.role != "assistant":
        raise ApiError(
            400, "Only assistant messages carry tool_calls.", param=f"messages.{index}.tool_calls", code="invalid_value"
        )
    return {"role": "assistant", "content": text, "tool_calls": [_call(c, index) for c in message.tool_calls]}


class _Called(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    arguments: Annotated[str, Field(max_length=100_000)] = "{}"


class _Call(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=200)]
    type: Literal["function"] = "function"
    function: _Called


def _call(raw: Any, index: int) -> dict:
    try:
        call = _Call.model_validate(raw)
    except ValidationError as exc:
        where, problem = problems(exc)[0]
        raise ApiError(
            400,
            f"messages.{index}.tool_calls: {where}: {problem}.",
            param=f"messages.{index}.tool_calls",
            code="invalid_value",
        ) from None
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.function.name, "arguments": call.function.arguments},
    }
