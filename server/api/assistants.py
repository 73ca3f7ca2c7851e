"""`/v1/assistants` and `/v1/threads` (with their messages): the tutorial's endpoints, which OpenAI retired on
2026-08-26, as a thin translation onto the one store (`core.api_store`).

An assistant is a stored object: a name, instructions, a model (the base model, a persona or `team:<name>`), tools
and metadata. A thread is a conversation of the chat page (its sidebar shows it, and it continues there), with the
id `thread_<the page's ?c= id>`; its messages are the conversation's user and assistant text messages. A run over
it (`server.api.runs`) is a response over that conversation."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.api_store import ApiObject, new_api_id
from server.api.assistant_schemas import AssistantCreate, AssistantUpdate, MessageCreate, ThreadCreate, ThreadUpdate
from server.api.body import read_json
from server.api.errors import ApiError
from server.api.items import page, read_item
from server.api.loaded import find_target
from server.api.responses import api_store, list_query
from server.api.streaming import in_thread

MAX_ASSISTANTS = 10_000  # listed at most (OpenAI's lists page 100 at a time)


# --- assistants ------------------------------------------------------------------------------


def assistant_shape(obj: ApiObject) -> dict:
    return {"id": obj.id, "object": "assistant", "created_at": int(obj.created), **obj.body}


def check_tools(tools: list | None) -> None:
    for index, tool in enumerate(tools or []):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
            raise ApiError(
                400,
                f"tools.{index}.type: only function tools are served here, not {str(kind)[:40]!r} (no code "
                "interpreter or file search).",
                param=f"tools.{index}.type",
                code="unsupported_parameter",
            )


def found_assistant(aid: str) -> ApiObject:
    obj = api_store().get("assistant", aid)
    if obj is None:
        raise ApiError(404, f"No assistant {aid[:80]!r}.", param="assistant_id", code="not_found")
    return obj


async def create_assistant(request: Request) -> Response:
    body = await read_json(request, AssistantCreate)

    def made() -> ApiObject:
        find_target(body.model)
        check_tools(body.tools)
        fields = body.model_dump(exclude_none=True)
        fields = {"name": None, "description": None, "instructions": None, "metadata": {}, "tools": []} | fields
        obj = ApiObject(new_api_id("asst"), "assistant", None, None, time.time(), fields)
        api_store().put(obj)
        return obj

    return JSONResponse(assistant_shape(await in_thread(made)))


async def list_assistants(request: Request) -> Response:
    def listed() -> dict:
        shapes = [assistant_shape(o) for o in api_store().list("assistant", limit=MAX_ASSISTANTS)]
        return page(shapes, *list_query(request, default_order="desc"))

    return JSONResponse(await in_thread(listed))


async def retrieve_assistant(request: Request) -> Response:
    return JSONResponse(assistant_shape(await in_thread(found_assistant, request.path_params["assistant_id"])))


async def update_assistant(request: Request) -> Response:
    body = await read_json(request, AssistantUpdate)

    def updated() -> ApiObject:
        obj = found_assistant(request.path_params["assistant_id"])
        if body.model is not None:
            find_target(body.model)
        check_tools(body.tools)
        changed = ApiObject(obj.id, obj.kind, None, None, obj.created, obj.body | body.model_dump(exclude_none=True))
        api_store().put(changed)
        return changed

    return JSONResponse(assistant_shape(await in_thread(updated)))


async def delete_assistant(request: Request) -> Response:
    aid = request.path_params["assistant_id"]
    await in_thread(found_assistant, aid)
    await in_thread(api_store().delete, "assistant", aid)
    return JSONResponse({"id": aid, "object": "assistant.deleted", "deleted": True})


# --- threads -----------------------------------------------------------------------------------


def thread_key(value: str) -> str:
    return value.removeprefix("thread_")


def thread_shape(conversation) -> dict:
    return {
        "id": f"thread_{conversation.id}",
        "object": "thread",
        "created_at": int(conversation.created),
        "metadata": conversation.metadata,
        "tool_resources": {},
    }


def found_thread(value: str):
    conversation = api_store().conversation(thread_key(value))
    if conversation is None:
        raise ApiError(404, f"No thread {value[:80]!r}.", param="thread_id", code="not_found")
    return conversation


def thread_messages(messages: list, param: str) -> list[dict]:
    """Request messages (user or assistant, text) as store messages with fresh ids."""
    return [
        read_item({"type": "message", "role": m.role, "content": m.content}, f"{param}.{i}")
        for i, m in enumerate(messages or [])
    ]


def message_shape(message: dict, thread_id: str) -> dict:
    created = int(message.get("time") or 0)
    return {
        "id": f"msg_{message['id']}",
        "object": "thread.message",
        "created_at": created,
        "thread_id": f"thread_{thread_id}",
        "role": message["role"],
        "content": [{"type": "text", "text": {"value": message["content"], "annotations": []}}],
        "assistant_id": message.get("assistant_id"),  # set on a run's answers
        "run_id": message.get("run_id"),
        "attachments": [],
        "metadata": {},
        "status": "completed",
        "completed_at": created if message["role"] == "assistant" else None,
        "incomplete_at": None,
        "incomplete_details": None,
    }


def shown_messages(cid: str) -> list[dict]:
    """The thread's text messages, oldest first: tool calls and their outputs are a run's steps, not messages."""
    return [
        message_shape(m, cid)
        for m in api_store().store.messages(cid)
        if m["role"] in ("user", "assistant") and not m.get("tool_calls") and m["content"]
    ]


async def create_thread(request: Request) -> Response:
    body = await read_json(request, ThreadCreate)
    messages = thread_messages(body.messages, "messages")

    def made():
        store = api_store()
        return store.conversation(store.create_conversation(messages, body.metadata or {}))

    return JSONResponse(thread_shape(await in_thread(made)))


async def retrieve_thread(request: Request) -> Response:
    return JSONResponse(thread_shape(await in_thread(found_thread, request.path_params["thread_id"])))


async def update_thread(request: Request) -> Response:
    body = await read_json(request, ThreadUpdate)

    def updated():
        conversation = found_thread(request.path_params["thread_id"])
        api_store().set_metadata(conversation.id, body.metadata)
        return api_store().conversation(conversation.id)

    return JSONResponse(thread_shape(await in_thread(updated)))


async def delete_thread(request: Request) -> Response:
    def deleted():
        conversation = found_thread(request.path_params["thread_id"])
        api_store().store.delete(conversation.id)
        return conversation

    conversation = await in_thread(deleted)
    return JSONResponse({"id": f"thread_{conversation.id}", "object": "thread.deleted", "deleted": True})


async def create_message(request: Request) -> Response:
    body = await read_json(request, MessageCreate)
    message = thread_messages([body], "messages")[0]

    def added() -> dict:
        conversation = found_thread(request.path_params["thread_id"])
        if not api_store().append(conversation.id, [message]):
            raise ApiError(404, "The thread was deleted meanwhile.", param="thread_id", code="not_found")
        return message_shape(message, conversation.id)

    return JSONResponse(await in_thread(added))


async def list_messages(request: Request) -> Response:
    def listed() -> dict:
        shown = shown_messages(found_thread(request.path_params["thread_id"]).id)
        if (run := request.query_params.get("run_id")) is not None:  # only what that run wrote
            shown = [shape for shape in shown if shape["run_id"] == run]
        return page(shown, *list_query(request, "desc"))

    return JSONResponse(await in_thread(listed))


async def retrieve_message(request: Request) -> Response:
    def found() -> dict:
        wanted = request.path_params["message_id"]
        for shape in shown_messages(found_thread(request.path_params["thread_id"]).id):
            if shape["id"] == wanted:
                return shape
        raise ApiError(404, f"No message {wanted[:80]!r} in this thread.", param="message_id", code="not_found")

    return JSONResponse(await in_thread(found))


ROUTES = [
    ("POST", "/v1/assistants", create_assistant),
    ("GET", "/v1/assistants", list_assistants),
    ("GET", "/v1/assistants/{assistant_id}", retrieve_assistant),
    ("POST", "/v1/assistants/{assistant_id}", update_assistant),
    ("DELETE", "/v1/assistants/{assistant_id}", delete_assistant),
    ("POST", "/v1/threads", create_thread),
    ("GET", "/v1/threads/{thread_id}", retrieve_thread),
    ("POST", "/v1/threads/{thread_id}", update_thread),
    ("DELETE", "/v1/threads/{thread_id}", delete_thread),
    ("POST", "/v1/threads/{thread_id}/messages", create_message),
    ("GET", "/v1/threads/{thread_id}/messages", list_messages),
    ("GET", "/v1/threads/{thread_id}/messages/{message_id}", retrieve_message),
]
