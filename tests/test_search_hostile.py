"""Hostile search providers, through the real Google client and the real SearXNG client against the local player
(tests/search_servers.py): answers dribbled a byte at a time, JSON of the wrong types, lone surrogates, and
redirects to other hosts. Each gives a SearchError saying what to do, within SEARCH_TIMEOUT_S."""

from __future__ import annotations

import threading
import time

import pytest

from core.settings import Settings
from rag.results import clean_text
from rag.search import GoogleSearch, SearchError, SearchOptions, SearxngSearch
from rag.transport import DeadlinePassed, same_origin, shown_origin, within
from tests import search_servers

KEY, CX = "AIza-hostile-key", "cx-hostile"
ALL = SearchOptions(num=10)


def provider(kind: str, url: str, timeout: float = 3):
    if kind == "google":
        return GoogleSearch(
            Settings(google_api_key=KEY, google_cse_id=CX, google_cse_endpoint=url + "/", search_timeout_s=timeout)
        )
    return SearxngSearch(Settings(searxng_url=url, search_timeout_s=timeout))


BOTH = pytest.mark.parametrize("kind", ["searxng", "google"])
FIX = {"searxng": "SEARXNG_URL", "google": "GOOGLE_CSE_ENDPOINT"}


@pytest.mark.slow  # each waits out the deadline
@BOTH
@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_dribbled_answer_ends_at_the_deadline_and_its_connection_is_cut(player, kind, part):
    """One byte every 0.25 s never trips a read timeout; only the total deadline (here 1 s) ends it. The
    request's socket is then shut down: the server finds its reader gone at once, not after the whole answer."""
    query = f"trigger-dribble-{part} {kind}"
    start = time.monotonic()
    with pytest.raises(SearchError, match=r"The search provider .* did not answer within 1 s \(SEARCH_TIMEOUT_S\)"):
        provider(kind, player, timeout=1).search(query, ALL)
    assert time.monotonic() - start < 1.6
    while not any(q == query for q, _ in search_servers.Player.dribbles_cut) and time.monotonic() - start < 5:
        time.sleep(0.05)
    cut = [when for q, when in search_servers.Player.dribbles_cut if q == query]
    assert cut and cut[0] - start < 2.5  # the whole answer would take 17 s (headers) or 57 s (body)


@BOTH
@pytest.mark.parametrize(
    "trigger, why",
    [
        ("trigger-list-dict", "is not a list"),
        ("trigger-list-null", "is not a list"),
        ("trigger-list-string", "is not a list"),
        ("trigger-not-object", "not a JSON object"),
        ("trigger-all-unusable", "none of its 12 results has the expected fields"),
    ],
)
def test_an_answer_of_the_wrong_shape_is_a_plain_error(player, kind, trigger, why):
    with pytest.raises(SearchError, match=why) as caught:
        provider(kind, player).search(trigger, ALL)
    message = str(caught.value)
    if kind == "searxng":
        assert "is not a search answer" in message and "SEARXNG_URL points at SearXNG" in message
    else:
        assert "not the expected JSON" in message and "Try again later" in message
    assert KEY not in message and CX not in message


@BOTH
def test_json_nested_100000_deep_is_not_json(player, kind):
    with pytest.raises(SearchError, match="did not answer with JSON|not valid JSON"):
        provider(kind, player).search("trigger-deep", ALL)


@BOTH
def test_results_of_the_wrong_types_are_dropped_one_by_one(player, kind):
    results = provider(kind, player).search("trigger-wrong-types", ALL)
    # Kept: null text as "", an ordinary result, and a javascript: link (the page shows it as text only).
    assert [(r.title, r.link, r.snippet) for r in results] == [
        ("", "https://example.com/null-title", ""),
        ("Eiffel Tower - facts", "https://example.com/eiffel", "It is 330 metres tall."),
        ("Not a web link", "javascript:alert(1)", "Shown as text."),
    ]
    assert len(provider(kind, player).search("trigger-wrong-types", SearchOptions(num=2))) == 2


@BOTH
def test_lone_surrogates_become_replacement_characters(player, kind):
    first, second = provider(kind, player).search("trigger-surrogates", ALL)
    assert first.title == "Eiffel \ufffdTower\ufffd facts"
    assert first.link == "https://example.com/eiffel?\ufffd"
    assert first.snippet == "The Eiffel Tower \ufffd is 330 metres tall \U0001f600."  # a proper pair survives
    assert (second.title, second.snippet) == ("\ufffd", "\ufffd\ufffd Paris")
    for text in (first.title, first.link, first.snippet, second.title, second.snippet):
        text.encode("utf-8")  # what the page does to send it; a lone surrogate raised UnicodeEncodeError


@BOTH
@pytest.mark.parametrize(
    "trigger, target",
    [
        ("trigger-redirect-away", "http://localhost:"),  # the same server under another name
        ("trigger-redirect-port", "http://127.0.0.1:9"),  # another port is another server
        ("trigger-redirect-scheme", "https://127.0.0.1:"),
        ("trigger-redirect-odd", "an address that cannot be shown"),  # a Location that is not a URL
    ],
)
def test_a_redirect_to_another_host_is_not_followed(player, kind, trigger, target):
    with pytest.raises(SearchError, match="redirected to another host") as caught:
        provider(kind, player).search(trigger, ALL)
    message = str(caught.value)
    assert f"({target}" in message and FIX[kind] in message
    assert "![x]" not in message and "landed-elsewhere" not in message
    assert not any("landed-elsewhere" in seen for seen in search_servers.Player.requests_seen)


def test_searxng_follows_a_few_redirects_on_its_own_host(player):
    searx = provider("searxng", player)
    assert searx.search("trigger-redirect-here", ALL)[1].link == "https://example.com/eiffel"
    before = len(search_servers.Player.requests_seen)
    with pytest.raises(SearchError, match="redirected more than 3 times. Set SEARXNG_URL"):
        searx.search("trigger-redirect-loop", ALL)
    assert len(search_servers.Player.requests_seen) == before + 4  # the search and 3 redirects, no more


def test_google_follows_no_redirect(player):
    with pytest.raises(SearchError, match=r"answered with a redirect \(302\).*GOOGLE_CSE_ENDPOINT"):
        provider("google", player).search("trigger-redirect-here", ALL)


def test_a_searxng_answer_over_4_mb_is_refused(player):
    with pytest.raises(SearchError, match="over 4 MB"):
        provider("searxng", player).search("trigger-huge", ALL)


def test_the_deadline_returns_results_and_errors_as_they_are():
    assert within(1, lambda: 42, list) == 42
    with pytest.raises(KeyError):
        within(1, lambda: {}["x"], list)
    release = threading.Event()
    start = time.monotonic()
    with pytest.raises(DeadlinePassed):
        within(0.2, release.wait, list)
    assert time.monotonic() - start < 0.5
    release.set()


def test_what_counts_as_the_same_host():
    assert same_origin("http://127.0.0.1:8888/search?q=x", "http://127.0.0.1:8888")
    assert same_origin("HTTP://LocalHost/a", "http://localhost:80/b")
    assert same_origin("https://example.com/", "https://example.com:443")
    for other in ("http://localhost:8888/", "http://127.0.0.1:8889/", "https://127.0.0.1:8888/", "file:///etc"):
        assert not same_origin(other, "http://127.0.0.1:8888")
    assert not same_origin("http://[x]/", "http://x") and not same_origin("http://a:99999/", "http://a")
    assert shown_origin("http://u:pw@[::1]:81/p?token=t") == "http://[::1]:81"
    assert shown_origin("http://a_b<c>/") == "an address that cannot be shown"


def test_text_is_cleaned_of_surrogates_and_control_characters():
    assert clean_text("a\ud800b\x00c\x1b[31m\u0085d\n\te", 100) == "a\ufffdb c [31m d e"
    assert clean_text("\ud83d\ude00" * 3, 2) == "\U0001f600\U0001f600"
