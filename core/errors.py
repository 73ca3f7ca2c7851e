"""The base of every error the app shows to users, and the words made below the pages. Each message says what
went wrong and how to fix it.

The engine's errors live with its interface (`llm/interface.py`), the store's with the store, the adapters'
with `llm/lora.py`: all are `StudioError`s, so a page or the API catches one class and shows its message.

Words a person may read are marked where they are written and translated where they are shown: a message id
marked with `N_()` and its values, `StudioError(N_("Cannot read {path}."), path=p)` or `Text(N_(...), ...)`.
`str()` of either is the English text (for logs, the HTTP API and the tests); a page shows it in its reader's
language with `ui.i18n.shown()`, which passes its catalog's lookup to `translated()`. `scripts/i18n.sh` extracts
the marked messages from every folder into the one catalog. Markup and untrusted values stay in parameters.
Words saved to be shown later (a team run's notes and errors) keep their message id and values beside the English
(`kept`, and `restored` when read back), so a reopened record is shown in its reader's language too.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable


def N_(message: str) -> str:
    """Marks `message` for the catalog (`scripts/i18n.sh`) and returns it unchanged: it is translated where shown."""
    return message


def english(message: str) -> str:
    """The lookup of the source language: every message as written."""
    return message


class Text(str):
    """English text that keeps its message id and values, so a page can show it in another language.

    It is a `str` (the English, formatted), so it is stored, logged and compared as before; what copies it into
    a new string (slicing, `+`, a pydantic field's validation) keeps the English only."""

    template: str
    params: dict

    def __new__(cls, template: str, /, **params) -> Text:
        text = super().__new__(cls, template.format(**params) if params else template)
        text.template, text.params = template, params
        return text

    def translated(self, gettext: Callable[[str], str]) -> str:
        words = gettext(self.template)
        if not self.params:
            return words
        return words.format(**{name: translated(value, gettext) for name, value in self.params.items()})


def translated(value, gettext: Callable[[str], str]):
    """`value` in the language `gettext` looks messages up in: a `Text`, a `StudioError` or an exception raised
    with a `Text` (and every one among its values) translated, anything else as it is (a number keeps its format,
    e.g. `{count:,}`)."""
    if isinstance(value, Text):
        return value.translated(gettext)
    if isinstance(value, StudioError):
        return value.text.translated(gettext)
    if isinstance(value, Exception) and len(value.args) == 1 and isinstance(value.args[0], Text):
        return value.args[0].translated(gettext)  # a ValueError raised with a Text (a validator's, a reader's)
    return value


def text_of(exc: BaseException) -> str:
    """What an exception says, as a `Text` when it carries one (a `StudioError`, a `ValueError` raised with a
    `Text`), so it can be kept (a problem, a run's note) and still be shown translated; else `str(exc)`."""
    if isinstance(exc, StudioError):
        return exc.text
    if len(exc.args) == 1 and isinstance(exc.args[0], Text):
        return exc.args[0]
    return str(exc)


def kept(value):
    """Words to save (a team run's note or error) as JSON data: a `Text` (or an error carrying one) as its English
    beside its message id and values, `{"text", "id", "values"}`, so `restored` can make it a `Text` again and a
    reopened record is shown in its reader's language; plain text, numbers and None as they are."""
    if isinstance(value, BaseException):
        value = text_of(value)
    if isinstance(value, Text):
        return {"text": str(value), "id": value.template, "values": {n: kept(v) for n, v in value.params.items()}}
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def restored(data, depth: int = 0):
    """What `kept` saved, read back: a `Text` again when its message id and values still give its English (else
    the English as saved, so a changed or damaged record says what it said); other values as they are."""
    if not isinstance(data, dict):
        return data
    english, template, values = data.get("text"), data.get("id"), data.get("values")
    if not (isinstance(english, str) and isinstance(template, str) and isinstance(values, dict)):
        raise ValueError("saved words need text, id and values")
    if depth > 8:  # deeper than any message nests its values
        return english
    try:  # only plain {name} fields: a saved template never reaches into its values' attributes
        params = {str(name): restored(value, depth + 1) for name, value in values.items()}
        fields = [(name, spec) for _, name, spec, _ in string.Formatter().parse(template) if name is not None]
        if params and not all(name.isidentifier() and "{" not in spec for name, spec in fields):
            return english
        text = Text(template, **params)
    except (ValueError, TypeError, KeyError, IndexError):
        return english
    return text if str(text) == english else english


class StudioError(Exception):
    """Base class: pages catch this and show `shown(exc)` (ui.i18n); the API answers with `str(exc)`, English.

    `StudioError(N_("Cannot read {path}."), path=p)`: the message id and its values, kept in `text`. A message
    given as a finished string (not marked) shows as written in every language."""

    def __init__(self, message: str = "", /, **params):
        self.text = message if isinstance(message, Text) and not params else Text(message, **params)
        super().__init__(self.text)


def problems(exc, names: frozenset[str] | None = None, indexed: bool = False) -> list[tuple[str, str]]:
    """Every problem a pydantic `ValidationError` found, in its order, as `(where, what)`: the one place such an
    error becomes words. `where` is the location's parts joined with dots (only `names` and list indexes, when
    `names` is given: the API's `param` names fields, not the union members pydantic tried), or, `indexed`, as a
    file's reader writes it (`messages[3].sources[0].title`, each key shown by `key_name`); `what` never echoes
    the value itself (it may be long, or carry markup), and a `ValueError` a validator raised with a `Text` keeps
    its translation."""
    return [_problem(error, names, indexed) for error in exc.errors(include_url=False, include_input=False)]


def most_telling(exc, names: frozenset[str] | None = None) -> tuple[str, str]:
    """The problem that reached deepest into the value, and among those a bound or a value over a mere type
    mismatch (a union reports each member it tried): what the API answers with."""
    errors = exc.errors(include_url=False, include_input=False)
    return _problem(min(errors, key=lambda e: (-len(e["loc"]), e["type"].endswith("_type"))), names)


def key_name(key: object) -> str:
    """A key from a file or a request as it may be shown in a page: word characters only (no markdown), short."""
    return re.sub(r"[^\w-]", "?", str(key))[:40]


def _problem(error: dict, names: frozenset[str] | None, indexed: bool = False) -> tuple[str, str]:
    loc = [part for part in error["loc"] if names is None or isinstance(part, int) or part in names]
    if indexed:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{key_name(part)}" for part in loc).lstrip(".")
    else:
        where = ".".join(str(part)[:60] for part in loc)
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ValueError) and cause.args and isinstance(cause.args[0], Text):
        return where, cause.args[0]
    return where, error["msg"].removeprefix("Value error, ")


def validation_message(exc) -> str:
    """The first problem a pydantic `ValidationError` found (`problems`), as `where: what`: for messages about
    files and requests from outside."""
    where, message = problems(exc)[0]
    return Text(N_("{where}: {message}"), where=where, message=message) if where else message
