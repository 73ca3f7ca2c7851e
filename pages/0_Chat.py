"""Chat: the home page. Draws only; the model lives in llm/ and is shared by every session."""

import streamlit as st

from ui import page
from ui.answer import answer
from ui.chat import model_notes, model_picker, sidebar_options
from ui.i18n import _
from ui.session import ChatSession

st.set_page_config(page_title="Llama Studio · " + _("Chat"), page_icon="🦙", layout="centered")
backend = page.start()
system_prompt, options = sidebar_options("chat")
with st.sidebar:
    model = model_picker(backend, "chat")
session = ChatSession("chat")


def reply(turn: page.Turn) -> None:
    extra = {"replaces": turn.replaces["id"]} if turn.replaces else None
    answer(session, backend, system_prompt, options, model, extra)


def notes() -> None:
    for note in model_notes(backend):
        st.info(note)


page.run(session, "🦙 " + _("Chat"), reply, _("Message the model"), header=notes, regenerate=True)
