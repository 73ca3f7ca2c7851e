"""LoRA personas applied per row, so one batch can mix them on the one shared base model.

Each Linear an adapter targets is wrapped once in `MultiLoraLinear`; adapters are added to it by name
and never change afterwards. Which adapter each row of a forward pass uses is set on a `Routing` by
`ModelRunner`, under its lock, for that one pass. A row without an adapter costs nothing; rows with one
cost two thin matmuls per layer (`x @ A.T @ B.T * scale`, as PEFT computes it), per adapter in the batch.

PEFT is still what trains and saves adapters (`llm.finetune`); at inference its per-call hooks cost
more than the whole forward pass of a small model, and its weights are read here directly instead.
Plain LoRA as PEFT saves it is supported (r, lora_alpha, use_rslora, rank/alpha patterns); variants
that change the computation (DoRA, LoRA biases, extra trained modules) are refused with the reason.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

WEIGHTS = "adapter_model.safetensors"
UNSUPPORTED = {  # adapter_config.json keys whose non-empty value changes the computation
    "use_dora": "DoRA", "lora_bias": "LoRA biases", "modules_to_save": "extra trained modules (modules_to_save)",
    "layer_replication": "layer replication", "fan_in_fan_out": "fan_in_fan_out layers",
    "trainable_token_indices": "trained token embeddings", "alora_invocation_tokens": "activated LoRA",
    "target_parameters": "target_parameters",
}


class AdapterError(ValueError):
    """An adapter that cannot be applied; the message says why."""


class Routing:
    """Which rows of the current forward pass use which adapter. Set only under the runner's lock."""

    def __init__(self):
        self.groups: list[tuple[str, torch.Tensor | None]] = []  # (adapter, 0/1 per row; None = every row)

    def route(self, names: list[str | None], device, dtype) -> None:
        used = sorted({name for name in names if name})
        if not used:
            self.groups = []
        elif len(used) == 1 and all(names):
            self.groups = [(used[0], None)]
        else:  # a 0/1 weight per row: computing the thin LoRA matmuls for every row is cheaper than indexing
            self.groups = [(name, torch.tensor([float(n == name) for n in names], device=device, dtype=dtype).view(-1, 1, 1))
                           for name in used]

    def clear(self) -> None:
        self.groups = []


class MultiLoraLinear(nn.Module):
    """A Linear plus any number of named LoRA adapters; `routing` says which applies to which row."""

    def __init__(self, base: nn.Linear, routing: Routing):
        super().__init__()
        self.base = base
        self.routing = routing
        self.in_features, self.out_features = base.in_features, base.out_features
        self.loras: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def add(self, name: str, a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
        self.loras[name] = (a.to(self.base.weight), b.to(self.base.weight), scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        for name, rows in self.routing.groups:
            lora = self.loras.get(name)
            if lora is None:
                continue
            a, b, scale = lora
            if rows is None:
                y = y + F.linear(F.linear(x, a), b) * scale
            else:
                y = y + F.linear(F.linear(x, a), b) * scale * rows
        return y


def read_adapter(folder: Path, model) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """{module path: (A, B, scale)} for every layer the adapter targets. Raises AdapterError."""
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"adapter_config.json cannot be read ({type(exc).__name__})") from None
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"adapter type {config.get('peft_type')!r} is not LoRA")
    for key, what in UNSUPPORTED.items():
        if config.get(key):
            raise AdapterError(f"it uses {what}, which this app does not apply; retrain with plain LoRA")
    if config.get("bias", "none") != "none":
        raise AdapterError("it trains biases (bias != 'none'), which this app does not apply; retrain with bias='none'")
    try:
        tensors = load_file(str(folder / WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types for a corrupt file
        raise AdapterError(f"{WEIGHTS} cannot be read ({type(exc).__name__})") from None
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = re.match(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$", key)
        if not match:
            raise AdapterError(f"it holds a tensor this app does not apply ({key[:80]})")
        pairs.setdefault(match.group(1), {})[match.group(2)] = tensor
    if not pairs:
        raise AdapterError(f"{WEIGHTS} holds no LoRA weights")
    loras = {}
    for path, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise AdapterError(f"{path} has only lora_{''.join(pair)}")
        try:
            layer = model.get_submodule(path)
        except AttributeError:
            raise AdapterError(f"it targets a layer the loaded model does not have ({path})") from None
        if not isinstance(layer, (nn.Linear, MultiLoraLinear)):
            raise AdapterError(f"it targets {path}, which is not a Linear layer")
        a, b = pair["A"], pair["B"]
        if a.shape[1] != layer.in_features or b.shape[0] != layer.out_features or a.shape[0] != b.shape[1]:
            raise AdapterError(f"shapes do not match the loaded model ({path})")
        rank = a.shape[0]
        alpha = _pattern_value(config.get("alpha_pattern") or {}, path, config.get("lora_alpha", 8))
        loras[path] = (a, b, alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank)
    return loras


def _pattern_value(patterns: dict, path: str, default):
    """PEFT's per-module overrides: a key matches a module path's ending."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


def install(model, name: str, loras: dict, routing: Routing) -> None:
    """Add adapter `name` to the model, wrapping each targeted Linear the first time it is targeted."""
    for path, (a, b, scale) in loras.items():
        layer = model.get_submodule(path)
        if not isinstance(layer, MultiLoraLinear):
            parent_path, _, attr = path.rpartition(".")
            layer = MultiLoraLinear(layer, routing)
            setattr(model.get_submodule(parent_path) if parent_path else model, attr, layer)
        layer.add(name, a, b, scale)
