"""Personas: chat with a LoRA or prompt persona, your choice only; compare it with the base model; or manage the
personas (create one for an adapter folder, edit prompt personas, import character cards, train your own)."""

import streamlit as st

from ui import page
from ui.answer import answer
from ui.chat import check_prompt, render_message, sidebar_options
from ui.compare import kept_comparisons, side_by_side
from ui.i18n import N_, _
from ui.persona_editor import manage
from ui.personas import description, display_name, persona_system_prompt, pick_persona, registry, select_from_url
from ui.safe_text import plain, safe_markdown
from ui.session import ChatSession

VIEWS = [N_("Chat"), N_("Side by side"), N_("Manage personas")]

st.set_page_config(page_title="Llama Studio · " + _("Personas"), page_icon="🎭", layout="wide")
backend = page.start()
select_from_url()
reg = registry(backend)
persona = pick_persona(reg)
system_prompt, options = sidebar_options("persona", persona_system_prompt(persona))
view = st.sidebar.radio(_("View"), VIEWS, format_func=_, key="persona.view", horizontal=True)
# One history per persona, under one set of widgets.
session = ChatSession(f"persona:{persona.name}", "persona", f"persona.{persona.name}.messages")


def header() -> None:
    if description(persona):
        st.caption(safe_markdown(description(persona)))
    if view == "Chat" and persona.card.greeting:
        with st.chat_message("assistant", avatar=persona.card.avatar):
            st.markdown(safe_markdown(persona.card.greeting))


def compare() -> None:
    kept_comparisons(persona)  # the earlier comparisons with this persona, newest last
    question = check_prompt(st.chat_input(_("Ask both"), key="persona.compare_input", submit_mode="stop"))
    if question is not None:
        side_by_side(backend, persona, question, options)  # both columns at once, kept with the others


def reply(turn: page.Turn) -> None:
    answer(session, backend, system_prompt, options, persona.model, {"persona": persona.name}, persona.card.avatar)


page.run(
    session,
    plain(f"{persona.card.avatar} {display_name(persona)}"),  # persona files come from anyone
    reply,
    _("Message {name}").format(name=display_name(persona)),
    header=header,
    render=lambda message: render_message(message, avatar=persona.card.avatar),  # its answers show its avatar
    body={"Side by side": compare, "Manage personas": lambda: manage(backend, reg)}.get(view),
)
