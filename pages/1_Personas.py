"""Personas: chat with a LoRA or prompt persona, your choice only; or compare it with the base model."""

import streamlit as st

from ui import conversations
from ui.auth import require_password
from ui.chat import answer, backend_or_stop, check_prompt, commit_pending, render_message, sidebar_options, user_message
from ui.personas import persona_system_prompt, pick_persona, registry, select_from_url, side_by_side
from ui.safe_text import plain, safe_markdown

st.set_page_config(page_title="Llama Studio · Personas", page_icon="🎭", layout="wide")
require_password()
backend = backend_or_stop()
select_from_url()
persona = pick_persona(registry(backend))
system_prompt, options = sidebar_options("persona", persona_system_prompt(persona))
view = st.sidebar.radio("View", ["Chat", "Side by side"], key="persona.view", horizontal=True)

page, history_key = f"persona:{persona.name}", f"persona.{persona.name}.messages"  # one history per persona
conversations.bind(page, history_key)
slot = conversations.sidebar_slot()
commit_pending(history_key)
history = st.session_state[history_key]

st.title(plain(f"{persona.card.avatar} {persona.card.display_name}"))  # persona files come from anyone
if persona.card.description:
    st.caption(safe_markdown(persona.card.description))

if view == "Side by side":
    question = check_prompt(st.chat_input("Ask both", key="persona.compare_input", submit_mode="stop"))
    if question is not None:
        st.markdown(f"**You:** {plain(question)}")
        side_by_side(backend, persona, question, options)
else:
    if persona.card.greeting:
        with st.chat_message("assistant", avatar=persona.card.avatar):
            st.markdown(safe_markdown(persona.card.greeting))
    for message in history:
        render_message(message)
    prompt = check_prompt(
        st.chat_input(f"Message {persona.card.display_name}", key="persona.input", submit_mode="stop")
    )
    if prompt is not None:
        history.append(user_message(prompt))
        render_message(history[-1])
        conversations.save(page, history_key)
        answer(
            backend,
            history_key,
            system_prompt,
            options,
            persona.model,
            {"persona": persona.name},
            conversations.saver(page, history_key),
        )
conversations.finish(slot, page, history_key, "persona")
