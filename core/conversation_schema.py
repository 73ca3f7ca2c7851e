"""The shape of a conversation export (its messages are `core.message.Message`), checked with pydantic.

An imported file is data from a stranger: every known field is checked by type and range, and the file
is refused with the field's path when one is wrong; unknown keys are dropped (and named), so nothing
unchecked reaches the pages. A message read back from the store is checked by the same model, but a bad
field is dropped instead of refusing, so one bad value (e.g. in a database from an older version, whose
import kept any key) never stops a conversation from opening.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationError

from core.errors import N_, StudioError, Text, key_name, problems
from core.message import Message, Part
from core.text import surrogate_at

EXPORT_FORMAT = "llama-studio-conversation/1"
MAX_IMPORT_BYTES = 32 * 1024 * 1024  # a 10,000-turn conversation with sources is ~20 MB
MAX_MESSAGES = 20_000


class ImportRefused(StudioError):
    """An uploaded file is not a conversation export we can take; the message says why."""


DEEP = N_("The file nests too deeply to be a conversation export.")
THE_FILE = Text(N_("the file"))  # where a problem is, when it is the whole file


def _page(page: str) -> str:
    if not re.fullmatch(r"chat|search|team|persona:[A-Za-z0-9][A-Za-z0-9_-]{0,63}", page):
        raise ValueError(Text(N_("must be chat, search, team or persona:NAME (NAME: letters, digits, - and _)")))
    return page


class Export(Part):
    format: Literal["llama-studio-conversation/1"]
    title: Annotated[str, Field(max_length=10_000)] = "Imported"
    page: Annotated[str, AfterValidator(_page)] = "chat"
    messages: Annotated[list[Message], Field(max_length=MAX_MESSAGES)]
    versions: Annotated[list[Message], Field(max_length=MAX_MESSAGES)] | None = None  # beside the branch


# --- import: refuse with the reason -------------------------------------------------------------


def parse_export(raw: bytes) -> tuple[Export, list[str]]:
    """An uploaded file as a checked export, and the paths of the unknown keys that were dropped."""
    if len(raw) > MAX_IMPORT_BYTES:
        raise ImportRefused(
            N_("The file is {size:.1f} MB; imports are limited to {limit} MB."),
            size=len(raw) / 2**20,
            limit=MAX_IMPORT_BYTES // 2**20,
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ImportRefused(N_("The file is not UTF-8 text, so it is not a conversation export.")) from None
    except RecursionError:
        raise ImportRefused(DEEP) from None
    except json.JSONDecodeError as exc:
        raise ImportRefused(
            N_("The file is not valid JSON ({reason} at line {line}, column {column})."),
            reason=exc.msg,
            line=exc.lineno,
            column=exc.colno,
        ) from None
    except ValueError:  # the one other case: an integer of more than 4,300 digits
        raise ImportRefused(
            N_("The file holds a number too long to read, so it is not a conversation export.")
        ) from None
    return check_export(data)


def check_export(data: object) -> tuple[Export, list[str]]:
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ImportRefused(N_('Not a conversation export (expected "format": "{format}").'), format=EXPORT_FORMAT)
    if (where := surrogate_at(data)) is not None:
        raise ImportRefused(
            N_(
                "The file was not imported: {where} holds a lone UTF-16 surrogate (such as \\ud800), which is not "
                "text. Export the conversation again, or fix that field."
            ),
            where=where or THE_FILE,
        )
    try:
        export = Export.model_validate(data)
    except ValidationError as exc:
        raise ImportRefused(N_("The file was not imported: {problem}"), problem=describe(exc)) from None
    except RecursionError:
        raise ImportRefused(DEEP) from None
    return export, drop_unknown(export)


def describe(exc: ValidationError) -> Text:
    """The first problem (`core.errors.problems`) as `messages[3].sources[0].title: Input should be a valid
    string.`, and how many more there are."""
    found = problems(exc, indexed=True)
    where, problem = found[0]
    where = where or THE_FILE
    if len(found) == 1:
        return Text(N_("{where}: {problem}."), where=where, problem=problem)
    if len(found) == 2:
        return Text(N_("{where}: {problem} (and 1 more problem)."), where=where, problem=problem)
    return Text(
        N_("{where}: {problem} (and {count} more problems)."), where=where, problem=problem, count=len(found) - 1
    )


def drop_unknown(part: BaseModel, path: str = "") -> list[str]:
    """Remove every key the schema does not know, at every level; returns their paths."""
    dropped = [f"{path}.{key_name(key)}".lstrip(".") for key in (part.model_extra or {})]
    (part.model_extra or {}).clear()
    for name in type(part).model_fields:
        value = getattr(part, name)
        children = value if isinstance(value, list) else [value]
        for n, child in enumerate(children):
            if isinstance(child, BaseModel):
                dropped += drop_unknown(child, f"{path}.{name}" + (f"[{n}]" if isinstance(value, list) else ""))
    return dropped


# --- export: as Markdown, to read ---------------------------------------------------------------


def to_markdown(export: dict) -> str:
    """An export (`Store.export_json`) as Markdown: the branch, each answer's sources under it."""
    lines = [f"# {export['title']}", ""]
    for m in export["messages"]:
        who = "You" if m["role"] == "user" else "Assistant"
        lines += [f"**{who}:**" + (" *(cut off)*" if m.get("cut") else ""), "", m["content"], ""]
        for n, source in enumerate(m.get("sources") or [], 1):
            lines.append(f"[{n}] {source.get('title', '')} — {source.get('link', '')}")
        if m.get("sources"):
            lines.append("")
    return "\n".join(lines)


# --- read: drop what is bad, keep the message ---------------------------------------------------


def clean_message(mid: str, role: object, content: object, meta_text: object) -> dict | None:
    """A stored row as a message dict whose known fields all have the right types (bad ones dropped).

    Unknown keys are kept: they are our own (a newer field) or from an older import, and no page reads
    them. None when the row is not a message at all (an unknown role)."""
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    data = {**_json_object(meta_text), "role": role, "content": content if isinstance(content, str) else str(content)}
    for _ in range(3):  # each pass drops the fields that failed; nested failures drop their top field
        try:
            return {**Message.model_validate(data).as_state(), "id": mid}
        except ValidationError as exc:
            bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
            if "role" in bad or not bad:
                return None
            data = {k: v for k, v in data.items() if k not in bad}
        except (ValueError, RecursionError):  # an unknown key nested too deeply to copy: keep the known ones
            data = {k: v for k, v in data.items() if k in Message.model_fields}
    return None


def _json_object(text: object) -> dict:
    try:
        value = json.loads(text) if isinstance(text, (str, bytes)) else None
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
