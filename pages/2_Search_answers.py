"""Search answers: fresh web results, reranked, and an answer that cites them."""

import streamlit as st

from core.settings import get_settings
from llm.prompts import conversation
from rag.pipeline import build_messages
from rag.prompts import ANSWER_SYSTEM
from ui import page
from ui.answer import stream_to_history
from ui.chat import model_picker, render_footer, render_message, sidebar_options
from ui.gestures import WITHOUT_CONTINUE
from ui.i18n import _
from ui.search import (
    citations,
    find_sources,
    provider_setup,
    render_sources,
    search_options,
    search_provider,
    show_retrieval,
)
from ui.session import ChatSession

st.set_page_config(page_title="Llama Studio · " + _("Search answers"), page_icon="🔎", layout="centered")
backend = page.start()
_answer_system, options = sidebar_options("search", ANSWER_SYSTEM)  # the fixed prompt, shown
query_options = search_options()
model = model_picker(backend, "search")
session = ChatSession("search")
provider, problem = search_provider()


def header() -> None:
    if provider is None:  # said before any question: no model runs until a search can
        provider_setup(problem)
        return
    st.caption(
        _("Search: {provider} · reranked by {model}").format(provider=provider.name, model=get_settings().rerank_model)
    )


def reply(turn: page.Turn) -> None:
    earlier = conversation("", session.history[:-1])  # the turns before the question, role and content only
    with st.chat_message("assistant"):
        retrieval = find_sources(backend, provider, earlier, turn.prompt, query_options, model)
        if retrieval is None:  # the model could not rewrite the follow-up (the reason is shown)
            return
        show_retrieval(retrieval)
        extra, cited = citations(retrieval)
        messages = build_messages(earlier, turn.prompt, retrieval)
        if message := stream_to_history(session, backend, messages, options, model, extra, finish=cited):
            render_footer(message)
            render_sources({**message, "live": True})  # the query caption is already above


page.run(
    session,
    "🔎 " + _("Search answers"),
    reply,
    _("Ask about anything recent"),
    header=header,
    render=lambda message: render_message(message, render_sources),
    disabled=provider is None,
    allowed=WITHOUT_CONTINUE,  # an answer here is a search and a turn: it is regenerated, not continued
)
