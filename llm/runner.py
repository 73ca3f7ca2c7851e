"""The one gate to the shared model's forward pass, and the LoRA adapters attached to it."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

BASE = "__base__"  # PEFT's name for "no adapter" in adapter_names


class ModelRunner:
    """Runs forward steps on the shared model, each with the adapter its own request asked for.

    PEFT selects a per-request adapter (`adapter_names=`) by registering hooks on the shared layers
    for the duration of one call, so two calls at the same moment would see each other's adapter.
    Steps are therefore serialized; concurrent sessions share steps by being batched (`llm.batching`).
    """

    def __init__(self, model):
        self.base = model
        self.model = model  # becomes a PeftModel once the first adapter is attached
        self.lock = threading.RLock()
        self.adapters: dict[str, Path] = {}

    @property
    def device(self) -> torch.device:
        return self.base.device

    def forward(self, input_ids: torch.Tensor, cache, adapter: str | None | list[str | None] = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, T) against `cache`; returns the last position's logits (B, vocab).

        `adapter` is one adapter for every row, or a list with one per row (personas mixed in a batch)."""
        rows = input_ids.shape[0]
        names = adapter if isinstance(adapter, list) else [adapter] * rows
        kwargs = {}
        if self.adapters:
            kwargs["adapter_names"] = [name or BASE for name in names]
        elif any(names):
            raise KeyError(next(name for name in names if name))
        with self.lock, torch.inference_mode():
            out = self.model(input_ids=input_ids, past_key_values=cache, use_cache=True, attention_mask=attention_mask,
                             position_ids=position_ids, logits_to_keep=1, **kwargs)
            return out.logits[:, -1, :]

    def add_adapter(self, name: str, folder: Path) -> None:
        """Load a LoRA adapter next to the others. Adds only: no other user's adapter changes."""
        from peft import PeftModel

        with self.lock:
            if name in self.adapters:
                return
            if not self.adapters:
                self.model = PeftModel.from_pretrained(self.base, str(folder), adapter_name=name, is_trainable=False)
            else:
                self.model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
            self.model.eval()
            self.adapters[name] = folder
