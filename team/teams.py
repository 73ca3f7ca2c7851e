"""Teams from a JSON file beside the personas (TEAMS_FILE, default teams.json), checked like personas.

A team names its coordinator and experts by persona name. A team that names a missing or unavailable
persona is listed as unavailable with the reason; the others keep working.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import validation_message
from personas.registry import SAFE_NAME, Persona

MAX_EXPERTS = 8  # rows of one batch (MAX_BATCH_SIZE's default): more would queue instead of answering together


class TeamCard(BaseModel):
    """One entry of the teams file."""

    model_config = ConfigDict(extra="forbid")

    display_name: str = Field(min_length=1, max_length=80)
    description: str = Field("", max_length=2000)
    avatar: str = Field("👥", max_length=8)
    coordinator: str = Field(min_length=1, max_length=64)  # a persona name: plans and writes the answer
    experts: list[str] = Field(min_length=1, max_length=MAX_EXPERTS)  # persona names, each asked at most once a round
    example_task: str = Field("", max_length=2000)  # offered in the page's task box

    @field_validator("experts")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("an expert is listed twice")
        return names


@dataclass(frozen=True)
class Team:
    name: str
    card: TeamCard
    coordinator: Persona | None = None
    experts: tuple[Persona, ...] = ()
    problem: str | None = None  # why it cannot run; None when it can

    @property
    def available(self) -> bool:
        return self.problem is None

    @property
    def label(self) -> str:
        return f"{self.card.avatar} {self.card.display_name}" + ("" if self.available else " — unavailable")

    def expert(self, name: str) -> Persona | None:
        return next((p for p in self.experts if p.name == name), None)


def load_teams(path: Path, personas: list[Persona]) -> tuple[list[Team], str | None]:
    """Teams from `path`, each resolved against `personas`. Returns (teams, problem with the file itself)."""
    path = path.expanduser()
    if not path.is_file():
        return [], f"{path.name} was not found. Set TEAMS_FILE to a teams file (see teams.json in the project)."
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("the file must hold an object of name: team")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [], f"{path.name} cannot be read: {exc}. Fix it (teams.json in the project shows the form)."
    by_name = {p.name: p for p in personas}
    return [_resolve(str(name), entry, by_name) for name, entry in raw.items()], None


def _resolve(name: str, entry: object, personas: dict[str, Persona]) -> Team:
    try:
        card = TeamCard.model_validate(entry)
    except ValidationError as exc:
        return Team(
            name,
            TeamCard(display_name=name[:80] or "?", coordinator="?", experts=["?"]),
            problem=f"malformed entry ({validation_message(exc)}); fix it in the teams file",
        )
    if not SAFE_NAME.match(name):
        return Team(
            name, card, problem="name must be letters, digits, '-' or '_' (max 64); rename it in the teams file"
        )
    missing = next((n for n in [card.coordinator, *card.experts] if n not in personas), None)
    if missing is not None:
        return Team(
            name,
            card,
            problem=f"names the persona {missing!r}, which does not exist (add it to personas.json or adapters/)",
        )
    coordinator, experts = personas[card.coordinator], tuple(personas[n] for n in card.experts)
    broken = next((p for p in (coordinator, *experts) if not p.available), None)
    if broken is not None:
        return Team(name, card, coordinator, experts, f"the persona {broken.name!r} is unavailable: {broken.problem}")
    return Team(name, card, coordinator, experts)
