"""Drawing helpers for the persona page: the registry and the picker (the side-by-side view is `ui.compare`)."""

from __future__ import annotations

import streamlit as st

from llm.interface import ChatBackend
from personas.editing import needs_card
from personas.registry import BASE, Persona, PersonaRegistry
from ui import prefs
from ui.i18n import N_, _, shown
from ui.safe_text import plain, safe_markdown

KINDS = {"base": N_("base model"), "prompt": N_("prompt"), "lora": N_("LoRA")}


def registry(backend: ChatBackend) -> PersonaRegistry:
    """The one registry per backend and folders, shared by all sessions and the API (adapters load once)."""
    from runtime import get_registry

    return get_registry(backend)


def select_from_url() -> None:
    """Opening a saved persona conversation (?c=…) picks its persona, once per link."""
    from ui.conversations import conversation_page
    from ui.session import open_conversations

    cid = st.query_params.get("c")
    if cid and cid not in open_conversations() and st.session_state.get("persona.url_c") != cid:
        st.session_state["persona.url_c"] = cid
        page = conversation_page(cid)
        if page and page.startswith("persona:"):
            st.session_state["persona.current"] = page.split(":", 1)[1]


def pick_persona(reg: PersonaRegistry) -> Persona:
    """Sidebar picker; the choice is this session's own, and kept in this browser (`ui.prefs`) for the next visit
    (a persona that is gone by then, or a forged name, gives the base model)."""
    with st.sidebar:
        if st.button(_("Refresh personas"), key="persona.refresh", use_container_width=True):
            reg.refresh()  # reloads retrained adapters; never raises for a broken one (it is listed below)
        personas = reg.personas()
        usable = [p for p in personas if p.available]
        names = [p.name for p in usable]
        last = prefs.text_value(prefs.kept("persona_choice"), "name")
        prefs.seed({"name": "persona.current"}, last if last.get("name") in names else {})  # a ?c= link wins
        current = st.session_state.get("persona.current", BASE.name)
        choice = st.selectbox(
            _("Persona"),
            names,
            index=names.index(current) if current in names else 0,
            format_func=lambda n: label(reg.get(n)),
            key="persona.current",
        )
        prefs.keep("persona_choice", {"name": choice} if choice != BASE.name else {})
        broken = [p for p in personas if not p.available]
        if broken or reg.file_problem:
            with st.expander(_("Unavailable ({count})").format(count=len(broken) + bool(reg.file_problem))):
                if reg.file_problem:
                    st.caption(safe_markdown(shown(reg.file_problem)))
                for p in broken:
                    st.caption(f"**{plain(p.name)}**: {safe_markdown(shown(p.problem or ''))}")
                    if needs_card(p):
                        st.caption(_("Create its persona in the **Manage personas** view."))
        noted = [p for p in personas if p.available and p.notes]
        if noted:
            with st.expander(_("Notes ({count})").format(count=len(noted))):
                for p in noted:
                    st.caption(f"**{plain(p.name)}**: {plain('; '.join(p.notes))}")
    return reg.get(choice)


# The base model's card is the studio's own words (personas/registry.py's BASE), so the page says it in its language.
BASE_WORDS = {
    "display_name": N_("Base model"),
    "description": N_("The model as it is, with the chat page's system prompt."),
}


def display_name(persona: Persona) -> str:
    """A persona's name as the page shows it (the base model's in the page's language)."""
    return _(BASE_WORDS["display_name"]) if persona.kind == "base" else persona.card.display_name


def description(persona: Persona) -> str:
    return _(BASE_WORDS["description"]) if persona.kind == "base" else persona.card.description


def label(persona: Persona) -> str:
    """How the picker names a persona: avatar, name, kind, and whether it can be used."""
    shown = _("{avatar} {name} ({kind})").format(
        avatar=persona.card.avatar, name=display_name(persona), kind=_(KINDS[persona.kind])
    )
    return shown if persona.available else _("{persona} — unavailable").format(persona=shown)


def persona_system_prompt(persona: Persona) -> str | None:
    """The persona's own prompt; None for the base model (the user edits it)."""
    return None if persona.kind == "base" else persona.card.system_prompt
