"""The coordinator's JSON steps: the first plan (which experts to ask, and what) and each follow-up.

Both stream the coordinator's JSON, held to the plan schema (`team.plan`), into a `Step` of the run; an
unusable first plan falls back to asking every expert the task as given, an unusable follow-up ends the
consulting. The coordinator's plans share `Limits.token_budget` with the experts' answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from core.errors import N_, StudioError, Text
from llm.interface import GenerationStats
from llm.options import GenerationOptions
from team import prompts
from team.plan import Ask, PlanError, asked_key, fallback_plan, parse_plan, plan_schema, plan_token_bound
from team.record import MIN_EXPERT_TOKENS, Event, Step, TeamRun
from team.teams import Team

MIN_PLAN_TOKENS = 32  # below this a follow-up plan cannot even name an expert


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
            problem = None if asks else Text(N_("the plan asks no expert"))
        except PlanError as exc:
            problem = exc.text
    if problem is not None:
        step.outcome, step.note = (
            "fallback",
            Text(
                N_("The coordinator's plan was unusable ({problem}), so every expert was asked the task as given."),
                problem=problem,
            ),
        )
        asks = fallback_plan(names, run.task, max_asks)
    else:
        step.outcome = "planned"
    step.asked = [team.expert(ask.expert).card.display_name for ask in asks]
    yield Event("planned", len(run.steps) - 1)
    return asks


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
    messages = prompts.follow_up_messages(team.coordinator, team.experts, run.task, answers_so_far(run), max_asks)
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
            problem = exc.text
    if asks:
        step.outcome = "planned"
        step.asked = [team.expert(ask.expert).card.display_name for ask in asks]
    else:
        step.outcome = "finished"
        run.ended_by = "budget" if cap < bound and step.tokens >= cap else "finished"  # cut by the budget
        step.note = (
            Text(N_("The follow-up was unusable ({problem}); the answers so far are used."), problem=problem)
            if problem
            else Text(N_("Nothing new to ask: the coordinator finished."))
        )
    yield Event("planned", len(run.steps) - 1)
    return asks


def answers_so_far(run: TeamRun) -> str:
    """Every answer with text, as the coordinator reads them (failed ones are left out)."""
    return prompts.quoted_answers(
        [(t.display_name, t.question, t.answer) for t in run.turns if t.answer.strip() and t.status != "failed"]
    )


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
            if cancel.is_set():  # set from another thread (a stop, a client gone): the row leaves at once
                break
    except StudioError as exc:
        problem = Text(N_("the model could not write it: {reason}"), reason=exc)
    finally:
        if stream is not None:
            stream.close()
        step.tokens, step.seconds = stats.completion_tokens, stats.total_s
        run.tokens_used += stats.completion_tokens
    if problem is None and stats.finish_reason == "length":
        problem = Text(
            N_("it did not finish within {max_new_tokens} tokens"), max_new_tokens=step_options.max_new_tokens
        )
    return problem
