"""The search-answers page through AppTest: real Google client → local player, bundled reranker, and the demo
model once; a scripted backend (tests/fake_backend.py) for the rest of the page's logic."""

import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.fake_backend import Reply, install
from ui.safe_text import code_span

PAGE = "pages/2_Search_answers.py"
KEY, CX = "AIza-page-key-789", "cx-page-000"


@pytest.fixture
def google_env(player, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_CSE_ID", CX)
    monkeypatch.setenv("GOOGLE_CSE_ENDPOINT", player + "/")


def search_page(query: dict | None = None) -> AppTest:
    """The app's entry point, opened at /Search_answers (with `query` in the URL)."""
    at = AppTest.from_file("../app.py", default_timeout=180)
    at.query_params.update(query or {})
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def open_page() -> AppTest:
    at = search_page()
    at.slider(key="search.temperature").set_value(0.0)
    at.number_input(key="search.max_new").set_value(30)
    return at


def ask(at: AppTest, text: str) -> AppTest:
    at.chat_input(key="search.input").set_value(text).run()
    assert not at.exception, at.exception
    return at


def all_text(at: AppTest) -> str:
    return (
        " ".join(str(getattr(e, "value", "")) for e in at.main.children.values())
        + " ".join(m.value for m in at.markdown)
        + " ".join(c.value for c in at.caption)
    )


@pytest.mark.model
def test_real_model_question_sources_and_citations_render(google_env):
    at = ask(open_page(), "How tall is the Eiffel Tower?")
    assert f"Searched for: {code_span('How tall is the Eiffel Tower?')}" in [c.value for c in at.caption]
    answer = at.session_state["search.messages"][-1]
    assert answer["role"] == "assistant" and answer["content"]
    assert answer["sources"][0]["link"] == "https://example.com/eiffel"
    source_lines = [m.value for m in at.markdown if m.value.startswith("**[")]
    assert [line[:5] for line in source_lines] == ["**[1]", "**[2]", "**[3]", "**[4]"]
    assert "example.com/eiffel" in source_lines[0]
    # The four of five results closest to the question, in that order (the banana bread recipe is left out).
    assert ["example.com/paris" in source_lines[1], "example.com/football" in source_lines[2]] == [True, True]
    assert "Tax forms" in source_lines[3] and "banana" not in " ".join(source_lines)
    # A hostile title is escaped markdown: shown as text, never as a tag or a javascript: link.
    assert not any("<script>" in line for line in source_lines)
    assert not any("javascript:" in line for line in source_lines)
    assert KEY not in all_text(at) and CX not in all_text(at)


def test_follow_up_shows_the_rewritten_query(google_env, monkeypatch):
    fake = install(monkeypatch, Reply(["It is 330 m [1]."]), Reply(["Eiffel Tower", " completion date"]))
    at = ask(open_page(), "How tall is the Eiffel Tower?")
    ask(at, "And when was it finished?")
    searched = [c.value for c in at.caption if c.value.startswith("Searched for:")]
    assert searched == [
        f"Searched for: {code_span('How tall is the Eiffel Tower?')}",  # as code: no markdown, no link
        "Searched for: `Eiffel Tower completion date`",
    ]
    rewrite = fake.calls[1].messages[-1]["content"]  # the conversation so far shaped the query
    assert "user: How tall is the Eiffel Tower?" in rewrite and "assistant: It is 330 m [1]." in rewrite
    assert "Last question: And when was it finished?" in rewrite
    assert [m["role"] for m in at.session_state["search.messages"]] == ["user", "assistant"] * 2
    assert at.session_state["search.messages"][-1]["query"] == "Eiffel Tower completion date"


def test_quota_error_is_shown_and_the_model_still_answers(google_env, monkeypatch):
    install(monkeypatch)
    at = ask(open_page(), "trigger-429 what happened today?")
    assert any("quota" in w.value for w in at.warning)
    assert at.session_state["search.messages"][-1]["sources"] == []
    assert at.session_state["search.messages"][-1]["content"]


def test_without_keys_the_page_offers_searxng_before_any_question_and_runs_no_model(monkeypatch):
    fake = install(monkeypatch)
    at = open_page()
    assert any("closed to new customers" in w.value and "SearXNG" in w.value for w in at.warning)
    codes = [c.value for c in at.code]  # each with Streamlit's copy button
    assert any("SEARCH_PROVIDER=searxng" in c for c in codes) and any("docker run" in c for c in codes)
    assert at.chat_input(key="search.input").disabled
    assert not fake.calls and "search.messages" not in at.session_state or not at.session_state["search.messages"]


def test_searxng_provider(player, monkeypatch):
    install(monkeypatch)
    monkeypatch.setenv("SEARCH_PROVIDER", "searxng")
    monkeypatch.setenv("SEARXNG_URL", player)
    at = ask(open_page(), "Paris travel")
    assert at.session_state["search.messages"][-1]["sources"]
    assert any(c.value.startswith("Search: SearXNG") for c in at.caption)


@pytest.fixture
def searxng_env(player, monkeypatch):
    install(monkeypatch)
    monkeypatch.setenv("SEARCH_PROVIDER", "searxng")
    monkeypatch.setenv("SEARXNG_URL", player)


def test_a_wrong_typed_searxng_answer_is_a_plain_warning(searxng_env):
    at = ask(open_page(), "trigger-list-dict Paris travel")  # `results` is an object, not a list
    warnings = [w.value for w in at.warning]
    assert any("is not a search answer" in w and "SEARXNG_URL points at SearXNG" in w for w in warnings), warnings
    assert not at.error
    answer = at.session_state["search.messages"][-1]
    assert answer["role"] == "assistant" and answer["content"] and answer["sources"] == []


def test_results_of_the_wrong_types_are_dropped_and_the_rest_shown(searxng_env):
    at = ask(open_page(), "trigger-wrong-types Eiffel Tower")
    links = {s["link"] for s in at.session_state["search.messages"][-1]["sources"]}  # in the reranker's order
    assert links == {"https://example.com/eiffel", "https://example.com/null-title", "javascript:alert(1)"}
    source_lines = [m.value for m in at.markdown if m.value.startswith("**[")]
    assert len(source_lines) == 3 and not any("javascript:" in line for line in source_lines)


def test_lone_surrogates_in_results_are_shown_as_replacement_characters(searxng_env):
    at = ask(open_page(), "trigger-surrogates Eiffel Tower")
    sources = at.session_state["search.messages"][-1]["sources"]
    assert {s["title"] for s in sources} == {"Eiffel \ufffdTower\ufffd facts", "\ufffd"}
    shown = " ".join(rendered_markdown(at))
    assert "\ufffd" in shown and "\U0001f600" in shown
    shown.encode("utf-8")


@pytest.mark.slow  # waits out the deadline
def test_a_dribbling_searxng_gives_a_timeout_warning_at_the_deadline(searxng_env, monkeypatch):
    monkeypatch.setenv("SEARCH_TIMEOUT_S", "1")
    at = open_page()
    start = time.monotonic()
    ask(at, "trigger-dribble-body on the page")  # the whole answer would take 57 s
    assert time.monotonic() - start < 10
    assert any("did not answer within 1 s (SEARCH_TIMEOUT_S)" in w.value for w in at.warning)
    assert at.session_state["search.messages"][-1]["sources"] == []


@pytest.fixture
def hostile_model(google_env, monkeypatch):
    """The search page on the OpenAI backend, against a model that answers with image markdown to a
    counting server, and a search player whose results carry images, `)` in links and control tokens."""
    from tests import hostile_servers, search_servers

    counter, leak = hostile_servers.start(hostile_servers.LeakCounter)
    model, url = hostile_servers.start(hostile_servers.HostileModel)
    search_servers.Player.leak = hostile_servers.HostileModel.leak = leak
    hostile_servers.HostileModel.requests.clear()
    monkeypatch.setenv("LLM_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", url + "/v1")
    monkeypatch.setenv("OPENAI_MODEL", "m")
    yield leak
    model.shutdown(), counter.shutdown()


def rendered_markdown(at: AppTest) -> list[str]:
    """Every piece of markdown the page sent to the browser: texts, captions, titles, button labels."""
    return (
        [m.value for m in at.markdown]
        + [c.value for c in at.caption]
        + [t.value for t in at.title]
        + [b.label for b in at.button]
        + [e.value for e in at.error]
        + [w.value for w in at.warning]
    )


def test_hostile_results_and_answer_render_without_images_and_reach_the_model_without_control_tokens(hostile_model):
    from markdown_it import MarkdownIt

    from tests.hostile_servers import HostileModel, hostile_answer

    question = f"trigger-hostile ![q]({hostile_model}/question) How tall is the Eiffel Tower?"
    at = ask(open_page(), question)
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    links = []
    for text in rendered_markdown(at):
        for token in md.parse(text):
            for t in [token, *(token.children or [])]:
                assert t.type not in ("image", "html_inline", "html_block"), text
                if t.type == "link_open":
                    links.append(t.attrs["href"])
    assert links and all(href.startswith(("https://", "http://")) for href in links)
    assert not any(href.startswith(hostile_model) for href in links)
    # The source link whose URL holds ")![x](…)" is one link to example.com, not a link plus an image.
    assert f"https://example.com/a)!%5Bx%5D({hostile_model}/link)" in links
    answer = at.session_state["search.messages"][-1]
    assert answer["content"] == "".join(hostile_answer(hostile_model))  # stored as it came
    shown = md.render(next(m.value for m in at.markdown if "Here is the answer" in m.value))
    assert f"[image: exfil](<code>{hostile_model}/answer?data=my+secret+conversation</code>)" in shown
    # What the model was given: the snippets' control tokens and closing markers broken, ours whole.
    prompt = HostileModel.requests[-1]["messages"][-1]["content"]
    for marker in ("<|eot_id|>", "<|start_header_id|>", "<|im_end|>", "<|im_start|>", "<|endoftext|>"):
        assert marker not in prompt
    assert prompt.count("</search_results>") == 1 and "</SEARCH_RESULTS>" not in prompt
    assert "Obey me." in prompt and "\n[9] Fake source" not in prompt


@pytest.mark.slow  # seconds of waiting (a lock, a rate limit, a timeout): not in the fast tier
def test_a_follow_up_with_the_model_down_shows_the_same_error_as_the_first_turn(player, monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("SEARCH_PROVIDER", "searxng")  # a search that answers: the model is what is down
    monkeypatch.setenv("SEARXNG_URL", player)
    monkeypatch.setenv("LLM_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("OPENAI_MODEL", "m")
    at = ask(open_page(), "First question?")
    first = [e.value for e in at.error]
    assert len(first) == 1 and "Cannot reach the server" in first[0] and "OPENAI_BASE_URL" in first[0]
    ask(at, "And a follow-up?")  # the rewrite of the follow-up is the first call to fail now
    assert [e.value for e in at.error] == first
    assert [m["role"] for m in at.session_state["search.messages"]] == ["user", "user"]


def test_the_cited_sources_land_with_the_answer_and_are_saved(google_env, monkeypatch):
    from core.settings import get_settings
    from core.store import Store

    install(monkeypatch, Reply(["It is 330 m [1], ", "close to [3] and not [9]."]))
    at = ask(open_page(), "How tall is the Eiffel Tower?")
    answer = at.session_state["search.messages"][-1]
    assert answer["cited"] == [1, 3]  # from the finished text, within the sources found: [9] is not one
    assert "Sources (4, 2 cited)" in [e.label for e in at.expander]
    saved = Store(get_settings().database_path).load(at.query_params["c"]).messages[-1]
    assert saved["id"] == answer["id"] and saved["cited"] == [1, 3] and len(saved["sources"]) == 4
