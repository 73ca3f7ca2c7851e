"""The words a person sees, in their language: one gettext catalog per language (`ui/locales/<lang>/LC_MESSAGES/
studio.po`, read with babel), the language taken from the sidebar switch, else the browser's locale.

Every string a page shows goes through `_()`: `st.button(_("New chat"))`, and with values
`_("{count} messages").format(count=n)` (the placeholders stay in the translation). English is the source
language: a message without a translation shows as written. Words made below the pages (an error from `llm/`, a
team run's notes) carry their message id and values (`core.errors.Text`, `StudioError`): `shown(exc)` says them
in this session's language. `pybabel extract` finds the messages
(`scripts/i18n.sh`), and `tests/test_i18n.py` fails on one that a catalog lacks."""

from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st

from core.errors import N_ as N_  # marks a message where it is defined (a table of labels); _() translates it
from core.errors import translated

LOCALES = Path(__file__).parent / "locales"
DOMAIN = "studio"
LANGUAGES = {"en": "English", "zh_CN": "简体中文", "uk": "Українська"}  # code -> the language's own name
SOURCE = "en"
STATE_KEY = "ui_language"
PICKER_KEY = "ui_language_picker"
QUERY_KEY = "lang"  # in the URL, so a reload keeps the choice


@functools.cache
def catalog(language: str) -> dict[str, str]:
    """msgid -> translation for one language: only the finished ones (not fuzzy, not empty)."""
    from babel.messages.pofile import read_po

    path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == SOURCE or not path.exists():
        return {}
    with path.open("rb") as handle:
        messages = read_po(handle)
    return {m.id: m.string for m in messages if m.id and isinstance(m.id, str) and m.string and not m.fuzzy}


def from_locale(locale: str | None) -> str:
    """A browser locale (`zh-CN`, `zh-Hans-CN`, `uk-UA`, `en-GB`) -> one of LANGUAGES."""
    tag = (locale or "").replace("_", "-").lower()
    if tag.startswith("zh"):
        return "zh_CN"
    if tag.startswith("uk"):
        return "uk"
    return SOURCE


def current() -> str:
    """This session's language: the switch's choice, the URL's `?lang=`, else the browser's."""
    chosen = st.session_state.get(STATE_KEY) or st.query_params.get(QUERY_KEY)
    if chosen in LANGUAGES:
        return chosen
    return from_locale(st.context.locale)  # None outside a browser (AppTest): the source language


def _(message: str) -> str:
    """`message` in this session's language."""
    return catalog(current()).get(message, message)


def shown(value) -> str:
    """An error, or words made below the pages (`core.errors.Text`), in this session's language; anything else
    as `str()` has it. Pages show an error with `st.error(shown(exc))`, or inside a message as a value."""
    return str(translated(value, _))


def language_switch() -> None:
    """The sidebar's language picker, each language named in itself. A choice other than the browser's own is
    kept in the URL (`?lang=`), so a reload or a saved link keeps it; the browser's own needs nothing there."""
    codes, names = list(LANGUAGES), list(LANGUAGES.values())
    language = st.session_state[STATE_KEY] = current()  # kept for this session's other pages
    if language != from_locale(st.context.locale) and st.query_params.get(QUERY_KEY) != language:
        st.query_params[QUERY_KEY] = language  # a page change drops the URL's parameters: put it back
    st.sidebar.selectbox(
        "🌐", names, index=codes.index(language), key=PICKER_KEY, on_change=_chosen, args=(codes, names)
    )


def _chosen(codes: list[str], names: list[str]) -> None:
    # A callback, so the URL changes before the run that draws the page (not in the middle of it).
    chosen = codes[names.index(st.session_state[PICKER_KEY])]
    st.session_state[STATE_KEY] = chosen
    if chosen != from_locale(st.context.locale):
        st.query_params[QUERY_KEY] = chosen
    elif QUERY_KEY in st.query_params:
        del st.query_params[QUERY_KEY]
