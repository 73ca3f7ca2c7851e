"""The backend the API answers with: runtime's, the one the pages use (`runtime.get_backend`, `get_registry`).

The server starts runtime's load in a thread of its own (`start_loading`, from the lifespan), so the model loads
when the server starts, not when the first page opens. Until that load has ended every request gets 503
("Loading model"), and when it failed, 503 saying why, as llama.cpp's server does; the failure is kept (the
server's log has the details), so a request does not start another load. This module holds no backend of its
own: once the load has ended each request asks runtime, which gives the object it holds.
"""

from __future__ import annotations

import logging
import threading

import runtime
from core.errors import StudioError
from llm.interface import ChatBackend
from server.api.catalog import Target, served_targets
from server.api.errors import ApiError

log = logging.getLogger(__name__)

_lock = threading.Lock()
_loader: list[threading.Thread] = []  # the load's thread, once started
_loaded = threading.Event()
_problem: list[str] = []  # why the load failed, once it has


def start_loading() -> None:
    """Starts runtime's load in the background, once."""
    with _lock:
        if not _loader:
            _loader.append(threading.Thread(target=_load, name="model-load", daemon=True))
            _loader[0].start()


def _load() -> None:
    try:
        runtime.get_registry(runtime.get_backend())  # adapters attach now, not on the first request
        _loaded.set()
    except StudioError as exc:
        _problem.append(str(exc))
    except Exception as exc:  # anything else: the server keeps serving and /health says why
        log.exception("the model failed to load")
        _problem.append(f"The model failed to load ({type(exc).__name__}); see the server log.")


def backend() -> ChatBackend:
    """Runtime's backend, or ApiError 503 while it loads or when it failed (blocking: call in a thread)."""
    start_loading()
    if _loaded.is_set():
        return runtime.get_backend()
    if _problem:
        raise ApiError(503, f"The model is not available: {_problem[0]}", code="model_unavailable", kind="server_error")
    raise ApiError(503, "Loading model", code="model_loading", kind="server_error")


def targets() -> dict[str, Target]:
    """Every model id the API serves now (503 until the backend is loaded)."""
    return served_targets(backend())


def find_target(model: str) -> Target:
    """The model, persona or team named `model`, or a 404 naming the list."""
    target = targets().get(model)
    if target is None:
        raise ApiError(
            404,
            f"The model {model[:200]!r} does not exist. GET /v1/models lists the models, personas and teams.",
            param="model",
            code="model_not_found",
        )
    return target
