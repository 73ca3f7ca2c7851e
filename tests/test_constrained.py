"""JSON-schema-constrained decoding on the demo tokenizer: characters that no token spells whole (written as
byte tokens by a byte-level BPE) stay inside a JSON string instead of ending the JSON."""

from __future__ import annotations

import json

import pytest
import torch

from llm import constrained, tools

pytestmark = pytest.mark.model
SCHEMA = tools.call_schema(
    [{"function": {"name": "ask", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
)


def allowed_after(processor, prompt: list[int], answer: list[int], vocab_size: int) -> torch.Tensor:
    return processor(torch.tensor([prompt + answer]), torch.zeros(1, vocab_size))[0] > -1e9


@pytest.mark.parametrize("text", ["Scienstiț", "北京的天气", "ok 😀 ok", "Ελλάδα ή Україна"])
def test_a_character_written_as_byte_tokens_keeps_the_string_open(demo_model, text):
    tokenizer, stops = demo_model.tokenizer, demo_model.stop_ids
    byte_split = [c for c in text if len(tokenizer.encode(c, add_special_tokens=False)) > 1]
    assert byte_split or text.isascii(), "the case must hold a character no token spells whole"
    processor = constrained.JsonGrammar(SCHEMA, constrained.vocabulary(tokenizer, stops)).processor()
    prompt = tokenizer.encode("Ask.", add_special_tokens=False)
    whole = '{"name": "ask", "parameters": {"q": "' + text + '"}}'
    answer = tokenizer.encode(whole, add_special_tokens=False)
    for k, token in enumerate(answer):
        allowed = allowed_after(processor, prompt, answer[:k], len(tokenizer))
        assert allowed[token], f"{tokenizer.decode(answer[: k + 1])!r} was refused"
        if k < len(answer) - 1:
            assert not any(allowed[i] for i in stops), f"the end was allowed after {tokenizer.decode(answer[:k])!r}"
    assert all(allowed_after(processor, prompt, answer, len(tokenizer))[i] for i in stops)
    assert json.loads(tokenizer.decode(answer))["parameters"]["q"] == text
