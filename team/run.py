"""A team run in named steps: plan, consult, follow up, synthesise.

`run_team` is a generator of `Event`s that fills a `TeamRun` record (`team.record`) as it goes. The steps
live beside it: the coordinator's plan and follow-ups in `team.coordinate`, the experts' answers (one
batch in-process) in `team.consult`, the final answer in `team.synthesis`. Setting `cancel`, from any
thread (`team.answer.TeamAnswer` when the API's client leaves), or closing the generator (as Streamlit's stop does)
stops every row's computation: the engines drop a row whose event is set at their next step, and every step
checks the event after each piece and closes its stream.

Budgets: the coordinator's plans and the experts' answers share `Limits.token_budget`; the synthesis has
its own `synthesis_tokens`, so a run whose rounds or budget are spent still ends with an answer.

The pages, the bench and the tests import the run's names from here; a team answering as a model (the API's
`team:<name>`) is `team.answer`, and which teams there are is `team.teams`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from core.errors import N_
from llm.options import GenerationOptions
from team.consult import consult
from team.coordinate import follow_up, plan
from team.record import MIN_EXPERT_TOKENS, Event, Limits, Step, TeamError, TeamRun, Turn, new_run
from team.synthesis import synthesise
from team.teams import Team

__all__ = [
    "DEFAULT_OPTIONS",
    "MIN_EXPERT_TOKENS",
    "Event",
    "Limits",
    "Step",
    "TeamError",
    "TeamRun",
    "Turn",
    "consult",
    "follow_up",
    "new_run",
    "plan",
    "run_team",
    "synthesise",
]

DEFAULT_OPTIONS = GenerationOptions(temperature=0.7)


def run_team(
    backend, team: Team, run: TeamRun, options: GenerationOptions | None = None, cancel: threading.Event | None = None
) -> Iterator[Event]:
    """Plan, consult (and follow up, within the limits), synthesise; filling `run` as it goes."""
    if not team.available:
        raise TeamError(N_("The team {name!r} cannot run: {problem}."), name=team.name, problem=team.problem)
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
