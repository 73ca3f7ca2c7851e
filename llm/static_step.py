"""A decode step of fixed shapes, so `torch.compile` takes it whole (`fullgraph=True`) and CUDA can replay it.

The eager step (`llm.runner.ModelRunner.forward`) goes through HF's forward, whose shapes change every token: the
cache grows by one position and the batch by a row at a time. Here a group's cache is preallocated in buckets
(`StaticBatchCache`: rows 1, 2, 4 or 8, positions a power of two from 256), every input is a tensor of the
bucket's shape (the token per row, its position, the attention mask, the slot to write, each row's adapter as an
index), and the step is the Llama layer stack written out over the loaded model's own weights (nothing is copied
or changed). Rows join and leave within a bucket without a new graph; a new bucket is one more compile, once.

LoRA rows are routed by index: each targeted projection's adapters are stacked (`LoraTable`, slot 0 all zeros for
rows without one) and every row gathers its own, so personas mix in one graph. Sampling stays per request (its
processors keep state); the step returns the float32 logits of the rows in use, read once.

Only Llama-architecture models take this path (`supports`); others decode eagerly.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from llm.batch_cache import BatchCache, GrowingLayer

ROW_BUCKETS = (1, 2, 4, 8)
FIRST_LENGTH = 256  # position buckets: 256, 512, 1024, ...
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RECOMPILE_LIMIT = 64  # graphs one process may build (buckets of rows x lengths x adapter tables)


def supports(model) -> bool:
    """Whether the model is one this step is written for (the demo model and Llama-3.1 both are)."""
    config = model.config
    return (
        getattr(config, "model_type", None) == "llama"
        and not getattr(config, "mlp_bias", False)
        and getattr(config, "hidden_act", "silu") == "silu"
    )


# (device type, dtype) where the compiled step was measured faster than the eager one (`python -m bench --only 9`);
# LLM_COMPILE=auto compiles only there. Not ("cpu", float32): 1.2-1.5x at 1-4 rows but level at 8 (once 4% slower),
# and each bucket compiles at its first answer, 7-10 s with inductor's cache warm, minutes cold (README).
MEASURED_FASTER: frozenset[tuple[str, torch.dtype]] = frozenset()


def step_for(setting: str, model) -> str:
    """The runner's step for LLM_COMPILE's value: "compiled" or "eager" (`llm.runner.ModelRunner`)."""
    if setting == "off" or not supports(model):
        return "eager"
    if setting == "on" or (model.device.type, model.dtype) in MEASURED_FASTER:
        return "compiled"
    return "eager"


def rows_bucket(rows: int) -> int:
    return next((size for size in ROW_BUCKETS if size >= rows), rows)


def length_bucket(length: int) -> int:
    size = FIRST_LENGTH
    while size < length:
        size *= 2
    return size


def _linear(module):
    """The plain Linear under a LoRA wrapper (`llm.lora.MultiLoraLinear`) or a CPU `SkinnyLinear`."""
    return getattr(module, "base", module)


class LoraTable:
    """The adapters installed on the model, stacked per projection: A (slots, r, in), B (slots, out, r) with the
    scale folded in; slot 0 is zeros. Rebuilt when an adapter is installed or dropped (shapes change only when the
    number of slots or the largest rank grows, so most rebuilds need no new graph)."""

    def __init__(self, model):
        from llm.lora import MultiLoraLinear, lora_dtype

        wrapped = {name: m for name, m in model.named_modules() if isinstance(m, MultiLoraLinear)}
        keys = sorted({key for m in wrapped.values() for key in m.loras})
        self.slot = {key: index for index, key in enumerate(keys, 1)}
        slots = 1 + len(keys)
        slots = rows_bucket(slots) if slots <= ROW_BUCKETS[-1] else slots
        rank = max((a.shape[0] for m in wrapped.values() for a, _, _ in m.loras.values()), default=0)
        rank = -(-rank // 16) * 16
        self.layers: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []
        for index in range(len(model.model.layers)):
            table = {}
            for name in PROJECTIONS:
                module = wrapped.get(_path(index, name))
                if module is None or not module.loras:
                    continue
                base = module.base.weight
                dtype = lora_dtype(base.dtype)
                a = torch.zeros(slots, rank, module.in_features, dtype=dtype, device=base.device)
                b = torch.zeros(slots, module.out_features, rank, dtype=dtype, device=base.device)
                for key, (la, lb, scale) in module.loras.items():
                    a[self.slot[key], : la.shape[0]] = la
                    b[self.slot[key], :, : lb.shape[1]] = lb * scale
                table[name] = (a, b)
            self.layers.append(table)

    def rows(self, keys: list[str | None], size: int, device) -> torch.Tensor:
        slots = [self.slot.get(key, 0) if key else 0 for key in keys] + [0] * (size - len(keys))
        return torch.tensor(slots, dtype=torch.long, device=device)


def _path(layer: int, name: str) -> str:
    part = "self_attn" if name in PROJECTIONS[:4] else "mlp"
    return f"model.layers.{layer}.{part}.{name}"


def _project(module, x: torch.Tensor, lora, slots: torch.Tensor) -> torch.Tensor:
    """x (B, 1, in) through the projection, plus each row's own adapter (as `MultiLoraLinear` computes it)."""
    linear = _linear(module)
    y = F.linear(x, linear.weight, linear.bias)
    if lora is None:
        return y
    a, b = lora[0].index_select(0, slots), lora[1].index_select(0, slots)
    low = x.to(a.dtype)
    delta = torch.bmm(torch.bmm(low, a.transpose(1, 2)), b.transpose(1, 2))
    return (y.to(a.dtype) + delta).to(y.dtype)


def decode_step(model, keys, values, tokens, write_at, positions, mask, slots, loras) -> torch.Tensor:
    """One token per row: tokens (B,), write_at (1,) the cache position written, positions (B, 1), mask
    (B, 1, 1, L) booleans, slots (B,) each row's adapter slot. Writes each layer's keys and values into the
    buffers (B, kv heads, L, head dim) and returns the last hidden states' logits (B, vocab) in float32."""
    body, config = model.model, model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    x = body.embed_tokens(tokens[:, None])
    rows = x.shape[0]
    cos, sin = body.rotary_emb(x, positions)
    for index, layer in enumerate(body.layers):
        table, attn, mlp = loras[index], layer.self_attn, layer.mlp
        h = layer.input_layernorm(x)
        q = _project(attn.q_proj, h, table.get("q_proj"), slots).view(rows, 1, heads, head_dim).transpose(1, 2)
        k = _project(attn.k_proj, h, table.get("k_proj"), slots).view(rows, 1, kv_heads, head_dim).transpose(1, 2)
        v = _project(attn.v_proj, h, table.get("v_proj"), slots).view(rows, 1, kv_heads, head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        keys[index].index_copy_(2, write_at, k)
        values[index].index_copy_(2, write_at, v)
        out = F.scaled_dot_product_attention(
            q, keys[index], values[index], attn_mask=mask, scale=head_dim**-0.5, enable_gqa=heads != kv_heads
        )
        x = x + _project(
            attn.o_proj, out.transpose(1, 2).reshape(rows, 1, heads * head_dim), table.get("o_proj"), slots
        )
        h = layer.post_attention_layernorm(x)
        gate = _project(mlp.gate_proj, h, table.get("gate_proj"), slots)
        up = _project(mlp.up_proj, h, table.get("up_proj"), slots)
        x = x + _project(mlp.down_proj, F.silu(gate) * up, table.get("down_proj"), slots)
    x = body.norm(x)
    return F.linear(x[:, 0], _linear(model.lm_head).weight).float()


def compiled(device_type: str):
    """`decode_step` compiled whole: inductor on CPU, CUDA graphs on a GPU."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, RECOMPILE_LIMIT)
    mode = "reduce-overhead" if device_type == "cuda" else None
    return torch.compile(decode_step, fullgraph=True, dynamic=False, mode=mode)


class StaticBatchCache(BatchCache):
    """`BatchCache`'s left-padded rows in buffers of a bucket's shape: rows (1, 2, 4, 8) by positions (256, 512,
    ...). Joining and leaving move rows within the buffers; a bucket is outgrown only by more rows or a longer
    row, and then the rows move to the next one."""

    static = True

    def __init__(self, config):
        super().__init__(config)
        self.shape = (0, 0)  # (rows, positions) of the buffers

    def _fits(self, rows: int, width: int) -> bool:
        return rows <= self.shape[0] and width < self.shape[1]  # a step writes at `width`

    def add(self, single) -> None:
        length, rows, width = single.get_seq_length(), len(self.pads), self.width
        new_width = max(width, length)
        if self.cache is None or not self._fits(rows + 1, new_width):
            self._move((rows_bucket(rows + 1), length_bucket(new_width + 1)), new_width, single.layers[0].keys)
        elif new_width > width:
            self._shift(new_width - width)
        for layer, new in zip(self.cache.layers, single.layers):
            for buffer, row in ((layer.key_buffer, new.keys), (layer.value_buffer, new.values)):
                buffer[rows].zero_()
                buffer[rows, :, new_width - length : new_width] = row[0]
        self.pads = [pad + new_width - width for pad in self.pads] + [new_width - length]
        self.set_width(new_width)

    def remove(self, index: int):
        from transformers import DynamicCache

        pad, width, rows = self.pads[index], self.width, len(self.pads)
        taken = DynamicCache(
            ddp_cache_data=[
                (layer.keys[index : index + 1, :, pad:].clone(), layer.values[index : index + 1, :, pad:].clone())
                for layer in self.cache.layers
            ],
            config=self.config,
        )
        self.pads.pop(index)
        if not self.pads:
            self.cache, self.pads, self.shape = None, [], (0, 0)
            return taken
        for layer in self.cache.layers:
            for buffer in (layer.key_buffer, layer.value_buffer):
                buffer[index : rows - 1] = buffer[index + 1 : rows].clone()
        shift = min(self.pads)
        if shift:
            for layer in self.cache.layers:
                for buffer in (layer.key_buffer, layer.value_buffer):
                    buffer[:, :, : width - shift] = buffer[:, :, shift:width].clone()
            self.pads = [p - shift for p in self.pads]
            self.set_width(width - shift)
        if rows_bucket(len(self.pads)) < self.shape[0]:  # fewer rows: a smaller bucket, and its smaller step
            self._move((rows_bucket(len(self.pads)), self.shape[1]), self.width)
        return taken

    def make_room(self) -> None:
        """Move to a longer bucket when the next step would write past the end."""
        if not self._fits(len(self.pads), self.width):
            self._move((self.shape[0], length_bucket(self.width + 1)), self.width)

    def reserve(self, extra: int) -> None:
        if not self._fits(len(self.pads), self.width + extra - 1):
            self._move((self.shape[0], length_bucket(self.width + extra)), self.width)

    def _shift(self, by: int) -> None:
        """Move every row right by `by` positions (a longer row joins), zeros on the left."""
        width = self.width
        for layer in self.cache.layers:
            for buffer in (layer.key_buffer, layer.value_buffer):
                buffer[:, :, by : by + width] = buffer[:, :, :width].clone()
                buffer[:, :, :by] = 0

    def _move(self, shape: tuple[int, int], new_width: int, like: torch.Tensor | None = None) -> None:
        """New buffers of `shape` (dtype and device of `like`, else of the old ones), the rows copied in,
        right-aligned at `new_width` (the caller adds the shift to the pads)."""
        rows, width = len(self.pads), self.width
        like = like if like is not None else self.cache.layers[0].key_buffer
        layers = []
        for index in range(len(self.cache.layers) if self.cache is not None else self.config.num_hidden_layers):
            pair = []
            for name in ("key_buffer", "value_buffer"):
                old = getattr(self.cache.layers[index], name) if self.cache is not None else None
                buffer = like.new_zeros(shape[0], like.shape[1], shape[1], like.shape[3])
                if rows and width:
                    buffer[:rows, :, new_width - width : new_width] = old[:rows, :, :width]
                pair.append(buffer)
            layers.append(GrowingLayer(pair[0], pair[1], new_width))
        self.shape = shape
        self._install(layers)

    def step_tensors(self, device) -> dict:
        """The step's inputs for the rows in use, padded to the bucket (spare rows attend to position 0 only)."""
        rows, width = len(self.pads), self.width
        size, length = self.shape
        pads = torch.tensor(self.pads + [0] * (size - rows), device=device)
        live = torch.arange(size, device=device) < rows
        span = torch.arange(length, device=device)[None, :]
        mask = (span >= pads[:, None]) & (span <= width)
        mask = torch.where(live[:, None], mask, span == 0)
        positions = torch.where(live, width - pads, 0)[:, None]
        return {
            "write_at": torch.tensor([width], device=device),
            "positions": positions,
            "mask": mask[:, None, None, :],
        }
