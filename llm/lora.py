"""LoRA personas applied per row, so one batch can mix them on the one shared base model.

Each Linear an adapter targets is wrapped once in `MultiLoraLinear`; adapters are added to it under an
internal key (one per loaded version of an adapter) and never change afterwards: a retrained adapter gets
a new key, and the old one is removed once no answer in flight uses it (`llm.runner`). Which adapter each
row of a forward pass uses is set on a `Routing` by `ModelRunner`, under its lock, for that one pass. A row
without an adapter costs nothing; rows with one cost two thin matmuls per layer (`x @ A.T @ B.T * scale`,
as PEFT computes it), per adapter in the batch. On a bfloat16 or float16 base the adapter's weights stay float32
and the delta is computed in float32 and added before rounding to the base's dtype, as PEFT does
(`autocast_adapter_dtype`): a thin matmul costs the same either way, and a half-precision delta would round away
much of a small adapter's effect.

PEFT is still what trains and saves adapters (`personas.finetune`); at inference its per-call hooks cost
more than the whole forward pass of a small model, and its weights are read here directly instead.
Plain LoRA as PEFT saves it is supported (r, lora_alpha, use_rslora, rank/alpha patterns); variants
that change the computation (DoRA, LoRA biases, extra trained modules) are refused with the reason.

An adapter folder is a stranger's data: `adapter_config.json` is checked against `AdapterConfig` (types
and ranges) and every tensor's name, rank, shape, dtype and values before anything is installed. No
field is compiled as a regular expression: PEFT's pattern keys are matched as plain dotted names.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn
from torch.nn import functional as F

from core.errors import N_, StudioError, Text, validation_message

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
MAX_CONFIG_BYTES = 1 << 20  # PEFT writes about 2 KB; anything this big is not a config
MAX_RANK = 4096
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}  # safetensors' names; integer or 8-bit tensors are not LoRA weights
HALF = (torch.float16, torch.bfloat16)
UNSUPPORTED = {  # adapter_config.json keys whose non-empty value changes the computation
    "use_dora": "DoRA",
    "lora_bias": "LoRA biases",
    "modules_to_save": "extra trained modules (modules_to_save)",
    "layer_replication": "layer replication",
    "fan_in_fan_out": "fan_in_fan_out layers",
    "trainable_token_indices": "trained token embeddings",
    "alora_invocation_tokens": "activated LoRA",
    "target_parameters": "target_parameters",
    "use_qalora": "QA-LoRA",
    "use_bdlora": "block-diagonal LoRA",
    "arrow_config": "Arrow routing",
    "kasa_config": "KaSA",
    "velora_config": "VeLoRA",
    "monteclora_config": "MonteCLoRA",
}


class AdapterError(StudioError):
    """An adapter that cannot be applied; the message says why."""


def module_key(key: str) -> str:
    """A PEFT rank/alpha pattern key, accepted only as a plain dotted module name (`q_proj`,
    `model.layers.0.self_attn.q_proj`). PEFT compiles these keys as regular expressions; here they are compared
    as names, so a key that is a pattern (or a slow one) is refused instead of run."""
    parts = key.split(".")
    if not 0 < len(key) <= 200 or not all(p.isascii() and p.replace("_", "").isalnum() for p in parts):
        raise ValueError(
            Text(
                N_(
                    "pattern key {key!r} is not a plain dotted module name like 'q_proj' (regular "
                    "expressions are not accepted)"
                ),
                key=key[:60],
            )
        )
    return key


ModuleKey = Annotated[str, AfterValidator(module_key)]
Rank = Annotated[int, Field(ge=1, le=MAX_RANK)]
Alpha = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]


class AdapterConfig(BaseModel):
    """The fields of PEFT's `adapter_config.json` that decide what is computed, by type and range.

    Strict: a rank written as a string or a flag as a number is refused, not guessed at. PEFT writes many more
    keys (dropout, init schemes, versions) that do not matter at inference; they are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")

    peft_type: str = "LORA"
    r: Rank = 8
    lora_alpha: Alpha = 8.0
    use_rslora: bool = False
    rank_pattern: dict[ModuleKey, Rank] = {}
    alpha_pattern: dict[ModuleKey, Alpha] = {}
    bias: Literal["none", "all", "lora_only"] = "none"
    # Variants refused below when set; typed loosely, as any non-empty value means "used".
    use_dora: bool | None = None
    lora_bias: bool | None = None
    fan_in_fan_out: bool | None = None
    modules_to_save: list[str] | None = None
    layer_replication: list[Any] | None = None
    trainable_token_indices: list[Any] | dict[str, Any] | None = None
    alora_invocation_tokens: list[Any] | None = None
    target_parameters: list[str] | None = None
    use_qalora: bool | None = None
    use_bdlora: dict[str, Any] | None = None
    arrow_config: dict[str, Any] | None = None
    kasa_config: dict[str, Any] | None = None
    velora_config: dict[str, Any] | None = None
    monteclora_config: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _plain_lora(self) -> AdapterConfig:
        if self.peft_type != "LORA":
            raise ValueError(Text(N_("adapter type {peft_type!r} is not LoRA"), peft_type=self.peft_type[:40]))
        for key, what in UNSUPPORTED.items():
            if getattr(self, key):
                raise ValueError(
                    Text(N_("it uses {what}, which this app does not apply; retrain with plain LoRA"), what=what)
                )
        if self.bias != "none":
            raise ValueError(
                Text(N_("it trains biases (bias != 'none'), which this app does not apply; retrain with bias='none'"))
            )
        return self

    def rank_for(self, path: str) -> int:
        return pattern_value(self.rank_pattern, path, self.r)

    def scale_for(self, path: str) -> float:
        """PEFT's scaling: alpha / r, or alpha / sqrt(r) with rsLoRA (r and alpha after the patterns)."""
        rank, alpha = self.rank_for(path), pattern_value(self.alpha_pattern, path, self.lora_alpha)
        return alpha / math.sqrt(rank) if self.use_rslora else alpha / rank


def pattern_value(patterns: dict, path: str, default):
    """PEFT's per-module override: the first key that is the module path or a dotted ending of it.
    (PEFT: `re.match(rf"(.*\\.)?({key})$", path)`; for the plain names `module_key` accepts, the same.)"""
    for key, value in patterns.items():
        if path == key or path.endswith("." + key):
            return value
    return default


def read_config(folder: Path) -> AdapterConfig:
    """`adapter_config.json`, checked. Raises AdapterError saying what is wrong."""
    path = folder / CONFIG
    if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
        raise AdapterError(N_("{file} is not a regular file"), file=CONFIG)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise AdapterError(N_("{file} is missing"), file=CONFIG) from None
    except OSError as exc:
        raise AdapterError(N_("{file} cannot be read ({kind})"), file=CONFIG, kind=type(exc).__name__) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise AdapterError(
            N_("{file} is larger than {limit} MB; it is not a PEFT config"),
            file=CONFIG,
            limit=MAX_CONFIG_BYTES >> 20,
        )
    try:
        return AdapterConfig.model_validate_json(data)
    except ValidationError as exc:
        raise AdapterError(
            N_("{file} is malformed ({problem})"),
            file=CONFIG,
            problem=validation_message(exc),
        ) from None


def check_files(folder: Path) -> AdapterConfig:
    """The checks that need no model: the weights file is there (never a pickle `.bin`), the config is a plain
    LoRA config, and the weights' header lists tensors. Raises AdapterError saying what is wrong; `read_adapter`
    then checks the tensors against the loaded model."""
    weights = folder / WEIGHTS
    if not weights.is_file():
        if any(folder.glob("*.bin")):
            raise AdapterError(
                N_("only a pickle .bin adapter was found; loading it could run code. Convert it to safetensors")
            )
        raise AdapterError(N_("{file} is missing"), file=WEIGHTS)
    config = read_config(folder)
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            if not list(f.keys()):
                raise AdapterError(N_("{file} holds no tensors"), file=WEIGHTS)
    except AdapterError:
        raise
    except Exception as exc:  # safetensors raises its own SafetensorError for corrupt headers
        raise AdapterError(N_("{file} is corrupt ({kind})"), file=WEIGHTS, kind=type(exc).__name__) from None
    return config


class Routing:
    """Which rows of the current forward pass use which adapter. Set only under the runner's lock."""

    def __init__(self):
        self.groups: list[tuple[str, torch.Tensor | None]] = []  # (adapter key, row mask (B, 1, 1); None = every row)

    def route(self, names: list[str | None], device) -> None:
        used = sorted({name for name in names if name})
        if not used:
            self.groups = []
        elif len(used) == 1 and all(names):
            self.groups = [(used[0], None)]
        else:  # a mask per row: the thin LoRA matmuls for every row are cheaper than indexing rows out
            self.groups = [
                (name, torch.tensor([n == name for n in names], device=device).view(-1, 1, 1)) for name in used
            ]

    def clear(self) -> None:
        self.groups = []


class MultiLoraLinear(nn.Module):
    """A Linear plus any number of LoRA adapters by key; `routing` says which applies to which row."""

    def __init__(self, base: nn.Linear, routing: Routing):
        super().__init__()
        self.base = base
        self.routing = routing
        self.in_features, self.out_features = base.in_features, base.out_features
        self.loras: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def add(self, key: str, a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
        weight = self.base.weight
        dtype = lora_dtype(weight.dtype)
        self.loras[key] = (a.to(weight.device, dtype), b.to(weight.device, dtype), scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        groups = [(self.loras[key], rows) for key, rows in self.routing.groups if key in self.loras]
        if not groups:
            return y
        dtype = groups[0][0][0].dtype  # every adapter of a layer has the same dtype (`lora_dtype`)
        x, summed = x.to(dtype), y.to(dtype)
        for (a, b, scale), rows in groups:
            delta = F.linear(F.linear(x, a), b) * scale
            # `where`, not a 0/1 multiply: 0 * NaN is NaN, and one adapter's NaN must not reach the other rows.
            summed = summed + (delta if rows is None else torch.where(rows, delta, 0.0))
        return summed.to(y.dtype)


def lora_dtype(base: torch.dtype) -> torch.dtype:
    """The dtype adapter weights are kept and applied in: float32 on a half-precision base (as PEFT does)."""
    return torch.float32 if base in HALF else base


def tensor_target(key: str) -> tuple[str, str] | None:
    """`base_model.model.<module path>.lora_A[.<adapter name>].weight` -> (module path, "A"); None otherwise.
    Plain string handling: tensor names come from the file."""
    parts = key.split(".")
    if len(key) > 500 or parts[-1] != "weight":
        return None
    for at in (-2, -3):
        if len(parts) > -at and parts[at] in ("lora_A", "lora_B"):
            return ".".join(parts[:at]).removeprefix("base_model.model."), parts[at][-1]
    return None


def read_adapter(folder: Path, model) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """{module path: (A, B, scale)} for every layer the adapter targets, on the model's device, in `lora_dtype`.

    Every check runs before any tensor is used: names, targets, ranks against the config, shapes, dtypes and
    finite values (in the model's dtype too: a large float32 weight can become infinite in float16). Raises
    AdapterError."""
    from safetensors import safe_open

    config = read_config(folder)
    modules = dict(model.named_modules())
    weight = next(model.parameters())
    found: dict[str, dict[str, torch.Tensor]] = {}
    try:
        with safe_open(str(folder / WEIGHTS), framework="pt") as f:
            for key in f.keys():
                target = tensor_target(key)
                if target is None:
                    raise AdapterError(N_("it holds a tensor this app does not apply ({key})"), key=key[:80])
                path, which = target
                layer = modules.get(path)
                if layer is None:
                    raise AdapterError(N_("it targets a layer the loaded model does not have ({path})"), path=path[:80])
                if not isinstance(layer, (nn.Linear, MultiLoraLinear)):
                    raise AdapterError(N_("it targets {path}, which is not a Linear layer"), path=path[:80])
                rank = config.rank_for(path)
                expected = [rank, layer.in_features] if which == "A" else [layer.out_features, rank]
                piece = f.get_slice(key)
                if piece.get_dtype() not in FLOAT_DTYPES:
                    raise AdapterError(
                        N_("lora_{which} of {path} is {dtype}, not a float tensor"),
                        which=which,
                        path=path[:80],
                        dtype=piece.get_dtype(),
                    )
                if list(piece.get_shape()) != expected:  # checked from the header, before the data is read
                    raise AdapterError(
                        N_(
                            "shapes do not match the loaded model ({path}: lora_{which} is {shape}, expected "
                            "{expected} for r={rank})"
                        ),
                        path=path[:80],
                        which=which,
                        shape=list(piece.get_shape()),
                        expected=expected,
                        rank=rank,
                    )
                tensor = f.get_tensor(key).to(weight.device, lora_dtype(weight.dtype))
                if not (torch.isfinite(tensor).all() and torch.isfinite(tensor.to(weight.dtype)).all()):
                    raise AdapterError(
                        N_("lora_{which} of {path} holds NaN or infinite values; retrain the adapter"),
                        which=which,
                        path=path[:80],
                    )
                found.setdefault(path, {})[which] = tensor
    except AdapterError:
        raise
    except Exception as exc:  # safetensors raises its own error types for a corrupt or truncated file
        raise AdapterError(N_("{file} cannot be read ({kind})"), file=WEIGHTS, kind=type(exc).__name__) from None
    if not found:
        raise AdapterError(N_("{file} holds no LoRA weights"), file=WEIGHTS)
    for path, pair in found.items():
        if set(pair) != {"A", "B"}:
            raise AdapterError(N_("{path} has only lora_{which}"), path=path[:80], which="".join(pair))
    return {path: (pair["A"], pair["B"], config.scale_for(path)) for path, pair in found.items()}


def install(model, key: str, loras: dict, routing: Routing) -> None:
    """Add adapter `key` to the model, wrapping each targeted Linear the first time it is targeted."""
    for path, (a, b, scale) in loras.items():
        layer = model.get_submodule(path)
        if not isinstance(layer, MultiLoraLinear):
            parent_path, _, attr = path.rpartition(".")
            layer = MultiLoraLinear(layer, routing)
            setattr(model.get_submodule(parent_path) if parent_path else model, attr, layer)
        layer.add(key, a, b, scale)


def uninstall(model, key: str) -> None:
    """Remove adapter `key` from every layer (the wrappers stay: they cost nothing without adapters)."""
    for module in model.modules():
        if isinstance(module, MultiLoraLinear):
            module.loras.pop(key, None)
