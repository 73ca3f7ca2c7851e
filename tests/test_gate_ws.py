"""The password gate against a raw websocket client, as a hostile outsider would speak to `streamlit run app.py`:
what Streamlit would do for any session (clear every cache, store uploads, list its metrics) is refused before the
password, and the owner still gets in after a flood of guesses."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.browser import CHROMIUM, CHROMIUM_ARGS, start_streamlit
from tests.streamlit_protocol import RawSession, server_rss_mb
from ui.auth import FREE_GUESSES, GUESS_INTERVAL_S, MAX_WAIT_S

pytestmark = [pytest.mark.slow, pytest.mark.model]
PASSWORD = "owner's own passphrase 7"
TEN_MB = 10 * 2**20 - 4096  # under the 10 MB upload limit with the form's overhead
REFUSED = re.compile(r"Too many wrong passwords; try again in (\d+) s\.")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    proc, url = start_streamlit("app.py", tmp_path_factory.mktemp("data"), {"APP_PASSWORD": PASSWORD})
    deadline = time.time() + 180
    while requests.get(f"{url}/health", timeout=5).status_code != 200:  # the API's loader holds the model now
        assert time.time() < deadline, "the model never loaded"
        time.sleep(0.5)
    yield url, proc
    proc.terminate()
    log = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert PASSWORD not in log


def log_in(url: str, page_name: str = "") -> RawSession:
    """The owner: the right password, waiting once for the turn the page names if guesses are being limited."""
    session = RawSession(url, page_name)
    for _ in range(2):
        run = session.submit_password(PASSWORD)
        refused = next((m for m in map(REFUSED.fullmatch, run.alerts) if m), None)
        if refused is None:
            break
        time.sleep(int(refused.group(1)))
    run = session.read_run(60)  # the page the password opens (the gate reruns into it)
    assert run.titles[:1] == ["🦙 Chat"], run.alerts
    return session


def test_a_flood_of_guesses_with_cache_clears_is_limited_and_the_owner_gets_in_after_it(app):
    url, proc = app
    rss_before = server_rss_mb(proc.pid)
    outcomes, lock, flood_s = [], threading.Lock(), 12.0

    def guesser(n: int) -> None:
        session, end = RawSession(url), time.monotonic() + flood_s
        while time.monotonic() < end:
            run = session.submit_password(f"guess {n}")
            session.clear_cache()  # what emptied the limiter (and every st.cache_resource) before
            with lock:
                outcomes.extend(run.alerts)
        session.close()

    began = time.monotonic()
    threads = [threading.Thread(target=guesser, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    checked = outcomes.count("Wrong password.")
    refused = [a for a in outcomes if REFUSED.fullmatch(a)]
    assert checked + len(refused) == len(outcomes) and refused
    # the burst, then one a second, plus the turns booked up to MAX_WAIT_S ahead
    assert checked <= FREE_GUESSES + (elapsed + MAX_WAIT_S) / GUESS_INTERVAL_S + 1, (checked, elapsed)
    owner = log_in(url)
    # The owner's page runs on the engine the API loaded: no second copy of the model (the demo model is ~300 MB).
    assert server_rss_mb(proc.pid) - rss_before < 150
    owner.close()


def test_uploads_before_the_password_are_refused_and_memory_stays_flat(app):
    url, proc = app
    stranger = RawSession(url)
    assert stranger.last.titles == ["🔒 Llama Studio"]
    rss_before = server_rss_mb(proc.pid)
    statuses = [stranger.upload(b"x" * TEN_MB) for _ in range(30)]
    assert set(statuses) <= {403, 0}, statuses  # 0: closed before the body was read
    assert server_rss_mb(proc.pid) - rss_before < 40
    stranger.close()


def test_after_the_password_uploads_are_kept_one_at_a_time_and_freed_when_the_session_ends(app):
    url, proc = app
    owner = log_in(url)
    rss_before = server_rss_mb(proc.pid)
    assert [owner.upload(b"x" * TEN_MB) for _ in range(8)] == [204] * 8
    held = server_rss_mb(proc.pid) - rss_before
    assert held < 60, held  # the import box takes one file: each upload replaced the one before
    owner.close()
    time.sleep(2)
    assert server_rss_mb(proc.pid) - rss_before < held / 2 + 15


def test_metrics_are_not_served(app):
    url, _ = app
    assert requests.get(f"{url}/_stcore/metrics", timeout=10).status_code == 404


@pytest.mark.browser
def test_a_deep_link_keeps_its_page_through_the_password(app, browser):
    url, _ = app
    if not Path(CHROMIUM).exists() or not CHROMIUM_ARGS:
        pytest.fail("Debian's chromium is missing: run `scripts/setup.sh --test`")
    page = browser.new_page()
    page.goto(f"{url}/Personas")
    box = page.get_by_label("Password", exact=True)
    box.fill("not it")
    page.get_by_role("button", name="Enter").click()
    # The first guess is checked (the form works from the first run), or refused while the flood's turns drain.
    page.get_by_text(re.compile(r"^(Wrong password\.|Too many wrong passwords)")).wait_for(timeout=30_000)
    time.sleep(MAX_WAIT_S + 1)
    box.fill(PASSWORD)
    page.get_by_role("button", name="Enter").click()
    page.get_by_text("Side by side").first.wait_for(timeout=120_000)  # the Personas page, not the chat
    assert page.url.rstrip("/").endswith("/Personas")
    page.close()
