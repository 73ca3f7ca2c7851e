"""Drawing helpers for the search-answers page: provider, reranker, search options, sources."""

from __future__ import annotations

from dataclasses import asdict

import streamlit as st

from core.errors import StudioError
from core.settings import Settings, get_settings, shared_key
from llm.prompts import Message
from rag.pipeline import Retrieval, cited_numbers, retrieve, standalone_query
from rag.rerank import Reranker
from rag.search import CachedSearch, SearchOptions, make_provider
from ui.i18n import _, shown
from ui.safe_text import code_span, link, plain, safe_markdown


@st.cache_resource(show_spinner=False)
def _provider(settings_key: str, _settings: Settings) -> CachedSearch:
    return make_provider(_settings)


SEARXNG_START = (
    'mkdir -p searxng && printf \'use_default_settings: true\\nserver:\\n  secret_key: "%s"\\n  limiter: false\\n'
    'search:\\n  formats: [html, json]\\n\' "$(openssl rand -hex 16)" > searxng/settings.yml\n'
    'docker run -d --name searxng -p 127.0.0.1:8888:8080 -v "$PWD/searxng:/etc/searxng" searxng/searxng'
)
SEARXNG_SETTINGS = "SEARCH_PROVIDER=searxng SEARXNG_URL=http://127.0.0.1:8888 streamlit run app.py"


def search_provider() -> tuple[CachedSearch | None, str | None]:
    """The configured search provider, or None and why it cannot start. Draws nothing."""
    settings = get_settings()
    try:
        # Keyed by the settings marked as shaping the search provider: changing one builds it anew.
        return _provider(shared_key(settings, "search"), settings), None
    except StudioError as exc:
        return None, shown(exc)


def provider_setup(problem: str) -> None:
    """What to do when no search can run, before any question is asked (nothing is sent meanwhile)."""
    settings = get_settings()
    if settings.search_provider == "google" and not (settings.google_api_key and settings.google_cse_id):
        st.warning(
            _(
                "No search provider is set up, so this page cannot search yet. Google's search API is closed to new "
                "customers (and ends on 2027-01-01). The free, self-hosted SearXNG replaces it: start it, then start "
                "the studio with the line below."
            )
        )
        st.code(SEARXNG_START, language="bash", wrap_lines=True)  # readable on a phone; the copy is exact
        st.code(SEARXNG_SETTINGS, language="bash", wrap_lines=True)
        st.caption(_("Or set GOOGLE_API_KEY and GOOGLE_CSE_ID, if you have them (README: Search answers)."))
    else:
        st.warning(_("Search cannot run: {reason}").format(reason=problem))


def reranker(model_name: str) -> Reranker:
    """The process-wide model, shared with the API's embeddings."""
    from runtime import get_reranker

    return get_reranker(model_name)


def search_options() -> SearchOptions:
    with st.sidebar.expander(_("Search"), expanded=False):
        num = st.slider(_("Results to fetch"), 1, 10, 8, key="search.num")
        language = st.selectbox(
            _("Language"),
            ["", "lang_en", "lang_zh-CN", "lang_zh-TW", "lang_uk", "lang_ru", "lang_de", "lang_fr", "lang_ja"],
            key="search.lr",
            format_func=lambda v: v or _("any"),
        )
        safe = st.selectbox(
            _("Safe search"), ["active", "off"], key="search.safe", format_func={"active": _("on"), "off": _("off")}.get
        )
        date = st.selectbox(
            _("Date"),
            ["", "d1", "w1", "m1", "y1"],
            key="search.date",
            format_func={
                "": _("any time"),
                "d1": _("past day"),
                "w1": _("past week"),
                "m1": _("past month"),
                "y1": _("past year"),
            }.get,
        )
    return SearchOptions(num=num, language=language, safe=safe, date_restrict=date)


def find_sources(
    backend,
    provider: CachedSearch | None,
    earlier: list[Message],
    question: str,
    options: SearchOptions,
    model: str | None,
) -> Retrieval | None:
    """Rewrite a follow-up, search and rerank, under a status line. None (the reason shown, as for a failed
    answer) when the model cannot rewrite the follow-up; a failed search still gives a Retrieval."""
    settings = get_settings()
    with st.status(_("Searching…"), expanded=False) as status:
        try:
            query = standalone_query(backend, earlier, question, model)
        except StudioError as exc:
            status.update(label=_("Could not search"), state="error")
            failure = shown(exc)
        else:
            retrieval = retrieve(provider, reranker(settings.rerank_model), query, options, settings.search_sources)
            if retrieval.error:  # "Searched" only when a search ran and answered
                status.update(label=_("Could not search"), state="error")
            else:
                status.update(label=_("Searched"), state="complete")
            return retrieval
    st.error(safe_markdown(failure))  # outside the (collapsed) status box, as a failed answer's error is
    return None


def show_retrieval(retrieval: Retrieval) -> None:
    st.caption(_("Searched for: {query}").format(query=code_span(retrieval.query)))
    if retrieval.error:
        st.warning(
            _("No sources: {reason} The model was told to say it doesn't know.").format(reason=shown(retrieval.error))
        )


def citations(retrieval: Retrieval):
    """What a finished answer saves of `retrieval`: its query, its sources and (from its text) the ones it cites.
    For `ui.answer.stream_to_history`: the fields an answer starts with, and what its text adds when it lands."""
    start = {"query": retrieval.query, "sources": [asdict(s) for s in retrieval.sources]}

    def cited(text: str) -> dict:
        return {"cited": cited_numbers(text, len(retrieval.sources))}

    return start, cited


def render_sources(message: dict) -> None:
    """Sources under an answer, as text: a snippet's HTML or markdown never runs in the page."""
    if message.get("query") and not message.get("live"):
        st.caption(_("Searched for: {query}").format(query=code_span(message["query"])))
    sources = message.get("sources") or []
    if not sources:
        return
    cited = set(message.get("cited") or [])
    with st.expander(_("Sources ({count}, {cited} cited)").format(count=len(sources), cited=len(cited)), expanded=True):
        for n, source in enumerate(sources, 1):
            mark = " ✅ " + _("cited") if n in cited else ""
            # An http(s) link with its title as text; a `)` or `]` in either cannot add markdown.
            st.markdown(f"**[{n}]** {link(source['title'] or source['link'], source['link'])}{mark}")
            st.caption(plain(source["snippet"]))
