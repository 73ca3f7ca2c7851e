"""The search-answers page through AppTest: real Google client → local player, bundled reranker, demo model."""

import pytest
from streamlit.testing.v1 import AppTest


PAGE = "../pages/2_Search_answers.py"
KEY, CX = "AIza-page-key-789", "cx-page-000"


@pytest.fixture
def google_env(player, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_CSE_ID", CX)
    monkeypatch.setenv("GOOGLE_CSE_ENDPOINT", player + "/")


def open_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception, at.exception
    at.slider(key="search.temperature").set_value(0.0)
    at.number_input(key="search.max_new").set_value(30)
    return at


def ask(at: AppTest, text: str) -> AppTest:
    at.chat_input(key="search.input").set_value(text).run()
    assert not at.exception, at.exception
    return at


def all_text(at: AppTest) -> str:
    return " ".join(str(getattr(e, "value", "")) for e in at.main.children.values()) + " ".join(
        m.value for m in at.markdown) + " ".join(c.value for c in at.caption)


def test_question_sources_and_citations_render(google_env):
    at = ask(open_page(), "How tall is the Eiffel Tower?")
    assert any(c.value.startswith("Searched for: How tall is the Eiffel Tower") for c in at.caption)
    answer = at.session_state["search.messages"][-1]
    assert answer["role"] == "assistant" and answer["content"]
    assert answer["sources"][0]["link"] == "https://example.com/eiffel"
    source_lines = [m.value for m in at.markdown if m.value.startswith("**[")]
    assert len(source_lines) == 4 and "example.com/eiffel" in source_lines[0]
    # A hostile title is escaped markdown: shown as text, never as a tag or a javascript: link.
    assert not any("<script>" in line for line in source_lines)
    assert not any("javascript:" in line for line in source_lines)
    assert KEY not in all_text(at) and CX not in all_text(at)


def test_follow_up_shows_the_rewritten_query(google_env):
    at = ask(open_page(), "How tall is the Eiffel Tower?")
    ask(at, "And when was it finished?")
    searched = [c.value for c in at.caption if c.value.startswith("Searched for:")]
    assert len(searched) == 2
    assert len(at.session_state["search.messages"]) == 4


def test_quota_error_is_shown_and_the_model_still_answers(google_env):
    at = ask(open_page(), "trigger-429 what happened today?")
    assert any("quota" in w.value for w in at.warning)
    assert at.session_state["search.messages"][-1]["sources"] == []
    assert at.session_state["search.messages"][-1]["content"]


def test_without_keys_the_page_says_how_to_set_them():
    at = open_page()
    assert any("GOOGLE_API_KEY" in w.value and "secrets.toml" in w.value for w in at.warning)
    ask(at, "Anything?")
    assert at.session_state["search.messages"][-1]["role"] == "assistant"


def test_searxng_provider(player, monkeypatch):
    monkeypatch.setenv("SEARCH_PROVIDER", "searxng")
    monkeypatch.setenv("SEARXNG_URL", player)
    at = ask(open_page(), "Paris travel")
    assert at.session_state["search.messages"][-1]["sources"]
    assert any(c.value.startswith("Search: SearXNG") for c in at.caption)
