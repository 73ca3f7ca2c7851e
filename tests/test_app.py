"""The chat page through Streamlit's AppTest (the app's entry point and its navigation): once with the real demo
model, the rest with a scripted backend (tests/fake_backend.py) for what the page does with what comes back."""

import pytest
from streamlit.testing.v1 import AppTest

from llm.interface import BackendError, PromptTooLongError
from llm.options import GenerationOptions
from tests.fake_backend import Reply, install

TIMEOUT = 180


def open_app() -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
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


@pytest.mark.model
def test_real_model_message_in_streamed_answer_out_with_figures_and_the_demo_note():
    at = open_app()
    assert any("demo model" in i.value and "LLM_MODEL" not in i.value for i in at.info)  # plain words
    send(greedy(at), "What is the capital of France?")
    (role1, text1), (role2, text2) = bubbles(at)
    assert (role1, text1) == ("user", "What is the capital of France?")
    assert role2 == "assistant" and "Paris" in text2
    caption = at.chat_message[1].caption[-1].value
    assert "first token" in caption and "tokens/s" in caption and "tokens used" in caption


def test_the_navigation_names_the_pages_and_opens_each_at_its_old_url(monkeypatch):
    install(monkeypatch)
    at = open_app()
    pages = {info["url_pathname"]: info["page_name"] for info in at._registered_pages.values()}
    assert pages == {
        "": "Chat",
        "Personas": "Personas",
        "Search_answers": "Search answers",
        "Team": "Team",
        "API": "API",
    }
    for path, title in (("pages/1_Personas.py", "Base model"), ("pages/2_Search_answers.py", "🔎 Search answers")):
        at.switch_page(path).run()
        assert not at.exception and title in at.title[0].value


def test_settings_are_applied(monkeypatch):
    fake = install(monkeypatch, Reply(["Arr", ",", " the", " sea", " be", " wide", " and", " deep"]))
    at = greedy(open_app(), max_new=6)
    at.text_area(key="chat.system").set_value("You are a pirate. Always talk like a pirate.")
    send(at, "Describe the sea.")
    call = fake.calls[-1]
    assert call.messages == [
        {"role": "system", "content": "You are a pirate. Always talk like a pirate."},
        {"role": "user", "content": "Describe the sea."},
    ]
    assert call.options == GenerationOptions(temperature=0, max_new_tokens=6, repetition_penalty=1.0)
    assert bubbles(at)[1][1] == "Arr, the sea be wide"
    assert "(12 prompt" in at.chat_message[1].caption[-1].value
    assert "6 answer" in at.chat_message[1].caption[-1].value
    assert "stopped at max new tokens" in at.chat_message[1].caption[-1].value


def test_sampling_widgets_offer_the_options_ranges_and_defaults(monkeypatch):
    install(monkeypatch)
    at = open_app()
    fields = GenerationOptions.model_fields
    for key, name in (("chat.temperature", "temperature"), ("chat.rep", "repetition_penalty")):
        slider = at.slider(key=key)
        assert (slider.min, slider.max, slider.value) == (fields[name].metadata[0].ge, 2.0, fields[name].default)
    top_p = at.slider(key="chat.top_p")
    assert top_p.min == 0.05 and top_p.max == 1.0 and top_p.value == GenerationOptions().top_p  # gt 0: one step up
    assert at.number_input(key="chat.max_new").value == GenerationOptions().max_new_tokens
    assert at.number_input(key="chat.top_k").value == GenerationOptions().top_k
    assert at.number_input(key="chat.seed").value is None


def test_multi_turn_new_chat_and_regenerate(monkeypatch):
    fake = install(monkeypatch, Reply(["Hi", " Oksana."]), Reply(["Oksana."]), Reply(["Oksana."]))
    at = greedy(open_app())
    send(at, "My name is Oksana.")
    send(at, "What is my name?")
    assert [r for r, _ in bubbles(at)] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in fake.calls[-1].messages[1:]] == [
        "My name is Oksana.",
        "Hi Oksana.",
        "What is my name?",
    ]
    before = bubbles(at)[3][1]
    at.button(key="chat.regen").click().run()
    assert len(bubbles(at)) == 4 and bubbles(at)[3][1] == before  # the same answer again, not appended
    assert fake.calls[-1].messages == fake.calls[-2].messages  # the turns before the replaced answer
    at.button(key="chat.new").click().run()
    assert bubbles(at) == []


def test_empty_and_whitespace_prompts_are_ignored(monkeypatch):
    fake = install(monkeypatch)
    at = open_app()
    send(at, "   \n\t ")
    assert bubbles(at) == [] and not at.error and fake.calls == []


def test_huge_prompt_gets_a_clear_message_and_the_app_keeps_serving(monkeypatch):
    fake = install(monkeypatch)
    at = greedy(open_app(), max_new=4)
    send(at, "x" * 200_000)
    assert "200,000 characters" in at.error[0].value and "MAX_PROMPT_CHARS" in at.error[0].value
    assert bubbles(at) == [] and fake.calls == []
    send(at, "Hello")
    assert [r for r, _ in bubbles(at)] == ["user", "assistant"]


def test_message_too_long_for_the_context_is_handed_back(monkeypatch):
    too_long = PromptTooLongError("The message is too long. Shorten the message or the system prompt.")
    install(monkeypatch, Reply([], error=too_long))
    at = greedy(open_app(), max_new=8)
    long_text = "tell me more " * 120
    send(at, long_text)
    assert "Shorten the message" in at.error[0].value
    assert at.code[0].value == long_text  # the unsent text is given back to copy
    send(at, "Hi")
    assert [r for r, _ in bubbles(at)] == ["user", "assistant"]  # the long one did not stay in history


def test_an_error_mid_answer_keeps_the_text_so_far_marked_cut(monkeypatch):
    install(monkeypatch, Reply(["Once", " upon"], error=BackendError("The server went away. Start it again.")))
    at = open_app()
    send(at, "Tell me a story.")
    assert "The server went away" in at.error[0].value
    assert at.session_state["chat.messages"][1]["cut"] is True
    at.run()  # drawn from the history: all the text that came, marked
    assert bubbles(at)[1] == ("assistant", "Once upon")
    assert "cut off" in at.chat_message[1].caption[0].value


def test_stop_keeps_what_streamed_marked_cut_and_ends_the_stream(monkeypatch):
    fake = install(monkeypatch, Reply(["Once", " upon", " a", " time"], stop_after=2))
    at = open_app()
    send(at, "Tell me a story.")  # the stop button, pressed after two pieces
    assert fake.closed == 1 and at.session_state["chat.messages.pending"]["content"] == "Once upon"
    at.run()  # the next run (any click) lands it
    assert bubbles(at)[1] == ("assistant", "Once upon")
    assert "cut off" in at.chat_message[1].caption[0].value


def test_unicode_and_html_round_trip_as_text(monkeypatch):
    install(monkeypatch)
    at = greedy(open_app(), max_new=4)
    text = "你好 🦙 Привіт <script>alert(1)</script> <b>bold</b> مرحبا"
    send(at, text)
    from ui.safe_text import safe_markdown

    shown = bubbles(at)[0][1]
    assert shown == safe_markdown(text) and "<script>" not in shown  # drawn as text: every tag escaped
    assert at.session_state["chat.messages"][0]["content"] == text  # stored exactly as typed


def test_an_interrupted_answer_is_kept_and_marked(monkeypatch):
    install(monkeypatch)
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
    install(monkeypatch, Reply(["Rome."]), Reply(["Greece."]), Reply(["Byzantium."], dropped_messages=2))
    at = greedy(open_app(), max_new=120)
    for text in ("Tell me about Rome.", "And the Greek city states?", "Now the Byzantine empire."):
        send(at, text)
    captions = [c.value for m in at.chat_message for c in m.caption]
    assert "2 older messages were left out to fit the model's context." in captions


def test_coalescing_never_loses_text_on_error():
    from ui.answer import coalesce

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


def test_a_multi_line_prompt_keeps_its_lines_and_indentation_on_screen(monkeypatch):
    fake = install(monkeypatch, Reply(["Line one", "\n", "line two"]))
    at = send(open_app(), "A poem:\nRoses are red\n    indented")
    (_, typed), (_, answered) = bubbles(at)
    assert typed == "A poem:\\\nRoses are red\\\n" + "\u00a0" * 4 + "indented"
    assert answered == "Line one\\\nline two"  # the answer's own line break shows too
    assert fake.calls[-1].messages[-1]["content"] == "A poem:\nRoses are red\n    indented"  # as typed
