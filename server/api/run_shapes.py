"""A run as OpenAI shapes it: the object made from its create body (the assistant's settings where the run gives
none), kept current as it goes and stored, and the Responses request its turn answers (`server.api.runs` computes
it)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pydantic import ValidationError

from core.api_store import ApiObject, new_api_id
from server.api.assistant_schemas import RunCreate
from server.api.assistants import check_tools, found_assistant
from server.api.body import first_problem
from server.api.errors import ApiError
from server.api.response_schemas import ResponseRequest
from server.api.responses import Turn, api_store

RUN_FIELDS = {"max_output_tokens": "max_completion_tokens", "text": "response_format", "format": "response_format"}


@dataclass
class Run:
    shape: dict  # OpenAI's run object, kept current
    thread: str  # the store's conversation id
    cancel: threading.Event = field(default_factory=threading.Event)
    turn: Turn | None = None

    def set(self, status: str, **fields) -> None:
        self.shape.update(status=status, **fields)
        stamp = {"in_progress": "started_at", "completed": "completed_at", "cancelled": "cancelled_at"}
        stamp |= {"failed": "failed_at", "incomplete": "completed_at"}
        if status in stamp and self.shape.get(stamp[status]) is None:
            self.shape[stamp[status]] = int(time.time())

    def save(self) -> None:
        shape = self.shape
        api_store().put(ApiObject(shape["id"], "run", shape["assistant_id"], self.thread, shape["created_at"], shape))


def new_run(body: RunCreate, cid: str) -> Run:
    assistant = found_assistant(body.assistant_id).body
    check_tools(body.tools)
    instructions = body.instructions if body.instructions is not None else assistant.get("instructions") or ""
    if body.additional_instructions:
        instructions = f"{instructions}\n\n{body.additional_instructions}".strip()
    pick = {name: getattr(body, name) for name in ("temperature", "top_p", "response_format")}
    shape = {
        "id": new_api_id("run"),
        "object": "thread.run",
        "created_at": int(time.time()),
        "thread_id": f"thread_{cid}",
        "assistant_id": body.assistant_id,
        "status": "queued",
        "started_at": None,
        "expires_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "required_action": None,
        "last_error": None,
        "model": body.model or assistant["model"],
        "instructions": instructions,
        "tools": body.tools if body.tools is not None else assistant.get("tools") or [],
        "metadata": body.metadata or {},
        "incomplete_details": None,
        "usage": None,
        "temperature": pick["temperature"] if pick["temperature"] is not None else assistant.get("temperature"),
        "top_p": pick["top_p"] if pick["top_p"] is not None else assistant.get("top_p"),
        "max_completion_tokens": body.max_completion_tokens,
        "max_prompt_tokens": None,
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "response_format": pick["response_format"] or assistant.get("response_format") or "auto",
        "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
        "parallel_tool_calls": body.parallel_tool_calls is not False,
    }
    return Run(shape, cid)


def response_request(shape: dict, stream: bool) -> ResponseRequest:
    """The run's settings as the Responses request its turn answers."""
    number = {key: float(shape[key]) for key in ("temperature", "top_p") if shape.get(key) is not None}
    fields = {"model": shape["model"], "instructions": shape["instructions"] or None, "stream": stream, **number}
    if shape["max_completion_tokens"] is not None:
        fields["max_output_tokens"] = shape["max_completion_tokens"]
    if shape["tools"]:
        fields |= {"tools": shape["tools"], "tool_choice": shape["tool_choice"]}
        fields["parallel_tool_calls"] = shape["parallel_tool_calls"]
    answer_format = shape["response_format"]
    if isinstance(answer_format, dict) and answer_format.get("type") == "json_object":
        fields["text"] = {"format": {"type": "json_object"}}
    elif isinstance(answer_format, dict) and answer_format.get("type") == "json_schema":
        schema = answer_format.get("json_schema") if isinstance(answer_format.get("json_schema"), dict) else {}
        fields["text"] = {"format": {"type": "json_schema", **schema}}
    try:
        return ResponseRequest.model_validate(fields)
    except ValidationError as exc:
        param, message = first_problem(exc, ResponseRequest.PARAMS)
        param = RUN_FIELDS.get(param, param)  # the run's own names for them
        raise ApiError(400, f"{param or 'run'}: {message}.", param=param, code="invalid_value") from None
