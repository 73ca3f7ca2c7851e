"""A team run in named steps: plan, consult, follow up, synthesise.

`run_team` is a generator of `Event`s, and the `TeamRun` record it fills holds everything so far at any
moment: the page draws from it, the store saves it, and a stopped run keeps it. Consulting asks every
planned expert at once, each `backend.stream` call from its own thread, so the in-process scheduler
decodes them as rows of one batch, each row with its persona's prompt and adapter. Setting `cancel`,
or closing the generator (as Streamlit's stop does), stops every row's computation.

Budgets: the coordinator's plans and the experts' answers share `Limits.token_budget`; the synthesis has
its own `synthesis_tokens`, so a run whose rounds or budget are spent still ends with an answer.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.errors import StudioError
from llm.interface import GenerationStats
from llm.options import GenerationOptions
from team import prompts
from team.plan import Ask, PlanError, asked_key, fallback_plan, parse_plan, plan_schema, plan_token_bound
from team.teams import MAX_EXPERTS, Team, load_teams

log = logging.getLogger(__name__)

MIN_EXPERT_TOKENS = 16  # an answer shorter than this is not worth a round: the budget is spent
MIN_PLAN_TOKENS = 32  # below this a follow-up plan cannot even name an expert
DEFAULT_OPTIONS = GenerationOptions(temperature=0.7)
_DONE = object()


class TeamError(StudioError):
    """A team cannot run (unknown, or one of its personas unavailable); the message says how to fix it."""


class Limits(BaseModel):
    """The run's limits, set in the page's sidebar (ranges and defaults live here only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experts_per_round: int = Field(3, ge=1, le=MAX_EXPERTS, description="Experts asked in one round, at most.")
    follow_up_rounds: int = Field(2, ge=0, le=5, description="Rounds of further questions after the first.")
    expert_tokens: int = Field(256, ge=MIN_EXPERT_TOKENS, le=4096, description="New tokens per expert answer.")
    synthesis_tokens: int = Field(512, ge=16, le=4096, description="New tokens for the final answer.")
    token_budget: int = Field(
        4096, ge=64, le=200_000, description="Tokens for the coordinator's plans and the experts' answers together."
    )


class Turn(BaseModel):
    """One expert asked one question in one round."""

    round: int
    expert: str  # persona name
    display_name: str
    avatar: str = "🎭"
    question: str
    answer: str = ""
    status: Literal["waiting", "answering", "done", "length", "stopped", "failed"] = "waiting"
    error: str | None = None
    tokens: int = 0
    seconds: float = 0.0
    batched_with: int = 0  # other answers decoded in the same forward passes


class Step(BaseModel):
    """One of the coordinator's planning steps: the first plan or a follow-up."""

    round: int  # the consult round it plans
    kind: Literal["plan", "follow_up"]
    text: str = ""  # the coordinator's JSON, as written
    outcome: Literal["running", "planned", "fallback", "finished", "stopped"] = "running"
    note: str | None = None  # why the plan fell back, or was cut
    asked: list[str] = []  # display names of the experts it asks
    tokens: int = 0
    seconds: float = 0.0


class TeamRun(BaseModel):
    """Everything about one run: what the page shows, the store saves and the API answers from."""

    team: str
    team_display_name: str
    task: str
    limits: Limits
    steps: list[Step] = []
    turns: list[Turn] = []
    consult_seconds: list[float] = []  # wall time of each consult round
    synthesis: str = ""
    synthesis_status: Literal["waiting", "writing", "done", "length", "stopped", "failed"] = "waiting"
    synthesis_error: str | None = None
    synthesis_tokens: int = 0
    synthesis_seconds: float = 0.0
    ended_by: Literal["running", "finished", "rounds", "budget", "stopped"] = "running"
    tokens_used: int = 0  # against limits.token_budget
    seconds: float = 0.0

    @property
    def rounds(self) -> int:
        return max((t.round for t in self.turns), default=0)

    def settle(self) -> TeamRun:
        """A run saved part way (by the periodic save before a stop, a closed tab or a crash) as stopped:
        every part still going is marked stopped, what it had is kept."""
        if self.ended_by == "running":
            self.ended_by = "stopped"
            for turn in self.turns:
                if turn.status in ("waiting", "answering"):
                    turn.status = "stopped"
            for step in self.steps:
                if step.outcome == "running":
                    step.outcome = "stopped"
            if self.synthesis_status == "writing":
                self.synthesis_status = "stopped"
        return self


@dataclass(frozen=True)
class Event:
    """What changed. kind: "step" (a coordinator step began; index into steps), "plan_piece" (its JSON grew),
    "planned", "round" (index: the round; its turns are added), "piece" (index into turns), "turn_done",
    "synthesis", "synthesis_piece", "done"."""

    kind: str
    index: int = 0
    text: str = ""


def new_run(team: Team, task: str, limits: Limits | None = None) -> TeamRun:
    return TeamRun(team=team.name, team_display_name=team.card.display_name, task=task, limits=limits or Limits())


# --- the whole run --------------------------------------------------------------------------------


def run_team(
    backend, team: Team, run: TeamRun, options: GenerationOptions | None = None, cancel: threading.Event | None = None
) -> Iterator[Event]:
    """Plan, consult (and follow up, within the limits), synthesise; filling `run` as it goes."""
    if not team.available:
        raise TeamError(f"The team {team.name!r} cannot run: {team.problem}.")
    options = options or DEFAULT_OPTIONS
    cancel = cancel or threading.Event()
    started = time.perf_counter()
    try:
        asks = yield from plan(backend, team, run, options, cancel)
        round_ = 1
        while asks and not cancel.is_set():
            if not (yield from consult(backend, team, run, asks, round_, options, cancel)):
                break
            if cancel.is_set():
                break
            if round_ > run.limits.follow_up_rounds:
                run.ended_by = "rounds" if run.limits.follow_up_rounds else "finished"
                break
            round_ += 1
            asks = yield from follow_up(backend, team, run, round_, options, cancel)
        if not cancel.is_set():
            yield from synthesise(backend, team, run, options, cancel)
        if cancel.is_set():
            run.ended_by = "stopped"
        yield Event("done")
    finally:
        if run.ended_by == "running":  # closed mid-run (the stop button): every row stops
            cancel.set()
            run.ended_by = "stopped"
        run.seconds = time.perf_counter() - started


# --- step 1: plan ------------------------------------------------------------------------------------


def plan(backend, team: Team, run: TeamRun, options: GenerationOptions, cancel) -> Iterator[Event]:
    """The coordinator's plan, held to the plan schema. Unusable (cut, refused, not JSON, asks nobody):
    every expert is asked the task as given, and the step says why. Returns the asks."""
    names = [p.name for p in team.experts]
    max_asks = min(run.limits.experts_per_round, len(names))
    step = Step(round=1, kind="plan")
    messages = prompts.plan_messages(team.coordinator, team.experts, run.task, max_asks)
    cap = min(plan_token_bound(names, max_asks), run.limits.token_budget - MIN_EXPERT_TOKENS)  # room for an answer
    problem = yield from _coordinate(
        backend, team, run, step, messages, plan_schema(names, max_asks), cap, options, cancel
    )
    if cancel.is_set():
        step.outcome = "stopped"
        return []
    asks: list[Ask] = []
    if problem is None:
        try:
            asks = parse_plan(step.text, names, max_asks, run.task)
            problem = None if asks else "the plan asks no expert"
        except PlanError as exc:
            problem = str(exc)
    if problem is not None:
        step.outcome, step.note = (
            "fallback",
            f"The coordinator's plan was unusable ({problem}), so every expert was asked the task as given.",
        )
        asks = fallback_plan(names, run.task, max_asks)
    else:
        step.outcome = "planned"
    step.asked = [team.expert(ask.expert).card.display_name for ask in asks]
    yield Event("planned", len(run.steps) - 1)
    return asks


# --- step 2: consult ---------------------------------------------------------------------------------


def consult(
    backend, team: Team, run: TeamRun, asks: list[Ask], round_: int, options: GenerationOptions, cancel
) -> Iterator[Event]:
    """Every ask at once, one thread each (rows of one batch in-process); answers stream as events.
    Returns False when the budget cannot pay for a single answer (the run then goes to its synthesis)."""
    remaining = run.limits.token_budget - run.tokens_used
    asks = asks[: max(remaining // MIN_EXPERT_TOKENS, 0)]
    if not asks:
        run.ended_by = "budget"
        return False
    cap = min(run.limits.expert_tokens, remaining // len(asks))
    expert_options = options.model_copy(update={"max_new_tokens": cap, "json_schema": None})
    first = len(run.turns)
    for ask in asks:
        persona = team.expert(ask.expert)
        run.turns.append(
            Turn(
                round=round_,
                expert=ask.expert,
                display_name=persona.card.display_name,
                avatar=persona.card.avatar,
                question=ask.question,
            )
        )
    yield Event("round", round_)
    out: queue.SimpleQueue = queue.SimpleQueue()
    threads = [
        threading.Thread(
            target=_ask,
            name=f"team-expert-{n}",
            daemon=True,
            args=(
                backend,
                team.expert(ask.expert),
                prompts.expert_messages(team.expert(ask.expert), run.task, ask.question),
                expert_options,
                cancel,
                first + n,
                out,
            ),
        )
        for n, ask in enumerate(asks)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            event = _apply(run, out.get())
            running -= event.kind == "turn_done"
            yield event
    finally:
        if running:  # the reader went away mid-round (stop): every row stops, what streamed is kept
            cancel.set()
        for thread in threads:
            thread.join(timeout=30)
        while not out.empty():
            _apply(run, out.get())
        run.consult_seconds.append(time.perf_counter() - started)
        run.tokens_used += sum(turn.tokens for turn in run.turns[first:])
    return True


def _ask(
    backend, expert, messages, options: GenerationOptions, cancel: threading.Event, index: int, out: queue.SimpleQueue
) -> None:
    """One expert's answer, piece by piece into `out` (runs in its own thread; draws nothing)."""
    stats = GenerationStats()
    stream = None
    try:
        stream = backend.stream(messages, options, cancel=cancel, model=expert.model)
        stats = stream.stats
        for piece in stream:
            out.put((index, piece, stats, None))
            if cancel.is_set():
                break
    except StudioError as exc:
        out.put((index, None, stats, str(exc)))
    except Exception as exc:  # a bug must not leave the round waiting: the expert is shown as failed
        log.error("an expert's answer failed: %s", type(exc).__name__, exc_info=exc)
        out.put((index, None, stats, f"The answer failed ({type(exc).__name__}). The other experts go on."))
    finally:
        if stream is not None and hasattr(stream, "close"):
            stream.close()  # leaves the batch at once
        out.put((index, _DONE, stats, None))


def _apply(run: TeamRun, message: tuple) -> Event:
    """One message from an expert's thread, applied to its turn (only the run's own thread writes the record)."""
    index, piece, stats, error = message
    turn = run.turns[index]
    turn.tokens, turn.seconds = stats.completion_tokens, stats.total_s
    turn.batched_with = max(turn.batched_with, stats.batched_with)
    if piece is _DONE:
        if turn.status not in ("failed",):
            turn.status = {"stop": "done", "length": "length", "error": "failed"}.get(stats.finish_reason, "stopped")
            if turn.status == "failed" and not turn.error:
                turn.error = "The answer failed."
        return Event("turn_done", index)
    if error is not None:
        turn.status, turn.error = "failed", error
        return Event("piece", index)
    turn.answer += piece
    turn.status = "answering"
    return Event("piece", index, piece)


# --- step 3: follow up -------------------------------------------------------------------------------


def follow_up(backend, team: Team, run: TeamRun, round_: int, options: GenerationOptions, cancel) -> Iterator[Event]:
    """The coordinator, seeing the answers, asks further questions (same schema) or finishes. Returns the
    asks; [] ends the consulting, with `run.ended_by` saying why."""
    remaining = run.limits.token_budget - run.tokens_used
    if remaining < MIN_PLAN_TOKENS + MIN_EXPERT_TOKENS:
        run.ended_by = "budget"
        return []
    names = [p.name for p in team.experts]
    max_asks = min(run.limits.experts_per_round, len(names))
    step = Step(round=round_, kind="follow_up")
    messages = prompts.follow_up_messages(team.coordinator, team.experts, run.task, _answers(run), max_asks)
    bound = plan_token_bound(names, max_asks)
    cap = min(bound, remaining - MIN_EXPERT_TOKENS)  # leave at least one short answer's worth
    problem = yield from _coordinate(
        backend, team, run, step, messages, plan_schema(names, max_asks, min_asks=0), cap, options, cancel
    )
    if cancel.is_set():
        step.outcome = "stopped"
        return []
    asks: list[Ask] = []
    if problem is None:
        try:
            asked = {asked_key(t.expert, t.question) for t in run.turns}
            asks = parse_plan(step.text, names, max_asks, run.task, asked)
        except PlanError as exc:
            problem = str(exc)
    if asks:
        step.outcome = "planned"
        step.asked = [team.expert(ask.expert).card.display_name for ask in asks]
    else:
        step.outcome = "finished"
        run.ended_by = "budget" if cap < bound and step.tokens >= cap else "finished"  # cut by the budget
        step.note = (
            f"The follow-up was unusable ({problem}); the answers so far are used."
            if problem
            else "Nothing new to ask: the coordinator finished."
        )
    yield Event("planned", len(run.steps) - 1)
    return asks


# --- step 4: synthesise ------------------------------------------------------------------------------


def synthesise(backend, team: Team, run: TeamRun, options: GenerationOptions, cancel) -> Iterator[Event]:
    """The coordinator's final answer from every expert that answered (failed ones are left out)."""
    messages = prompts.synthesis_messages(team.coordinator, run.task, _answers(run))
    stats = GenerationStats()
    run.synthesis_status = "writing"
    yield Event("synthesis")
    stream = None
    try:
        stream = backend.stream(
            messages,
            options.model_copy(update={"max_new_tokens": run.limits.synthesis_tokens, "json_schema": None}),
            cancel=cancel,
            model=team.coordinator.model,
        )
        stats = stream.stats
        for piece in stream:
            run.synthesis += piece
            run.synthesis_tokens, run.synthesis_seconds = stats.completion_tokens, stats.total_s
            yield Event("synthesis_piece", text=piece)
    except StudioError as exc:
        run.synthesis_status, run.synthesis_error = "failed", str(exc)
    finally:
        if stream is not None and hasattr(stream, "close"):
            stream.close()
        run.synthesis_tokens, run.synthesis_seconds = stats.completion_tokens, stats.total_s
        if run.synthesis_status == "writing":
            run.synthesis_status = {"stop": "done", "length": "length"}.get(stats.finish_reason, "stopped")


# --- the coordinator's JSON steps --------------------------------------------------------------------


def _coordinate(
    backend,
    team: Team,
    run: TeamRun,
    step: Step,
    messages,
    schema: dict,
    max_tokens: int,
    options: GenerationOptions,
    cancel,
) -> Iterator[Event]:
    """Stream the coordinator's JSON for `step` (appended to the run). Returns None, or why it is unusable."""
    run.steps.append(step)
    index = len(run.steps) - 1
    yield Event("step", index)
    # JSON repeats its punctuation by nature: no repetition penalty here.
    step_options = options.model_copy(
        update={"max_new_tokens": max(max_tokens, 1), "repetition_penalty": 1.0, "json_schema": json.dumps(schema)}
    )
    stats = GenerationStats()
    stream = None
    problem = None
    try:
        stream = backend.stream(messages, step_options, cancel=cancel, model=team.coordinator.model)
        stats = stream.stats
        for piece in stream:
            step.text += piece
            yield Event("plan_piece", index, piece)
    except StudioError as exc:
        problem = f"the model could not write it: {exc}"
    finally:
        if stream is not None and hasattr(stream, "close"):
            stream.close()
        step.tokens, step.seconds = stats.completion_tokens, stats.total_s
        run.tokens_used += stats.completion_tokens
    if problem is None and stats.finish_reason == "length":
        problem = f"it did not finish within {step_options.max_new_tokens} tokens"
    return problem


def _answers(run: TeamRun) -> str:
    return prompts.quoted_answers(
        [(t.display_name, t.question, t.answer) for t in run.turns if t.answer.strip() and t.status != "failed"]
    )


# --- one call for the API ---------------------------------------------------------------------------


def available_teams(registry, teams_file: Path | None = None) -> list[Team]:
    """The teams that can run now (for listing `team:<name>` models)."""
    return [team for team in _teams(registry, teams_file) if team.available]


def find_team(registry, name: str, teams_file: Path | None = None) -> Team:
    team = next((t for t in _teams(registry, teams_file) if t.name == name), None)
    if team is None:
        raise TeamError(f"No team named {name!r}. Teams are defined in TEAMS_FILE (teams.json).")
    if not team.available:
        raise TeamError(f"The team {name!r} cannot run: {team.problem}.")
    return team


def answer(
    backend,
    registry,
    team_name: str,
    task: str,
    limits: Limits | None = None,
    options: GenerationOptions | None = None,
    cancel: threading.Event | None = None,
    teams_file: Path | None = None,
) -> str:
    """Run the whole team on `task` and return the synthesis (blocking: call it from a worker thread).

    Raises TeamError for an unknown or unavailable team, or when the synthesis itself failed."""
    team = find_team(registry, team_name, teams_file)
    run = new_run(team, task, limits)
    for _ in run_team(backend, team, run, options, cancel):
        pass
    if run.synthesis_status == "failed":
        raise TeamError(f"The team's final answer failed: {run.synthesis_error}")
    return run.synthesis


def _teams(registry, teams_file: Path | None) -> list[Team]:
    if teams_file is None:
        from core.settings import get_settings

        teams_file = get_settings().teams_file
    teams, problem = load_teams(teams_file, registry.personas())
    if problem:
        raise TeamError(problem)
    return teams
