"""The batch's KV cache: rows side by side, left-padded to one width, with spare room to grow in place.

Rows have different lengths, so their caches sit side by side left-padded to a common width; the attention mask
hides the padding and each row's position ids are its true length, which gives the same attention as the row
alone. A row's cache is handed back unpadded when it leaves (`BatchCache.remove`), for its session's next turn.
How much padding a group of rows may carry is `padding_ok`'s rule; the scheduler (`llm.scheduler`) decides
which rows go together.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# A row joins a group only if the group's left padding stays within this share of its cache slots, or within
# PADDING_SLACK positions per row (short prompts: a few padded positions cost less than a second forward pass).
MAX_PADDING_SHARE = 0.25
PADDING_SLACK = 64
SPARE_MIN = 32  # spare positions at the end of a cache buffer, so most steps write in place


class GrowingLayer(DynamicLayer):
    """A cache layer with spare room at the end: a step writes its keys in place instead of copying the
    whole cache (`DynamicLayer` concatenates, which costs O(length) per token and per row)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self.key_buffer, self.value_buffer, self.length = keys, values, length
        self._expose()

    def _expose(self) -> None:
        self.keys = self.key_buffer[:, :, : self.length]
        self.values = self.value_buffer[:, :, : self.length]

    def set_length(self, length: int) -> None:
        """Undo (or commit) a step: positions past `length` are ignored and overwritten later."""
        self.length = length
        self._expose()

    def reserve(self, end: int) -> None:
        if end > self.key_buffer.shape[-2]:
            self.key_buffer = _resized(self.key_buffer, self.length, spare_room(end))
            self.value_buffer = _resized(self.value_buffer, self.length, spare_room(end))

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        self.reserve(end)
        self.key_buffer[:, :, self.length : end] = key_states
        self.value_buffer[:, :, self.length : end] = value_states
        self.length = end
        self._expose()
        return self.keys, self.values

    def crop(self, tokens_to_remove: int) -> None:  # pragma: no cover - the batch never crops
        raise NotImplementedError("a batched cache is not cropped; rows leave through BatchCache.remove")


def spare_room(length: int) -> int:
    return length + max(SPARE_MIN, length // 8)


def _resized(buffer: torch.Tensor, used: int, capacity: int) -> torch.Tensor:
    bigger = buffer.new_zeros(buffer.shape[0], buffer.shape[1], capacity, buffer.shape[3])
    bigger[:, :, :used] = buffer[:, :, :used]
    return bigger


def padding_ok(pads: list[int], width: int) -> bool:
    waste = sum(pads)
    return waste <= MAX_PADDING_SHARE * len(pads) * width or waste <= PADDING_SLACK * len(pads)


class BatchCache:
    """Rows' KV caches left-padded to one width. Padding is zeros (never garbage: a NaN there would
    leak through the attention even with a zero weight) and is hidden by `attention_mask`."""

    static = False  # fixed-shape buffers for the compiled step: `llm.static_step.StaticBatchCache`

    def __init__(self, config):
        self.config = config
        self.cache: DynamicCache | None = None
        self.pads: list[int] = []

    @property
    def width(self) -> int:
        return self.cache.layers[0].length if self.cache is not None else 0

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers, spare room and padding included."""
        if self.cache is None:
            return 0
        return sum(
            t.nelement() * t.element_size()
            for layer in self.cache.layers
            for t in (layer.key_buffer, layer.value_buffer)
        )

    def pads_after(self, length: int) -> list[int]:
        """Every row's padding if a row of `length` joined (last: the newcomer's)."""
        width = max(self.width, length)
        return [pad + width - self.width for pad in self.pads] + [width - length]

    def add(self, single: DynamicCache) -> None:
        """Append a one-row cache (as left by prefill) as the last row."""
        length = single.get_seq_length()
        old_width, rows = self.width, len(self.pads)
        width = max(old_width, length)
        layers = []
        for index, new in enumerate(single.layers):
            pair = []
            for name in ("keys", "values"):
                row = getattr(new, name)
                heads, dim = row.shape[1], row.shape[3]
                buffer = row.new_zeros(rows + 1, heads, spare_room(width), dim)
                if rows:
                    buffer[:rows, :, width - old_width : width] = getattr(self.cache.layers[index], name)
                buffer[rows, :, width - length : width] = row[0]
                pair.append(buffer)
            layers.append(GrowingLayer(pair[0], pair[1], width))
        self.pads = [pad + width - old_width for pad in self.pads] + [width - length]
        self._install(layers)

    def remove(self, index: int) -> DynamicCache:
        """Take row `index` out; returns its cache unpadded (a copy, so the batch's buffers can go)."""
        pad, width = self.pads[index], self.width
        rows = DynamicCache(
            ddp_cache_data=[
                (layer.keys[index : index + 1, :, pad:].clone(), layer.values[index : index + 1, :, pad:].clone())
                for layer in self.cache.layers
            ],
            config=self.config,
        )
        keep = [i for i in range(len(self.pads)) if i != index]
        if not keep:
            self.cache, self.pads = None, []
            return rows
        shift = min(self.pads[i] for i in keep)  # columns that are padding in every remaining row
        picked = torch.tensor(keep, device=self.cache.layers[0].keys.device)
        layers = []
        for layer in self.cache.layers:
            pair = []
            for tensor in (layer.keys, layer.values):
                kept = tensor.index_select(0, picked)[:, :, shift:]
                buffer = kept.new_zeros(len(keep), kept.shape[1], spare_room(width - shift), kept.shape[3])
                buffer[:, :, : width - shift] = kept
                pair.append(buffer)
            layers.append(GrowingLayer(pair[0], pair[1], width - shift))
        self.pads = [self.pads[i] - shift for i in keep]
        self._install(layers)
        return rows

    def set_width(self, width: int) -> None:
        for layer in self.cache.layers:
            layer.set_length(width)

    def row_view(self, index: int) -> DynamicCache:
        """Row `index` alone, sharing the batch's buffers: a step through it writes into the batch.
        Call `reserve` first, so no layer has to grow (a grown buffer would not be shared)."""
        view = DynamicCache(config=self.config)
        view.layers = [
            GrowingLayer(layer.key_buffer[index : index + 1], layer.value_buffer[index : index + 1], layer.length)
            for layer in self.cache.layers
        ]
        return view

    def reserve(self, extra: int) -> None:
        for layer in self.cache.layers:
            layer.reserve(layer.length + extra)

    def step_inputs(self, device, row: int | None = None) -> dict:
        """attention_mask and position_ids for feeding one token per row (or to row `row` alone); none are
        needed without padding. The mask is given ready-made, (rows, 1, 1, width + 1) booleans, so no 2-D
        mask is expanded per step."""
        pads = self.pads if row is None else self.pads[row : row + 1]
        if not any(pads):
            return {}
        width = self.width
        pads = torch.tensor(pads, device=device)
        mask = torch.arange(width + 1, device=device)[None, :] >= pads[:, None]
        return {"attention_mask": mask[:, None, None, :], "position_ids": (width - pads)[:, None]}

    def _install(self, layers: list[GrowingLayer]) -> None:
        if self.cache is None:
            self.cache = DynamicCache(config=self.config)
        self.cache.layers = layers
