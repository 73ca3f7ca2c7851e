"""Personas: chat with a LoRA or prompt persona, your choice only; or compare it with the base model."""

import streamlit as st

from ui.chat import answer, backend_or_stop, check_prompt, commit_pending, render_message, sidebar_options
from ui.personas import persona_system_prompt, pick_persona, registry, side_by_side

st.set_page_config(page_title="Llama Studio · Personas", page_icon="🎭", layout="wide")

backend = backend_or_stop()
persona = pick_persona(registry(backend))
system_prompt, options = sidebar_options("persona", persona_system_prompt(persona))
view = st.sidebar.radio("View", ["Chat", "Side by side"], key="persona.view", horizontal=True)

history_key = f"persona.{persona.name}.messages"  # one history per persona
st.session_state.setdefault(history_key, [])
commit_pending(history_key)
history = st.session_state[history_key]

st.title(f"{persona.card.avatar} {persona.card.display_name}")
if persona.card.description:
    st.caption(persona.card.description)

if view == "Side by side":
    question = check_prompt(st.chat_input("Ask both", key="persona.compare_input", submit_mode="stop"))
    if question is not None:
        st.markdown(f"**You:** {question}")
        side_by_side(backend, persona, question, options)
    st.stop()

if st.sidebar.button("New chat with this persona", key="persona.new", use_container_width=True):
    history.clear()
if persona.card.greeting:
    with st.chat_message("assistant", avatar=persona.card.avatar):
        st.markdown(persona.card.greeting)
for message in history:
    render_message(message)

prompt = check_prompt(st.chat_input(f"Message {persona.card.display_name}", key="persona.input", submit_mode="stop"))
if prompt is not None:
    history.append({"role": "user", "content": prompt})
    render_message(history[-1])
    answer(backend, history_key, system_prompt, options, persona.model)
