"""Writing personas: `persona.json` for an adapter folder that lacks one (a tutorial's PEFT checkpoint), and the
entries of the prompt-only personas file (add, edit, delete, import).

Every field is checked by `registry.PersonaCard`, the schema the registry reads them with, so what is written here
is what the registry accepts. Files are written whole to a temporary file beside the target and moved over it
(`os.replace`), so a reader never sees half a file. The personas file is re-read under a lock before each change
and only the one entry changes: the other entries (even ones the registry refuses) and edits made meanwhile by
another session or process are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from core.errors import N_, StudioError, validation_message
from core.names import escaped
from personas.registry import (
    BASE_PERSONA,
    MAX_CARD_BYTES,
    MAX_PERSONAS,
    MAX_PERSONAS_FILE_BYTES,
    SAFE_NAME,
    Persona,
    PersonaCard,
    family,
    read_json,
)

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")  # `llm.lora`'s names (it brings torch)
MAX_CONFIG_BYTES = 1 << 20  # as `llm.lora` reads adapter_config.json
FORM_FIELDS = ("display_name", "description", "system_prompt", "greeting", "avatar")
_thread_locks: dict[Path, threading.Lock] = {}
_guard = threading.Lock()


class PersonaEditError(StudioError):
    """A persona cannot be saved as given; the message names the field or says what to change."""


def checked_card(fields: dict) -> PersonaCard:
    """`fields` as a persona card, by the registry's own schema. Raises PersonaEditError naming the field."""
    try:
        return PersonaCard.model_validate(fields)
    except ValidationError as exc:
        raise PersonaEditError(N_("{problem}."), problem=validation_message(exc)) from None


def write_json_atomic(path: Path, data: object, limit: int) -> None:
    """`data` as indented JSON in `path`, all or nothing: a temporary file beside it, then `os.replace`."""
    from pydantic_core import to_json

    text = to_json(data, indent=2).decode() + "\n"
    if len(text.encode()) > limit:
        raise PersonaEditError(
            N_("{name} would be larger than {limit} KB; delete or shorten some personas."),
            name=path.name,
            limit=limit // 1024,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def locked(path: Path):
    """Holds `path` against other writers: threads of this process (a lock per file) and other processes (an
    advisory lock on the folder holding it, so no lock file is left beside the user's files)."""
    with _guard:
        thread_lock = _thread_locks.setdefault(path.resolve(), threading.Lock())
    with thread_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            yield
        finally:
            os.close(folder)  # closing releases the lock


# --- persona.json for an adapter folder ----------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterDraft:
    """What the create-persona form starts from: the folder, and the base model its adapter_config.json names."""

    name: str
    folder: Path
    base_model: str | None  # adapter_config.json's base_model_name_or_path; None when it names none
    loaded_model: str | None  # the model the backend serves; None on a server (it decides)

    @property
    def differs(self) -> bool:
        """Whether the adapter was trained on another model than the one loaded (it would then be refused)."""
        if not (self.base_model and self.loaded_model):
            return False
        return family(self.base_model) != family(self.loaded_model)


def needs_card(persona: Persona) -> bool:
    """Whether `persona` is an adapter folder whose only lack is persona.json (as a PEFT checkpoint is copied)."""
    folder = persona.adapter_dir
    if persona.kind != "lora" or persona.available or folder is None or not SAFE_NAME.match(folder.name):
        return False
    try:
        return folder.is_dir() and not (folder / "persona.json").exists() and (folder / ADAPTER_FILES[0]).is_file()
    except OSError:
        return False


def adapter_draft(persona: Persona, loaded_model: str | None) -> AdapterDraft:
    """The draft for an adapter that `needs_card`: the base model is read from its adapter_config.json."""
    folder = persona.adapter_dir
    assert folder is not None  # needs_card(persona) holds
    base = None
    try:
        config = read_json(folder / ADAPTER_FILES[1], MAX_CONFIG_BYTES)
        named = config.get("base_model_name_or_path") if isinstance(config, dict) else None
        if isinstance(named, str) and named.strip():
            base = escaped(named.strip(), 300)
    except (OSError, ValueError):  # the registry names what is wrong with the config once persona.json exists
        pass
    return AdapterDraft(folder.name, folder, base, loaded_model)


def create_adapter_card(folder: Path, fields: dict) -> PersonaCard:
    """Writes `folder/persona.json` from the form's fields (base_model required). Refuses a bad field naming it,
    and never overwrites a persona.json that appeared meanwhile (another session made it)."""
    if not fields.get("base_model"):
        raise PersonaEditError(
            N_(
                "base_model: name the model the adapter was trained on (its adapter_config.json's "
                "base_model_name_or_path)."
            )
        )
    card = checked_card(fields)
    target = folder / "persona.json"
    with locked(target):
        if target.exists():
            raise PersonaEditError(
                N_("{folder}/persona.json exists already (made meanwhile?): refresh the page."),
                folder=escaped(folder.name),
            )
        write_json_atomic(target, card.model_dump(mode="json", exclude_none=True), MAX_CARD_BYTES)
    return card


# --- the prompt-only personas file ---------------------------------------------------------------------------


def read_entries(path: Path) -> dict:
    """The personas file's object as it stands (every entry, even ones the registry refuses); {} when absent.
    Raises PersonaEditError when it cannot be changed safely (it is not a JSON object): fix it by hand first."""
    try:
        raw = read_json(path, MAX_PERSONAS_FILE_BYTES)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PersonaEditError(
            N_("{name} {reason}: fix it by hand before personas can be saved here."), name=path.name, reason=exc
        ) from None
    if not isinstance(raw, dict):
        raise PersonaEditError(N_("{name} must hold an object of name: persona; fix it by hand first."), name=path.name)
    return raw


def save_prompt_persona(
    path: Path, name: str, fields: dict, *, expected: object = None, new: bool = False, reserved=()
) -> PersonaCard:
    """Adds (`new`) or changes the entry `name` of the personas file. A changed entry keeps what the form does
    not show (e.g. a character card's extensions). `expected` is the entry as the form read it: when someone
    changed or deleted it since, nothing is written. Raises PersonaEditError naming what is wrong."""
    check_id(name, reserved)
    with locked(path):
        entries = read_entries(path)
        if new and name in entries:
            raise PersonaEditError(N_("name: {name} is taken; choose another."), name=name)
        if not new and entries.get(name) != expected:
            if name not in entries:
                raise PersonaEditError(
                    N_("{name} was deleted by someone else meanwhile; refresh and try again."), name=name
                )
            raise PersonaEditError(
                N_("{name} was changed by someone else meanwhile; refresh and try again."), name=name
            )
        if new and len(entries) >= MAX_PERSONAS:
            raise PersonaEditError(N_("the personas file holds {count} personas; delete some."), count=MAX_PERSONAS)
        old = entries.get(name) if isinstance(entries.get(name), dict) else {}
        kept = {k: v for k, v in old.items() if k not in FORM_FIELDS}
        card = checked_card({**kept, **fields})
        entries[name] = card.model_dump(mode="json", exclude_none=True)
        write_json_atomic(path, entries, MAX_PERSONAS_FILE_BYTES)
    return card


def delete_prompt_persona(path: Path, name: str) -> None:
    """Removes the entry `name` (the others stay as they are); one already gone is not an error."""
    with locked(path):
        entries = read_entries(path)
        if name in entries:
            del entries[name]
            write_json_atomic(path, entries, MAX_PERSONAS_FILE_BYTES)


def add_imported(path: Path, wanted_id: str, card: PersonaCard, reserved=()) -> str:
    """Adds `card` under `wanted_id`, or the first free `wanted_id-2`, `-3`…; returns the id used."""
    with locked(path):
        entries = read_entries(path)
        taken = set(entries) | set(reserved) | {BASE_PERSONA}
        name = free_id(wanted_id, taken)
        if len(entries) >= MAX_PERSONAS:
            raise PersonaEditError(N_("the personas file holds {count} personas; delete some."), count=MAX_PERSONAS)
        entries[name] = card.model_dump(mode="json", exclude_none=True)
        write_json_atomic(path, entries, MAX_PERSONAS_FILE_BYTES)
    return name


def check_id(name: str, reserved=()) -> None:
    if not SAFE_NAME.match(name):
        raise PersonaEditError(N_("name: use letters, digits, '-' or '_' (at most 64), starting with one."))
    if name == BASE_PERSONA or name in reserved:
        raise PersonaEditError(
            N_("name: {name} is taken (by the base model or an adapter); choose another."), name=name
        )


def persona_id(text: str) -> str:
    """A safe id (`SAFE_NAME`) from a stranger's name: ASCII letters and digits kept, the rest as '-'. A name with
    none of them (甄嬛) gets `card-` and a short hash of it, so each name keeps its own id."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_text).strip("-").lower()[:48].strip("-")
    if not slug:
        slug = "card-" + hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()[:8]
    return slug


def free_id(wanted: str, taken: set[str]) -> str:
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"
