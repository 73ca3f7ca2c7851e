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
    Steps are therefore serialized: concurrent sessions interleave token by token, each correct.
    """

    def __init__(self, model):
        self.base = model
        self.model = model  # becomes a PeftModel once the first adapter is attached
        self.lock = threading.RLock()
        self.adapters: dict[str, Path] = {}

    @property
    def device(self) -> torch.device:
        return self.base.device

    def forward(self, input_ids: torch.Tensor, cache, adapter: str | None = None) -> torch.Tensor:
        """input_ids (B, T) against `cache`; returns the last position's logits (B, vocab)."""
        kwargs = {}
        if self.adapters:
            kwargs["adapter_names"] = [adapter or BASE] * input_ids.shape[0]
        elif adapter:
            raise KeyError(adapter)
        with self.lock, torch.inference_mode():
            return self.model(input_ids=input_ids, past_key_values=cache, use_cache=True, **kwargs).logits[:, -1, :]

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
