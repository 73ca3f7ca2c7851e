"""`/v1/completions`: OpenAI's legacy text completion, for simonw's `llm` (`completion: true` models) and litellm's
`text_completion`. The prompt is raw text, continued as it is: no chat template and no system prompt
(`ChatBackend.complete`), so a client writes any template it wants. One completion per request.

Which models: the base model; a LoRA persona continues the text through its adapter (its system prompt cannot
apply to raw text); a prompt persona (only a system prompt) and a team answer chats only, so they are refused
naming `model`. On `LLM_BACKEND=openai` the text goes to the server's own /v1/completions."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from core.errors import StudioError
from server.api import loaded
from server.api.body import read_json
from server.api.chat import ChatRun
from server.api.errors import ApiError, failure, refusal
from server.api.schemas import CompletionRequest
from server.api.stops import StopStrings
from server.api.streaming import _END, _next, close_quietly, collect, in_thread
from server.api.translate import refuse_unsupported, to_options


async def completions(request: Request) -> Response:
    body = await read_json(request, CompletionRequest)
    run = await in_thread(start_completion, body)
    answer_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    echo = body.prompt if body.echo else ""
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            sse(run, answer_id, created, body.model, echo, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    if (text := await collect(run, request)) is None:
        return Response(status_code=499)  # the client went away; nobody reads this
    return JSONResponse(
        {
            "id": answer_id,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": [{"text": echo + text, "index": 0, "logprobs": None, "finish_reason": run.finish_reason}],
            "usage": usage(run),
        }
    )


def start_completion(body: CompletionRequest) -> ChatRun:
    """Check the request against the model it names and start its completion (blocking: call in a thread)."""
    refuse_unsupported(body)
    target = loaded.find_target(body.model)
    if target.kind in ("prompt", "team"):
        what = "a prompt persona, whose system prompt needs a chat" if target.kind == "prompt" else "a team"
        raise ApiError(
            400,
            f"model: {body.model!r} is {what}; raw text has no chat to put it in. Ask /v1/chat/completions with "
            f"it, or name the base model {target.parent!r} here.",
            param="model",
            code="unsupported_model",
        )
    options, cancel = to_options(body.sampling()), threading.Event()
    try:
        pieces = loaded.backend().complete(body.prompt, options, model=target.backend_model, cancel=cancel)
    except StudioError as exc:
        raise refusal(exc, prompt="prompt") from None
    return ChatRun(pieces, pieces.stats, StopStrings(pieces, body.stop_strings()), cancel=cancel)


def usage(run: ChatRun) -> dict:
    prompt, completion = run.stats.prompt_tokens, run.stats.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def sse(
    run: ChatRun, answer_id: str, created: int, model: str, echo: str, include_usage: bool
) -> AsyncIterator[str]:
    """OpenAI's `text_completion` chunks: the echoed prompt (when asked), the text as it comes, a last choice
    with `finish_reason`, then (when asked) one with `choices: []` and `usage`, then `[DONE]`."""

    def event(text: str | None, finish: str | None = None, **extra) -> str:
        choices = [] if text is None else [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]
        chunk = {"id": answer_id, "object": "text_completion", "created": created, "model": model}
        return f"data: {json.dumps({**chunk, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

    try:
        if echo:
            yield event(echo)
        while (piece := await in_thread(_next, run)) is not _END:
            if piece:
                yield event(piece)
        yield event("", run.finish_reason)
        if include_usage:
            yield event(None, usage=usage(run))
    except Exception as exc:  # mid-stream: the status line is sent already, so the error goes in the stream
        yield f"data: {json.dumps({'error': failure(exc)})}\n\n"
    finally:
        await close_quietly(run)
    yield "data: [DONE]\n\n"


ROUTES = [("POST", "/v1/completions", completions)]
