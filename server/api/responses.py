"""`/v1/responses`: OpenAI's Responses API over the one answer path (`chat.start_chat`) and the pages' store.

A response's history is what it continues: the turns of its `previous_response_id` chain (each stored response keeps
its input and output items, function calls and their outputs included) or the items of its `conversation` (the chat
page's own messages, `core.api_store`), then its `input`. `instructions` apply to this response only, as OpenAI
defines them. A stored response (`store`, default true) is written once, when it ends; `store: false` writes
nothing. A response in progress is known to this process only (`RUNNING`), so it can be read and cancelled.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from core.api_store import ApiObject, ApiStore, new_api_id
from core.message import Message as ConversationMessage
from core.message import new_message_id
from llm.prompts import turns
from server.api.body import first_problem, read_json
from server.api.chat import ChatRun, start_chat
from server.api.errors import ApiError, failure_message
from server.api.items import page, read_items, to_items
from server.api.response_events import ItemWriter
from server.api.response_schemas import ResponseRequest
from server.api.schemas import ChatRequest
from server.api.streaming import _END, _next, close_quietly, collect, complete, in_thread


def api_store() -> ApiStore:
    from core.settings import get_settings
    from core.store import Store
    from runtime import shared

    settings = get_settings()
    store = shared(("store", str(settings.database_path)), lambda: Store(settings.database_path))
    return ApiStore(store, settings.responses_retention_days * 86_400, settings.responses_max_stored)


def conversation_key(value: str) -> str:
    """The store's id for `conv_<id>` or a bare id (the chat page's `?c=`)."""
    return value.removeprefix("conv_")


@dataclass
class Turn:
    """One response being answered: what it continues, its input, and its run."""

    id: str
    body: ResponseRequest
    created: float
    history: list[dict]
    input: list[dict]
    conversation: str | None  # the store's id
    run: ChatRun | None = None
    output: list[dict] = field(default_factory=list)  # store messages
    status: str = "in_progress"
    cancelled: threading.Event = field(default_factory=threading.Event)
    answer_id: str = field(default_factory=new_message_id)  # the stored answer message's id (its items' ids)
    answer_fields: dict = field(default_factory=dict)  # more of the stored answer (a run's run_id, assistant_id)

    def shape(self) -> dict:
        """The response object, OpenAI's shape."""
        body, usage = self.body, None
        if self.run is not None and self.status != "in_progress":
            prompt, answer = self.run.stats.prompt_tokens, self.run.stats.completion_tokens
            usage = {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": self.run.stats.cached_tokens},
                "output_tokens": answer,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + answer,
            }
        text_format = (
            body.text.format.model_dump(by_alias=True, exclude_none=True)
            if body.text and body.text.format
            else {"type": "text"}
        )
        return {
            "id": self.id,
            "object": "response",
            "created_at": int(self.created),
            "status": self.status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if self.status == "incomplete" else None,
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "model": body.model,
            "output": [item for message in self.output for item in to_items(message)],
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id,
            "conversation": {"id": f"conv_{self.conversation}"} if self.conversation else None,
            "store": body.store,
            "temperature": 1.0 if body.temperature is None else body.temperature,
            "top_p": 1.0 if body.top_p is None else body.top_p,
            "text": {"format": text_format},
            "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
            "tools": body.tools or [],
            "truncation": "disabled",
            "metadata": body.metadata or {},
            "usage": usage,
        }


RUNNING: dict[str, Turn] = {}
_running = threading.Lock()


def prepare(body: ResponseRequest) -> Turn:
    """The response's history and input, checked, and its answer started (blocking: runs in a thread)."""
    if body.background:
        raise ApiError(400, "background: not supported; stream the response instead.", param="background")
    cid = conversation_key(body.conversation_id()) if body.conversation_id() else None
    if cid and body.previous_response_id:
        raise ApiError(
            400, "conversation: use either conversation or previous_response_id, not both.", param="conversation"
        )
    if cid and not body.store:
        raise ApiError(400, "store: a response in a conversation is stored with it; drop store: false.", param="store")
    if body.input is None or body.input == []:
        raise ApiError(400, "input: give the response some input (a string or items).", param="input")
    new = read_items(body.input)
    history = earlier_turns(body, cid)
    turn = Turn(new_api_id("resp"), body, time.time(), history, new, cid)
    turn.run = start(body, history + new, turn.cancelled)
    with _running:
        RUNNING[turn.id] = turn
    return turn


def earlier_turns(body: ResponseRequest, cid: str | None) -> list[dict]:
    store = api_store()
    if cid:
        if store.conversation(cid) is None:
            raise ApiError(404, f"No conversation {cid[:80]!r}.", param="conversation", code="not_found")
        return store.store.messages(cid)
    if body.previous_response_id:
        chain = store.chain(body.previous_response_id)
        if chain is None:
            raise ApiError(
                404,
                f"No stored response {body.previous_response_id[:80]!r} (never stored, deleted, or past "
                "RESPONSES_RETENTION_DAYS).",
                param="previous_response_id",
                code="not_found",
            )
        return [m for obj in chain for m in (*obj.body.get("input", []), *obj.body.get("output", []))]
    return []


def start(body: ResponseRequest, messages: list[dict], cancel: threading.Event) -> ChatRun:
    chat = [{"role": "system", "content": body.instructions}] if body.instructions else []
    chat += [
        {**turn, "content": turn["content"] or None} if turn.get("tool_calls") else turn for turn in turns(messages)
    ]
    fields = {
        "model": body.model,
        "messages": chat,
        "max_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "stream": body.stream,
        **body.chat_fields(),
    }
    try:
        request = ChatRequest.model_validate(fields)
    except ValidationError as exc:
        param, message = first_problem(exc)
        param = "input" if param is None or param.startswith("messages") else param
        raise ApiError(400, f"{param}: {message}.", param=param, code="invalid_value") from None
    try:
        return start_chat(request, cancel)[0]
    except ApiError as exc:
        if exc.param and exc.param.startswith("messages"):
            exc.param = "input"
        if exc.param == "max_tokens":
            exc.param = "max_output_tokens"
        raise


def finish(turn: Turn, text: str, complete: bool) -> None:
    """The answer as store messages, the status, and (if asked) the response written (blocking)."""
    run = turn.run
    message = run.shape.message(text, complete)
    calls = {"tool_calls": message["tool_calls"]} if message.get("tool_calls") else {}
    # the chat page shows its figures as its own
    stored = ConversationMessage.answer(
        message["content"] or "",
        id=turn.answer_id,
        model=turn.body.model,
        stats=run.stats.as_dict(),
        **turn.answer_fields,
        **calls,
    ).as_state()
    turn.output = [stored] if stored["content"] or stored.get("tool_calls") else []
    if turn.cancelled.is_set():
        turn.status = "cancelled"
    else:
        turn.status = "incomplete" if run.finish_reason == "length" and not run.shape.calls else "completed"
    save(turn)


def save(turn: Turn) -> None:
    with _running:
        RUNNING.pop(turn.id, None)
    if not turn.body.store:
        return
    store = api_store()
    record = {"response": turn.shape(), "input": turn.input, "output": turn.output}
    stored = ApiObject(turn.id, "response", turn.body.previous_response_id, turn.conversation, turn.created, record)
    store.put(stored, turn.input + turn.output)  # appended to its conversation, if it has one, in one commit


# --- routes ------------------------------------------------------------------------------------


async def create_response(request: Request) -> Response:
    body = await read_json(request, ResponseRequest)
    turn = await in_thread(prepare, body)
    if body.stream:
        return StreamingResponse(
            events(turn),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        text = await collect(turn.run, request)
    except BaseException:
        with _running:
            RUNNING.pop(turn.id, None)
        raise
    if text is None:
        turn.cancelled.set()
        text = ""
    await in_thread(finish, turn, text, complete(turn.run))
    return JSONResponse(turn.shape())


async def events(turn: Turn) -> AsyncIterator[str]:
    """The documented event sequence, each event with its `sequence_number`."""

    numbers = itertools.count()

    def event(kind: str, **fields) -> str:
        data = {"type": kind, "sequence_number": next(numbers), **fields}
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    run, text, ended = turn.run, [], False
    writer = ItemWriter(event, turn.answer_id)
    try:
        yield event("response.created", response=turn.shape())
        yield event("response.in_progress", response=turn.shape())
        while (piece := await in_thread(_next, run)) is not _END:
            text.append(piece)
            for delta in run.shape.feed(piece):
                for chunk in writer.delta(delta):
                    yield chunk
        for delta in run.shape.finish(complete(run)):
            for chunk in writer.delta(delta):
                yield chunk
        await in_thread(finish, turn, "".join(text), complete(run))
        ended = True
        for chunk in writer.close():
            yield chunk
        final = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
            turn.status, "response.failed"
        )
        yield event(final, response=turn.shape())
    except Exception as exc:  # the status line is sent: the error goes in the stream
        message = failure_message(exc, "response")
        turn.status = "failed"
        yield event("error", code="server_error", message=message, param=None)
    finally:
        await close_quietly(run)
        if not ended:  # the client left or the answer failed: keep what came, marked so
            if turn.status == "in_progress":
                turn.cancelled.set()
            await in_thread(finish_quietly, turn, "".join(text))


def finish_quietly(turn: Turn, text: str) -> None:
    try:
        finish(turn, text, False)
    except Exception:  # noqa: BLE001 - the answer is already over; the store's own errors are logged there
        with _running:
            RUNNING.pop(turn.id, None)


def stored_response(rid: str) -> tuple[Turn | None, ApiObject | None]:
    with _running:
        turn = RUNNING.get(rid)
    if turn is not None:
        return turn, None
    obj = api_store().get("response", rid)
    if obj is None:
        raise ApiError(
            404,
            f"No response {rid[:80]!r}: never stored (store: false), deleted, or past RESPONSES_RETENTION_DAYS.",
            param="response_id",
            code="not_found",
        )
    return None, obj


async def get_response(request: Request) -> Response:
    turn, obj = await in_thread(stored_response, request.path_params["response_id"])
    return JSONResponse(turn.shape() if turn else obj.body["response"])


async def delete_response(request: Request) -> Response:
    rid = request.path_params["response_id"]
    await in_thread(stored_response, rid)  # 404 when unknown
    await in_thread(api_store().delete, "response", rid)
    return JSONResponse({"id": rid, "object": "response", "deleted": True})


async def cancel_response(request: Request) -> Response:
    turn, obj = await in_thread(stored_response, request.path_params["response_id"])
    if turn is None:
        raise ApiError(
            400,
            f"This response is {obj.body['response'].get('status', 'finished')}; only a response in progress can be "
            "cancelled.",
            param="response_id",
            code="invalid_state",
        )
    turn.cancelled.set()  # its row leaves the batch at the next step
    if hasattr(turn.run.pieces, "wait"):  # a team's run: closing it (from any thread) stops all its rows
        await close_quietly(turn.run)
    shape = turn.shape()
    return JSONResponse({**shape, "status": "cancelled"})


async def input_items(request: Request) -> Response:
    turn, obj = await in_thread(stored_response, request.path_params["response_id"])
    messages = turn.input if turn else obj.body.get("input", [])
    items = [item for message in messages for item in to_items(message)]
    return JSONResponse(page(items, *list_query(request, default_order="desc")))


def list_query(request: Request, default_order: str) -> tuple:
    query = request.query_params
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = None
    return limit, query.get("after"), query.get("order", default_order)


ROUTES = [
    ("POST", "/v1/responses", create_response),
    ("GET", "/v1/responses/{response_id}", get_response),
    ("DELETE", "/v1/responses/{response_id}", delete_response),
    ("POST", "/v1/responses/{response_id}/cancel", cancel_response),
    ("GET", "/v1/responses/{response_id}/input_items", input_items),
]
