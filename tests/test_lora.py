"""Our per-row LoRA against PEFT's, on the real demo model and the shipped adapter."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from llm.generation import generate_tokens
from llm.lora import AdapterError, read_adapter
from llm.options import GenerationOptions
from llm.personas import PersonaRegistry
from llm.prompts import conversation, encode
from tests.conftest import ROOT
from tests.test_personas import fresh_model

SHIPPED = ROOT / "adapters" / "captain-quill"


@pytest.fixture(scope="module")
def peft_model():
    from peft import PeftModel

    return PeftModel.from_pretrained(fresh_model().model, str(SHIPPED), is_trainable=False).eval()


def test_same_logits_and_greedy_tokens_as_peft(quill_backend, peft_model):
    tokenizer = quill_backend.loaded.tokenizer
    ids = encode(tokenizer, conversation("", [{"role": "user", "content": "Tell me about the harbour at night."}]))
    with torch.inference_mode():
        theirs = peft_model(input_ids=torch.tensor([ids])).logits[0, -1]
    ours = quill_backend.runner.forward(torch.tensor([ids]), None, "captain-quill")[0]
    base = quill_backend.runner.forward(torch.tensor([ids]), None, None)[0]
    assert (ours - theirs).abs().max() < 1e-3 < (base - theirs).abs().max()  # the adapter matters; ours is PEFT's
    with torch.inference_mode():
        out = peft_model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                  max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=tokenizer.eos_token_id)
    expected = out[0, len(ids):].tolist()
    ours_tokens = list(generate_tokens(quill_backend.runner, ids, frozenset(), GenerationOptions(temperature=0, max_new_tokens=32, repetition_penalty=1.0),
                                       adapter="captain-quill"))
    assert ours_tokens == expected


def adapter_with(tmp_path, name: str, **config_changes):
    folder = tmp_path / name
    shutil.copytree(SHIPPED, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **config_changes}))
    return folder


def test_scaling_follows_rslora_and_alpha_patterns(tmp_path, quill_backend):
    model = quill_backend.runner.base
    plain = read_adapter(SHIPPED, model)
    assert all(scale == 32 / 8 for _, _, scale in plain.values())
    rs = read_adapter(adapter_with(tmp_path, "rs", use_rslora=True), model)
    assert all(scale == pytest.approx(32 / math.sqrt(8)) for _, _, scale in rs.values())
    patterned = read_adapter(adapter_with(tmp_path, "pattern", alpha_pattern={"q_proj": 16}), model)
    assert patterned["model.layers.3.self_attn.q_proj"][2] == 2 and patterned["model.layers.3.self_attn.k_proj"][2] == 4


def test_variants_we_do_not_apply_are_refused_with_the_reason(tmp_path, quill_backend):
    model = quill_backend.runner.base
    with pytest.raises(AdapterError, match="DoRA"):
        read_adapter(adapter_with(tmp_path, "dora", use_dora=True), model)
    with pytest.raises(AdapterError, match="bias"):
        read_adapter(adapter_with(tmp_path, "bias", bias="all"), model)
    adapter_with(tmp_path, "dora-persona", use_dora=True)
    shutil.copytree(SHIPPED, tmp_path / "fine")
    registry = PersonaRegistry(quill_backend, tmp_path, tmp_path / "none.json")
    problems = {p.name: p.problem for p in registry.personas()}
    assert "DoRA" in problems["dora-persona"] and problems["fine"] is None
    assert "dora-persona" not in quill_backend.runner.adapters  # nothing of it was installed
