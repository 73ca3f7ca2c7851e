"""What a team run holds: its limits, the coordinator's steps, the experts' turns, the final answer.

The `TeamRun` record holds everything so far at any moment: the page draws from it, the store saves it,
and a stopped run keeps it. Only the run's own thread writes it (the steps in `team.coordinate`,
`team.consult` and `team.synthesis`); `Event`s say what changed. The record's types are pure data and live in
`core.team_run`, so the message that saves a run (`core.message`) holds it typed; they are named here too.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import StudioError
from core.team_run import MIN_EXPERT_TOKENS, Limits, Step, TeamRun, Turn, Words
from team.teams import Team

__all__ = ["MIN_EXPERT_TOKENS", "Event", "Limits", "Step", "TeamError", "TeamRun", "Turn", "Words", "new_run"]


class TeamError(StudioError):
    """A team cannot run (unknown, or one of its personas unavailable); the message says how to fix it."""


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
