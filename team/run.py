"""A team run in named steps: plan, consult, follow up, synthesise; and one call for the API.

`run_team` is a generator of `Event`s that fills a `TeamRun` record (`team.record`) as it goes. The steps
live beside it: the coordinator's plan and follow-ups in `team.coordinate`, the experts' answers (one
batch in-process) in `team.consult`, the final answer in `team.synthesis`. Setting `cancel`, from any
thread (the API's TeamAnswer when its client leaves), or closing the generator (as Streamlit's stop does)
stops every row's computation: the engines drop a row whose event is set at their next step, and every step
checks the event after each piece and closes its stream.

Budgets: the coordinator's plans and the experts' answers share `Limits.token_budget`; the synthesis has
its own `synthesis_tokens`, so a run whose rounds or budget are spent still ends with an answer.

The pages, the API, the bench and the tests import the run's names from here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

from core.errors import N_
from llm.options import GenerationOptions
from team.consult import consult
from team.coordinate import follow_up, plan
from team.record import MIN_EXPERT_TOKENS, Event, Limits, Step, TeamError, TeamRun, Turn, new_run
from team.synthesis import synthesise
from team.teams import Team, shared_teams

__all__ = [
    "DEFAULT_OPTIONS",
    "MIN_EXPERT_TOKENS",
    "Event",
    "Limits",
    "Step",
    "TeamError",
    "TeamRun",
    "Turn",
    "answer",
    "available_teams",
    "consult",
    "find_team",
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


# --- one call for the API ---------------------------------------------------------------------------


def available_teams(registry, teams_file: Path | None = None) -> list[Team]:
    """The teams that can run now (for listing `team:<name>` models)."""
    return [team for team in _teams(registry, teams_file) if team.available]


def find_team(registry, name: str, teams_file: Path | None = None) -> Team:
    team = next((t for t in _teams(registry, teams_file) if t.name == name), None)
    if team is None:
        raise TeamError(N_("No team named {name!r}. Teams are defined in TEAMS_FILE (teams.json)."), name=name)
    if not team.available:
        raise TeamError(N_("The team {name!r} cannot run: {problem}."), name=name, problem=team.problem)
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
        raise TeamError(N_("The team's final answer failed: {reason}"), reason=run.synthesis_error)
    return run.synthesis


def _teams(registry, teams_file: Path | None) -> list[Team]:
    if teams_file is None:
        from core.settings import get_settings

        teams_file = get_settings().teams_file
    teams, problem = shared_teams(teams_file, registry.personas())
    if problem:
        raise TeamError(problem)
    return teams
