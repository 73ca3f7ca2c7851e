"""The GPU script (`python -m bench --gpu-shape`) prepared without a GPU: its memory plan's arithmetic, and its CPU
twin (`--gpu-shape --tiny`) run end to end, so a typo, dtype or device bug in that path shows here first."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from bench.gpu_shape import GIB, LLAMA_31_8B_CONFIG, SHAPES, TINY_CONFIG, build, memory_plan
from tests.conftest import ROOT
from tests.test_bench import run_bench


def test_the_8b_plan_from_meta_tensors():
    plan = memory_plan(LLAMA_31_8B_CONFIG)
    assert plan.params == 8_030_261_248  # Llama-3.1-8B's 8.03 B
    assert plan.weight_bytes == 2 * plan.params and round(plan.weight_bytes / 1e9, 1) == 16.1
    assert plan.kv_bytes_per_token == 32 * 8 * 128 * 2 * 2 == 128 * 1024
    assert plan.kv_tokens(24 * GIB) == (24 * GIB - plan.weight_bytes) // (128 * 1024) == 74_075
    assert plan.kv_tokens(80 * GIB) == 532_827
    assert plan.kv_tokens(plan.weight_bytes // 2) == 0  # weights that do not fit leave no KV budget
    # r=8 on q,k,v,o (4096x4096, 4096x1024 twice, 4096x4096) and gate, up, down (4096x14336), 32 layers
    per_layer = 8 * (2 * (4096 + 4096) + 2 * (4096 + 1024) + 3 * (4096 + 14336))
    assert plan.lora_params == 32 * per_layer == 20_971_520
    assert plan.finetune["lora"] == 16 * plan.lora_params  # fp32 weights, grads and Adam's two moments
    assert plan.finetune["logits"] == 16 * 4 * 512 * 128256
    assert plan.finetune_peak < 24 * GIB  # the users' fine-tune (batch 4 x 512) fits a 24 GB card


def test_the_plan_allocates_nothing():
    model = build(LLAMA_31_8B_CONFIG, "meta")
    assert all(p.is_meta and p.dtype == torch.bfloat16 for p in model.parameters())


def test_the_tiny_twin_has_the_8b_architecture():
    big, tiny = (build(c, "meta").config for c in (LLAMA_31_8B_CONFIG, TINY_CONFIG))
    assert tiny.num_attention_heads // tiny.num_key_value_heads == big.num_attention_heads // big.num_key_value_heads
    assert tiny.head_dim == big.head_dim == 128
    assert tiny.rope_parameters == big.rope_parameters and tiny.rope_parameters["rope_type"] == "llama3"
    assert tiny.intermediate_size / tiny.hidden_size == big.intermediate_size / big.hidden_size
    assert tiny.tie_word_embeddings is big.tie_word_embeddings is False
    assert {name: s.device for name, s in SHAPES.items()} == {"8b": "cuda", "tiny": "cpu"}
    assert memory_plan(TINY_CONFIG).kv_bytes_per_token == 2 * 1 * 128 * 2 * 2


def test_a_lora_step_with_gradient_checkpointing_on_the_tiny_twin():
    """The lines `personas.finetune.train` runs on CUDA only (gradient checkpointing, input grads), here on CPU."""
    from peft import LoraConfig, get_peft_model

    from personas.finetune import TrainConfig

    torch.manual_seed(0)
    model = build(TINY_CONFIG, "cpu")
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
    train = TrainConfig()
    lora = LoraConfig(r=train.r, lora_alpha=train.alpha, target_modules=list(train.target_modules))
    model = get_peft_model(model, lora)
    model.train()
    ids = torch.randint(0, TINY_CONFIG["vocab_size"], (2, 32))
    model(input_ids=ids, labels=ids).loss.backward()
    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in name and p.dtype == torch.float32 for name, p in trained)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in trained)
    assert sum(p.numel() for _, p in trained) == memory_plan(TINY_CONFIG).lora_params


@pytest.mark.slow
def test_tiny_needs_gpu_shape():
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "--tiny goes with --gpu-shape" in out.stderr


@pytest.mark.slow
@pytest.mark.model
def test_the_gpu_script_runs_on_cpu_as_its_tiny_twin(tmp_path):
    text = run_bench(tmp_path, "--gpu-shape", "--tiny", "--turns", "2", "--new-tokens", "4", "--repeats", "1")
    plan = text.index("memory plan of the random 2-layer Llama-3.1 shape (bf16, --tiny), from its configuration")
    assert re.search(r"weights: [\d.]+ M parameters = [\d.]+ MB in bf16", text)
    assert "KV cache: 1 KiB a token = 2 layers x 1 KV heads x 128 head_dim x 2 (K and V) x 2 bytes" in text
    assert re.search(r'KV budget after the weights on a 24 GiB \("24 GB"\) card: [\d,]+ tokens', text)
    assert re.search(r'KV budget after the weights on a 80 GiB \("80 GB"\) card: [\d,]+ tokens', text)
    assert re.search(r"LoRA fine-tune step \(r=8 on q,k,v,o,gate,up,down: [\d.]+ M parameters; batch 4 x 512", text)
    assert re.search(r"peak [\d.]+ [GM]B = weights .* \+ logits [\d.]+ [GM]B; fits a 24 GiB card", text)
    # every scenario that --gpu-shape runs (4 and 8 sessions), and the three it says it does not
    headers = [
        "model: random 2-layer Llama-3.1 shape (bf16, --tiny) · device: CPU",
        "1. 2-turn conversation (~80-token user turns, 4 new tokens, greedy)",
        "2. 4 sessions at the same moment (personas: base, base, base, base)",
        "2. 8 sessions at the same moment (personas: base, base, base, base, base, base, base, base)",
        "3. persona switch: not measured with --gpu-shape",
        "4. team consult: not measured with --gpu-shape",
        "5. JSON-schema row: not measured with --gpu-shape",
        "6. a stored Responses turn",
        "7. n=4 answers to one prompt, 4 new tokens each",
        "8. the decode limit on this machine (cpu)",
        "9. compiled fixed-shape step (LLM_COMPILE=on) against eager, 4 new tokens, greedy",
        "memory, planned and measured (random 2-layer Llama-3.1 shape (bf16, --tiny) on cpu;",
    ]
    at = [text.find(header) for header in headers]
    assert all(i > plan for i in at) and at == sorted(at), dict(zip(headers, at))
    assert re.search(r"ours\s+: total [\d.]+ s · turn 2 TTFT / turn 1 TTFT", text)
    assert re.search(r"8 rows at most in one batched step", text)
    assert re.search(r"one decode step reads the weights: [\d.]+ MB \(torch.bfloat16\)", text)
    assert "after load: not measured on CPU · plan: weights" in text
    assert re.search(r"single stream: eager [\d.]+ tok/s · compiled [\d.]+ tok/s", text)
    assert re.search(r"8 sessions at once, aggregate: eager [\d.]+ tok/s · compiled [\d.]+ tok/s · transformers", text)
    assert "one 4-token decode: not measured on CPU · plan: weights + 1 KiB a token of KV cache" in text
    lora = re.search(r"one LoRA fine-tune step \(batch 4 x 512, loss ([\d.]+); ([\d.]+ M) LoRA parameters in "
                     r"torch.float32, plan ([\d.]+ M)\)", text)  # fmt: skip
    assert lora and 0 < float(lora[1]) < 20 and lora[2] == lora[3], text[-1500:]
