"""The process-wide state behind the API: the shared backend (loading starts with the server),
the persona registry and the embedding model, the same objects the pages use."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import runtime
from core.errors import StudioError
from llm.interface import ChatBackend, GenerationStats
from llm.options import GenerationOptions
from llm.prompts import Message
from server.api import loaded
from server.api.catalog import served_targets  # noqa: F401 - ui/api_panel.py imports it from here
from server.api.errors import ApiError, refusal
from server.api.logprobs import Logprobs
from server.api.messages import to_messages
from server.api.schemas import DEFAULT_MAX_TOKENS, ChatRequest
from server.api.tools import AnswerShape, ToolPlan, plan
from team.answer import TeamAnswer, team_answer
from team.record import Limits

log = logging.getLogger(__name__)


@dataclass
class ChatRun:
    """One answer in progress: its text pieces and, once they end, its figures."""

    pieces: Iterator[str]
    stats: GenerationStats
    stops: StopStrings
    logprobs: Logprobs | None = None  # when the request asked for them
    shape: AnswerShape = field(default_factory=lambda: AnswerShape(ToolPlan()))  # tool calls, JSON answers

    @property
    def finish_reason(self) -> str:
        return "stop" if self.stops.hit else ("length" if self.stats.finish_reason == "length" else "stop")

    def logprobs_content(self, sent_bytes: int, final: bool = False) -> list[dict] | None:
        """OpenAI's `logprobs.content` for the tokens within the first `sent_bytes` bytes of text sent, not given
        out before; `final`: the answer is over, so every token left unless a stop string cut the text there.
        None when the request did not ask."""
        if self.logprobs is None:
            return None
        return self.logprobs.upto(None if final and not self.stops.hit else sent_bytes)

    def close(self) -> None:
        """Stops the computation too: closing the pieces drops this row from the batch."""
        self.stops.close()


def refuse_unsupported(request) -> None:
    """A 400 naming the first field set to something this server does not do (`request.unsupported()`)."""
    if problem := request.unsupported():
        raise ApiError(400, f"{problem[0]}: {problem[1]}.", param=problem[0], code="unsupported_parameter")


def start_chat(request: ChatRequest, cancel: threading.Event | None = None) -> list[ChatRun]:
    """Check the request against the model it names and start its answers, `n` of them (blocking: call in a
    thread). Setting `cancel` stops a single answer's row at its next step, from any thread."""
    refuse_unsupported(request)
    target = loaded.find_target(request.model)
    backend = loaded.backend()
    count = choice_count(request, target.kind)
    messages = to_messages(request.messages, target.system_prompt)
    options = to_options(request)
    shape = answer_shape(request, target.kind)
    options = options.model_copy(update={"json_schema": shape.plan.json_schema})  # checked by `tools.plan`
    if options.logprobs is not None and (target.kind == "team" or not backend.can_logprobs):
        raise ApiError(
            400,
            "logprobs are not available for this model (a team, or a model served elsewhere).",
            param="logprobs",
            code="unsupported_parameter",
        )
    tools = {"tools": shape.plan.tools} if shape.plan.tools else {}
    try:
        if target.kind == "team":
            answers = [start_team(backend, target.backend_model, messages, options, request)]
        elif count == 1:
            answers = [backend.stream(messages, options, model=target.backend_model, cancel=cancel, **tools)]
        else:  # one prefill of the prompt for all of them; choice i is seeded seed + i
            choices = [options.model_copy(update={"seed": seeded(options.seed, i)}) for i in range(count)]
            answers = backend.stream_choices(messages, choices, model=target.backend_model, **tools)
    except StudioError as exc:
        raise refusal(exc) from None
    runs = []
    for pieces in answers:
        logprobs = Logprobs(pieces) if options.logprobs is not None else None
        stops = StopStrings(logprobs or pieces, request.stop_strings())
        runs.append(ChatRun(pieces, pieces.stats, stops, logprobs, AnswerShape(shape.plan)))
    return runs


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


def start_team(
    backend: ChatBackend, team_name: str, messages: list[Message], options: GenerationOptions, request: ChatRequest
) -> TeamAnswer:
    """A team's answer (`team.answer`): the task is the last user message; the request's sampling options apply
    to every step."""
    task = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    registry = runtime.get_registry(backend)
    return team_answer(backend, registry, team_name, task, team_limits(request), options)


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
        first = exc.errors()[0]
        field = {"max_new_tokens": "max_tokens", "logprobs": "top_logprobs"}.get(
            str(first["loc"][0]), str(first["loc"][0])
        )
        message = first["msg"].removeprefix("Value error, ")
        raise ApiError(400, f"{field}: {message}.", param=field, code="invalid_value") from None


class StopStrings:
    """Text pieces up to the first stop string (which is left out). A tail that could begin a stop
    string is held back until the next piece settles it. Ending early closes the source, so the
    computation stops with the text.

    Linear in the text: each piece is searched together with the held tail only (for each stop, its length
    minus one), so the work per piece is bounded by the piece and the stops (`schemas.MAX_STOPS` of
    `MAX_STOP_CHARS`), never by what was generated before."""

    def __init__(self, pieces: Iterator[str], stops: list[str]):
        self.source, self.stops, self.hit = pieces, [s for s in dict.fromkeys(stops) if s], False
        self._ending: dict[str, list[str]] = {}  # the stops by their last character: the only ones to try there
        for stop in self.stops:
            self._ending.setdefault(stop[-1], []).append(stop)
        self._iter = self._run()

    def __iter__(self):
        return self._iter

    def __next__(self) -> str:
        return next(self._iter)

    def _run(self) -> Iterator[str]:
        if not self.stops:
            yield from self.source
            return
        hold = max(map(len, self.stops)) - 1
        window, sent = "", 0  # window[sent:] is not given out yet; its last `hold` characters are held back
        for piece in self.source:
            window += piece
            # Earlier text held no stop, so one found now ends in the new piece: only those ends are tried (a
            # comparison each, no search through the window).
            found = [
                end + 1 - len(stop)
                for end in range(len(window) - len(piece), len(window))
                for stop in self._ending.get(window[end], ())
                if end + 1 >= len(stop) and window.startswith(stop, end + 1 - len(stop))
            ]
            if found:
                self.hit = True
                if min(found) > sent:
                    yield window[sent : min(found)]
                self.close()
                return
            if len(window) - hold > sent:
                yield window[sent : len(window) - hold]
                sent = len(window) - hold
            if sent > 4 * hold + 4096:  # forget what was given out, now and then (not on each piece: no copying)
                window, sent = window[sent:], 0
        if len(window) > sent:
            yield window[sent:]

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
