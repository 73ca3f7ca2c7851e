"""The chat page through Streamlit's AppTest, with the real demo model."""

import pytest
from streamlit.testing.v1 import AppTest

from llm.options import GenerationOptions
from llm.prompts import conversation

TIMEOUT = 180


def open_app() -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT).run()
    assert not at.exception
    return at


def greedy(at: AppTest, max_new: int = 24) -> AppTest:
    at.slider(key="chat.temperature").set_value(0.0)
    at.number_input(key="chat.max_new").set_value(max_new)
    at.slider(key="chat.rep").set_value(1.0)
    at.text_area(key="chat.system").set_value("You are a helpful assistant.")
    return at


def send(at: AppTest, text: str) -> AppTest:
    at.chat_input(key="chat.input").set_value(text).run()
    assert not at.exception, at.exception
    return at


def bubbles(at: AppTest) -> list[tuple[str, str]]:
    return [(m.name, m.markdown[0].value) for m in at.chat_message]


def test_demo_model_note_is_shown():
    at = open_app()
    assert any("demo model" in i.value and "LLM_MODEL" in i.value for i in at.info)


def test_message_in_streamed_answer_out_with_figures():
    at = send(greedy(open_app()), "What is the capital of France?")
    (role1, text1), (role2, text2) = bubbles(at)
    assert (role1, text1) == ("user", "What is the capital of France?")
    assert role2 == "assistant" and "Paris" in text2
    caption = at.chat_message[1].caption[-1].value
    assert "first token" in caption and "tokens/s" in caption and "tokens used" in caption


def test_settings_are_applied(backend):
    at = greedy(open_app(), max_new=6)
    at.text_area(key="chat.system").set_value("You are a pirate. Always talk like a pirate.")
    at.slider(key="chat.rep").set_value(1.0)
    send(at, "Describe the sea.")
    expected = "".join(
        backend.stream(
            conversation(
                "You are a pirate. Always talk like a pirate.", [{"role": "user", "content": "Describe the sea."}]
            ),
            GenerationOptions(temperature=0, max_new_tokens=6, repetition_penalty=1.0),
        )
    )
    assert bubbles(at)[1][1] == expected
    assert "(0 prompt" not in at.chat_message[1].caption[-1].value
    assert "6 answer" in at.chat_message[1].caption[-1].value
    assert "stopped at max new tokens" in at.chat_message[1].caption[-1].value


def test_multi_turn_new_chat_and_regenerate():
    at = greedy(open_app())
    send(at, "My name is Oksana.")
    send(at, "What is my name?")
    assert [r for r, _ in bubbles(at)] == ["user", "assistant", "user", "assistant"]
    before = bubbles(at)[3][1]
    at.button(key="chat.regen").click().run()
    assert len(bubbles(at)) == 4 and bubbles(at)[3][1] == before  # greedy: same answer again, not appended
    at.button(key="chat.new").click().run()
    assert bubbles(at) == []


def test_empty_and_whitespace_prompts_are_ignored():
    at = open_app()
    send(at, "   \n\t ")
    assert bubbles(at) == [] and not at.error


def test_huge_prompt_gets_a_clear_message_and_the_app_keeps_serving():
    at = greedy(open_app(), max_new=4)
    send(at, "x" * 200_000)
    assert "200,000 characters" in at.error[0].value and "MAX_PROMPT_CHARS" in at.error[0].value
    assert bubbles(at) == []
    send(at, "Hello")
    assert [r for r, _ in bubbles(at)] == ["user", "assistant"]


def test_message_too_long_for_the_context_is_handed_back(monkeypatch):
    monkeypatch.setenv("CONTEXT_LENGTH", "300")
    at = greedy(open_app(), max_new=8)
    long_text = "tell me more " * 120
    send(at, long_text)
    assert "Shorten the message" in at.error[0].value
    assert at.code[0].value == long_text  # the unsent text is given back to copy
    send(at, "Hi")
    assert [r for r, _ in bubbles(at)] == ["user", "assistant"]  # the long one did not stay in history


def test_unicode_and_html_round_trip_as_text():
    at = greedy(open_app(), max_new=4)
    text = "你好 🦙 Привіт <script>alert(1)</script> <b>bold</b> مرحبا"
    send(at, text)
    from ui.safe_text import safe_markdown

    shown = bubbles(at)[0][1]
    assert shown == safe_markdown(text) and "<script>" not in shown  # drawn as text: every tag escaped
    assert at.session_state["chat.messages"][0]["content"] == text  # stored exactly as typed


def test_an_interrupted_answer_is_kept_and_marked():
    at = open_app()
    at.session_state["chat.messages"] = [{"role": "user", "content": "Tell me a story."}]
    at.session_state["chat.messages.pending"] = {"role": "assistant", "content": "Once upon a"}
    at.run()
    assert bubbles(at)[1] == ("assistant", "Once upon a")
    assert "cut off" in at.chat_message[1].caption[0].value


@pytest.mark.parametrize(
    "model, words",
    [
        ("/nonexistent/model-folder", "not a model folder"),
        ("not a model", "Set LLM_MODEL"),
    ],
)
def test_a_model_that_cannot_load_gives_a_clear_message(monkeypatch, model, words):
    monkeypatch.setenv("LLM_MODEL", model)
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT).run()
    assert not at.exception
    assert words in at.error[0].value and "Traceback" not in at.error[0].value


def test_old_turns_dropped_to_fit_the_context_are_announced(monkeypatch):
    monkeypatch.setenv("CONTEXT_LENGTH", "256")
    at = greedy(open_app(), max_new=120)  # leaves 136 prompt tokens; three ~45-token questions do not fit
    for text in (
        "Tell me about the history of the Roman empire in detail please " * 4,
        "And what about the Greek city states and their wars? " * 4,
        "Now explain the Byzantine empire and its long history. " * 4,
    ):
        send(at, text)
    captions = [c.value for m in at.chat_message for c in m.caption]
    assert any("older messages were left out" in c for c in captions)


def test_coalescing_never_loses_text_on_error():
    from llm.interface import BackendError
    from ui.chat import coalesce

    def pieces():
        yield "a"
        yield "b"
        raise BackendError("cut")

    got, recorded = [], []

    def record(source):
        for piece in source:
            recorded.append(piece)
            yield piece

    with pytest.raises(BackendError):
        for chunk in coalesce(record(pieces()), every_s=60):
            got.append(chunk)
    assert "".join(recorded) == "ab" and got == []  # shown later from the history, which has it all
