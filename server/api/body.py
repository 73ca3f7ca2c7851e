"""A request body in, a validated schema out, or a refusal naming what is wrong: not JSON (415), sent too
slowly (408), too large (413), not UTF-8, not JSON text, text that is not Unicode, or a field out of its
type or bounds (400 naming the field as `param`)."""

from __future__ import annotations

import json
import re
from typing import TypeVar

import anyio
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from core.errors import most_telling
from core.settings import get_settings
from core.text import surrogate_at
from server.api.errors import ApiError
from server.api.schemas import FIELD_NAMES, MAX_BODY_BYTES

Body = TypeVar("Body", bound=BaseModel)
# A whole body must arrive within this (or REQUEST_TIMEOUT_S when lower): a client sending one byte at a time
# would otherwise hold a connection and its buffer as long as it likes. 4 MB in 30 s is 140 kB/s.
BODY_DEADLINE_S = 30.0
# JSON's escape for a UTF-16 surrogate. A pair becomes one character when parsed; one alone is no character.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


async def read_json(request: Request, model: type[Body]) -> Body:
    """The body, type-checked, size- and time-capped, parsed and validated."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            "Send the body as JSON with 'Content-Type: application/json' (OpenAI's clients do).",
            code="unsupported_media_type",
        )
    text = await read_text(request)
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except NotJson as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    except (ValueError, RecursionError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if _ESCAPED_SURROGATE.search(text) and (where := surrogate_at(data)) is not None:
        raise ApiError(
            400,
            f"{where or 'body'}: holds a lone UTF-16 surrogate (such as \\ud800), which is not text. Send valid "
            "Unicode.",
            param=where or None,
            code="invalid_value",
        )
    try:
        return model.model_validate(data)
    except RecursionError:
        raise ApiError(400, "body: nested too deeply.", code="invalid_value") from None
    except ValidationError as exc:
        param, message = first_problem(exc, FIELD_NAMES | getattr(model, "PARAMS", frozenset()))
        raise ApiError(400, f"{param or 'body'}: {message}.", param=param, code="invalid_value") from None


async def read_text(request: Request) -> str:
    raw = await read_body(request)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "The request body is not UTF-8 text.", code="invalid_json") from None


async def read_body(request: Request) -> bytes:
    """The raw body: refused at once when its declared length is too large, and at the deadline when it
    arrives too slowly."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    deadline = min(BODY_DEADLINE_S, get_settings().request_timeout_s)
    body = bytearray()
    try:
        with anyio.fail_after(deadline):
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise _too_large()
    except TimeoutError:
        raise ApiError(408, f"The request body did not arrive within {deadline:g} s.", code="request_timeout") from None
    except ClientDisconnect:
        raise ApiError(400, "The request body ended before it was complete.", code="incomplete_body") from None
    return bytes(body)


def _too_large() -> ApiError:
    return ApiError(413, f"The request body is over {MAX_BODY_BYTES // 2**20} MB.", code="request_too_large")


class NotJson(ValueError):
    """What Python's json module accepts but JSON does not."""


def _no_constant(name: str):
    raise NotJson(f"{name} is not a JSON number")


def first_problem(exc: ValidationError, names: frozenset[str] = FIELD_NAMES) -> tuple[str | None, str]:
    """(param, message) of the most telling error (core.errors.most_telling); `names`: the field names a
    location may hold (the rest are union members' names). None: the body as a whole."""
    param, message = most_telling(exc, names)
    return param or None, str(message).replace(" after validation", "")
