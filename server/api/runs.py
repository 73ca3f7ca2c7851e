"""`/v1/threads/{id}/runs`: a run is a response over the thread's conversation (`server.api.responses`: its
`Turn`, `start` and `finish`), with the assistant's model, instructions and tools. What it answers is appended to
the thread (its conversation) when it ends, and the run itself is a stored object.

Not streamed, a run answers at once (`queued`) and is computed in a thread of its own; the client polls it
(`create_and_poll`). Streamed, its events are OpenAI's: `thread.run.created`, `thread.run.queued`,
`thread.run.in_progress`, `thread.message.created`, `thread.message.in_progress`, `thread.message.delta`…,
`thread.message.completed`, then `thread.run.completed` (or `requires_action`, `incomplete`, `cancelled`,
`failed`) and `done`. A run whose answer calls tools stops at `requires_action`; `submit_tool_outputs` continues
it. A run in progress is known to this process (`LIVE`); a stored one (after a restart, say) can still take the
outputs of the tools it asked for until its `expires_at` (TOOL_OUTPUTS_WAIT_S after it stopped, 10 minutes unless
set, as OpenAI's): past it, the run is `expired` the next time it is read, and its outputs are refused."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from core.api_store import new_api_id
from core.errors import StudioError
from core.message import Message as ConversationMessage
from core.settings import get_settings
from server.api.assistant_schemas import RunCreate, ThreadAndRunCreate, ToolOutputs
from server.api.assistants import found_assistant, found_thread, message_shape, thread_messages
from server.api.body import read_json
from server.api.errors import ApiError, failure_message
from server.api.items import page
from server.api.responses import Turn, api_store, finish, finish_quietly, list_query, start
from server.api.run_shapes import Run, new_run, response_request
from server.api.streaming import _END, _next, close_quietly, complete, in_thread

log = logging.getLogger(__name__)
MAX_LIVE = 64  # runs computing at once, streamed or not; more get a 429
POLL_AFTER_MS = "250"  # the official client polls a run this often (`openai-poll-after-ms`)
ENDED = ("completed", "incomplete", "cancelled", "failed", "expired")


LIVE: dict[str, Run] = {}
_live = threading.Lock()


def begin(run: Run, new_messages: list[dict], stream: bool) -> None:
    """The run's next turn started over the thread's messages (blocking: call in a thread)."""
    with _live:
        if run.shape["id"] not in LIVE and len(LIVE) >= MAX_LIVE:
            raise ApiError(429, f"{MAX_LIVE} runs are in progress; wait for one to end.", code="rate_limit_exceeded")
        if other := next((rid for rid, live in LIVE.items() if live.thread == run.thread), None):
            raise busy_thread(other)  # two runs at once would interleave their answers in the one conversation
        LIVE[run.shape["id"]] = run
    try:
        body = response_request(run.shape, stream)
        history = api_store().store.messages(run.thread)
        turn = Turn(new_api_id("resp"), body, time.time(), history, new_messages, run.thread, cancelled=run.cancel)
        turn.answer_fields = {"run_id": run.shape["id"], "assistant_id": run.shape["assistant_id"]}
        turn.run = start(body, history + new_messages, run.cancel)
    except ApiError as exc:
        with _live:
            LIVE.pop(run.shape["id"], None)
        if exc.param == "input" and not any(m["role"] == "user" for m in history + new_messages):
            raise ApiError(
                400,
                "The thread has no user message to answer yet; add one (POST /v1/threads/{thread_id}/messages).",
                param="thread_id",
                code="invalid_state",
            ) from None
        raise
    except BaseException:
        with _live:
            LIVE.pop(run.shape["id"], None)
        raise
    run.turn = turn
    run.set("in_progress", required_action=None, expires_at=None)
    run.save()


def busy_thread(rid: str) -> ApiError:
    return ApiError(
        400,
        f"This thread already has an active run ({rid}); wait for it to end, cancel it, or submit the tool outputs it "
        "waits for.",
        param="thread_id",
        code="invalid_state",
    )


def waiting_run(cid: str) -> str | None:
    """The id of the thread's run that waits for tool outputs (and has not expired), if one does (blocking)."""
    for obj in api_store().list("run", conversation_id=cid):
        waiting = obj.body.get("status") == "requires_action"
        if waiting and expired_if_due(Run(obj.body, cid)).shape["status"] == "requires_action":
            return obj.id
    return None


def expired_if_due(run: Run) -> Run:
    """The run, `expired` (and stored so) when it waited for tool outputs past its `expires_at` (blocking)."""
    due = run.shape.get("expires_at")
    if run.shape["status"] == "requires_action" and isinstance(due, int) and time.time() >= due:
        run.set("expired", required_action=None)
        run.save()
    return run


def settle(run: Run) -> None:
    """The run's state from its turn's end, stored (blocking)."""
    turn = run.turn
    stats = turn.run.stats
    before = run.shape.get("usage") or {"prompt_tokens": 0, "completion_tokens": 0}  # earlier turns of this run
    used = {
        "prompt_tokens": before["prompt_tokens"] + stats.prompt_tokens,
        "completion_tokens": before["completion_tokens"] + stats.completion_tokens,
    }
    used["total_tokens"] = used["prompt_tokens"] + used["completion_tokens"]
    calls = turn.output[-1].get("tool_calls") if turn.output else None
    if turn.status == "cancelled":
        run.set("cancelled", usage=used)
    elif calls:
        action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}
        due = int(time.time() + get_settings().tool_outputs_wait_s)
        run.set("requires_action", required_action=action, usage=used, expires_at=due)
    elif turn.status == "incomplete":
        run.set("incomplete", incomplete_details={"reason": "max_completion_tokens"}, usage=used)
    else:
        run.set("completed", usage=used)
    with _live:
        LIVE.pop(run.shape["id"], None)
    run.save()


def fail(run: Run, exc: BaseException) -> None:
    message = failure_message(exc, "run")
    run.set("failed", last_error={"code": "server_error", "message": message})
    with _live:
        LIVE.pop(run.shape["id"], None)
    try:
        run.save()
    except StudioError:
        log.warning("A failed run could not be stored")


def work(run: Run) -> None:
    """A run that is not streamed, computed to its end in its own thread."""
    turn, text, finished = run.turn, [], False
    try:
        while (piece := _next(turn.run)) is not _END:
            text.append(piece)
        finish(turn, "".join(text), complete(turn.run))
        finished = True
        settle(run)
    except BaseException as exc:  # noqa: BLE001 - the run records why, and the server goes on
        if not finished:  # keep what came (once: a finished turn is stored already)
            finish_quietly(turn, "".join(text))
        fail(run, exc)
    finally:
        turn.run.close()


def answered(run: Run, stream: bool) -> Response:
    if stream:
        return StreamingResponse(run_events(run), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    threading.Thread(target=work, args=(run,), name=f"run {run.shape['id'][:12]}", daemon=True).start()
    return JSONResponse(dict(run.shape, status="queued"), headers={"openai-poll-after-ms": POLL_AFTER_MS})


def sse(name: str, data) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def run_events(run: Run) -> AsyncIterator[str]:
    turn, text, ended = run.turn, [], False
    message = ConversationMessage.answer(id=turn.answer_id, time=turn.created, **turn.answer_fields).as_state()
    shown = dict(message_shape(message, run.thread), status="in_progress", content=[], completed_at=None)
    started = False
    try:
        if run.shape.get("usage") is None:  # a new run (not one continued with its tool outputs)
            yield sse("thread.run.created", dict(run.shape, status="queued"))
            yield sse("thread.run.queued", dict(run.shape, status="queued"))
        yield sse("thread.run.in_progress", run.shape)
        while (piece := await in_thread(_next, turn.run)) is not _END:
            text.append(piece)
            for delta in turn.run.shape.feed(piece):
                for chunk in message_delta(delta, shown, started):
                    started = True
                    yield chunk
        for delta in turn.run.shape.finish(complete(turn.run)):
            for chunk in message_delta(delta, shown, started):
                started = True
                yield chunk
        await in_thread(finish, turn, "".join(text), complete(turn.run))
        await in_thread(settle, run)
        ended = True
        if started:
            said = next((m["content"] for m in turn.output if not m.get("tool_calls")), "".join(text))
            done = message_shape({**message, "content": said}, run.thread)
            yield sse("thread.message.completed", done)
        yield sse(f"thread.run.{run.shape['status']}", run.shape)
    except Exception as exc:  # the status line is sent: the failure goes in the stream
        await in_thread(fail, run, exc)
        ended = True
        yield sse("thread.run.failed", run.shape)
        yield sse("error", {"message": run.shape["last_error"]["message"], "code": "server_error"})
    finally:
        await close_quietly(turn.run)
        if not ended:  # the client left: its row stops, what came is kept, the run is cancelled
            run.cancel.set()
            await in_thread(finish_quietly, turn, "".join(text))
            await in_thread(settle, run)
    yield "event: done\ndata: [DONE]\n\n"


def message_delta(delta: dict, shown: dict, started: bool) -> list[str]:
    if not delta.get("content"):
        return []
    out = [] if started else [sse("thread.message.created", shown), sse("thread.message.in_progress", shown)]
    part = {"index": 0, "type": "text", "text": {"value": delta["content"], "annotations": []}}
    out.append(
        sse("thread.message.delta", {"id": shown["id"], "object": "thread.message.delta", "delta": {"content": [part]}})
    )
    return out


# --- routes ------------------------------------------------------------------------------------


async def create_run(request: Request) -> Response:
    body = await read_json(request, RunCreate)

    def made() -> Run:
        cid = found_thread(request.path_params["thread_id"]).id
        if waiting := waiting_run(cid):
            raise busy_thread(waiting)
        run = new_run(body, cid)
        begin(run, thread_messages(body.additional_messages, "additional_messages"), body.stream)
        return run

    return answered(await in_thread(made), body.stream)


async def create_thread_and_run(request: Request) -> Response:
    body = await read_json(request, ThreadAndRunCreate)

    def made() -> Run:
        found_assistant(body.assistant_id)  # before a thread is made for nothing
        thread = body.thread
        messages = thread_messages(thread.messages if thread else [], "thread.messages")
        store = api_store()
        cid = store.create_conversation(messages, (thread.metadata if thread else None) or {})
        run = new_run(body, cid)
        begin(run, thread_messages(body.additional_messages, "additional_messages"), body.stream)
        return run

    return answered(await in_thread(made), body.stream)


def found_run(request: Request) -> Run:
    cid = found_thread(request.path_params["thread_id"]).id
    rid = request.path_params["run_id"]
    with _live:
        run = LIVE.get(rid)
    if run is not None and run.thread == cid:
        return run
    obj = api_store().get("run", rid)
    if obj is None or obj.conversation_id != cid:
        raise ApiError(404, f"No run {rid[:80]!r} in this thread.", param="run_id", code="not_found")
    return expired_if_due(Run(obj.body, cid))


async def retrieve_run(request: Request) -> Response:
    run = await in_thread(found_run, request)
    return JSONResponse(run.shape, headers={"openai-poll-after-ms": POLL_AFTER_MS})


async def list_runs(request: Request) -> Response:
    def listed() -> dict:
        cid = found_thread(request.path_params["thread_id"]).id
        with _live:
            live = {rid: run.shape for rid, run in LIVE.items() if run.thread == cid}
        stored = api_store().list("run", conversation_id=cid)
        shapes = [live.get(obj.id) or expired_if_due(Run(obj.body, cid)).shape for obj in stored]
        return page(shapes, *list_query(request, default_order="desc"))

    return JSONResponse(await in_thread(listed))


async def cancel_run(request: Request) -> Response:
    def cancelled() -> dict:
        run = found_run(request)
        status = run.shape["status"]
        if status in ENDED:
            raise ApiError(
                400,
                f"This run is {status}; only a run in progress can be cancelled.",
                param="run_id",
                code="invalid_state",
            )
        if status == "requires_action":  # nothing computes: it ends here
            run.set("cancelled", required_action=None)
            with _live:
                LIVE.pop(run.shape["id"], None)
            run.save()
            return run.shape
        run.cancel.set()  # its row leaves the batch at the next step; the run ends cancelled
        return dict(run.shape, status="cancelling")

    return JSONResponse(await in_thread(cancelled))


async def submit_tool_outputs(request: Request) -> Response:
    body = await read_json(request, ToolOutputs)

    def continued() -> Run:
        run = found_run(request)
        action = run.shape.get("required_action") or {}
        if run.shape["status"] != "requires_action":
            expired = run.shape["status"] == "expired"
            late = " (it waited for them past its expires_at); start a new run" if expired else ""
            raise ApiError(
                400,
                f"This run is {run.shape['status']}; it is not waiting for tool outputs{late}.",
                param="run_id",
                code="invalid_state",
            )
        asked = [call["id"] for call in action["submit_tool_outputs"]["tool_calls"]]
        given = [output.tool_call_id for output in body.tool_outputs]
        if sorted(given) != sorted(asked):
            raise ApiError(
                400,
                f"tool_outputs: give one output for each call the run asked for ({', '.join(asked)[:300]}).",
                param="tool_outputs",
                code="invalid_value",
            )
        outputs = [ConversationMessage.tool_result(o.output, o.tool_call_id).as_state() for o in body.tool_outputs]
        begin(run, outputs, body.stream)
        return run

    return answered(await in_thread(continued), body.stream)


ROUTES = [
    ("POST", "/v1/threads/runs", create_thread_and_run),
    ("POST", "/v1/threads/{thread_id}/runs", create_run),
    ("GET", "/v1/threads/{thread_id}/runs", list_runs),
    ("GET", "/v1/threads/{thread_id}/runs/{run_id}", retrieve_run),
    ("POST", "/v1/threads/{thread_id}/runs/{run_id}/cancel", cancel_run),
    ("POST", "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", submit_tool_outputs),
]
