"""`python -m bench --gpu-shape`: a randomly initialised model with Llama-3.1-8B's exact configuration in bf16 on
CUDA, with its memory plan worked out beforehand on meta tensors and set beside what CUDA measures.

`--gpu-shape --tiny` is its twin on CPU: the same code and scenarios with a 2-layer model of the same
architecture (the 8B's GQA ratio, head_dim, llama3 rope scaling, bf16), so a typo, dtype or device bug in the GPU
path shows on a machine without one. The two differ only in their `Shape` (a configuration and a device).
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from pathlib import Path

import torch

from llm.kvcache import kv_bytes_per_token
from llm.loading import LoadedModel
from llm.options import GenerationOptions
from llm.prompts import conversation

# Llama-3.1-8B-Instruct's config.json.
LLAMA_31_8B_CONFIG = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=131072,
    rope_theta=500000.0,
    rms_norm_eps=1e-5,
    rope_scaling={
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009],
    tie_word_embeddings=False,
)
# The same architecture at a size 2 CPU cores run in a minute: 2 layers, 4 query heads sharing 1 KV head (the 8B's
# 32:8), head_dim 128 as in the 8B (so the hidden size, 64, is narrower than the heads: q_proj is 64 -> 512),
# the MLP 3.5x the hidden size as in the 8B, and the demo tokenizer's vocabulary and special ids (SmolLM2's),
# which the bench's prompts are encoded with.
TINY_CONFIG = {
    **LLAMA_31_8B_CONFIG,
    "vocab_size": 49152,
    "hidden_size": 64,
    "intermediate_size": 224,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 128,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
GIB = 2**30
CARDS_GIB = (24, 80)  # "24 GB" (RTX 4090, L4 class) and "80 GB" (A100/H100) cards hold that many GiB
FINETUNE_CARD_GIB = 24


@dataclasses.dataclass(frozen=True)
class Shape:
    """What --gpu-shape builds. The GPU run and its CPU twin differ in this and nothing else."""

    name: str
    config: dict
    device: str


SHAPES = {
    "8b": Shape("random Llama-3.1-8B shape (bf16)", LLAMA_31_8B_CONFIG, "cuda"),
    "tiny": Shape("random 2-layer Llama-3.1 shape (bf16, --tiny)", TINY_CONFIG, "cpu"),
}


def build(config: dict, device: str):
    """A LlamaForCausalLM with random bf16 weights on `device` ("meta": shapes only, no memory)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            return LlamaForCausalLM(LlamaConfig(**config, dtype="bfloat16")).eval()
    finally:
        torch.set_default_dtype(previous)


# --- the plan -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Bytes the shape needs, from its configuration alone."""

    params: int
    weight_bytes: int  # bf16: 2 bytes a parameter
    kv_bytes_per_token: int  # layers x KV heads x head_dim x 2 (K and V) x 2 bytes
    lora_params: int
    finetune: dict[str, int]  # the parts of a LoRA fine-tune step's peak, bytes
    batch: int
    seq_len: int
    r: int

    def kv_tokens(self, free_bytes: int) -> int:
        """Tokens of KV cache that fit in `free_bytes` once the weights are in."""
        return max(0, free_bytes - self.weight_bytes) // self.kv_bytes_per_token

    @property
    def finetune_peak(self) -> int:
        return sum(self.finetune.values())


def lora_param_count(model, targets, r: int) -> int:
    """LoRA's A (r x in) and B (out x r) for every linear named in `targets`."""
    return sum(
        r * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
    )


def memory_plan(config: dict) -> MemoryPlan:
    """The plan for `config`, counted on a meta-device model (shapes only, nothing allocated)."""
    from personas.finetune import TrainConfig

    model = build(config, "meta")
    train = TrainConfig()  # what `python -m personas.finetune` uses: r=8 on the 7 projections, batch 4 x 512
    params = sum(p.numel() for p in model.parameters())
    lora = lora_param_count(model, train.target_modules, train.r)
    c = model.config
    h, i, v, layers = c.hidden_size, c.intermediate_size, c.vocab_size, c.num_hidden_layers
    q_dim, kv_dim = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    tokens = train.batch_size * train.max_length
    # A LoRA step's peak, with gradient checkpointing (train() turns it on on CUDA), in bytes:
    #   weights       2 P                                   bf16, frozen: no grads, no optimizer state
    #   lora          16 P_lora                             fp32 weights 4 + grads 4 + Adam's m and v 8
    #   checkpoints   2 B T L h                             each layer's input, kept for the backward pass
    #   layer         2 B T (8h + 2 q_dim + 4 kv_dim + 4i)  one layer recomputed in the backward pass: norms,
    #                                                       residuals, q/k/v before and after rope, attention out,
    #                                                       o_proj; gate, up, SiLU and their product
    #   logits        16 B T V                              bf16 2 + fp32 copy for the loss 4 + log-softmax 4
    #                                                       + its grad 4 + the bf16 grad 2
    # CUDA's context, cuBLAS workspaces and the allocator's slack come on top (measured, not planned).
    finetune = {
        "weights": 2 * params,
        "lora": 16 * lora,
        "checkpoints": 2 * tokens * layers * h,
        "layer": 2 * tokens * (8 * h + 2 * q_dim + 4 * kv_dim + 4 * i),
        "logits": 16 * tokens * v,
    }
    return MemoryPlan(
        params=params,
        weight_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        kv_bytes_per_token=kv_bytes_per_token(c, torch.bfloat16),
        lora_params=lora,
        finetune=finetune,
        batch=train.batch_size,
        seq_len=train.max_length,
        r=train.r,
    )


def free_bytes(device: str) -> dict[str, int]:
    """The memory the KV budget is worked out for: the card's free memory, or (CPU) typical cards."""
    if device == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return {f"this {torch.cuda.get_device_name()} ({total / GIB:.0f} GiB, {free / GIB:.1f} free)": free}
    return {f'a {gib} GiB ("{gib} GB") card': gib * GIB for gib in CARDS_GIB}


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.2f} MB"


def report_plan(shape: Shape, plan: MemoryPlan) -> None:
    c = shape.config
    head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    print(f"memory plan of the {shape.name}, from its configuration on meta tensors (nothing allocated)")
    print(f"   weights: {_count(plan.params)} parameters = {_size(plan.weight_bytes)} in bf16")
    print(
        f"   KV cache: {plan.kv_bytes_per_token / 1024:g} KiB a token = {c['num_hidden_layers']} layers x "
        f"{c['num_key_value_heads']} KV heads x {head_dim} head_dim x 2 (K and V) x 2 bytes"
    )
    for card, free in free_bytes(shape.device).items():
        print(f"   KV budget after the weights on {card}: {plan.kv_tokens(free):,} tokens")
    parts = " + ".join(f"{name} {_size(size)}" for name, size in plan.finetune.items())
    card = FINETUNE_CARD_GIB * GIB
    fits = "fits" if plan.finetune_peak <= card else "does NOT fit"
    print(
        f"   LoRA fine-tune step (r={plan.r} on q,k,v,o,gate,up,down: {_count(plan.lora_params)} parameters; "
        f"batch {plan.batch} x {plan.seq_len} tokens, gradient checkpointing):\n      peak {_size(plan.finetune_peak)} "
        f"= {parts}; {fits} a {FINETUNE_CARD_GIB} GiB card ({_size(card)})\n"
    )


# --- the run ------------------------------------------------------------------------------------


def _peak(device: str) -> int | None:
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def _reset_peak(device: str) -> int | None:
    """Start a new peak; what is allocated now (None off CUDA)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


@dataclasses.dataclass
class GpuShapeRun:
    """The shape's model, its plan, and what was measured while the bench ran it."""

    shape: Shape
    plan: MemoryPlan
    lm: LoadedModel
    measured: dict[str, int | None]

    @classmethod
    def start(cls, tokenizer_source: LoadedModel, shape: Shape) -> GpuShapeRun:
        """Print the plan, then build the model on the shape's device (the demo model lends its tokenizer)."""
        plan = memory_plan(shape.config)
        report_plan(shape, plan)  # without the GPU too: the plan needs none
        if shape.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--gpu-shape needs a CUDA GPU; add --tiny to run the same path on CPU.")
        _reset_peak(shape.device)
        model = build(shape.config, shape.device)  # random weights: speed does not depend on their values
        lm = dataclasses.replace(
            tokenizer_source, model=model, name=shape.name, device=shape.device, stop_ids=frozenset(), notes=[]
        )
        return cls(shape, plan, lm, {"load": _peak(shape.device)})

    def finish(self, backend, new_tokens: int) -> None:
        """One decode and one LoRA fine-tune step, each with its peak memory, beside the plan. Last: the
        fine-tune step injects LoRA layers into the model."""
        device = self.lm.device
        self.measured["before decode"] = _reset_peak(device)  # the weights and the idle caches
        options = GenerationOptions(temperature=0, max_new_tokens=new_tokens, repetition_penalty=1.0)
        stream = backend.stream(conversation("", [{"role": "user", "content": "Hello!"}]), options)
        stream.text()
        self.measured["decode"] = _peak(device)
        _reset_peak(device)
        loss = self.finetune_step()
        self.measured["finetune"] = _peak(device)
        lora = [p for name, p in self.lm.model.named_parameters() if "lora_" in name]
        self.report(new_tokens, loss, sum(p.numel() for p in lora), lora[0].dtype)

    def finetune_step(self) -> float:
        """One step of the users' fine-tune (`personas.finetune.train`) on random tokens, batch x seq_len."""
        from personas.finetune import TrainConfig, train

        config = TrainConfig(max_steps=1, epochs=1.0, batch_size=self.plan.batch, max_length=self.plan.seq_len)
        picks = random.Random(0)
        vocab = min(len(self.lm.tokenizer), self.shape.config["vocab_size"])
        examples = []
        for _ in range(config.batch_size):
            ids = [picks.randrange(vocab) for _ in range(config.max_length)]
            examples.append((ids, ids))
        with tempfile.TemporaryDirectory() as folder:
            losses = train(examples, self.lm, Path(folder) / "adapter", config, log=lambda message: None)
        return losses[0]

    def report(self, new_tokens: int, loss: float, lora_params: int, lora_dtype) -> None:
        plan, m = self.plan, self.measured

        def gb(key: str) -> str:
            return _size(m[key]) if m[key] is not None else "not measured on CPU"

        print(f"memory, planned and measured ({self.shape.name} on {self.lm.device}; torch.cuda.max_memory_allocated)")
        print(f"   after load: {gb('load')} · plan: weights {_size(plan.weight_bytes)}")
        decode = (
            f"peak {gb('decode')}, from {gb('before decode')} held before it (weights, idle KV caches)"
            if m["decode"] is not None
            else gb("decode")
        )
        print(
            f"   one {new_tokens}-token decode: {decode} · plan: weights + {plan.kv_bytes_per_token / 1024:g} KiB a "
            "token of KV cache"
        )
        print(
            f"   one LoRA fine-tune step (batch {plan.batch} x {plan.seq_len}, loss {loss:.2f}; "
            f"{_count(lora_params)} LoRA parameters in {lora_dtype}, plan {_count(plan.lora_params)}): "
            f"peak {gb('finetune')} · plan {_size(plan.finetune_peak)}\n"
        )
