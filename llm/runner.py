"""The one gate to the shared model's forward pass, and the LoRA adapters attached to it."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from llm.lora import Routing, install, read_adapter


class ModelRunner:
    """Runs forward steps on the shared model, each row with the adapter its own request asked for.

    Which adapter each row uses is set on the model's LoRA layers for the duration of one call
    (`llm.lora.Routing`), so calls are serialized by one lock; concurrent sessions share calls by
    being batched (`llm.batching`). Adding an adapter only adds: no other user's adapter changes.
    """

    def __init__(self, model):
        self.base = self.model = model
        self.lock = threading.RLock()
        self.routing = Routing()
        self.adapters: dict[str, Path] = {}

    @property
    def device(self) -> torch.device:
        return self.base.device

    def forward(self, input_ids: torch.Tensor, cache, adapter: str | None | list[str | None] = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, T) against `cache`; returns the last position's logits (B, vocab).

        `adapter` is one adapter for every row, or a list with one per row (personas mixed in a batch)."""
        names = adapter if isinstance(adapter, list) else [adapter] * input_ids.shape[0]
        unknown = [name for name in names if name and name not in self.adapters]
        if unknown:
            raise KeyError(unknown[0])
        with self.lock, torch.inference_mode():
            self.routing.route(names, input_ids.device, self.base.dtype)
            try:
                out = self.model(input_ids=input_ids, past_key_values=cache, use_cache=True,
                                 attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=1)
            finally:
                self.routing.clear()
            return out.logits[:, -1, :]

    def add_adapter(self, name: str, folder: Path) -> None:
        """Load a LoRA adapter next to the others. Raises `llm.lora.AdapterError` saying why it cannot."""
        with self.lock:
            if name in self.adapters:
                return
            loras = read_adapter(folder, self.base)  # everything is checked before anything is installed
            install(self.base, name, loras, self.routing)
            self.adapters[name] = folder
