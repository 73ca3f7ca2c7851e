"""Prompt building and trimming with the real tokenizer and chat template."""

import pytest

from llm.errors import PromptTooLongError
from llm.prompts import build_prompt, conversation, encode


def turns(n: int, words: int = 20) -> list[dict]:
    history = []
    for i in range(n):
        history.append({"role": "user", "content": f"question {i} " + "word " * words})
        history.append({"role": "assistant", "content": f"answer {i} " + "word " * words})
    return history


def test_system_prompt_and_history_go_through_the_chat_template(demo_model):
    tok = demo_model.tokenizer
    messages = conversation("You are Zed.", [{"role": "user", "content": "hi"}])
    text = tok.decode(build_prompt(tok, messages, 64, 2048).input_ids)
    # SmolLM2's template, not a hand-made format: role headers and the generation prompt.
    assert text.startswith("<|im_start|>system\nYou are Zed.<|im_end|>")
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_empty_system_prompt_is_left_out():
    assert conversation("   ", [{"role": "user", "content": "x"}]) == [{"role": "user", "content": "x"}]


def test_extra_keys_in_history_do_not_reach_the_model():
    history = [{"role": "user", "content": "x", "stats": {"a": 1}}]
    assert conversation("", history) == [{"role": "user", "content": "x"}]


def test_fact_from_turn_one_reaches_turn_five(demo_model):
    tok = demo_model.tokenizer
    history = [{"role": "user", "content": "My cat is called Pumpernickel."}, {"role": "assistant", "content": "Noted."}]
    history += turns(3)
    history.append({"role": "user", "content": "What is my cat called?"})
    prompt = build_prompt(tok, conversation("Be brief.", history), 64, 4096)
    assert prompt.dropped_messages == 0
    assert "Pumpernickel" in tok.decode(prompt.input_ids)


def test_oldest_turns_are_dropped_and_system_prompt_kept(demo_model):
    tok = demo_model.tokenizer
    history = turns(10, words=40) + [{"role": "user", "content": "last question"}]
    messages = conversation("SYSTEM-MARKER", history)
    full = len(encode(tok, messages))
    prompt = build_prompt(tok, messages, 100, full // 2)
    text = tok.decode(prompt.input_ids)
    assert len(prompt.input_ids) + 100 <= full // 2
    assert prompt.dropped_messages > 0 and prompt.dropped_messages % 2 == 0  # whole turns only
    assert "SYSTEM-MARKER" in text and "last question" in text
    assert "question 0 " not in text
    # The kept history still starts with a user turn after the system prompt.
    assert text.split("<|im_end|>\n")[1].startswith("<|im_start|>user")


def test_a_single_message_too_long_for_the_context_says_so(demo_model):
    with pytest.raises(PromptTooLongError, match="Shorten the message"):
        build_prompt(demo_model.tokenizer, [{"role": "user", "content": "word " * 5000}], 100, 1024)


def test_max_new_tokens_larger_than_context_says_so(demo_model):
    with pytest.raises(PromptTooLongError, match="Lower it"):
        build_prompt(demo_model.tokenizer, [{"role": "user", "content": "hi"}], 2048, 1024)
