"""The one refusal type of the API; `routes.error_response` turns it into OpenAI's error shape."""

from __future__ import annotations

from core.errors import StudioError


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
