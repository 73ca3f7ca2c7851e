"""Continue and versions through the real parts: Llama-3.1's own chat template leaves a cut answer open, and the
real demo model goes on writing it; after a switch between versions the kept KV cache serves the chosen branch
(reused where it shares a prefix, and the answer is the one a fresh cache gives)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from llm.options import GenerationOptions
from llm.prompts import conversation, encode
from tests.llama31 import make_folder
from tests.test_store import open_page, url_cid

GREEDY = dict(temperature=0.0, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def llama31(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(make_folder(tmp_path_factory.mktemp("llama31")))


def test_llama31_template_leaves_a_cut_answer_open(llama31):
    messages = conversation(
        "Be brief.", [{"role": "user", "content": "Count."}, {"role": "assistant", "content": "One, two"}]
    )
    ids = encode(llama31, messages, continue_final=True)
    text = llama31.decode(ids)
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\nOne, two")  # no <|eot_id|> after it
    fresh = llama31.decode(encode(llama31, messages))
    assert fresh.endswith("One, two<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")  # a new turn


def test_the_demo_model_continues_its_own_cut_answer(backend):
    question = [{"role": "user", "content": "List the days of the week."}]
    whole = "".join(backend.stream(conversation("", question), GenerationOptions(max_new_tokens=24, **GREEDY)))
    start = "".join(backend.stream(conversation("", question), GenerationOptions(max_new_tokens=8, **GREEDY)))
    cut = [*question, {"role": "assistant", "content": start}]
    options = GenerationOptions(max_new_tokens=16, continue_final_message=True, **GREEDY)
    rest = "".join(backend.stream(conversation("", cut), options))
    assert rest and whole.startswith(start)
    # greedy: going on from the cut writes what the uncut answer wrote (up to how the cut text re-tokenizes)
    assert (start + rest)[: len(whole) - 8].split()[:6] == whole.split()[:6]


def chat(at: AppTest, text: str) -> AppTest:
    at.chat_input(key="chat.input").set_value(text).run()
    assert not at.exception, at.exception
    return at


def test_continue_and_a_branch_switch_on_the_chat_page_with_the_real_model(backend):
    at = open_page()
    at.slider(key="chat.temperature").set_value(0.0)
    at.slider(key="chat.rep").set_value(1.0)
    at.number_input(key="chat.max_new").set_value(6)
    chat(at, "Name three colours.")
    answer = at.session_state["chat.messages"][1]
    assert answer["stats"]["finish_reason"] == "length"
    at.button(key=f"chat.continue.{answer['id']}").click().run()
    grown = at.session_state["chat.messages"][1]
    assert grown["id"] == answer["id"] and grown["content"].startswith(answer["content"])
    assert len(grown["content"]) > len(answer["content"]) and grown["stats"]["completion_tokens"] > 6
    assert grown["stats"]["cached_tokens"] > 0  # the cut answer's prompt was still in the kept cache
    # an edit makes a second version; back to the first, a follow-up reuses that branch's prefix
    first = at.session_state["chat.messages"][0]
    at.text_area(key=f"chat.edit.{first['id']}").set_value("Name three animals.")
    at.button(key=f"chat.edit.{first['id']}.send").click().run()
    edited = at.session_state["chat.messages"][0]
    at.button(key=f"chat.version.{edited['id']}.previous").click().run()
    assert at.session_state["chat.messages"][0]["content"] == "Name three colours."
    chat(at, "And one more?")
    follow = at.session_state["chat.messages"][-1]
    assert follow["stats"]["cached_tokens"] > 0
    # what a fresh cache gives for the same branch: the kept one changed nothing but the work
    branch = at.session_state["chat.messages"][:-1]
    fresh = "".join(
        backend.stream(conversation(follow["system_prompt"], branch), GenerationOptions(max_new_tokens=6, **GREEDY))
    )
    assert follow["content"] == fresh
    assert url_cid(at)
