"""The API's pure translation steps: messages, options, stop strings, model ids (no server)."""

from __future__ import annotations

import pytest

from personas.registry import BASE, Persona, PersonaCard
from server.api.catalog import base_id, targets
from server.api.schemas import ChatMessage, ChatRequest
from server.api.service import ApiError, StopStrings, to_messages, to_options


def request(**fields) -> ChatRequest:
    return ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


@pytest.mark.parametrize(
    "pieces, stops, expected, hit",
    [
        (["Hello", " wor", "ld. Bye"], ["world"], "Hello ", True),
        (["Hel", "lo"], ["lo w"], "Hello", False),  # a held-back tail that never became the stop string
        (["ab", "cSTO", "P de"], ["STOP", "zz"], "abc", True),
        (["STOP"], ["STOP"], "", True),
        (["one"], [], "one", False),
    ],
)
def test_stop_strings_cut_across_pieces(pieces, stops, expected, hit):
    closed = []

    def source():
        try:
            yield from pieces
        finally:
            closed.append(True)

    stopper = StopStrings(source(), stops)
    assert "".join(stopper) == expected and stopper.hit == hit
    assert closed  # ending early closes the source (which stops its computation)


def test_system_messages_join_and_a_persona_prompt_fills_in_only_when_none_came():
    chat = [ChatMessage(role="user", content="hi")]
    assert to_messages(chat, "I am Quill.")[0] == {"role": "system", "content": "I am Quill."}
    given = [ChatMessage(role="system", content="A"), ChatMessage(role="developer", content="B"), *chat]
    assert to_messages(given, "I am Quill.") == [
        {"role": "system", "content": "A\n\nB"},
        {"role": "user", "content": "hi"},
    ]
    parts = ChatMessage.model_validate(
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    )
    assert to_messages([parts], None) == [{"role": "user", "content": "ab"}]


@pytest.mark.parametrize(
    "messages, param",
    [
        ([{"role": "system", "content": "only a system prompt"}], "messages"),
        ([{"role": "tool", "content": "x"}], "messages.0.role"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "messages.0.content"),
    ],
)
def test_messages_that_cannot_be_answered_are_refused(messages, param):
    with pytest.raises(ApiError) as caught:
        to_messages([ChatMessage.model_validate(m) for m in messages], None)
    assert caught.value.status == 400 and caught.value.param == param


def test_options_take_openais_defaults_and_vllms_extras():
    options = to_options(request())
    assert (options.temperature, options.top_p, options.top_k, options.repetition_penalty) == (1.0, 1.0, 0, 1.0)
    options = to_options(request(max_completion_tokens=7, max_tokens=9, top_k=-1, repetition_penalty=1.2, seed=3))
    assert (options.max_new_tokens, options.top_k, options.repetition_penalty, options.seed) == (7, 0, 1.2, 3)
    for bad, param in (({"top_p": 0}, "top_p"), ({"seed": -1}, "seed"), ({"max_tokens": 10**6}, "max_tokens")):
        with pytest.raises(ApiError) as caught:
            to_options(request(**bad))
        assert caught.value.param == param


def test_unsupported_fields_are_named():
    assert request(n=2).unsupported()[0] == "n"
    assert request(response_format={"type": "json_object"}).unsupported()[0] == "response_format"
    assert request(n=1, tools=[], logprobs=False, response_format={"type": "text"}).unsupported() is None


class Local:
    name, base_name = "SmolLM2-135M-Instruct (demo)", "SmolLM2-135M-Instruct (demo)"


def test_model_ids_are_the_base_and_available_personas():
    card = PersonaCard(display_name="Quill", system_prompt="Arr.")
    personas = [
        BASE,
        Persona("quill", card, "lora", model="quill"),
        Persona("tutor", card, "prompt"),
        Persona("broken", card, "lora", problem="corrupt"),
    ]
    found = targets(Local(), personas)
    assert list(found) == ["SmolLM2-135M-Instruct", "quill", "tutor"]
    assert found["quill"].backend_model == "quill" and found["tutor"].backend_model is None
    assert found["tutor"].system_prompt == "Arr." and found["quill"].parent == "SmolLM2-135M-Instruct"


def test_a_local_folder_is_never_shown_as_a_model_id():
    class Folder:
        name = "/home/someone/models/Meta-Llama-3.1-8B-Instruct"

    class Hub:
        name = "LLM-Research/Meta-Llama-3.1-8B-Instruct"

    assert base_id(Folder()) == "Meta-Llama-3.1-8B-Instruct"
    assert base_id(Hub()) == "LLM-Research/Meta-Llama-3.1-8B-Instruct"
