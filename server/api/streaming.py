"""Reading an answer from the API's event loop: blocking steps in worker threads of our own, a whole answer
collected while its client is watched, a run closed however the request ends."""

from __future__ import annotations

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
    """The whole answer; None when the client disconnected first. The client is watched every
    DISCONNECT_CHECK_S also while no piece comes (the answer waits for KV-cache room or a long prefill), and one
    that left stops the computation there, not at the first token."""
    pieces, gone = [], anyio.Event()

    async def watch() -> None:
        while not await request.is_disconnected():
            await anyio.sleep(DISCONNECT_CHECK_S)
        gone.set()
        run.stop()  # the blocked read below then ends

    try:
        async with anyio.create_task_group() as watching:
            watching.start_soon(watch)
            try:
                while not gone.is_set() and (piece := await in_thread(_next, run)) is not _END:
                    pieces.append(piece)
            finally:
                watching.cancel_scope.cancel()
    except StudioError as exc:
        raise refusal(exc) from None
    finally:
        await close_quietly(run)
    return None if gone.is_set() else "".join(pieces)


def complete(run: ChatRun) -> bool:
    """The answer ended on its own: not cut by max_tokens or a stop string."""
    return run.finish_reason == "stop" and not run.stops.hit
