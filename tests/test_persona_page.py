"""The persona page through AppTest with the real demo model and the shipped adapter."""

from streamlit.testing.v1 import AppTest

PAGE = "../pages/1_Personas.py"


def open_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception, at.exception
    at.slider(key="persona.temperature").set_value(0.0)
    at.number_input(key="persona.max_new").set_value(40)
    return at


def choose(at: AppTest, name: str) -> AppTest:
    at.selectbox(key="persona.current").set_value(name).run()
    assert not at.exception
    return at


def send(at: AppTest, text: str) -> AppTest:
    at.chat_input(key="persona.input").set_value(text).run()
    assert not at.exception, at.exception
    return at


def test_persona_greeting_answer_and_one_history_per_persona():
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
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "adapter_model.bin").write_bytes(b"pickle")
    monkeypatch.setenv("ADAPTERS_DIR", str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception
    assert "broken" not in at.selectbox(key="persona.current").options
    assert any("persona.json is missing" in c.value for c in at.sidebar.caption)


def test_side_by_side_answers_with_base_and_persona():
    at = choose(open_page(), "captain-quill")
    at.radio(key="persona.view").set_value("Side by side").run()
    at.chat_input(key="persona.compare_input").set_value("Tell me about whales.").run()
    assert not at.exception and not at.error
    headers = [m.value for m in at.markdown if m.value.startswith("**")]
    assert any("Base model" in h for h in headers) and any("Captain Quill" in h for h in headers)
    captions = [c.value for c in at.caption if "tokens used" in c.value]
    assert len(captions) == 2


def test_a_saved_persona_conversation_opens_with_its_persona():
    at = choose(open_page(), "captain-quill")
    send(at, "Tell me about whales.")
    cid = at.session_state["persona.captain-quill.messages.cid"]
    fresh = AppTest.from_file(PAGE, default_timeout=180)
    fresh.query_params["c"] = cid
    fresh.run()
    assert fresh.selectbox(key="persona.current").value == "captain-quill"
    assert [m.name for m in fresh.chat_message][1:] == ["user", "assistant"]
