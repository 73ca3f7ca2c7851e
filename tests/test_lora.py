"""Our per-row LoRA against PEFT's, on the real demo model and the shipped adapter, in float32 and in bfloat16.

In bfloat16 both keep the adapter in float32 and round base + delta once into bf16, so the logits are PEFT's up to
the order of the thin matmuls (`BF16_LOGITS`); the greedy answers are compared up to their first difference, which
must be a near-tie (measured: none within 32 tokens)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from llm.lora import AdapterError, read_adapter
from llm.options import GenerationOptions
from llm.prompts import conversation, encode
from personas.registry import PersonaRegistry
from tests.conftest import ROOT
from tests.reference import alone, tie_gap
from tests.test_personas import fresh_model

pytestmark = pytest.mark.model
SHIPPED = ROOT / "adapters" / "captain-quill"
BF16_LOGITS = 0.25  # max |ours - PEFT's| in bf16 (2 bf16 steps at the logits' size); float32: 1e-3


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
        out = peft_model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=32,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=tokenizer.eos_token_id,
        )
    expected = out[0, len(ids) :].tolist()
    ours_tokens = alone(
        quill_backend.runner,
        ids,
        frozenset(),
        GenerationOptions(temperature=0, max_new_tokens=32, repetition_penalty=1.0),
        adapter="captain-quill",
    )
    assert ours_tokens == expected


@pytest.fixture(scope="module")
def bf16_peft_model():
    from peft import PeftModel

    from llm.config import EngineConfig
    from llm.loading import load_model
    from tests.conftest import MODELS_DIR

    model = load_model(EngineConfig(llm_model="demo", llm_dtype="bfloat16", models_dir=MODELS_DIR)).model
    return PeftModel.from_pretrained(model, str(SHIPPED), is_trainable=False).eval()


def test_in_bf16_same_logits_and_greedy_tokens_as_peft(bf16_quill_backend, bf16_peft_model):
    backend, tokenizer = bf16_quill_backend, bf16_quill_backend.loaded.tokenizer
    peft_lora = next(p for name, p in bf16_peft_model.named_parameters() if "lora_A" in name)
    assert backend.runner.base.dtype == torch.bfloat16 and peft_lora.dtype == torch.float32  # both keep it float32
    ids = encode(tokenizer, conversation("", [{"role": "user", "content": "Tell me about the harbour at night."}]))
    with torch.inference_mode():
        theirs = bf16_peft_model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    ours = backend.runner.forward(torch.tensor([ids]), None, "captain-quill")[0]
    base = backend.runner.forward(torch.tensor([ids]), None, None)[0]
    assert (ours - theirs).abs().max() < BF16_LOGITS < (base - theirs).abs().max()
    with torch.inference_mode():
        out = bf16_peft_model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=32,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=tokenizer.eos_token_id,
        )
    expected = out[0, len(ids) :].tolist()
    options = GenerationOptions(temperature=0, max_new_tokens=32, repetition_penalty=1.0)
    got = alone(backend.runner, ids, frozenset(), options, adapter="captain-quill")
    assert tie_gap(backend, ids, expected, got, "captain-quill") < 0.5, (expected, got)


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


# --- a stranger's adapter files: every field checked, nothing run ------------------------------


def adapter_with_tensors(tmp_path, name: str, change):
    """A copy of the shipped adapter whose tensors went through `change(dict)` and were saved again."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / name
    shutil.copytree(SHIPPED, folder)
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


Q_A = "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"


def poison_nan(tensors):
    tensors[Q_A][0, 0] = float("nan")


def poison_inf(tensors):
    tensors[Q_A][1, 2] = float("-inf")


def one_dimensional(tensors):
    tensors[Q_A] = tensors[Q_A].flatten()


def integers(tensors):
    tensors[Q_A] = tensors[Q_A].to(torch.int32)


@pytest.mark.parametrize(
    "change, words",
    [
        (poison_nan, "holds NaN or infinite values"),
        (poison_inf, "holds NaN or infinite values"),
        (one_dimensional, "shapes do not match"),
        (integers, "not a float tensor"),
    ],
)
def test_bad_tensors_are_refused_at_load(tmp_path, quill_backend, change, words):
    folder = adapter_with_tensors(tmp_path, "bad", change)
    with pytest.raises(AdapterError, match=words):
        read_adapter(folder, quill_backend.runner.base)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"r": "8"}, "r: Input should be a valid integer"),
        ({"r": 0}, "r: Input should be greater than or equal to 1"),
        ({"r": -4}, "r: Input should be greater than or equal to 1"),
        ({"r": 16}, "lora_A is [8, 1536], expected [16, 1536] for r=16"),  # the config and the tensors disagree
        ({"lora_alpha": "32"}, "lora_alpha: Input should be a valid number"),
        ({"lora_alpha": 0}, "lora_alpha: Input should be greater than 0"),
        ({"use_rslora": "yes"}, "use_rslora: Input should be a valid boolean"),
        ({"rank_pattern": ["q_proj"]}, "rank_pattern: Input should be an object"),
        ({"rank_pattern": {"(a+)+$": 8}}, "is not a plain dotted module name"),  # a catastrophic regular expression
        ({"alpha_pattern": {".*": 16}}, "regular expressions are not accepted"),
        ({"alpha_pattern": {"q_proj": "16"}}, "alpha_pattern.q_proj: Input should be a valid number"),
        ({"rank_pattern": {"q_proj": 0}}, "rank_pattern.q_proj: Input should be greater than or equal to 1"),
        ({"peft_type": "PREFIX_TUNING"}, "adapter type 'PREFIX_TUNING' is not LoRA"),
        ({"peft_type": ["LORA"]}, "peft_type: Input should be a valid string"),
        ({"use_dora": "false"}, "use_dora: Input should be a valid boolean"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"arrow_config": {"top_k": 2}}, "Arrow routing"),
    ],
)
def test_malformed_adapter_configs_are_refused_with_the_field(tmp_path, quill_backend, changes, words):
    with pytest.raises(AdapterError) as caught:
        read_adapter(adapter_with(tmp_path, "bad", **changes), quill_backend.runner.base)
    assert words in str(caught.value)


def test_configs_that_are_not_objects_or_too_deep_or_too_big(tmp_path, quill_backend):
    model = quill_backend.runner.base
    cases = {"list": "[1, 2, 3]", "deep": "[" * 100_000 + "]" * 100_000, "big": " " * (2 << 20) + "{}", "text": "r = 8"}
    for name, content in cases.items():
        folder = tmp_path / name
        shutil.copytree(SHIPPED, folder)
        (folder / "adapter_config.json").write_text(content)
    with pytest.raises(AdapterError, match="Input should be an object"):
        read_adapter(tmp_path / "list", model)
    with pytest.raises(AdapterError, match="recursion limit exceeded"):
        read_adapter(tmp_path / "deep", model)
    with pytest.raises(AdapterError, match="larger than 1 MB"):
        read_adapter(tmp_path / "big", model)
    with pytest.raises(AdapterError, match="malformed"):
        read_adapter(tmp_path / "text", model)


def test_a_catastrophic_pattern_key_is_refused_at_once_and_plain_keys_match_like_peft(tmp_path, quill_backend):
    import re
    import time

    model = quill_backend.runner.base
    evil = "(a|aa)+$"  # exponential under `re` against a long run of a's
    started = time.perf_counter()
    with pytest.raises(AdapterError, match="not a plain dotted module name"):
        read_adapter(adapter_with(tmp_path, "evil", alpha_pattern={evil: 16}), model)
    assert time.perf_counter() - started < 5
    full = read_adapter(
        adapter_with(tmp_path, "full", alpha_pattern={"model.layers.3.self_attn.q_proj": 16, "mlp.down_proj": 64}),
        model,
    )
    for path, (_, _, scale) in full.items():
        peft_alpha = next(
            (
                alpha
                for key, alpha in {"model.layers.3.self_attn.q_proj": 16, "mlp.down_proj": 64}.items()
                if re.match(rf"(.*\.)?({key})$", path)
            ),
            32,
        )  # PEFT's own rule, on the same plain keys
        assert scale == peft_alpha / 8, path


def test_a_nan_adapter_on_disk_is_listed_unavailable_and_the_others_work(tmp_path, quill_backend):
    adapter_with_tensors(tmp_path, "nan-quill", poison_nan)
    shutil.copytree(SHIPPED, tmp_path / "fine")
    registry = PersonaRegistry(quill_backend, tmp_path, tmp_path / "none.json")
    problems = {p.name: p.problem for p in registry.personas()}
    assert "NaN or infinite" in problems["nan-quill"] and "retrain" in problems["nan-quill"]
    assert problems["fine"] is None
    assert "nan-quill" not in quill_backend.runner.adapters
