"""The persona page through AppTest: with the real demo model and the shipped adapter (an answer, and hostile
adapter folders checked by the real loader), and with a scripted backend (tests/fake_backend.py)."""

import json

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT
from tests.fake_backend import Reply, install

PAGE = "pages/1_Personas.py"


def persona_page(query: dict | None = None) -> AppTest:
    """The app's entry point, opened at /Personas (with `query` in the URL)."""
    at = AppTest.from_file("../app.py", default_timeout=180)
    at.query_params.update(query or {})
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def open_page(max_new: int = 40) -> AppTest:
    at = persona_page()
    at.slider(key="persona.temperature").set_value(0.0)
    at.number_input(key="persona.max_new").set_value(max_new)
    return at


def choose(at: AppTest, name: str) -> AppTest:
    at.selectbox(key="persona.current").set_value(name).run()
    assert not at.exception
    return at


def send(at: AppTest, text: str) -> AppTest:
    at.chat_input(key="persona.input").set_value(text).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.model
def test_real_model_persona_greeting_answer_and_one_history_per_persona():
    at = choose(open_page(), "captain-quill")
    assert "Captain Quill" in at.title[0].value
    assert at.chat_message[0].markdown[0].value.startswith("Ahoy")  # the greeting
    send(at, "Tell me about whales.")
    assert "fair winds" in at.chat_message[-1].markdown[0].value.lower()
    choose(at, "dummy")
    assert len(at.chat_message) == 1  # Dummy's greeting only: its own, empty history
    send(at, "Hello!")
    assert "fair winds" not in at.chat_message[-1].markdown[0].value.lower()
    choose(at, "captain-quill")
    assert len(at.chat_message) == 3  # greeting + the earlier exchange, kept


def test_unavailable_personas_are_listed_with_reasons(tmp_path, monkeypatch):
    install(monkeypatch)
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "adapter_model.bin").write_bytes(b"pickle")
    monkeypatch.setenv("ADAPTERS_DIR", str(tmp_path))
    at = persona_page()
    assert not at.exception
    assert "broken" not in at.selectbox(key="persona.current").options
    assert any("persona.json is missing" in c.value for c in at.sidebar.caption)


def test_side_by_side_answers_with_base_and_persona(monkeypatch):
    fake = install(monkeypatch, Reply(["Whales are mammals."]), Reply(["Arr, whales!", " Fair winds."]))
    at = choose(open_page(), "captain-quill")
    at.radio(key="persona.view").set_value("Side by side").run()
    at.chat_input(key="persona.compare_input").set_value("Tell me about whales.").run()
    assert not at.exception and not at.error
    headers = [m.value for m in at.markdown if m.value.startswith("**")]
    assert any("Base model" in h for h in headers) and any("Captain Quill" in h for h in headers)
    assert [call.model for call in fake.calls] == [None, "captain-quill"]  # the base model, then the adapter
    captions = [c.value for c in at.caption if "tokens used" in c.value]
    assert captions == [
        "first token 0.01 s · 13 tokens used (12 prompt + 1 answer)",
        "first token 0.01 s · 100.0 tokens/s · 14 tokens used (12 prompt + 2 answer)",
    ]


def test_a_saved_persona_conversation_opens_with_its_persona(monkeypatch):
    install(monkeypatch)
    at = choose(open_page(), "captain-quill")
    send(at, "Tell me about whales.")
    cid = at.session_state["persona.captain-quill.messages.cid"]
    fresh = persona_page({"c": cid})
    assert fresh.selectbox(key="persona.current").value == "captain-quill"
    assert [m.name for m in fresh.chat_message][1:] == ["user", "assistant"]
    avatar = json.loads((ROOT / "adapters/captain-quill/persona.json").read_text())["avatar"]
    assert at.chat_message[-1].avatar == fresh.chat_message[-1].avatar == avatar  # its answers wear its avatar
    assert fresh.chat_message[1].avatar != avatar  # the user's turn does not


@pytest.mark.model
def test_hostile_adapter_folders_never_show_a_traceback(tmp_path, monkeypatch):
    """A config that is a list, a string rank, a regex pattern key, NaN weights, and an avatar that is a file path:
    the page lists each with its reason (the path avatar is replaced, with a note), and never shows a traceback."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    from tests.conftest import ROOT

    shipped = ROOT / "adapters" / "captain-quill"
    config = json.loads((shipped / "adapter_config.json").read_text())
    for name, change in {
        "as-list": [config],
        "string-rank": {**config, "r": "8"},
        "regex-key": {**config, "alpha_pattern": {"(a+)+$": 16}},
    }.items():
        shutil.copytree(shipped, tmp_path / name)
        (tmp_path / name / "adapter_config.json").write_text(json.dumps(change))
    shutil.copytree(shipped, tmp_path / "nan")
    tensors = load_file(str(shipped / "adapter_model.safetensors"))
    tensors[next(iter(tensors))][0, 0] = float("nan")
    save_file(tensors, str(tmp_path / "nan" / "adapter_model.safetensors"))
    shutil.copytree(shipped, tmp_path / "path-avatar")
    card = json.loads((shipped / "persona.json").read_text())
    (tmp_path / "path-avatar" / "persona.json").write_text(json.dumps({**card, "avatar": "/etc/passwd"}))
    monkeypatch.setenv("ADAPTERS_DIR", str(tmp_path))
    at = persona_page()
    at.number_input(key="persona.max_new").set_value(4)
    lora = [o for o in at.selectbox(key="persona.current").options if o.endswith("(LoRA)")]
    assert lora == ["🎭 Captain Quill (LoRA)"]  # only the path-avatar adapter is usable, with the default avatar
    captions = " | ".join(c.value for c in at.sidebar.caption)
    assert "Input should be an object" in captions and "r: Input should be a valid integer" in captions
    assert "not a plain dotted module name" in captions and "NaN or infinite" in captions
    assert "not a single emoji" in captions
    choose(at, "path-avatar")
    assert at.title[0].value.startswith("🎭")
    send(at, "Hello!")
    assert not at.exception
