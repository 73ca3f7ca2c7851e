"""Personas: prompt-only ones from a file, LoRA ones from `adapters/<name>/`, each checked before use.

A persona that fails a check is listed as unavailable with the reason; the others keep working.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm.errors import StudioError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_PERSONA = "base"


class PersonaCard(BaseModel):
    """`persona.json` beside an adapter, or one entry of the prompt-only personas file."""

    model_config = ConfigDict(extra="forbid")

    display_name: str = Field(min_length=1, max_length=80)
    description: str = Field("", max_length=2000)
    # The exact system prompt the adapter was trained with; the page uses the same one.
    system_prompt: str = Field("", max_length=8000)
    greeting: str = Field("", max_length=2000)
    avatar: str = Field("🎭", max_length=8)
    base_model: str | None = None  # required for adapters: the model they were trained on
    served_model: str | None = None  # its name on an OpenAI-compatible server; default: the folder name


@dataclass(frozen=True)
class Persona:
    name: str  # stable id: the folder name, or the key in the personas file
    card: PersonaCard
    kind: Literal["base", "prompt", "lora"]
    adapter_dir: Path | None = None
    problem: str | None = None  # why it cannot be used; None when it can
    model: str | None = None  # what the backend is asked for (an adapter or served model name); None: base

    @property
    def available(self) -> bool:
        return self.problem is None

    @property
    def label(self) -> str:
        tag = {"base": "base model", "prompt": "prompt", "lora": "LoRA"}[self.kind]
        return f"{self.card.avatar} {self.card.display_name} ({tag})" + ("" if self.available else " — unavailable")


BASE = Persona(BASE_PERSONA, PersonaCard(display_name="Base model", avatar="🦙",
                                         description="The model as it is, with the chat page's system prompt."), "base")


def family(model_name: str) -> str:
    """A model's name reduced so hub ids and folders compare: `LLM-Research/Meta-Llama-3.1-8B-Instruct`,
    `/models/Meta-Llama-3___1-8B-Instruct` and `meta-llama/Llama-3.1-8B-Instruct` are one family."""
    name = model_name.replace(" (demo)", "").rstrip("/").split("/")[-1].lower().replace("___", ".")
    return name.removeprefix("meta-")


def read_card(path: Path) -> PersonaCard:
    try:
        return PersonaCard.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError("persona.json is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"persona.json cannot be read ({type(exc).__name__})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise ValueError(f"persona.json is malformed ({where}: {first['msg']})") from None


def check_adapter_files(folder: Path, loaded_family: str | None) -> tuple[PersonaCard | None, str | None]:
    """Checks that need no model: name, files, persona.json, base model. Returns (card, problem).

    `loaded_family` None skips the base-model check (a server decides what it can serve)."""
    if not SAFE_NAME.match(folder.name):
        return None, "folder name must be letters, digits, '-' or '_' (max 64)"
    try:
        card = read_card(folder / "persona.json")
    except ValueError as exc:
        return None, str(exc)
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        if any(folder.glob("*.bin")):
            return card, "only a pickle .bin adapter was found; loading it could run code. Convert it to safetensors"
        return card, f"{ADAPTER_WEIGHTS} is missing"
    if not (folder / "adapter_config.json").is_file():
        return card, "adapter_config.json is missing"
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        if config.get("peft_type") != "LORA":
            return card, f"adapter type {config.get('peft_type')!r} is not LoRA"
    except (OSError, ValueError):
        return card, "adapter_config.json is not valid JSON"
    if not card.base_model:
        return card, "persona.json does not say which base_model the adapter was trained on"
    if loaded_family is not None and family(card.base_model) != loaded_family:
        return card, f"trained on {card.base_model}, but the loaded model is {loaded_family}"
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            if not list(f.keys()):
                return card, f"{ADAPTER_WEIGHTS} holds no tensors"
    except Exception as exc:  # safetensors raises its own SafetensorError for corrupt headers
        return card, f"{ADAPTER_WEIGHTS} is corrupt ({type(exc).__name__})"
    return card, None


def load_prompt_personas(path: Path) -> tuple[list[Persona], str | None]:
    """Prompt-only personas from a JSON object `{name: card}`. Returns (personas, problem with the file)."""
    if not path.is_file():
        return [], None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("the file must hold an object of name: persona")
    except (OSError, ValueError) as exc:
        return [], f"{path.name} cannot be read: {exc}"
    personas = []
    for name, entry in raw.items():
        try:
            card = PersonaCard.model_validate(entry)
            problem = None if SAFE_NAME.match(name) else "name must be letters, digits, '-' or '_'"
        except ValidationError as exc:
            card, problem = PersonaCard(display_name=str(name)[:80]), f"malformed entry ({exc.errors()[0]['msg']})"
        personas.append(Persona(name, card, "prompt", problem=problem))
    return personas, None


class PersonaRegistry:
    """Scans persona sources and attaches available adapters to the shared backend (adding only)."""

    def __init__(self, backend, adapters_dir: Path, personas_file: Path):
        self.backend = backend
        self.adapters_dir = adapters_dir
        self.personas_file = personas_file
        self._lock = threading.Lock()
        self._personas: list[Persona] = []
        self.file_problem: str | None = None
        self.refresh()

    def refresh(self) -> list[Persona]:
        """Pick up adapters and personas added (or broken) since the last scan."""
        with self._lock:
            prompt_personas, self.file_problem = load_prompt_personas(self.personas_file)
            adapters = [self._scan_adapter(d) for d in sorted(self.adapters_dir.glob("*")) if d.is_dir()]
            self._personas = [BASE, *prompt_personas, *adapters]
            return list(self._personas)

    def _scan_adapter(self, folder: Path) -> Persona:
        base = self.backend.base_name
        card, problem = check_adapter_files(folder, family(base) if base else None)
        card = card or PersonaCard(display_name=folder.name[:80])
        model = None
        if problem is None:
            try:
                model = self.backend.attach_adapter(folder.name, folder, card)
            except StudioError as exc:
                problem = str(exc)
        return Persona(folder.name, card, "lora", folder, problem, model)

    def personas(self) -> list[Persona]:
        with self._lock:
            return list(self._personas)

    def get(self, name: str) -> Persona:
        return next((p for p in self.personas() if p.name == name), BASE)
