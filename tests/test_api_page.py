"""The API shown to people: the API page (AppTest on the real entry point, a scripted backend) says where the
API answers, which model ids it serves and whether it needs a key, never the key itself; and the server's start
banner names the port it really listens on, with /v1."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.browser import start_streamlit
from tests.conftest import free_port
from tests.fake_backend import install
from tests.test_api import stop

PAGE = "pages/4_API.py"
SECRET = "page-api-key-91c2"


def api_page(monkeypatch, **env) -> AppTest:
    install(monkeypatch, name="served-model")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception[0].stack_trace
    return at


def everything_shown(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "info", "warning", "caption", "code", "title") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts) + "\n" + "\n".join(str(d.value) for d in at.dataframe)


def test_the_page_gives_the_base_url_the_model_ids_and_snippets(monkeypatch):
    at = api_page(monkeypatch)
    [code_url, curl, python] = [c.value for c in at.code][:3]
    assert code_url.endswith("/v1")
    ids = list(at.dataframe[0].value.iloc[:, 0])
    assert "served-model" in ids and "dummy" in ids and "all-MiniLM-L6-v2" in ids  # base, a persona, embeddings
    assert f"{code_url}/chat/completions" in curl and 'base_url="' + code_url in python
    assert "No key is needed" in at.info[0].value


def test_a_key_is_named_but_never_shown(monkeypatch):
    at = api_page(monkeypatch, API_KEY=SECRET)
    shown = everything_shown(at)
    assert "A key is needed" in shown and SECRET not in shown
    assert "$API_KEY" in at.code[1].value and 'os.environ["API_KEY"]' in at.code[2].value


def test_with_only_a_page_password_the_page_says_the_api_is_off(monkeypatch):
    at = api_page(monkeypatch, APP_PASSWORD="pw-77")
    at.text_input(key="auth.password").input("pw-77")
    at.button[0].click().run()  # the password form's Enter
    at.switch_page(PAGE).run()
    assert any("The API is off" in w.value for w in at.warning), [w.value for w in at.warning]


@pytest.mark.slow
@pytest.mark.model
def test_the_start_banner_names_the_real_port_and_v1(tmp_path):
    port = free_port()
    proc, url = start_streamlit("app.py", tmp_path / "data", port=port)
    try:
        time.sleep(1)
    finally:
        out = stop(proc)
    assert f"http://127.0.0.1:{port}" in out and ":6006" not in out
    assert f"OpenAI-compatible API: http://127.0.0.1:{port}/v1" in out
