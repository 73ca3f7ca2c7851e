"""API: the OpenAI-compatible API on this same address, for scripts, agents and other chat apps."""

import streamlit as st

from ui import page
from ui.api_panel import ACCESS, access, base_url, models_table, snippets
from ui.i18n import _

st.set_page_config(page_title="Llama Studio · " + _("API"), page_icon="🔌", layout="centered")
backend = page.start()
st.title("🔌 " + _("API"))
st.markdown(
    _(
        "Scripts, agents (LangChain, LangGraph, the OpenAI Agents SDK, …) and other chat apps use this studio's "
        "model, personas and teams through an OpenAI-compatible API at the same address as this page."
    )
)
url = base_url()
st.markdown(_("**Base URL**"))
st.code(url, language=None)
state = access()
(st.warning if state == "off" else st.info)(_(ACCESS[state]))
st.subheader(_("Model ids"))
rows = models_table(backend)
st.dataframe(rows, hide_index=True, use_container_width=True)
curl, python = snippets(url, next(iter(rows[0].values())), needs_key=state == "key")
st.subheader(_("Try it"))
st.code(curl, language="bash")
st.code(python, language="python")
st.caption(_("The README's API section lists every route and field."))
