"""Search answers: fresh web results, reranked, and an answer that cites them."""

from dataclasses import asdict

import streamlit as st

from core.settings import get_settings
from rag.pipeline import build_messages, cited_numbers
from rag.prompts import ANSWER_SYSTEM
from ui import conversations
from ui.auth import require_password
from ui.chat import (
    backend_or_stop,
    check_prompt,
    commit_pending,
    model_picker,
    render_footer,
    render_message,
    sidebar_options,
    stream_to_history,
    user_message,
)
from ui.search import find_sources, provider_or_warning, render_sources, search_options, show_retrieval

st.set_page_config(page_title="Llama Studio · Search answers", page_icon="🔎", layout="centered")
require_password()
PAGE, HISTORY = "search", "search.messages"
conversations.bind(PAGE, HISTORY)

backend = backend_or_stop()
settings = get_settings()
_, options = sidebar_options("search", ANSWER_SYSTEM)
query_options = search_options()
model = model_picker(backend, "search")
slot = conversations.sidebar_slot()
commit_pending(HISTORY)
history = st.session_state[HISTORY]

st.title("🔎 Search answers")
provider = provider_or_warning()
st.caption(f"Search: {provider.name if provider else 'not configured'} · reranked by {settings.rerank_model}")

for message in history:
    render_message(message, render_sources)

question = check_prompt(st.chat_input("Ask about anything recent", key="search.input", submit_mode="stop"))
if question is not None:
    earlier = [{"role": m["role"], "content": m["content"]} for m in history]
    history.append(user_message(question))
    render_message(history[-1])
    conversations.save(PAGE, HISTORY)
    with st.chat_message("assistant"):
        retrieval = find_sources(backend, provider, earlier, question, query_options, model)
        message = None
        if retrieval is not None:  # None: the model could not rewrite the follow-up (the reason is shown)
            show_retrieval(retrieval)
            extra = {"query": retrieval.query, "sources": [asdict(s) for s in retrieval.sources]}
            message = stream_to_history(
                backend,
                HISTORY,
                build_messages(earlier, question, retrieval),
                options,
                model,
                extra,
                conversations.saver(PAGE, HISTORY),
            )
        if message:
            message["cited"] = cited_numbers(message["content"], len(retrieval.sources))
            render_footer(message)
            render_sources({**message, "live": True})  # the query caption is already above
conversations.finish(slot, PAGE, HISTORY, "search")
