"""Which model ids the API serves: the base model, every available persona and team, vLLM style
(a persona is a model id of its own whose `parent` is the base model)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from core.errors import StudioError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """What one model id means for the backend."""

    id: str
    kind: Literal["base", "prompt", "lora", "served", "team"]
    backend_model: str | None  # passed to `ChatBackend.stream(model=...)`; None: the backend's default
    system_prompt: str | None = None  # a persona's own; used when the request brings none
    parent: str | None = None


def base_id(backend) -> str:
    """A plain id for the in-process model: `SmolLM2-135M-Instruct (demo)` -> `SmolLM2-135M-Instruct`,
    a hub id stays as it is, a local folder shows only its name (never a path of this machine)."""
    name = backend.name.replace(" (demo)", "").rstrip("/")
    return name if name.count("/") == 1 and not name.startswith((".", "/", "~")) else name.rsplit("/", 1)[-1]


def targets(backend, personas, teams=()) -> dict[str, Target]:
    """Every model id a request may name, in listing order. `personas`: the registry's list; `teams`: the
    available teams, each the model id `team:<name>` (its answer is the coordinator's synthesis)."""
    if backend.is_server:  # its own models are ids as they are
        served = backend.list_models()
        found = {name: Target(name, "served", name) for name in served}
        parent = backend.resolve_model(None) if served else None
    else:
        parent = base_id(backend)
        found = {parent: Target(parent, "base", None)}
    for persona in personas:
        if persona.kind == "base" or not persona.available or persona.name == parent:
            continue  # a persona named like a served model replaces it: its system prompt then applies
        model = persona.model if persona.kind == "lora" else None
        found[persona.name] = Target(persona.name, persona.kind, model, persona.card.system_prompt or None, parent)
    for team in teams:
        found[f"team:{team.name}"] = Target(f"team:{team.name}", "team", team.name, parent=parent)
    return found


def served_targets(backend) -> dict[str, Target]:
    """Every model id the API serves on `backend` (GET /v1/models; the API page lists them too): the personas of
    runtime's shared registry, the teams of the shared teams file."""
    import runtime

    registry = runtime.get_registry(backend)
    return targets(backend, registry.personas(), _teams(registry))


def _teams(registry) -> list:
    """The teams that can run; none (logged) when the teams file cannot be used: personas still serve."""
    from team.teams import available_teams

    try:
        return available_teams(registry)
    except StudioError as exc:
        log.warning("teams are not served: %s", exc)
        return []
