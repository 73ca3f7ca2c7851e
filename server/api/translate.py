"""A request's fields in the engine's and the team's terms: sampling options, the number of answers and their
seeds, the answer's shape (tools, JSON), a team's limits. OpenAI's defaults where a field is left out; every
refusal is a 400 naming the field (vLLM's names for its extra fields)."""

from __future__ import annotations

from core.errors import problems
from llm.options import GenerationOptions
from server.api.errors import ApiError
from server.api.schemas import DEFAULT_MAX_TOKENS, ChatRequest
from server.api.tools import AnswerShape, plan
from team.record import Limits


def refuse_unsupported(request) -> None:
    """A 400 naming the first field set to something this server does not do (`request.unsupported()`)."""
    if problem := request.unsupported():
        raise ApiError(400, f"{problem[0]}: {problem[1]}.", param=problem[0], code="unsupported_parameter")


def to_options(request: ChatRequest) -> GenerationOptions:
    """OpenAI's defaults (temperature 1, top_p 1, no top-k, no penalty), validated by GenerationOptions."""
    from pydantic import ValidationError

    values = {
        "max_new_tokens": request.max_completion_tokens or request.max_tokens or DEFAULT_MAX_TOKENS,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "top_k": max(0, request.top_k or 0),  # vLLM's -1 means off, as our 0 does
        "repetition_penalty": 1.0 if request.repetition_penalty is None else request.repetition_penalty,
        "seed": request.seed,
        "presence_penalty": request.presence_penalty or 0.0,
        "frequency_penalty": request.frequency_penalty or 0.0,
        "logit_bias": request.logit_bias,
        "logprobs": (request.top_logprobs or 0) if request.logprobs else None,
    }
    if request.top_logprobs is not None and not request.logprobs:
        raise ApiError(400, "top_logprobs: needs logprobs set to true.", param="top_logprobs", code="invalid_value")
    try:
        return GenerationOptions(**values)
    except ValidationError as exc:
        where, message = problems(exc)[0]
        field = where.split(".")[0]
        field = {"max_new_tokens": "max_tokens", "logprobs": "top_logprobs"}.get(field, field)
        raise ApiError(400, f"{field}: {message}.", param=field, code="invalid_value") from None


def choice_count(request: ChatRequest, kind: str) -> int:
    """`n`, checked against MAX_CHOICES (a team gives one answer)."""
    from core.settings import get_settings

    count, cap = 1 if request.n is None else request.n, get_settings().max_choices
    if not 1 <= count <= cap:
        raise ApiError(
            400,
            f"n: between 1 and {cap} answers per request (MAX_CHOICES); send several requests for more.",
            param="n",
            code="invalid_value",
        )
    if count > 1 and kind == "team":
        raise ApiError(400, "n: a team gives one answer per request.", param="n", code="unsupported_parameter")
    return count


def seeded(seed: int | None, index: int) -> int | None:
    """Choice `index`'s seed: the request's for the first, the next ones (wrapping in the seed range) after it."""
    return None if seed is None else (seed + index) % 2**32


def answer_shape(request: ChatRequest, kind: str) -> AnswerShape:
    """The request's tools and response_format, checked (`server.api.tools`); a team answers in text only."""
    if kind == "team" and (request.tools or (request.response_format or {}).get("type", "text") != "text"):
        name = "tools" if request.tools else "response_format"
        raise ApiError(400, f"{name}: a team answers in text only.", param=name, code="unsupported_parameter")
    return AnswerShape(plan(request))


def team_limits(request: ChatRequest) -> Limits:
    """A request with max_tokens is a quick run: that bound on each expert's answer and the synthesis (not the
    coordinator's plan), no follow-up round (the page has the full controls)."""
    limit = request.max_completion_tokens or request.max_tokens
    if not limit:
        return Limits()
    return Limits(
        synthesis_tokens=min(max(limit, 16), 4096), expert_tokens=min(max(limit, 16), 256), follow_up_rounds=0
    )
