"""Chat: the home page. Draws only; the model lives in llm/ and is shared by every session."""

import streamlit as st

from ui.chat import answer, backend_or_stop, check_prompt, commit_pending, model_picker, render_message, sidebar_options

st.set_page_config(page_title="Llama Studio · Chat", page_icon="🦙", layout="centered")
HISTORY = "chat.messages"
st.session_state.setdefault(HISTORY, [])

backend = backend_or_stop()
system_prompt, options = sidebar_options("chat")
commit_pending(HISTORY)
history = st.session_state[HISTORY]

with st.sidebar:
    new_chat = st.button("New chat", key="chat.new", use_container_width=True)
    can_regenerate = bool(history) and history[-1]["role"] == "assistant"
    regenerate = st.button("Regenerate last answer", key="chat.regen", disabled=not can_regenerate, use_container_width=True)
    model = model_picker(backend, "chat")

st.title("🦙 Chat")
for note in backend.notes:
    st.info(note)

if new_chat:
    history.clear()
if regenerate and can_regenerate:
    history.pop()

for message in history:
    render_message(message)

prompt = check_prompt(st.chat_input("Message the model", key="chat.input", submit_mode="stop"))
if prompt is not None:
    history.append({"role": "user", "content": prompt})
    render_message(history[-1])
if prompt is not None or (regenerate and can_regenerate):
    answer(backend, HISTORY, system_prompt, options, model)
