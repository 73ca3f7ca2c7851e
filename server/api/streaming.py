"""Reading an answer from the API's event loop: blocking steps in worker threads of our own, a whole answer
collected while its client is watched, a run closed however the request ends."""

from __future__ import annotations

import time

import anyio
from starlette.requests import Request

from core.errors import StudioError
from server.api.chat import ChatRun
from server.api.errors import refusal

# Our own pool for model work, so API streams never take the threads Streamlit serves files with.
_THREADS = anyio.CapacityLimiter(64)
_END = object()
DISCONNECT_CHECK_S = 0.5  # how often a non-streamed answer checks that its client is still there


async def in_thread(function, *args):
    return await anyio.to_thread.run_sync(function, *args, limiter=_THREADS)


def _next(run: ChatRun):
    """The next piece, or _END (blocking: runs in a worker thread). A team run writes no text while it plans and
    consults: meanwhile this gives "" every DISCONNECT_CHECK_S, so the route gets to notice a client that left
    (a stream's cancellation lands, `collect` asks) and close the run."""
    wait = getattr(run.pieces, "wait", None)
    if wait is not None and not wait(DISCONNECT_CHECK_S):
        return ""
    try:
        return next(run.stops)
    except StopIteration:
        return _END


async def close_quietly(run: ChatRun) -> None:
    with anyio.CancelScope(shield=True):  # also when the client's disconnect cancelled us
        await in_thread(run.close)


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
        raise refusal(exc) from None
    finally:
        await close_quietly(run)
    return "".join(pieces)


def complete(run: ChatRun) -> bool:
    """The answer ended on its own: not cut by max_tokens or a stop string."""
    return run.finish_reason == "stop" and not run.stops.hit
