"""HTTP in, backend calls out: `/v1/models`, `/v1/models/{id}`, `/v1/chat/completions`, `/health`; the other
routes live in their own modules (`embeddings`, `completions`, `responses`, `conversations`).

The event loop here also carries every browser's websocket, so anything that blocks (the model, the
tokenizer, the embedding model) runs in a worker thread, and streams are async generators that fetch
one piece at a time from the backend's iterator. A client that goes away closes that iterator, which
takes its row out of the batch at the next step.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Match, Route

from core.errors import StudioError
from server.api import assistants, completions, conversations, loaded, responses, runs
from server.api.access import check_access
from server.api.body import read_json
from server.api.chat import ChatRun, start_chat
from server.api.embeddings import embedding_id, embeddings
from server.api.errors import ApiError, error_response, failure, refusal
from server.api.schemas import ChatRequest
from server.api.streaming import _END, _next, close_quietly, collect, complete, in_thread

log = logging.getLogger(__name__)


Handler = Callable[[Request], Awaitable[Response]]


class V1:
    """Every request under /v1, whatever its path or method: the access checks, then the handler for its path
    and method, or 404/405 in OpenAI's error shape (the openai client raises NotFoundError). Routed as a plain
    ASGI app, which Starlette's router matches fully for every method: a route with `methods` matches a wrong
    method only partly, and Streamlit's catch-all page, a full match, would then answer it with 200 and HTML."""

    def __init__(self, routes: list[tuple[str, str, Handler]]):
        self.paths: dict[str, dict[str, Handler]] = {}
        for method, path, handler in routes:
            self.paths.setdefault(path, {})[method] = handler
        self.routes = [(Route(path, _unused), methods) for path, methods in self.paths.items()]

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        try:
            check_access(request)
            response = await self.find(request)(request)
        except ApiError as exc:
            response = error_response(exc)
        except Exception:  # a bug: logged with its traceback, the client gets the shape and no trace
            log.exception("API request failed")
            response = error_response(
                ApiError(
                    500,
                    "The server failed on this request; its log says why.",
                    code="internal_error",
                    kind="server_error",
                )
            )
        await response(scope, receive, send)

    def find(self, request: Request) -> Handler:
        method = request.method
        for route, methods in self.routes:
            match, child = route.matches({**request.scope, "method": "GET"})
            if match is not Match.FULL:
                continue
            request.scope["path_params"] = child["path_params"]
            handler = methods.get("GET" if method == "HEAD" else method)
            if handler is None:
                allowed = ", ".join([*methods, "HEAD"] if "GET" in methods else methods)
                raise ApiError(
                    405,
                    f"{method} is not allowed on {request.url.path}; use {allowed}.",
                    code="method_not_allowed",
                    headers={"Allow": allowed},
                )
            return handler
        names = ", ".join(route.path_format for route, _ in self.routes)
        raise ApiError(
            404, f"Unknown API route {method} {request.url.path}. This server has {names}.", code="unknown_url"
        )


async def _unused(request: Request) -> Response:  # a Route only to match paths; V1 calls the handlers
    raise NotImplementedError


# --- routes ------------------------------------------------------------------------------------


async def health(request: Request) -> Response:
    """503 while the model loads (or when it failed, saying why); 200 with the engine's figures after."""
    try:
        backend = await in_thread(loaded.backend)
    except ApiError as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok", **backend.figures()})


async def list_models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": await model_objects()})


async def get_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    found = [m for m in await model_objects() if m["id"] == model_id]
    if not found:
        raise ApiError(
            404,
            f"The model {model_id[:200]!r} does not exist. GET /v1/models lists the models and personas.",
            param="model",
            code="model_not_found",
        )
    return JSONResponse(found[0])


async def model_objects() -> list[dict]:
    """The base model, every available persona and team, and the embedding model, in OpenAI's model shape."""
    targets = await in_thread(loaded.targets)
    created = int(time.time())
    data = [
        {
            "id": t.id,
            "object": "model",
            "created": created,
            "owned_by": "llama-studio",
            "root": t.backend_model or t.id,
            "parent": t.parent,
            "persona": t.kind in ("prompt", "lora"),
        }
        for t in targets.values()
    ]
    data.append(
        {
            "id": embedding_id(),
            "object": "model",
            "created": created,
            "owned_by": "llama-studio",
            "root": embedding_id(),
            "parent": None,
            "persona": False,
        }
    )
    return data


async def chat_completions(request: Request) -> Response:
    chat = await read_json(request, ChatRequest)
    try:
        runs = await in_thread(start_chat, chat)
    except StudioError as exc:
        raise refusal(exc) from None
    answer_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if chat.stream:
        include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
        return StreamingResponse(
            sse(runs, answer_id, created, chat.model, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    texts = []
    try:
        for run in runs:  # they decode together; read one after another
            if (text := await collect(run, request)) is None:
                return Response(status_code=499)  # the client went away; nobody reads this
            texts.append(text)
    finally:
        for run in runs:
            await close_quietly(run)
    choices = []
    for index, (run, text) in enumerate(zip(runs, texts)):
        message = run.shape.message(text, complete(run))  # tool calls or a checked JSON answer read from the text
        choice = {"index": index, "message": message, "finish_reason": run.shape.finish_reason(run.finish_reason)}
        if (logprobs := run.logprobs_content(len(text.encode("utf-8", errors="replace")), final=True)) is not None:
            choice["logprobs"] = {"content": logprobs}
        choices.append(choice)
    return JSONResponse(
        {
            "id": answer_id,
            "object": "chat.completion",
            "created": created,
            "model": chat.model,
            "choices": choices,
            "usage": usage(runs),
        }
    )


def usage(runs: list[ChatRun]) -> dict:
    """The prompt once (the answers share it), the tokens of every answer."""
    prompt, completion = runs[0].stats.prompt_tokens, sum(run.stats.completion_tokens for run in runs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def sse(runs: list[ChatRun], answer_id: str, created: int, model: str, include_usage: bool) -> AsyncIterator[str]:
    """OpenAI's chunks; with `n` answers, each chunk carries one choice's delta (its `index`), taken in turn
    from the answers still going (they decode in the same steps, so none waits long for another)."""

    def event(index: int, delta: dict | None, finish: str | None = None, logprobs: list | None = None, **extra):
        choices = [] if delta is None else [{"index": index, "delta": delta, "finish_reason": finish}]
        if logprobs:
            choices[0]["logprobs"] = {"content": logprobs}
        chunk = {
            "id": answer_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    try:
        for index in range(len(runs)):
            yield event(index, {"role": "assistant", "content": ""})
        sent = [0] * len(runs)  # bytes of each answer's text sent: the log probabilities of their tokens go with them
        going = list(range(len(runs)))
        while going:
            for index in list(going):
                run = runs[index]
                if (piece := await in_thread(_next, run)) is _END:
                    going.remove(index)
                    for delta in run.shape.finish(complete(run)):
                        yield event(index, delta)
                    finish = run.shape.finish_reason(run.finish_reason)
                    yield event(index, {}, finish, logprobs=run.logprobs_content(sent[index], final=True))
                    continue
                for delta in run.shape.feed(piece):  # content as it comes; a tool call is held until it is whole
                    sent[index] += len(delta["content"].encode("utf-8", errors="replace"))
                    yield event(index, delta, logprobs=run.logprobs_content(sent[index]))
        if include_usage:
            yield event(0, None, usage=usage(runs))
    except Exception as exc:  # mid-stream: the status line is sent already, so the error goes in the stream
        yield f"data: {json.dumps({'error': failure(exc)})}\n\n"
    finally:
        for run in runs:
            await close_quietly(run)
    yield "data: [DONE]\n\n"


def api_routes() -> list[Route]:
    """/health as it was; everything under /v1 (any path, any method) to `V1`."""
    v1 = V1(
        [
            ("GET", "/v1/models", list_models),
            ("GET", "/v1/models/{model_id:path}", get_model),  # ids may hold a slash (org/name)
            ("POST", "/v1/chat/completions", chat_completions),
            ("POST", "/v1/embeddings", embeddings),
            *completions.ROUTES,
            *responses.ROUTES,
            *conversations.ROUTES,
            *runs.ROUTES,  # before the threads' own: POST /v1/threads/runs is not a thread's id
            *assistants.ROUTES,
        ]
    )
    return [Route("/health", health, methods=["GET"]), Route("/v1", v1), Route("/v1/{rest:path}", v1)]


@asynccontextmanager
async def lifespan(app):
    """The model starts loading when the server starts, not when the first page opens."""
    loaded.start_loading()
    print(f"  OpenAI-compatible API: {api_address()}\n", flush=True)  # below Streamlit's own URL lines
    yield


def api_address() -> str:
    """The API's URL as this server listens (`streamlit run app.py --server.port 8501` gives :8501)."""
    from streamlit import config

    host = config.get_option("server.address") or "localhost"
    return f"http://{host}:{config.get_option('server.port')}/v1"
