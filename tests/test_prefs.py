"""Settings and the last persona kept per browser (ui/prefs.py): the cookie value's encoding and checks as pure
logic, and the pages seeded from it and writing it back through AppTest (which sends no cookies: the test hands
the page the cookies a browser would). tests/test_browser_prefs.py does the same in Chromium, reload included."""

from __future__ import annotations

import base64
import json

import pytest
from streamlit.testing.v1 import AppTest

from llm.options import GenerationOptions
from tests.fake_backend import install
from ui import prefs
from ui.chat import SAMPLING, field_range

RANGES = {name: field_range(GenerationOptions, name, SAMPLING[name][2]) for name in SAMPLING}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# --- the cookie value ------------------------------------------------------------------------------------------


def test_a_value_comes_back_as_it_was_kept():
    values = {"temperature": 0.3, "max_new_tokens": 128, "seed": 7, "system": "Sé breve. 简短回答。"}
    raw = prefs.encode(values)
    assert raw and set(raw) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert prefs.decode(raw) == values


def test_a_value_too_large_for_a_cookie_is_not_encoded():
    assert prefs.encode({"system": "x" * prefs.MAX_COOKIE_CHARS}) is None
    assert prefs.encode({"system": "x" * 1000}) is not None


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        42,
        ["e30"],
        "e30=",  # padding: encode never writes it
        "e3 0",
        "e30;Path=/",
        "%7B%7D",
        "A",  # not base64 at all (one character is never a whole byte)
        "x" * (prefs.MAX_COOKIE_CHARS + 1),
        b64(b"\xff\xfe not UTF-8"),
        b64(b"{not json"),
        b64(b'{"temperature": NaN}'),
        b64(b'{"temperature": Infinity}'),
        b64(b"[" * 2000 + b"]" * 2000),  # nested past the JSON parser's recursion limit
        b64(b"1" * 2500),  # a number longer than Python converts
        b64(b'["a list", "not an object"]'),
        b64(b'"a string"'),
        b64(b"null"),
    ],
)
def test_anything_else_decodes_to_nothing(raw):
    assert prefs.decode(raw) == {}


def test_options_keep_what_the_widgets_accept_as_the_options_own_types():
    got = prefs.options({"temperature": 1, "max_new_tokens": 64.0, "top_k": 0, "seed": None, "top_p": 1.0}, RANGES)
    assert got == {"temperature": 1.0, "max_new_tokens": 64, "top_k": 0, "seed": None, "top_p": 1.0}
    assert type(got["temperature"]) is float and type(got["max_new_tokens"]) is int


@pytest.mark.parametrize(
    "name, value",
    [
        ("temperature", 2.5),  # past GenerationOptions' range
        ("temperature", -1),
        ("top_p", 0.01),  # GenerationOptions takes it (gt=0), the slider starts at 0.05
        ("top_p", 0),
        ("max_new_tokens", 10**30),
        ("max_new_tokens", 0),
        ("max_new_tokens", None),  # only the seed may be empty
        ("max_new_tokens", 12.5),
        ("top_k", True),  # pydantic would take a bool for 1
        ("temperature", "0.5"),  # keep writes numbers, never text
        ("temperature", [0.5]),
        ("temperature", {"$gt": 0}),
        ("seed", -1),
        ("seed", 2**32),
        ("repetition_penalty", 0.5),
    ],
)
def test_options_drop_a_bad_value_and_keep_the_others(name, value):
    assert prefs.options({name: value, "presence_penalty": 0.5}, RANGES) == {"presence_penalty": 0.5}


def test_options_ignore_fields_the_page_does_not_draw():
    ranges = {name: RANGES[name] for name in ("temperature", "seed")}  # the Team page's two
    data = {"temperature": 0.4, "max_new_tokens": 10, "logit_bias": {"1": 100}, "json_schema": "{}", "auth.ok": True}
    assert prefs.options(data, ranges) == {"temperature": 0.4}


def test_text_value_takes_a_bounded_string_only():
    assert prefs.text_value({"system": "Be brief."}, "system") == {"system": "Be brief."}
    for bad in (None, 5, ["Be brief."], {"text": "x"}):
        assert prefs.text_value({"system": bad}, "system") == {}
    assert prefs.text_value({"name": "x" * 300}, "name", limit=200) == {}
    assert prefs.text_value({}, "system") == {}


# --- the pages, through AppTest -----------------------------------------------------------------------------------


def with_cookies(monkeypatch, **parts) -> None:
    """The page sees `parts` (name -> value kept, or a raw string) as the cookies its browser sent."""
    jar = {prefs.COOKIE_PREFIX + name: v if isinstance(v, str) else prefs.encode(v) for name, v in parts.items()}
    monkeypatch.setattr(prefs, "browser_cookies", lambda: jar)


def written(at: AppTest) -> dict[str, dict]:
    """Each cookie the page's writer scripts set: name -> the value decoded ({} for a deleted one)."""
    found = {}
    for frame in at.get("iframe"):
        script = frame.proto.srcdoc
        if "document.cookie" in script and prefs.COOKIE_PREFIX in script:
            name, _, rest = script.split('cookie = "', 1)[1].partition("=")
            found[name] = prefs.decode(rest.split(";", 1)[0])
    return found


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=60)
    (at.switch_page(page) if page else at).run()
    assert not at.exception, at.exception
    return at


def test_the_chat_page_starts_from_what_the_browser_kept_and_writes_each_change(monkeypatch):
    install(monkeypatch)
    kept = {"temperature": 0.3, "max_new_tokens": 128, "seed": 7}
    with_cookies(monkeypatch, chat=kept, chat_system={"system": "Answer like a pirate."})
    at = open_app()
    assert at.slider(key="chat.temperature").value == 0.3
    assert at.number_input(key="chat.max_new").value == 128 and at.number_input(key="chat.seed").value == 7
    assert at.text_area(key="chat.system").value == "Answer like a pirate."
    assert at.slider(key="chat.top_p").value == GenerationOptions().top_p  # not kept: the default
    at.slider(key="chat.temperature").set_value(1.2).run()
    assert written(at)["studio_chat"] == {**kept, "temperature": 1.2}
    at.button(key="chat.preset.Precise").click().run()
    assert written(at)["studio_chat"] == {"max_new_tokens": 128, "seed": 7, "temperature": 0.2}  # 0.9, 1.1: defaults
    at.text_area(key="chat.system").set_value("Be brief.").run()
    assert written(at)["studio_chat_system"] == {"system": "Be brief."}


def test_a_system_prompt_too_long_for_a_cookie_says_so_and_is_forgotten(monkeypatch):
    install(monkeypatch)
    with_cookies(monkeypatch, chat_system={"system": "An older prompt."})
    at = open_app()
    at.text_area(key="chat.system").set_value("word " * 1000).run()
    assert not at.exception
    assert any("too long to be kept" in c.value for c in at.sidebar.caption)
    assert written(at)["studio_chat_system"] == {}  # deleted: a reload brings the default, not the older prompt


def test_forged_cookies_leave_the_defaults_and_the_page_working(monkeypatch):
    install(monkeypatch)
    forged = {"temperature": 99, "max_new_tokens": "512; DROP", "top_p": True, "seed": -5, "auth.ok": True}
    with_cookies(monkeypatch, chat=forged, chat_system={"system": ["not", "text"]}, persona="x" * 5000)
    at = open_app()
    defaults = GenerationOptions()
    assert at.slider(key="chat.temperature").value == defaults.temperature
    assert at.number_input(key="chat.max_new").value == defaults.max_new_tokens
    assert at.slider(key="chat.top_p").value == defaults.top_p and at.number_input(key="chat.seed").value is None
    assert at.text_area(key="chat.system").value.startswith("You are a helpful")
    assert "auth.ok" not in at.session_state
    at.switch_page("pages/1_Personas.py").run()
    assert not at.exception and at.slider(key="persona.temperature").value == defaults.temperature


def test_the_password_still_stands_in_front_of_kept_settings(monkeypatch):
    install(monkeypatch)
    monkeypatch.setenv("APP_PASSWORD", "dummy-password")
    with_cookies(monkeypatch, chat={"temperature": 0.3}, auth={"ok": True})
    at = open_app()
    assert at.text_input(key="auth.password")  # the gate, and nothing of the page
    assert not at.slider and written(at) == {}


@pytest.mark.parametrize("kept, shown", [("tutor", "tutor"), ("gone-since", "base"), ("../../etc", "base")])
def test_the_persona_page_starts_with_the_last_persona_if_it_still_exists(monkeypatch, kept, shown):
    install(monkeypatch)
    with_cookies(monkeypatch, persona_choice={"name": kept})
    at = open_app("pages/1_Personas.py")
    assert at.selectbox(key="persona.current").value == shown
    at.selectbox(key="persona.current").set_value("dummy").run()
    assert written(at)["studio_persona_choice"] == {"name": "dummy"}


def test_kept_values_survive_a_change_of_page(monkeypatch):
    install(monkeypatch)
    at = open_app()
    at.slider(key="chat.temperature").set_value(1.5).run()
    at.switch_page("pages/3_Team.py").run()
    at.switch_page("pages/0_Chat.py").run()
    assert not at.exception and at.slider(key="chat.temperature").value == 1.5


def test_the_writer_script_carries_only_base64url(monkeypatch):
    install(monkeypatch)
    at = open_app()
    at.text_area(key="chat.system").set_value('"; document.cookie="x=1"; </script><script>alert(1)//').run()
    (script,) = [f.proto.srcdoc for f in at.get("iframe") if "studio_chat_system" in f.proto.srcdoc]
    assert "alert" not in script and script.count("<script>") == 1
    assert json.loads(json.dumps(written(at)["studio_chat_system"]))["system"].startswith('"; document')


def test_a_link_to_a_persona_conversation_wins_over_the_kept_persona(monkeypatch):
    install(monkeypatch)
    at = open_app("pages/1_Personas.py")
    at.selectbox(key="persona.current").set_value("dummy").run()
    at.chat_input(key="persona.input").set_value("Hello!").run()
    cid = at.session_state["persona.dummy.messages.cid"]
    with_cookies(monkeypatch, persona_choice={"name": "tutor"})
    fresh = AppTest.from_file("../app.py", default_timeout=60)
    fresh.query_params["c"] = cid
    fresh.switch_page("pages/1_Personas.py").run()
    assert not fresh.exception and fresh.selectbox(key="persona.current").value == "dummy"
