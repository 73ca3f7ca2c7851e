"""The persona page's side-by-side view: both answers stream at once and stay, one list per persona. With a
scripted backend (tests/fake_backend.py) for what the page does, and with the real demo model and the shipped
adapter for the batch: the two answers are two rows of the same forward passes."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from llm.interface import BackendError, PromptTooLongError
from tests.fake_backend import Reply, install
from tests.test_persona_page import choose, open_page
from ui.compare import KEPT
from ui.safe_text import plain, safe_markdown

KEY = "persona.captain-quill.compare"
TOGETHER = "decoded together with 1 other answer(s)"


def side_by_side(max_new: int = 40) -> AppTest:
    at = choose(open_page(max_new), "captain-quill")
    at.radio(key="persona.view").set_value("Side by side").run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, text: str) -> AppTest:
    at.chat_input(key="persona.compare_input").set_value(text).run()
    assert not at.exception, at.exception
    return at


def md(text: str) -> str:
    """An answer as the page draws it."""
    return safe_markdown(text, keep_lines=True)


def columns(at: AppTest) -> list[list[str]]:
    """Each answer column of the main area, as the texts of its markdown and captions, in order."""
    return [[e.value for e in c if e.type in ("markdown", "caption", "error")] for c in at.main.columns]


def test_both_columns_stream_together_and_show_their_figures(monkeypatch):
    fake = install(
        monkeypatch,
        Reply(["Whales are", " mammals."], batched_with=1),
        Reply(["Arr, whales!", " Fair winds."], batched_with=1),
    )
    at = ask(side_by_side(), "Tell me about whales.")
    assert [call.model for call in fake.calls] == [None, "captain-quill"]  # the base model, then the adapter
    assert fake.calls[0].cancel is fake.calls[1].cancel is not None  # one stop for both
    base, quill = columns(at)
    assert "Base model" in base[0] and base[1] == "Whales are mammals." and TOGETHER in base[2]
    assert "Captain Quill" in quill[0] and quill[1] == md("Arr, whales! Fair winds.") and TOGETHER in quill[2]
    assert not at.error
    (record,) = at.session_state[KEY]
    assert record["question"] == "Tell me about whales."
    assert [a["cut"] for a in record["answers"]] == [False, False]
    assert [a["stats"]["batched_with"] for a in record["answers"]] == [1, 1]


def test_comparisons_are_kept_across_views_newest_last_and_cleared(monkeypatch):
    install(monkeypatch, Reply(["One."]), Reply(["Arr, one."]), Reply(["Two."]), Reply(["Arr, two."]))
    at = ask(side_by_side(), "First?")
    at.radio(key="persona.view").set_value("Chat").run()
    assert not at.main.columns  # the chat view draws no comparison
    at.radio(key="persona.view").set_value("Side by side").run()
    assert [c[1] for c in columns(at)] == ["One.", "Arr, one."]  # drawn again from the session
    ask(at, "Second?")
    assert [c[1] for c in columns(at)] == ["One.", "Arr, one.", "Two.", "Arr, two."]  # the new one last
    questions = [m.value for m in at.main.markdown if m.value.startswith("**You:**")]
    assert questions == ["**You:** " + plain("First?"), "**You:** " + plain("Second?")]
    choose(at, "dummy")  # another persona: its own list
    assert not at.main.columns
    choose(at, "captain-quill")
    assert len(at.main.columns) == 4
    at.button(key="persona.compare_clear").click().run()
    assert not at.main.columns and at.session_state[KEY] == []


def test_the_list_is_bounded(monkeypatch):
    install(monkeypatch)
    at = side_by_side()
    for n in range(KEPT + 2):
        ask(at, f"Question {n}?")
    kept = at.session_state[KEY]
    assert len(kept) == KEPT  # the oldest went first
    assert kept[0]["question"] == "Question 2?" and kept[-1]["question"] == f"Question {KEPT + 1}?"


def test_an_error_in_one_column_shows_there_and_the_other_goes_on(monkeypatch):
    install(
        monkeypatch,
        Reply(["Whales", " are", " big."]),
        Reply(["Arr"], error=BackendError("the adapter broke")),
    )
    at = ask(side_by_side(), "Tell me about whales.")
    base, quill = columns(at)
    assert base[1] == "Whales are big." and "tokens used" in base[2] and not any("broke" in t for t in base)
    assert quill[1] == "Arr" and quill[2] == "the adapter broke"  # what came, then why it stopped
    assert any("cut off" in t for t in quill)
    at.radio(key="persona.view").set_value("Chat").run()
    at.radio(key="persona.view").set_value("Side by side").run()
    assert columns(at) == [base, quill]  # drawn again just as it streamed


def test_an_error_before_any_text_is_not_a_cut_answer(monkeypatch):
    install(monkeypatch, Reply([], error=BackendError("the server is down")), Reply(["Arr."]))
    at = ask(side_by_side(), "Hello?")
    base, quill = columns(at)
    assert "the server is down" in base and not any("cut off" in t for t in base)
    assert quill[1] == "Arr."


def test_a_bug_in_one_column_names_its_kind_there(monkeypatch):
    install(monkeypatch, Reply(["Fine."]), Reply(["Arr"], error=ValueError("internal detail")))
    at = ask(side_by_side(), "Hello?")
    base, quill = columns(at)
    assert base[1] == "Fine."
    assert any("This answer failed (ValueError)" in t for t in quill) and not any("internal" in t for t in quill)


def test_a_question_too_long_for_the_context_is_refused_in_its_column(monkeypatch):
    """A question under MAX_PROMPT_CHARS can still be past the context (32,000 characters of Chinese is about as
    many tokens); the backend refuses it before anything is queued, and the page says so where it happened."""
    fake = install(monkeypatch, Reply(["Arr."]))
    streamed = fake.stream

    def refuse_the_base_model(messages, options, **kwargs):
        if kwargs.get("model") is None:  # the base model's prompt, say, with its longer system prompt
            raise PromptTooLongError("Your message needs 9,000 tokens but only 8,000 fit.")
        return streamed(messages, options, **kwargs)

    monkeypatch.setattr(fake, "stream", refuse_the_base_model)
    at = ask(side_by_side(), "长" * 30_000)
    base, quill = columns(at)
    assert "Your message needs 9,000 tokens but only 8,000 fit." in base and not any("cut off" in t for t in base)
    assert quill[1] == "Arr."
    assert at.session_state[KEY][0]["question"] == "长" * 30_000  # kept as typed, nothing lost


def test_stop_stops_both_answers_and_keeps_what_came_marked_cut(monkeypatch):
    fake = install(monkeypatch, Reply(["Once", " upon", " a", " time"], stop_after=2), Reply([" arr"] * 200))
    pieces = fake._pieces

    def paced(*args):  # a model's pace: the persona's answer is still streaming when stop is pressed
        for piece in pieces(*args):
            time.sleep(0.01)
            yield piece

    monkeypatch.setattr(fake, "_pieces", paced)
    at = ask(side_by_side(max_new=200), "Tell me a story.")  # the stop button, pressed after two pieces
    assert fake.calls[1].cancel.is_set()  # the persona's answer was stopped too
    base, quill = at.session_state[KEY][0]["answers"]
    assert base["content"] == "Once upon" and base["cut"]
    assert quill["cut"] and 0 < len(quill["content"]) < len(" arr") * 200  # it stopped, what came is kept
    at.run()  # the next run draws it from the session, marked
    assert [c[1] for c in columns(at)] == ["Once upon", md(quill["content"])]
    assert all(any("cut off" in t for t in column) for column in columns(at))


@pytest.mark.model
def test_real_model_decodes_both_answers_in_one_batch():
    """The demo model with the shipped Captain Quill adapter: the base row and the adapter row share their
    forward passes (the scheduler's figures, shown under each column)."""
    at = ask(side_by_side(max_new=24), "Tell me about whales.")
    base, quill = at.session_state[KEY][0]["answers"]
    assert base["content"] and quill["content"] and base["content"] != quill["content"]
    assert base["stats"]["batched_with"] == quill["stats"]["batched_with"] == 1
    assert all(TOGETHER in column[-1] for column in columns(at))


def test_real_model_a_stop_takes_both_rows_out_of_the_batch(quill_backend, monkeypatch):
    """What the stop button does to a run of the page, on the real scheduler: the page's thread is interrupted at
    a draw, and both answers end there (cancelled, cut), their rows gone from the batch when the run is over."""
    from types import SimpleNamespace

    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    from llm.options import GenerationOptions
    from personas.registry import BASE
    from ui import compare

    monkeypatch.setattr(compare, "_", lambda message: message)  # no page around it: the source language
    card = SimpleNamespace(avatar="⚓", display_name="Captain Quill", system_prompt="You are Captain Quill.")
    whos = (BASE, SimpleNamespace(kind="lora", model="captain-quill", card=card))
    answers = [compare._answer(who) for who in whos]
    draws = []

    def draw(index: int, done: bool = False) -> None:
        draws.append((index, done))
        if all(answer["content"] for answer in answers):  # both columns have text: stop
            raise StopException()  # as Streamlit raises it in the page's thread when stop is pressed

    options = GenerationOptions(temperature=0, max_new_tokens=200)
    with pytest.raises(StopException):
        compare._stream(quill_backend, whos, "Tell me a long story about the sea.", options, answers, draw)
    assert not any(done for _, done in draws)  # stopped while both streamed
    for answer in answers:
        assert answer["content"] and answer["cut"] and answer["stats"]["finish_reason"] == "cancelled"
        assert answer["stats"]["completion_tokens"] < 200
    assert not quill_backend.scheduler._active  # both rows left the batch
