"""Personas: prompt-only ones from a file, LoRA ones from `adapters/<name>/`, each checked before use.

Every file here may come from a stranger. Each field is checked by type and range (`PersonaCard`,
`llm.lora.AdapterConfig`) before it is used; a persona that fails a check, or whose scan fails in any
other way, is listed as unavailable with the reason, and the others keep working.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import StudioError, validation_message
from core.names import escaped, no_control_characters, without_bidi_controls

log = logging.getLogger(__name__)

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
BASE_PERSONA = "base"
DEFAULT_AVATAR = "🎭"
MAX_CARD_BYTES = 64 * 1024  # a persona.json is a few hundred bytes
MAX_PERSONAS_FILE_BYTES = 1 << 20
MAX_PERSONAS = 1000  # entries of the personas file that are read
MAX_PROBLEM_CHARS = 1000
MAX_EXTENSIONS_BYTES = 32 * 1024  # a character card's `extensions`, kept as JSON beside the persona
NOT_ADAPTERS = ("__MACOSX",)  # what a zip made on a Mac adds beside its files


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
            raise ValueError(f"must be a single emoji, like {DEFAULT_AVATAR}")
        return value

    @field_validator("extensions")
    @classmethod
    def _bounded(cls, value: dict | None) -> dict | None:
        from pydantic_core import to_json

        if value is not None and len(to_json(value)) > MAX_EXTENSIONS_BYTES:
            raise ValueError(f"must be at most {MAX_EXTENSIONS_BYTES // 1024} KB as JSON")
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
        raise ValueError('expected an object of fields like {"display_name": "..."}')
    notes = []
    avatar = raw.get("avatar", DEFAULT_AVATAR)
    if not (isinstance(avatar, str) and is_emoji(avatar)):
        raw = {key: value for key, value in raw.items() if key != "avatar"}
        notes.append(f"its avatar is not a single emoji, so {DEFAULT_AVATAR} is shown instead")
    try:
        return PersonaCard.model_validate(raw), notes
    except ValidationError as exc:
        raise ValueError(f"malformed ({validation_message(exc)})") from None


def read_json(path: Path, limit: int) -> object:
    """A small JSON file's content. Raises ValueError saying why it cannot be used."""
    from pydantic_core import from_json

    if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
        raise ValueError("is not a regular file")
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit // 1024} KB")
    try:
        return from_json(data)  # nesting is limited (no recursion error), and duplicate keys are harmless
    except ValueError as exc:
        raise ValueError(f"is not valid JSON ({str(exc)[:80]})") from None


def read_card(path: Path) -> tuple[PersonaCard, list[str]]:
    try:
        raw = read_json(path, MAX_CARD_BYTES)
    except FileNotFoundError:
        raise ValueError("persona.json is missing") from None
    except OSError as exc:
        raise ValueError(f"persona.json cannot be read ({type(exc).__name__})") from None
    except ValueError as exc:
        raise ValueError(f"persona.json {exc}") from None
    try:
        return card_from(raw)
    except ValueError as exc:
        raise ValueError(
            f"persona.json is {exc}" if str(exc).startswith("malformed") else f"persona.json: {exc}"
        ) from None


def check_adapter_files(folder: Path, loaded_family: str | None) -> tuple[PersonaCard | None, list[str], str | None]:
    """Checks that need no model: name, files, persona.json, adapter_config.json, base model.
    Returns (card, notes, problem). `loaded_family` None skips the base-model check (a server decides).
    The adapter's own files are named and checked by `llm.lora`, the one place that reads them (imported here,
    not at the top: it brings torch, which listing prompt-only personas must not)."""
    from llm.lora import AdapterError, check_files

    if not SAFE_NAME.match(folder.name):
        undecodable = any("\udc80" <= c <= "\udcff" for c in folder.name)  # os.fsdecode's escapes
        hint = "; it is not UTF-8 (as a zip made on Windows names folders): rename it" if undecodable else ""
        return None, [], "folder name must be letters, digits, '-' or '_' (max 64)" + hint
    if problem := folder_problem(folder):
        return None, [], problem
    try:
        card, notes = read_card(folder / "persona.json")
    except ValueError as exc:
        return None, [], str(exc)
    try:
        check_files(folder)
    except AdapterError as exc:
        return card, notes, str(exc)
    if not card.base_model:
        return card, notes, "persona.json does not say which base_model the adapter was trained on"
    if loaded_family is not None and family(card.base_model) != loaded_family:
        return card, notes, f"trained on {card.base_model}, but the loaded model is {loaded_family}"
    return card, notes, None


def entry_problem(entry: Path, root: Path) -> str | None:
    """Why something in the adapters folder `root` that is not a folder of its own cannot be an adapter (a link
    loop, a link to `root` or above it, a file), or None for a folder."""
    try:
        is_folder = stat.S_ISDIR(entry.stat().st_mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a link that leads back to itself (a loop): delete it"
        return "is a link to something that is not there" if entry.is_symlink() else "went away while it was read"
    if not is_folder:
        if entry.name.lower().endswith(".zip"):
            return f"is a zip file: extract it so that its files are in {escaped(entry.name[:-4])}/"
        return "is a file, not a folder: an adapter is a folder holding adapter_model.safetensors and persona.json"
    if entry.is_symlink():
        target, above = entry.resolve(), root.resolve()
        if target == above or target in above.parents:
            return "is a link to the adapters folder or a folder above it, not to an adapter: delete it"
    return None


def folder_problem(folder: Path) -> str | None:
    """Why `folder` cannot hold an adapter as it stands (it cannot be read, or its files are a folder or two
    down, as extracting a zip or copying a training run's output leaves them), or None."""
    from llm.lora import CONFIG, WEIGHTS

    try:
        names = set(os.listdir(folder))
    except OSError as exc:
        return f"the folder cannot be read ({type(exc).__name__}): check its permissions"
    if names & {WEIGHTS, CONFIG, "persona.json"}:
        return None
    nested, into = nested_adapters(folder, {WEIGHTS, CONFIG}), escaped(folder.name)
    if len(nested) == 1:
        return f"the adapter files are in the subfolder {nested[0]}: move them up into {into}/"
    if nested:
        shown = ", ".join(nested[:4]) + (", …" if len(nested) > 4 else "")
        return f"the adapter files are in the subfolders {shown}: move the one you want (e.g. the last) up into {into}/"
    return None


def nested_adapters(folder: Path, wanted: set[str], depth: int = 2, width: int = 100) -> list[str]:
    """The shallowest subfolders of `folder` (at most `depth` down, `width` a level; links and `__MACOSX` are
    not followed) that hold a file named in `wanted`, as escaped relative paths in natural order."""
    level: list[Path] = [Path()]
    for _ in range(depth):
        below = []
        for rel in level:
            try:
                with os.scandir(folder / rel) as entries:
                    for entry in entries:
                        hidden = entry.name.startswith(".") or entry.name in NOT_ADAPTERS
                        if not hidden and entry.is_dir(follow_symlinks=False) and len(below) < width:
                            below.append(rel / entry.name)
            except OSError:  # an unreadable subfolder holds nothing we can point at
                continue
        found = [escaped(rel.as_posix(), 200) for rel in below if _holds(folder / rel, wanted)]
        if found:
            return sorted(found, key=lambda name: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)])
        level = below
    return []


def _holds(folder: Path, wanted: set[str]) -> bool:
    try:
        return bool(wanted & set(os.listdir(folder)))
    except OSError:
        return False


def listed(entry: Path) -> bool:
    """Whether an entry of the adapters folder is listed: folders and links, and files that look like a persona
    folder or an archive of one; not hidden entries, `__MACOSX` or files such as a README.md."""
    name = entry.name
    if name.startswith(".") or name in NOT_ADAPTERS:
        return False
    return entry.is_symlink() or entry.is_dir() or "." not in name or name.lower().endswith(".zip")


def load_prompt_personas(path: Path) -> tuple[list[Persona], str | None]:
    """Prompt-only personas from a JSON object `{name: card}`. Returns (personas, problem with the file)."""
    if not path.is_file():
        return [], None
    try:
        raw = read_json(path, MAX_PERSONAS_FILE_BYTES)
        if not isinstance(raw, dict):
            raise ValueError("must hold an object of name: persona")
    except (OSError, ValueError) as exc:
        return [], f"{path.name} cannot be read: {exc}"
    return [_prompt_persona(name, entry) for name, entry in list(raw.items())[:MAX_PERSONAS]], None


def _prompt_persona(name: str, entry: object) -> Persona:
    card, notes, problem = None, [], None
    try:
        card, notes = card_from(entry)
        if not SAFE_NAME.match(name):
            problem = "name must be letters, digits, '-' or '_'"
    except Exception as exc:  # whatever is wrong with one entry, the others are listed
        problem = f"{exc}" if isinstance(exc, ValueError) else f"cannot be read ({type(exc).__name__})"
    return Persona(escaped(name), card or fallback_card(name), "prompt", problem=_shown(problem), notes=tuple(notes))


def _shown(problem: str | None) -> str | None:
    """A problem as shown: a name or key quoted in it may hold controls (see `core.names.escaped`)."""
    return None if problem is None else escaped(problem, MAX_PROBLEM_CHARS)


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
                prompt_personas, self.file_problem = [], f"the personas file cannot be read ({type(exc).__name__})"
            try:
                found = self.adapters_dir.iterdir() if self.adapters_dir.is_dir() else ()
                entries = sorted(e for e in found if listed(e))
            except Exception as exc:
                log.warning("adapters folder could not be listed", exc_info=True)
                entries, self.file_problem = [], f"the adapters folder cannot be read ({type(exc).__name__})"
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
            problem = f"it could not be read ({type(exc).__name__}); the server log has the details"
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
                problem = str(exc)
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
