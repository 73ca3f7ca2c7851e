"""The one gate to the shared model's forward pass, and the LoRA adapters attached to it."""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import N_
from llm import static_step
from llm.interface import BackendError
from llm.lora import CONFIG, WEIGHTS, AdapterError, Routing, install, read_adapter, uninstall


@dataclass
class AdapterVersion:
    """One loaded version of an adapter. A retrained adapter is a new version under a new key; the old
    one stays in the layers until the last answer that started with it ends."""

    name: str
    key: str  # its name in the LoRA layers: `<name>#<n>` ('#' is never in a persona name)
    folder: Path
    stamp: tuple  # (size, mtime) of its files: cheap to compare on every refresh
    digest: str  # their content, compared only when the stamp changed
    users: int = 0  # answers in flight that use this version
    retired: bool = False


def file_stamp(folder: Path) -> tuple:
    stats = [(folder / name).stat() for name in (CONFIG, WEIGHTS)]
    return tuple((s.st_size, s.st_mtime_ns) for s in stats)


def file_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        with (folder / name).open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


class ModelRunner:
    """Runs forward steps on the shared model, each row with the adapter its own request asked for.

    Which adapter each row uses is set on the model's LoRA layers for the duration of one call
    (`llm.lora.Routing`), so calls are serialized by one lock; concurrent sessions share calls by
    being batched (`llm.scheduler`). Adding or reloading an adapter never changes tensors a row in
    flight is using: a new version gets a new key, installed under the lock between two forward passes.
    """

    def __init__(self, model, step: str = "eager"):
        self.base = model
        self.lock = threading.RLock()
        self.routing = Routing()
        self.adapters: dict[str, AdapterVersion] = {}  # name -> its current version
        self._versions: dict[str, AdapterVersion] = {}  # key -> version (current, or retired but still in use)
        self._loading = threading.Lock()  # one adapter read at a time; forward passes go on meanwhile
        self._counter = itertools.count(1)
        # How a batch decodes (`llm.static_step`): "eager" through HF's forward; "static" the fixed-shape step as it
        # is; "compiled" that step through torch.compile. A model the step is not written for decodes eagerly.
        self.step = step if step == "eager" or static_step.supports(model) else "eager"
        self.static_step = None
        if self.step != "eager":
            self.static_step = (
                static_step.compiled(model.device.type) if step == "compiled" else static_step.decode_step
            )
        self._table: static_step.LoraTable | None = None  # the adapters stacked for it; None: to be rebuilt

    @property
    def device(self) -> torch.device:
        return self.base.device

    def forward(
        self,
        input_ids: torch.Tensor,
        cache,
        adapter: str | None | list[str | None] = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T) against `cache`; returns the last position's logits (B, vocab), in float32.

        A bfloat16 model's logits are rounded to its 8-bit mantissa by its last matmul; everything after it (the
        finiteness check, penalties, bias, the schema's mask, softmax, log probabilities) runs in float32 (as HF
        `generate` does), so nothing after the model loses more.

        `adapter` is one adapter for every row, or a list with one per row (personas mixed in a batch); each an
        adapter's name (its current version) or a version key from `acquire`."""
        names = adapter if isinstance(adapter, list) else [adapter] * input_ids.shape[0]
        with self.lock, torch.inference_mode():
            keys = [self._key(name) for name in names]
            self.routing.route(keys, input_ids.device)
            try:
                out = self.base(
                    input_ids=input_ids,
                    past_key_values=cache,
                    use_cache=True,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    logits_to_keep=1,
                )
            finally:
                self.routing.clear()
            return out.logits[:, -1, :].float()

    def forward_static(self, input_ids: torch.Tensor, batch, adapters: list[str | None]) -> torch.Tensor:
        """One token per row (input_ids (B, 1)) through the fixed-shape step over `batch`
        (`llm.static_step.StaticBatchCache`), which it advances by one position; returns (B, vocab) float32."""
        with self.lock, torch.inference_mode():
            keys = [self._key(name) for name in adapters]
            if self._table is None:
                self._table = static_step.LoraTable(self.base)
            batch.make_room()
            size, device = batch.shape[0], input_ids.device
            tokens = torch.zeros(size, dtype=torch.long, device=device)
            tokens[: input_ids.shape[0]] = input_ids[:, 0]
            layers = batch.cache.layers
            logits = self.static_step(
                self.base,
                [layer.key_buffer for layer in layers],
                [layer.value_buffer for layer in layers],
                tokens,
                slots=self._table.rows(keys, size, device),
                loras=self._table.layers,
                **batch.step_tensors(device),
            )
            batch.set_width(batch.width + 1)
            return logits[: input_ids.shape[0]]

    def _key(self, name: str | None) -> str | None:
        if name is None or name in self._versions:
            return name
        version = self.adapters.get(name)
        if version is None:
            raise BackendError(N_("No adapter named {name!r} is loaded. Press 'Refresh personas'."), name=name)
        return version.key

    def acquire(self, name: str | None) -> str | None:
        """The key of `name`'s current version, held until `release`: a reload meanwhile does not change it."""
        if name is None:
            return None
        with self.lock:
            version = self._versions[self._key(name)]
            version.users += 1
            return version.key

    def release(self, key: str | None) -> None:
        if key is None:
            return
        with self.lock:
            version = self._versions.get(key)
            if version is not None:
                version.users -= 1
                if version.retired and version.users <= 0:
                    self._drop(version)

    def add_adapter(self, name: str, folder: Path) -> str:
        """Load a LoRA adapter next to the others, or reload it if its files changed; returns its key.

        Raises `llm.lora.AdapterError` saying why it cannot be used; a changed adapter that no longer
        loads is taken away (answers already streaming with it finish)."""
        with self._loading:
            current = self.adapters.get(name)
            try:
                stamp = file_stamp(folder)
                if current is not None and current.folder == folder and current.stamp == stamp:
                    return current.key
                digest = file_digest(folder)
            except OSError as exc:
                self.remove_adapter(name)
                raise AdapterError(N_("its files cannot be read ({kind})"), kind=type(exc).__name__) from None
            if current is not None and current.folder == folder and current.digest == digest:
                current.stamp = stamp  # touched, not changed
                return current.key
            try:
                loras = read_adapter(folder, self.base)  # everything is checked before anything is installed
            except AdapterError:
                self.remove_adapter(name)
                raise
            version = AdapterVersion(name, f"{name}#{next(self._counter)}", folder, stamp, digest)
            with self.lock:  # between two forward passes
                install(self.base, version.key, loras, self.routing)
                self._table = None
                self._versions[version.key] = version
                self.adapters[name] = version
                if current is not None:
                    self._retire(current)
            return version.key

    def remove_adapter(self, name: str) -> None:
        """New answers can no longer use `name`; answers already using it finish with it."""
        with self.lock:
            version = self.adapters.pop(name, None)
            if version is not None:
                self._retire(version)

    def _retire(self, version: AdapterVersion) -> None:
        version.retired = True
        if version.users <= 0:
            self._drop(version)

    def _drop(self, version: AdapterVersion) -> None:
        uninstall(self.base, version.key)
        self._table = None
        self._versions.pop(version.key, None)
