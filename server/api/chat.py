"""The one answer path behind `/v1/chat/completions`, `/v1/responses` and the assistants' runs: a chat request
checked against the model it names (`loaded`), translated (`translate`), and its answers started on runtime's
backend, or on a team (`team.answer`); each answer is a `ChatRun` the routes read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import runtime
from core.errors import StudioError
from llm.interface import ChatBackend, GenerationStats
from llm.options import GenerationOptions
from llm.prompts import Message
from server.api import loaded
from server.api.errors import ApiError, refusal
from server.api.logprobs import Logprobs
from server.api.messages import to_messages
from server.api.schemas import ChatRequest
from server.api.stops import StopStrings
from server.api.tools import AnswerShape, ToolPlan
from server.api.translate import answer_shape, choice_count, refuse_unsupported, seeded, team_limits, to_options
from team.answer import TeamAnswer, team_answer


@dataclass
class ChatRun:
    """One answer in progress: its text pieces and, once they end, its figures."""

    pieces: Iterator[str]
    stats: GenerationStats
    stops: StopStrings
    logprobs: Logprobs | None = None  # when the request asked for them
    shape: AnswerShape = field(default_factory=lambda: AnswerShape(ToolPlan()))  # tool calls, JSON answers
    cancel: threading.Event | None = None  # set from any thread: the answer leaves the batch at its next step

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

    def stop(self) -> None:
        """Stop the computation from any thread, also while another one waits for its next piece (which then
        ends): the row leaves the queue for KV-cache room, its prefill, or the batch at the next step."""
        if self.cancel is not None:
            self.cancel.set()


def start_chat(request: ChatRequest, cancel: threading.Event | None = None) -> list[ChatRun]:
    """Check the request against the model it names and start its answers, `n` of them (blocking: call in a
    thread). Setting `cancel` (or any run's `stop()`) stops all its answers at their next step, from any thread."""
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
    cancel = cancel or threading.Event()
    try:
        if target.kind == "team":
            answers = [start_team(backend, target.backend_model, messages, options, request)]
        elif count == 1:
            answers = [backend.stream(messages, options, model=target.backend_model, cancel=cancel, **tools)]
        else:  # one prefill of the prompt for all of them; choice i is seeded seed + i
            choices = [options.model_copy(update={"seed": seeded(options.seed, i)}) for i in range(count)]
            answers = backend.stream_choices(messages, choices, model=target.backend_model, cancel=cancel, **tools)
    except StudioError as exc:
        raise refusal(exc) from None
    runs = []
    for pieces in answers:
        logprobs = Logprobs(pieces) if options.logprobs is not None else None
        stops = StopStrings(logprobs or pieces, request.stop_strings())
        stopping = pieces.cancel if isinstance(pieces, TeamAnswer) else cancel
        runs.append(ChatRun(pieces, pieces.stats, stops, logprobs, AnswerShape(shape.plan), stopping))
    return runs


def start_team(
    backend: ChatBackend, team_name: str, messages: list[Message], options: GenerationOptions, request: ChatRequest
) -> TeamAnswer:
    """A team's answer (`team.answer`): the task is the last user message; the request's sampling options apply
    to every step."""
    task = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    registry = runtime.get_registry(backend)
    return team_answer(backend, registry, team_name, task, team_limits(request), options)
