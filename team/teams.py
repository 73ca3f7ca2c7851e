"""Teams from a JSON file beside the personas (TEAMS_FILE, default teams.json), checked like personas.

A team names its coordinator and experts by persona name. A team that names a missing or unavailable
persona, or whose entry cannot be read at all, is listed as unavailable with the reason; the others keep
working. Nothing in the file makes `load_teams` raise: a file that cannot be used is its returned problem.

`shared_teams` is what the pages and the API ask (the API through `teams_of`, `available_teams` and `find_team`):
the teams, read again only when the file changes (its size or time) or the personas they are resolved against do
(a persona refresh makes new ones), as the persona registry rescans only on a refresh. Teams are frozen, so every
session and request may share them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import N_, Text, validation_message
from core.names import escaped, no_control_characters, without_bidi_controls
from core.team_run import MAX_EXPERTS
from personas.registry import SAFE_NAME, Persona, read_json

log = logging.getLogger(__name__)

MAX_TEAMS_FILE_BYTES = 1 << 20  # the shipped file is about 1 KB
MAX_TEAMS = 200
MAX_PROBLEM_CHARS = 1000
FIX = Text(N_("Fix it (teams.json in the project shows the form)."))


class TeamCard(BaseModel):
    """One entry of the teams file."""

    model_config = ConfigDict(extra="forbid")

    display_name: str = Field(min_length=1, max_length=80)
    description: str = Field("", max_length=2000)
    avatar: str = Field("👥", max_length=8)
    coordinator: str = Field(min_length=1, max_length=64)  # a persona name: plans and writes the answer
    experts: list[str] = Field(min_length=1, max_length=MAX_EXPERTS)  # persona names, each asked at most once a round
    example_task: str = Field("", max_length=2000)  # offered in the page's task box

    @field_validator("display_name", "avatar")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return without_bidi_controls(no_control_characters(value))  # an override would scramble the label

    @field_validator("experts")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(Text(N_("an expert is listed twice")))
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


# (file, its version, the personas' ids) -> (teams, problem, the personas): holding the personas keeps their
# ids from being reused while the entry is kept.
_SHARED: dict[tuple, tuple[list[Team], str | None, list[Persona]]] = {}
_SHARED_LOCK = threading.Lock()
SHARED_KEEP = 8  # (teams file, personas) pairs kept: one per registry in use, in practice


def shared_teams(path: Path, personas: list[Persona]) -> tuple[list[Team], str | None]:
    """`load_teams`, read once per version of the file and of the personas (see the module docstring)."""
    path = path.expanduser()
    try:
        found = path.stat()
        version = (found.st_mtime_ns, found.st_size, found.st_ino)
    except OSError:
        version = None  # missing or unreadable: `load_teams` says which, and a file that appears is read
    key = (str(path), version, tuple(map(id, personas)))
    with _SHARED_LOCK:
        if key in _SHARED:
            teams, problem, _kept = _SHARED[key]
            return list(teams), problem
    teams, problem = load_teams(path, personas)
    with _SHARED_LOCK:
        while len(_SHARED) >= SHARED_KEEP:
            _SHARED.pop(next(iter(_SHARED)))  # the oldest
        _SHARED[key] = (list(teams), problem, list(personas))
    return teams, problem


def teams_of(registry, teams_file: Path | None = None) -> list[Team]:
    """The teams resolved against `registry`'s personas (TEAMS_FILE unless `teams_file`), shared as `shared_teams`
    keeps them. Raises TeamError when the file itself cannot be used."""
    from team.record import TeamError

    if teams_file is None:
        from core.settings import get_settings

        teams_file = get_settings().teams_file
    teams, problem = shared_teams(teams_file, registry.personas())
    if problem:
        raise TeamError(problem)
    return teams


def available_teams(registry, teams_file: Path | None = None) -> list[Team]:
    """The teams that can run now (for listing `team:<name>` models)."""
    return [team for team in teams_of(registry, teams_file) if team.available]


def find_team(registry, name: str, teams_file: Path | None = None) -> Team:
    """The team named `name`, ready to run; TeamError saying why not."""
    from team.record import TeamError

    team = next((t for t in teams_of(registry, teams_file) if t.name == name), None)
    if team is None:
        raise TeamError(N_("No team named {name!r}. Teams are defined in TEAMS_FILE (teams.json)."), name=name)
    if not team.available:
        raise TeamError(N_("The team {name!r} cannot run: {problem}."), name=name, problem=team.problem)
    return team


def load_teams(path: Path, personas: list[Persona]) -> tuple[list[Team], str | None]:
    """Teams from `path`, each resolved against `personas`. Returns (teams, problem with the file itself);
    never raises."""
    try:
        return _load(path.expanduser(), personas)
    except Exception as exc:  # a stranger's file: whatever breaks, teams are off and the rest serves
        log.warning("the teams file could not be read", exc_info=True)
        return [], Text(N_("The teams file cannot be read ({kind}). {fix}"), kind=type(exc).__name__, fix=FIX)


def _load(path: Path, personas: list[Persona]) -> tuple[list[Team], str | None]:
    if not path.is_file():
        return (
            [],
            Text(
                N_("{name} was not found. Set TEAMS_FILE to a teams file (see teams.json in the project)."),
                name=escaped(path.name),
            ),
        )
    try:
        raw = read_json(path, MAX_TEAMS_FILE_BYTES)  # size-capped; deep nesting is refused, not a RecursionError
        if not isinstance(raw, dict):
            raise ValueError(Text(N_("the file must hold an object of name: team")))
        if len(raw) > MAX_TEAMS:
            raise ValueError(Text(N_("it holds {count} teams, more than {limit}"), count=len(raw), limit=MAX_TEAMS))
    except (OSError, ValueError) as exc:
        return [], shown_problem(
            Text(N_("{name} cannot be read: {reason}. {fix}"), name=path.name, reason=exc, fix=FIX)
        )
    by_name = {p.name: p for p in personas}
    return [_resolve(str(name), entry, by_name) for name, entry in raw.items()], None


def _resolve(name: str, entry: object, personas: dict[str, Persona]) -> Team:
    """One entry as a team; whatever is wrong with it (even an unexpected error), only it is unavailable."""
    try:
        team = _check(name, entry, personas)
    except Exception as exc:
        log.warning("team %r could not be read", escaped(name), exc_info=True)
        team = _unusable(
            name, Text(N_("it could not be read ({kind}); the server log has the details"), kind=type(exc).__name__)
        )
    problem = None if team.problem is None else shown_problem(team.problem)
    return Team(escaped(team.name), team.card, team.coordinator, team.experts, problem)


def shown_problem(problem: str) -> str:
    """A problem as shown: a name quoted in it may hold controls (see `core.names.escaped`); a `Text` that needs
    no escaping is kept, so it is shown translated."""
    shown = escaped(problem, MAX_PROBLEM_CHARS)
    return problem if shown == problem else shown


def _unusable(name: str, problem: str) -> Team:
    shown = escaped(name, 80).strip() or "(unnamed)"
    return Team(name, TeamCard(display_name=shown, coordinator="?", experts=["?"]), problem=problem)


def _check(name: str, entry: object, personas: dict[str, Persona]) -> Team:
    try:
        card = TeamCard.model_validate(entry)
    except ValidationError as exc:
        return _unusable(
            name,
            Text(
                N_("malformed entry ({problem}); fix it in the teams file"),
                problem=validation_message(exc),
            ),
        )
    if not SAFE_NAME.match(name):
        return Team(
            name,
            card,
            problem=Text(N_("name must be letters, digits, '-' or '_' (max 64); rename it in the teams file")),
        )
    missing = next((n for n in [card.coordinator, *card.experts] if n not in personas), None)
    if missing is not None:
        return Team(
            name,
            card,
            problem=Text(
                N_("names the persona {missing!r}, which does not exist (add it to personas.json or adapters/)"),
                missing=missing,
            ),
        )
    coordinator, experts = personas[card.coordinator], tuple(personas[n] for n in card.experts)
    broken = next((p for p in (coordinator, *experts) if not p.available), None)
    if broken is not None:
        return Team(
            name,
            card,
            coordinator,
            experts,
            Text(N_("the persona {name!r} is unavailable: {problem}"), name=broken.name, problem=broken.problem),
        )
    return Team(name, card, coordinator, experts)
