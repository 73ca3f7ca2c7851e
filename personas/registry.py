"""Personas: prompt-only ones from a file, LoRA ones from `adapters/<name>/`, each checked before use.

Every file here may come from a stranger. Each field is checked by type and range (`PersonaCard`,
`llm.lora.AdapterConfig`) before it is used; a persona that fails a check, or whose scan fails in any
other way, is listed as unavailable with the reason, and the others keep working.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import N_, StudioError, Text, text_of, validation_message
from core.names import escaped, no_control_characters, without_bidi_controls
from personas.folders import entry_problem, folder_problem, listed

log = logging.getLogger(__name__)

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
BASE_PERSONA = "base"
DEFAULT_AVATAR = "🎭"
MAX_CARD_BYTES = 64 * 1024  # a persona.json is a few hundred bytes
MAX_PERSONAS_FILE_BYTES = 1 << 20
MAX_PERSONAS = 1000  # entries of the personas file that are read
MAX_PROBLEM_CHARS = 1000
MAX_EXTENSIONS_BYTES = 32 * 1024  # a character card's `extensions`, kept as JSON beside the persona


def is_emoji(text: str) -> bool:
    """Streamlit's own test: what `st.chat_message(avatar=...)` shows as an emoji. Anything else it would open
    as an image path or URL, so nothing else is accepted as an avatar."""
    from streamlit.string_util import is_emoji as streamlit_is_emoji

    return len(text) <= 16 and streamlit_is_emoji(text)


class PersonaCard(BaseModel):
    """`persona.json` beside an adapter, or one entry of the prompt-only personas file."""

    # strict: a number or a list where text belongs is refused, not turned into text
    model_config = ConfigDict(extra="forbid", strict=True)

    display_name: str = Field(min_length=1, max_length=80)
    description: str = Field("", max_length=2000)
    # The exact system prompt the adapter was trained with; the page uses the same one.
    system_prompt: str = Field("", max_length=8000)
    greeting: str = Field("", max_length=2000)
    avatar: str = DEFAULT_AVATAR  # a single emoji (see `is_emoji`)
    base_model: str | None = Field(
        None, min_length=1, max_length=300
    )  # required for adapters: the model they were trained on
    served_model: str | None = Field(
        None, min_length=1, max_length=200
    )  # its name on an OpenAI-compatible server; default: the folder name
    # What a character card carried that the studio does not use (SillyTavern's `data.extensions`), kept so that
    # nothing of an imported card is lost; never shown or sent to the model.
    extensions: dict[str, Any] | None = None

    @field_validator("display_name", "base_model", "served_model")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return None if value is None else no_control_characters(value)

    @field_validator("display_name")
    @classmethod
    def _no_reordering(cls, value: str) -> str:
        return without_bidi_controls(value)  # a right-to-left override would scramble the name and what follows it

    @field_validator("description", "system_prompt", "greeting")
    @classmethod
    def _text(cls, value: str) -> str:
        return no_control_characters(value, allow="\n\t")

    @field_validator("avatar")
    @classmethod
    def _emoji(cls, value: str) -> str:
        if not is_emoji(value):
            raise ValueError(Text(N_("must be a single emoji, like {avatar}"), avatar=DEFAULT_AVATAR))
        return value

    @field_validator("extensions")
    @classmethod
    def _bounded(cls, value: dict | None) -> dict | None:
        from pydantic_core import to_json

        if value is not None and len(to_json(value)) > MAX_EXTENSIONS_BYTES:
            raise ValueError(
                Text(
                    N_("must be at most {limit} KB as JSON"),
                    limit=MAX_EXTENSIONS_BYTES // 1024,
                )
            )
        return value


@dataclass(frozen=True)
class Persona:
    name: str  # stable id: the folder name, or the key in the personas file
    card: PersonaCard
    kind: Literal["base", "prompt", "lora"]
    adapter_dir: Path | None = None
    problem: str | None = None  # why it cannot be used; None when it can
    model: str | None = None  # what the backend is asked for (an adapter or served model name); None: base
    notes: tuple[str, ...] = ()  # what was wrong but worked around (e.g. an avatar that is not an emoji)

    @property
    def available(self) -> bool:
        return self.problem is None

    @property
    def label(self) -> str:
        tag = {"base": "base model", "prompt": "prompt", "lora": "LoRA"}[self.kind]
        return f"{self.card.avatar} {self.card.display_name} ({tag})" + ("" if self.available else " — unavailable")


BASE = Persona(
    BASE_PERSONA,
    PersonaCard(
        display_name="Base model", avatar="🦙", description="The model as it is, with the chat page's system prompt."
    ),
    "base",
)


def family(model_name: str) -> str:
    """A model's name reduced so hub ids and folders compare: `LLM-Research/Meta-Llama-3.1-8B-Instruct`,
    `/models/Meta-Llama-3___1-8B-Instruct` and `meta-llama/Llama-3.1-8B-Instruct` are one family."""
    name = model_name.replace(" (demo)", "").rstrip("/").split("/")[-1].lower().replace("___", ".")
    return name.removeprefix("meta-")


def fallback_card(name: str) -> PersonaCard:
    """A card for listing a persona whose own card is unusable: its name escaped (see `core.names.escaped`)."""
    try:
        return PersonaCard(display_name=escaped(name, 80).strip() or "(unnamed)")
    except ValidationError:  # cannot happen for an escaped name; a listing must never fail on a name
        return PersonaCard(display_name="(unnamed)")


def card_from(raw: object) -> tuple[PersonaCard, list[str]]:
    """A checked card and notes on what was worked around. Raises ValueError saying what is wrong.

    An avatar that is not a single emoji does not make the persona unusable: the default is shown instead."""
    if not isinstance(raw, dict):
        raise ValueError(Text(N_("expected an object of fields like {example}"), example='{"display_name": "..."}'))
    notes = []
    avatar = raw.get("avatar", DEFAULT_AVATAR)
    if not (isinstance(avatar, str) and is_emoji(avatar)):
        raw = {key: value for key, value in raw.items() if key != "avatar"}
        notes.append(f"its avatar is not a single emoji, so {DEFAULT_AVATAR} is shown instead")
    try:
        return PersonaCard.model_validate(raw), notes
    except ValidationError as exc:
        raise ValueError(Text(N_("malformed ({problem})"), problem=validation_message(exc))) from None


def read_json(path: Path, limit: int) -> object:
    """A small JSON file's content. Raises ValueError saying why it cannot be used."""
    from pydantic_core import from_json

    if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
        raise ValueError(Text(N_("is not a regular file")))
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(Text(N_("is larger than {limit} KB"), limit=limit // 1024))
    try:
        return from_json(data)  # nesting is limited (no recursion error), and duplicate keys are harmless
    except ValueError as exc:
        raise ValueError(Text(N_("is not valid JSON ({reason})"), reason=str(exc)[:80])) from None


def read_card(path: Path) -> tuple[PersonaCard, list[str]]:
    try:
        raw = read_json(path, MAX_CARD_BYTES)
    except FileNotFoundError:
        raise ValueError(Text(N_("persona.json is missing"))) from None
    except OSError as exc:
        raise ValueError(Text(N_("persona.json cannot be read ({kind})"), kind=type(exc).__name__)) from None
    except ValueError as exc:
        raise ValueError(Text(N_("persona.json {reason}"), reason=exc)) from None
    try:
        return card_from(raw)
    except ValueError as exc:
        malformed = str(exc).startswith("malformed")
        raise ValueError(
            Text(N_("persona.json is {reason}") if malformed else N_("persona.json: {reason}"), reason=exc)
        ) from None


def check_adapter_files(folder: Path, loaded_family: str | None) -> tuple[PersonaCard | None, list[str], str | None]:
    """Checks that need no model: name, files, persona.json, adapter_config.json, base model.
    Returns (card, notes, problem). `loaded_family` None skips the base-model check (a server decides).
    The adapter's own files are named and checked by `llm.lora`, the one place that reads them (imported here,
    not at the top: it brings torch, which listing prompt-only personas must not)."""
    from llm.lora import AdapterError, check_files

    if not SAFE_NAME.match(folder.name):
        undecodable = any("\udc80" <= c <= "\udcff" for c in folder.name)  # os.fsdecode's escapes
        if undecodable:
            return (
                None,
                [],
                Text(
                    N_(
                        "folder name must be letters, digits, '-' or '_' (max 64); it is not UTF-8 (as a zip made "
                        "on Windows names folders): rename it"
                    )
                ),
            )
        return None, [], Text(N_("folder name must be letters, digits, '-' or '_' (max 64)"))
    if problem := folder_problem(folder):
        return None, [], problem
    try:
        card, notes = read_card(folder / "persona.json")
    except ValueError as exc:
        return None, [], text_of(exc)
    try:
        check_files(folder)
    except AdapterError as exc:
        return card, notes, exc.text
    if not card.base_model:
        return card, notes, Text(N_("persona.json does not say which base_model the adapter was trained on"))
    if loaded_family is not None and family(card.base_model) != loaded_family:
        return (
            card,
            notes,
            Text(
                N_("trained on {base_model}, but the loaded model is {loaded_family}"),
                base_model=card.base_model,
                loaded_family=loaded_family,
            ),
        )
    return card, notes, None


def load_prompt_personas(path: Path) -> tuple[list[Persona], str | None]:
    """Prompt-only personas from a JSON object `{name: card}`. Returns (personas, problem with the file)."""
    if not path.is_file():
        return [], None
    try:
        raw = read_json(path, MAX_PERSONAS_FILE_BYTES)
        if not isinstance(raw, dict):
            raise ValueError(Text(N_("must hold an object of name: persona")))
    except (OSError, ValueError) as exc:
        return [], Text(N_("{name} cannot be read: {reason}"), name=path.name, reason=exc)
    return [_prompt_persona(name, entry) for name, entry in list(raw.items())[:MAX_PERSONAS]], None


def _prompt_persona(name: str, entry: object) -> Persona:
    card, notes, problem = None, [], None
    try:
        card, notes = card_from(entry)
        if not SAFE_NAME.match(name):
            problem = Text(N_("name must be letters, digits, '-' or '_'"))
    except Exception as exc:  # whatever is wrong with one entry, the others are listed
        problem = (
            text_of(exc)
            if isinstance(exc, ValueError)
            else Text(N_("cannot be read ({kind})"), kind=type(exc).__name__)
        )
    return Persona(escaped(name), card or fallback_card(name), "prompt", problem=_shown(problem), notes=tuple(notes))


def _shown(problem: str | None) -> str | None:
    """A problem as shown: a name or key quoted in it may hold controls (see `core.names.escaped`)."""
    shown = None if problem is None else escaped(problem, MAX_PROBLEM_CHARS)
    return problem if shown == problem else shown  # as it was: a Text keeps its translation


class PersonaRegistry:
    """Scans persona sources and attaches available adapters to the shared backend. Refresh reloads adapters
    whose files changed, and takes away the ones this registry attached that went away or broke.

    Nothing in the adapters folder or the personas file makes the constructor or `refresh` raise: each failure
    is listed (an adapter or entry unavailable with the reason, or `file_problem`), and the base model serves."""

    def __init__(self, backend, adapters_dir: Path, personas_file: Path):
        self.backend = backend
        self.adapters_dir = adapters_dir
        self.personas_file = personas_file
        self._lock = threading.Lock()
        self._personas: list[Persona] = [BASE]
        self._attached: set[str] = set()
        self.file_problem: str | None = None
        self.refresh()

    def refresh(self) -> list[Persona]:
        """Pick up adapters and personas added, changed (retrained) or broken since the last scan."""
        with self._lock:
            try:
                prompt_personas, self.file_problem = load_prompt_personas(self.personas_file)
            except Exception as exc:  # e.g. a permission error on the folder: listed, never raised to the page
                log.warning("personas file could not be read", exc_info=True)
                prompt_personas, self.file_problem = (
                    [],
                    Text(N_("the personas file cannot be read ({kind})"), kind=type(exc).__name__),
                )
            try:
                found = self.adapters_dir.iterdir() if self.adapters_dir.is_dir() else ()
                entries = sorted(e for e in found if listed(e))
            except Exception as exc:
                log.warning("adapters folder could not be listed", exc_info=True)
                entries, self.file_problem = (
                    [],
                    Text(N_("the adapters folder cannot be read ({kind})"), kind=type(exc).__name__),
                )
            adapters = [self._scan_adapter(e) for e in entries]
            self._detach_gone({p.name for p in adapters if p.available})
            self._personas = [BASE, *prompt_personas, *adapters]
            return list(self._personas)

    def _scan_adapter(self, entry: Path) -> Persona:
        try:
            problem = entry_problem(entry, self.adapters_dir)
            if problem is None:
                return self._check_and_attach(entry)
        except Exception as exc:  # a stranger's files: whatever breaks, only this adapter is unavailable
            log.warning("adapter folder %r could not be scanned", escaped(entry.name), exc_info=True)
            problem = Text(N_("it could not be read ({kind}); the server log has the details"), kind=type(exc).__name__)
        return Persona(escaped(entry.name), fallback_card(entry.name), "lora", entry, problem)

    def _check_and_attach(self, folder: Path) -> Persona:
        base = self.backend.base_name
        card, notes, problem = check_adapter_files(folder, family(base) if base else None)
        card = card or fallback_card(folder.name)
        model = None
        if problem is None:  # the name is SAFE_NAME: fit to be an adapter and a model id as it is
            try:
                model = self.backend.attach_adapter(folder.name, folder, card)
                self._attached.add(folder.name)
            except StudioError as exc:
                problem = exc.text
        return Persona(escaped(folder.name), card, "lora", folder, _shown(problem), model, tuple(notes))

    def _detach_gone(self, available: set[str]) -> None:
        for name in sorted(self._attached - available):
            try:
                self.backend.detach_adapter(name)
            except Exception:  # never let one adapter stop the listing
                log.warning("adapter %r could not be detached", name, exc_info=True)
            self._attached.discard(name)

    def personas(self) -> list[Persona]:
        with self._lock:
            return list(self._personas)

    def get(self, name: str) -> Persona:
        return next((p for p in self.personas() if p.name == name), BASE)
