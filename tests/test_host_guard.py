"""The host allow-list against DNS rebinding, through a real `streamlit run app.py` and a real Chromium."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from server.host_guard import REFUSAL, host_name
from tests.browser import CHROMIUM, CHROMIUM_ARGS, start_streamlit
from tests.conftest import ROOT, free_port

WEBSOCKET = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.mark.parametrize(
    "header, name",
    [
        ("127.0.0.1:6006", "127.0.0.1"),
        ("LocalHost", "localhost"),
        ("[::1]:6006", "::1"),
        ("[::1]", "::1"),
        ("Chat.Example.com:443", "chat.example.com"),
        ("localhost:", ""),
        ("localhost:x", ""),
        ("[::1]x", ""),
        ("", ""),
    ],
)
def test_host_names_are_read_without_port_or_brackets(header, name):
    assert host_name(header) == name


def test_allowed_hosts_setting_reads_a_comma_list_and_forgives_pasted_urls(monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", " chat.example.com, https://Box.lan:8443/ ,[::1]:6006,,10.0.0.5 ")
    assert Settings().allowed_hosts == ["chat.example.com", "box.lan", "[::1]:6006", "10.0.0.5"]
    assert Settings(allowed_hosts=[]).allowed_hosts == []


@pytest.mark.parametrize("value", ["a b", "*", "evil.example/path", "name;rm"])
def test_a_bad_allowed_hosts_stops_the_server_with_one_line(tmp_path, value):
    env = {**os.environ, "LLM_MODEL": "demo", "DATA_DIR": str(tmp_path), "ALLOWED_HOSTS": f"ok.example,{value}"}
    done = subprocess.run(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"Cannot start: ALLOWED_HOSTS: {value!r} is not a host name" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """The real app, serving one extra name the user listed in ALLOWED_HOSTS."""
    proc, url = start_streamlit(
        "app.py", tmp_path_factory.mktemp("data"), {"ALLOWED_HOSTS": "chat.example, other.example"}
    )
    yield proc, int(url.rsplit(":", 1)[1])
    proc.terminate()
    proc.wait(timeout=20)


def get(port: int, path: str, host: str | None, headers: dict | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("GET", path, skip_host=True)
    if host is not None:
        conn.putheader("Host", host)
    for key, value in (headers or {}).items():
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read().decode(errors="replace") if response.status != 101 else ""
    conn.close()
    return response.status, body


@pytest.mark.model
def test_foreign_host_names_get_403_for_the_page_static_files_and_the_websocket(guarded):
    _, port = guarded
    status, page = get(port, "/", f"127.0.0.1:{port}")
    assert status == 200
    script = re.search(r'static/js/[^"]+\.js', page).group(0)  # a real static file of this Streamlit
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", "localhost.", ""):
        for path in ("/", f"/{script}", "/_stcore/health", "/_stcore/host-config", "/Personas", "/nothing-here"):
            status, body = get(port, path, host)
            assert (status, body) == (403, REFUSAL), (host, path)
        assert get(port, "/_stcore/stream", host, WEBSOCKET)[0] == 403  # the handshake is refused
    status, _ = get(port, "/", f"evil.example:{port}", {"X-Forwarded-Host": f"127.0.0.1:{port}"})
    assert status == 403  # only the Host header counts
    assert get(port, "/", None)[0] == 400  # no Host at all: the HTTP server itself refuses


@pytest.mark.model
def test_local_names_and_allowed_names_are_served(guarded):
    proc, port = guarded
    for host in (
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        f"LOCALHOST:{port}",
        f"[::1]:{port}",
        f"chat.example:{port}",
        "other.example",
    ):
        assert get(port, "/", host)[0] == 200, host
        assert get(port, "/_stcore/health", host)[0] == 200, host
        assert get(port, "/_stcore/stream", host, WEBSOCKET)[0] == 101, host  # the websocket is accepted


@pytest.mark.model
def test_the_server_log_names_the_refused_host_once(guarded):
    proc, port = guarded
    for _ in range(3):
        get(port, "/", "logged-once.example")
    proc.terminate()
    log = proc.communicate(timeout=20)[0].decode()
    assert log.count("Refused a request for host 'logged-once.example'") == 1


@pytest.mark.model
@pytest.mark.browser
@pytest.mark.slow
def test_a_rebinding_name_does_not_load_the_app_in_chromium(tmp_path):
    """Chromium resolves rebind.test to 127.0.0.1 as a rebinding attack would: the app must not load under
    that name, while 127.0.0.1 and a name in ALLOWED_HOSTS show it, saved conversations included."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run `scripts/setup.sh --test`")
    from playwright.sync_api import sync_playwright

    proc, url = start_streamlit("app.py", tmp_path / "data", {"ALLOWED_HOSTS": "chat.example"})
    port = url.rsplit(":", 1)[1]
    rules = "--host-resolver-rules=MAP rebind.test 127.0.0.1, MAP chat.example 127.0.0.1"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, rules])
            page = browser.new_page()
            page.goto(url)  # save a conversation first, so there is something to steal
            page.get_by_text("Sampling").click()
            page.get_by_label("Max new tokens", exact=True).fill("4")
            page.get_by_label("Max new tokens", exact=True).press("Enter")
            page.locator('[data-testid="stChatInputTextArea"]').fill("Secret plans for the weekend")
            page.locator('[data-testid="stChatInputTextArea"]').press("Enter")
            page.get_by_text("tokens used").wait_for(timeout=180_000)
            page.goto(url)
            sidebar = page.locator('[data-testid="stSidebar"]')
            sidebar.get_by_text("Secret plans for the weekend").wait_for(timeout=60_000)

            evil = browser.new_page()
            response = evil.goto(f"http://rebind.test:{port}/")
            assert response.status == 403
            evil.wait_for_timeout(3000)  # time in which the app would have connected and drawn
            assert "add it to ALLOWED_HOSTS" in evil.inner_text("body")
            assert evil.locator('[data-testid="stSidebar"]').count() == 0
            assert "Secret plans" not in evil.content()
            fetched = evil.evaluate("fetch('/_stcore/health').then(r => r.status)")
            assert fetched == 403  # the rebinding page's own script is refused too

            named = browser.new_page()
            named.goto(f"http://chat.example:{port}/")
            named.locator('[data-testid="stSidebar"]').get_by_text("Secret plans for the weekend").wait_for(
                timeout=60_000
            )
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
