"""The API's one refusal type and the one mapping from the app's errors to OpenAI's error shape,
`{"error": {"message", "type", "param", "code"}}` (vLLM's `create_error_response`).

`refusal` says what an error raised below the API (the engine, a team, the registry) means to a client;
`error_response` writes a refusal as HTTP; `failure` is what an answer that fails after its status line was sent
(mid-stream, or in a run's own thread) tells its client, its message the same as a refusal's."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

from core.errors import StudioError
from llm.interface import OptionError, PromptTooLongError

log = logging.getLogger(__name__)


class ApiError(StudioError):
    """A request the API refuses; `status`, `param` and `code` go into OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind
        self.headers = headers or {}  # e.g. `Allow` on a 405


def refusal(exc: StudioError, prompt: str = "messages") -> ApiError:
    """What `exc` means to the client: a prompt too long for the context is its request's fault (400 naming
    `prompt`, the field that holds it), as is an option this model cannot use (400 naming the option); any other
    error of the engine, a team or the registry is the server's (502)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, PromptTooLongError):
        return ApiError(400, str(exc), param=prompt, code="context_length_exceeded")
    if isinstance(exc, OptionError):  # e.g. a logit_bias token id outside this model's vocabulary
        return ApiError(400, str(exc), param=exc.field, code="invalid_value")
    return ApiError(502, str(exc), code="backend_error", kind="server_error")


def error_body(exc: ApiError) -> dict:
    """OpenAI's error object, never a stack trace."""
    return {"message": str(exc), "type": exc.kind, "param": exc.param, "code": exc.code}


def error_response(exc: ApiError) -> JSONResponse:
    """The one mapping from a refusal to HTTP: OpenAI's error shape with the refusal's status and headers."""
    return JSONResponse({"error": error_body(exc)}, status_code=exc.status, headers=exc.headers)


def failure_message(exc: BaseException, what: str = "answer") -> str:
    """What a client is told of an `exc` that ended its answer (or its response, its run) after it began: a
    `StudioError`'s own words; anything else is a bug, logged here with its traceback, and the client is told only
    that the server's log says why."""
    if isinstance(exc, StudioError):
        return str(exc)
    log.error("An API %s failed", what, exc_info=exc)
    return f"The {what} failed; the server's log says why."


def failure(exc: BaseException) -> dict:
    """The error object a stream ends with when its answer fails mid-way: the status line (200) is sent already,
    so it is a server error whatever its cause."""
    return {"message": failure_message(exc), "type": "server_error", "param": None, "code": "backend_error"}
