"""The Responses and Conversations APIs' items, to and from the store's messages (`core.api_store`).

A message item (user, assistant, system or developer; text or text parts) is a message; a `function_call` is an
assistant message holding one call in `tool_calls`; a `function_call_output` is a `tool` message naming the call's
id. Item ids are the messages' own ids with a prefix for their type, so an id found in one conversation opens
nothing in another."""

from __future__ import annotations

import json
from typing import Any

from core.message import Message
from server.api.errors import ApiError
from server.api.schemas import MAX_CHARS, MAX_ITEMS

TEXT_PARTS = ("input_text", "output_text", "text")
PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def read_items(value: Any, param: str = "input") -> list[dict]:
    """Items from a request (a string is one user message) as store messages with fresh ids; a 400 naming the
    item's field for anything else."""
    if isinstance(value, str):
        value = [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        raise ApiError(400, f"{param}: must be a string or a list of items.", param=param, code="invalid_value")
    if len(value) > MAX_ITEMS:
        raise ApiError(
            400,
            f"{param}: {len(value):,} items; at most {MAX_ITEMS:,} are accepted.",
            param=param,
            code="invalid_value",
        )
    messages = [read_item(item, f"{param}.{index}") for index, item in enumerate(value)]
    if (total := sum(len(m["content"]) + len(json.dumps(m.get("tool_calls", ""))) for m in messages)) > MAX_CHARS:
        raise ApiError(
            400,
            f"{param}: the items hold {total:,} characters; at most {MAX_CHARS:,} are accepted.",
            param=param,
            code="invalid_value",
        )
    return messages


def read_item(item: Any, param: str) -> dict:
    if not isinstance(item, dict):
        raise ApiError(400, f"{param}: each item must be an object.", param=param, code="invalid_value")
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise ApiError(400, f"{param}.role: must be user, assistant, system or developer.", param=f"{param}.role")
        role = "system" if role == "developer" else role
        return Message.new(role, _text(item.get("content"), f"{param}.content")).as_state()
    if kind == "function_call":
        call_id, name = _string(item, "call_id", param), _string(item, "name", param)
        arguments = _string(item, "arguments", param, limit=MAX_CHARS)
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        return Message.answer("", tool_calls=[call]).as_state()
    if kind == "function_call_output":
        call_id = _string(item, "call_id", param)
        return Message.tool_result(_text(item.get("output"), f"{param}.output"), call_id).as_state()
    raise ApiError(
        400,
        f"{param}.type: {str(kind)[:40]!r} items are not supported; send message, function_call or "
        "function_call_output items.",
        param=f"{param}.type",
        code="unsupported_parameter",
    )


def _string(item: dict, key: str, param: str, limit: int = 200) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ApiError(
            400, f"{param}.{key}: must be a non-empty string of at most {limit:,} characters.", param=f"{param}.{key}"
        )
    return value


def _text(content: Any, param: str) -> str:
    """A string, or text parts joined; other parts (images, files, audio) are refused by name."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or len(content) > MAX_ITEMS:
        raise ApiError(400, f"{param}: must be a string or a list of text parts.", param=param, code="invalid_value")
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else None
            raise ApiError(
                400,
                f"{param}.{index}: only text parts are accepted (input_text, output_text), not {str(kind)[:40]!r}.",
                param=f"{param}.{index}",
                code="unsupported_parameter",
            )
        texts.append(part["text"])
    return "".join(texts)


# --- out: OpenAI's item shapes ------------------------------------------------------------------


def item_id(message: dict) -> str:
    return f"{PREFIXES[kind_of(message)]}_{message['id']}"


def message_id(item: str) -> str | None:
    """The store's message id an item id names, or None when it is not an item id."""
    prefix, _, mid = item.partition("_")
    return mid if prefix in PREFIXES.values() and mid else None


def kind_of(message: dict) -> str:
    if message["role"] == "tool":
        return "function_call_output"
    return "function_call" if message.get("tool_calls") else "message"


def to_items(message: dict) -> list[dict]:
    """A store message as Conversations/Responses items (an assistant message with several calls is several)."""
    kind, mid = kind_of(message), item_id(message)
    if kind == "function_call_output":
        return [
            {
                "type": kind,
                "id": mid,
                "call_id": message.get("tool_call_id", ""),
                "output": message["content"],
                "status": "completed",
            }
        ]
    if kind == "function_call":
        return [
            {
                "type": "function_call",
                "id": mid if index == 0 else f"{mid}-{index}",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
                "status": "completed",
            }
            for index, call in enumerate(message["tool_calls"])
        ]
    part = "output_text" if message["role"] == "assistant" else "input_text"
    content = {"type": part, "text": message["content"]}
    if part == "output_text":
        content["annotations"] = []
    return [{"type": "message", "id": mid, "status": "completed", "role": message["role"], "content": [content]}]


def page(items: list[dict], limit: Any, after: str | None, order: str) -> dict:
    """OpenAI's list shape over items (oldest first in `items`): `order` asc or desc, up to `limit` after `after`."""
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise ApiError(400, "limit: must be a whole number from 1 to 100.", param="limit", code="invalid_value")
    if order not in ("asc", "desc"):
        raise ApiError(400, "order: must be asc or desc.", param="order", code="invalid_value")
    ordered = items if order == "asc" else items[::-1]
    if after is not None:
        ids = [item["id"] for item in ordered]
        if after not in ids:
            raise ApiError(404, f"after: no item {after[:80]!r} in this list.", param="after", code="not_found")
        ordered = ordered[ids.index(after) + 1 :]
    shown = ordered[:limit]
    return {
        "object": "list",
        "data": shown,
        "first_id": shown[0]["id"] if shown else None,
        "last_id": shown[-1]["id"] if shown else None,
        "has_more": len(ordered) > limit,
    }
