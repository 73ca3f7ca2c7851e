"""HTTP in, backend calls out: `/v1/models`, `/v1/chat/completions`, `/v1/embeddings`, `/health`.

The event loop here also carries every browser's websocket, so anything that blocks (the model, the
tokenizer, the embedding model) runs in a worker thread, and streams are async generators that fetch
one piece at a time from the backend's iterator. A client that goes away closes that iterator, which
takes its row out of the batch at the next step.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from core.errors import StudioError
from core.settings import get_settings
from server.api.schemas import MAX_BODY_BYTES, ChatRequest, EmbeddingRequest
from server.api.service import ENGINE, ApiError, ChatRun, start_chat

log = logging.getLogger(__name__)
# Our own pool for model work, so API streams never take the threads Streamlit serves files with.
_THREADS = anyio.CapacityLimiter(64)
_END = object()
DISCONNECT_CHECK_S = 0.5  # how often a non-streamed answer checks that its client is still there


def error_response(exc: ApiError) -> JSONResponse:
    body = {"error": {"message": str(exc), "type": exc.kind, "param": exc.param, "code": exc.code}}
    return JSONResponse(body, status_code=exc.status)


def guarded(handler: Callable) -> Callable:
    """Access check, then the handler; every refusal in OpenAI's error shape, never a stack trace."""

    async def endpoint(request: Request) -> Response:
        try:
            check_access(request)
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)
        except Exception:  # a bug: logged with its traceback, the client gets the shape and no trace
            log.exception("API request failed")
            return error_response(
                ApiError(
                    500,
                    "The server failed on this request; its log says why.",
                    code="internal_error",
                    kind="server_error",
                )
            )

    return endpoint


def check_access(request: Request) -> None:
    """API_KEY as a bearer token (constant-time); with only APP_PASSWORD set the API stays shut,
    so the page's password cannot be bypassed through it."""
    settings = get_settings()
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    password = settings.app_password.get_secret_value() if settings.app_password else ""
    if not key:
        if password:
            raise ApiError(
                403,
                "The API is off because APP_PASSWORD is set and API_KEY is not. Set API_KEY to a "
                "secret and send it as 'Authorization: Bearer <key>'.",
                code="api_disabled",
                kind="permission_error",
            )
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(
            401,
            "Missing or wrong API key. Send 'Authorization: Bearer <API_KEY>'.",
            code="invalid_api_key",
            kind="authentication_error",
        )


async def read_json(request: Request, model: type[BaseModel]):
    """The body, size-capped, parsed and validated; a 400 naming the field otherwise."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"The request body is over {MAX_BODY_BYTES // 2**20} MB.", code="request_too_large")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    try:
        return model.model_validate(data)
    except (ValidationError, RecursionError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": (), "msg": "nested too deeply"}
        param = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(400, f"{param or 'body'}: {first['msg']}.", param=param, code="invalid_value") from None


async def in_thread(function, *args):
    return await anyio.to_thread.run_sync(function, *args, limiter=_THREADS)


def _next(run: ChatRun):
    try:
        return next(run.stops)
    except StopIteration:
        return _END


async def close_quietly(run: ChatRun) -> None:
    with anyio.CancelScope(shield=True):  # also when the client's disconnect cancelled us
        await in_thread(run.close)


# --- routes ------------------------------------------------------------------------------------


async def health(request: Request) -> Response:
    """503 while the model loads (or when it failed, saying why); 200 with the engine's figures after."""
    try:
        backend = ENGINE.ready()
    except ApiError as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    figures = {"status": "ok"}
    if scheduler := getattr(backend, "scheduler", None):  # the in-process engine
        figures.update(decode_steps=scheduler.steps, most_rows_together=scheduler.max_rows_seen)
    return JSONResponse(figures)


async def list_models(request: Request) -> Response:
    targets = await in_thread(ENGINE.targets)
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
    return JSONResponse({"object": "list", "data": data})


async def chat_completions(request: Request) -> Response:
    chat = await read_json(request, ChatRequest)
    try:
        run = await in_thread(start_chat, chat)
    except ApiError:
        raise
    except StudioError as exc:
        raise ApiError(502, str(exc), code="backend_error", kind="server_error") from None
    answer_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if chat.stream:
        include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
        return StreamingResponse(
            sse(run, answer_id, created, chat.model, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    text = await collect(run, request)
    if text is None:
        return Response(status_code=499)  # the client went away; nobody reads this
    return JSONResponse(
        {
            "id": answer_id,
            "object": "chat.completion",
            "created": created,
            "model": chat.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": run.finish_reason}
            ],
            "usage": run.usage(),
        }
    )


async def collect(run: ChatRun, request: Request) -> str | None:
    """The whole answer; None when the client disconnected first (its computation is then stopped)."""
    pieces, checked = [], time.monotonic()
    try:
        while (piece := await in_thread(_next, run)) is not _END:
            pieces.append(piece)
            if time.monotonic() - checked > DISCONNECT_CHECK_S:
                checked = time.monotonic()
                if await request.is_disconnected():
                    return None
    except StudioError as exc:
        raise ApiError(502, str(exc), code="backend_error", kind="server_error") from None
    finally:
        await close_quietly(run)
    return "".join(pieces)


async def sse(run: ChatRun, answer_id: str, created: int, model: str, include_usage: bool) -> AsyncIterator[str]:
    def event(delta: dict | None, finish: str | None = None, **extra) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
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
        yield event({"role": "assistant", "content": ""})
        while (piece := await in_thread(_next, run)) is not _END:
            yield event({"content": piece})
        yield event({}, run.finish_reason)
        if include_usage:
            yield event(None, usage=run.usage())
    except Exception as exc:  # mid-stream: the status line is sent already, so the error goes in the stream
        if not isinstance(exc, StudioError):
            log.exception("API stream failed")
        message = str(exc) if isinstance(exc, StudioError) else "The answer failed; the server's log says why."
        error = {"message": message, "type": "server_error", "param": None, "code": "backend_error"}
        yield f"data: {json.dumps({'error': error})}\n\n"
    finally:
        await close_quietly(run)
    yield "data: [DONE]\n\n"


def embedding_id() -> str:
    name = get_settings().rerank_model
    return "all-MiniLM-L6-v2" if name == "bundled" else name


async def embeddings(request: Request) -> Response:
    body = await read_json(request, EmbeddingRequest)
    if body.model != embedding_id():
        raise ApiError(
            404,
            f"The embedding model {body.model!r} does not exist; use {embedding_id()!r}.",
            param="model",
            code="model_not_found",
        )
    texts = body.texts()
    if not texts or len(texts) > 2048 or any(not text for text in texts):
        raise ApiError(400, "input must be a non-empty string or a list of 1 to 2048 non-empty strings.", param="input")
    vectors, tokens = await in_thread(embed, texts)
    data = [
        {"object": "embedding", "index": i, "embedding": encode_vector(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def embed(texts: list[str]):
    from core.runtime import get_reranker

    try:
        encoder = get_reranker(get_settings().rerank_model)
    except StudioError as exc:
        raise ApiError(503, str(exc), code="model_unavailable", kind="server_error") from None
    return encoder.embed(texts)


def encode_vector(vector, encoding: str):
    if encoding == "base64":  # little-endian float32, as OpenAI sends it
        import numpy as np

        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vector]


def api_routes() -> list[Route]:
    return [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", guarded(list_models), methods=["GET"]),
        Route("/v1/chat/completions", guarded(chat_completions), methods=["POST"]),
        Route("/v1/embeddings", guarded(embeddings), methods=["POST"]),
    ]


@asynccontextmanager
async def lifespan(app):
    """The model starts loading when the server starts, not when the first page opens."""
    ENGINE.start()
    yield
