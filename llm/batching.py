"""Continuous batching: every session that is answering decodes in one forward pass per token.

One worker thread owns the batch. A request joins it as soon as its prompt is prefilled (nobody
waits for another's answer to finish; a long prompt is fed in chunks between the batch's steps, so
it does not freeze the answers already streaming) and leaves it at its end-of-turn, its length limit, or when
its reader stops listening (the stop button closes the token iterator; the row is dropped at the
next step, so compute stops too). Rows carry their own adapter: personas mix in one batch.

Rows have different lengths, so their caches sit side by side left-padded to a common width; the
attention mask hides the padding and each row's position ids are its true length, which gives the
same attention as the row alone. A row's cache is handed back unpadded when it leaves, for its
session's next turn.
"""

from __future__ import annotations

import atexit
import logging
import queue
import secrets
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from llm.generation import GenerationStats, make_processors, sample
from llm.kvcache import CacheEntry, reuse
from llm.options import GenerationOptions

log = logging.getLogger(__name__)

_END = object()  # end of a token stream
IDLE_EXIT_S = 120.0  # the worker thread ends after this long without work; the next request starts one
_SCHEDULERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Let each worker finish its step before the interpreter goes: one killed inside a torch op aborts the process."""
    for scheduler in list(_SCHEDULERS):
        scheduler.close()


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

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self.key_buffer.shape[-2]:
            self.key_buffer = _resized(self.key_buffer, self.length, spare_room(end))
            self.value_buffer = _resized(self.value_buffer, self.length, spare_room(end))
        self.key_buffer[:, :, self.length:end] = key_states
        self.value_buffer[:, :, self.length:end] = value_states
        self.length = end
        self._expose()
        return self.keys, self.values

    def crop(self, tokens_to_remove: int) -> None:  # pragma: no cover - the batch never crops
        raise NotImplementedError("a batched cache is not cropped; rows leave through BatchCache.remove")


def spare_room(length: int) -> int:
    return length + max(64, length // 4)


def _resized(buffer: torch.Tensor, used: int, capacity: int) -> torch.Tensor:
    bigger = buffer.new_zeros(buffer.shape[0], buffer.shape[1], capacity, buffer.shape[3])
    bigger[:, :, :used] = buffer[:, :, :used]
    return bigger


class BatchCache:
    """Rows' KV caches left-padded to one width. Padding is zeros (never garbage: a NaN there would
    leak through the attention even with a zero weight) and is hidden by `attention_mask`."""

    def __init__(self, config):
        self.config = config
        self.cache: DynamicCache | None = None
        self.pads: list[int] = []

    def __len__(self) -> int:
        return len(self.pads)

    @property
    def width(self) -> int:
        return self.cache.layers[0].length if self.cache is not None else 0

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
                    buffer[:rows, :, width - old_width:width] = getattr(self.cache.layers[index], name)
                buffer[rows, :, width - length:width] = row[0]
                pair.append(buffer)
            layers.append(GrowingLayer(pair[0], pair[1], width))
        self.pads = [pad + width - old_width for pad in self.pads] + [width - length]
        self._install(layers)

    def remove(self, index: int) -> DynamicCache:
        """Take row `index` out; returns its cache unpadded (a copy, so the batch's buffers can go)."""
        pad, width = self.pads[index], self.width
        rows = DynamicCache(ddp_cache_data=[(layer.keys[index:index + 1, :, pad:].clone(),
                                             layer.values[index:index + 1, :, pad:].clone())
                                            for layer in self.cache.layers], config=self.config)
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

    def step_inputs(self, device) -> dict:
        """attention_mask and position_ids for feeding one token per row (none needed without padding).
        The mask is given ready-made, (rows, 1, 1, width + 1) booleans, so no 2-D mask is expanded per step."""
        if not any(self.pads):
            return {}
        width = self.width
        pads = torch.tensor(self.pads, device=device)
        mask = torch.arange(width + 1, device=device)[None, :] >= pads[:, None]
        return {"attention_mask": mask[:, None, None, :], "position_ids": (width - pads)[:, None]}

    def _install(self, layers: list[GrowingLayer]) -> None:
        if self.cache is None:
            self.cache = DynamicCache(config=self.config)
        self.cache.layers = layers


@dataclass
class Sequence:
    """One request's state while it is waiting or in the batch."""

    prompt_ids: list[int]
    stop_ids: frozenset[int]
    options: GenerationOptions
    adapter: str | None
    reused: CacheEntry | None
    keep: Callable[[CacheEntry], None] | None
    cancel: threading.Event | None
    stats: GenerationStats | None = None  # figures for the page: cached prompt tokens, batch company
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    abandoned: threading.Event = field(default_factory=threading.Event)  # the reader went away
    done: threading.Event = field(default_factory=threading.Event)
    fed: list[int] = field(default_factory=list)  # what the cache holds
    produced: int = 0
    next_token: int | None = None
    cache: object = None  # its own cache while its prompt is fed
    position: int = 0  # prompt tokens in that cache

    def __post_init__(self):
        seed = self.options.seed if self.options.seed is not None else secrets.randbits(63)
        self.rng = torch.Generator().manual_seed(seed)
        self.processors = make_processors(self.options)
        self.seen: torch.Tensor | None = None

    @property
    def stopped(self) -> bool:
        return self.abandoned.is_set() or (self.cancel is not None and self.cancel.is_set())


class BatchScheduler:
    """Runs every request on one model through one growing and shrinking batch."""

    def __init__(self, runner, max_batch: int = 8, prefill_chunk: int = 512):
        self.runner = runner
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self._prefilling: list[Sequence] = []
        self._waiting: deque[Sequence] = deque()
        self._lock = threading.Condition()  # guards _waiting; the idle worker waits on it
        self._worker: threading.Thread | None = None
        self._batch = BatchCache(runner.base.config)
        self._active: list[Sequence] = []
        self.steps = 0  # batched decode steps run (for tests and the benchmark)
        self.max_rows_seen = 0
        self._closing = False
        _SCHEDULERS.add(self)

    def close(self) -> None:
        """Stop the worker after its current step; readers still waiting get an error."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        worker = self._worker
        if worker is not None:
            worker.join(timeout=30)

    def generate(
        self,
        prompt_ids: list[int],
        stop_ids: frozenset[int],
        options: GenerationOptions,
        cancel: threading.Event | None = None,
        adapter: str | None = None,
        reused: CacheEntry | None = None,
        keep: Callable[[CacheEntry], None] | None = None,
        stats: GenerationStats | None = None,
    ) -> Iterator[int]:
        """Yield new token ids, as `llm.generation.generate_tokens` does, decoded in the shared batch.

        Nothing is queued until the first `next()`; closing the iterator takes the row out of the batch."""
        seq = Sequence(list(prompt_ids), stop_ids, options, adapter, reused, keep, cancel, stats)
        with self._lock:
            self._waiting.append(seq)
            if self._worker is None:
                # One long-lived thread: torch's CPU thread pool belongs to the thread that calls it, and a
                # thread started per burst made a new pool each time (decode speed halved, erratically).
                self._worker = threading.Thread(target=self._run, name="llm-batch", daemon=True)
                self._worker.start()
            self._lock.notify()
        try:
            while (item := seq.out.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            seq.abandoned.set()
            # Wait for the worker to hand the cache back (one step at most), so a next turn reuses it.
            seq.done.wait(timeout=30)

    # --- the worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    self._fail_all(RuntimeError("the model is shutting down"), list(self._waiting))
                    self._waiting.clear()
                    self._worker = None
                    return
                while not self._has_work():
                    # Idle: no work, no CPU. After a long idle, let go (and let an unused backend be freed);
                    # work is checked again under the lock, so a request that came at the timeout is not lost.
                    if not self._lock.wait(timeout=IDLE_EXIT_S) and not self._has_work():
                        self._worker = None
                        return
                if self._closing:
                    continue
                room = self.max_batch - len(self._active) - len(self._prefilling)
                admitted = [self._waiting.popleft() for _ in range(min(len(self._waiting), room))]
            try:
                for seq in admitted:
                    self._begin(seq)
                self._prefill()
                if self._active:
                    self._step()
            except BaseException as exc:  # a bug or a failed forward must not leave readers waiting forever
                log.exception("batched generation failed")
                self._fail_all(exc, admitted)

    def _has_work(self) -> bool:
        return bool(self._waiting or self._active or self._prefilling or self._closing)

    def _begin(self, seq: Sequence) -> None:
        """Take up the session's kept cache (cropped to what the prompt shares with it) and queue the rest."""
        if seq.stopped:
            if seq.keep is not None and seq.reused is not None:
                seq.keep(seq.reused)  # untouched: give the session its cache back
            self._close(seq)
            return
        seq.cache, seq.position = reuse(seq.reused, seq.prompt_ids, seq.adapter)
        seq.reused = None
        if seq.stats is not None:
            seq.stats.cached_tokens = seq.position
        if seq.cache is None:
            seq.cache = DynamicCache(config=self.runner.base.config)
        seq.seen = torch.tensor([seq.prompt_ids], device=self.runner.device)
        self._prefilling.append(seq)

    def _prefill(self) -> None:
        """Feed waiting prompts, at most `prefill_chunk` tokens in all, so a long prompt holds the
        sessions already answering for one chunk between their steps, not for its whole length."""
        budget = self.prefill_chunk
        while self._prefilling and budget > 0:
            seq = self._prefilling[0]
            if seq.stopped:  # stopped while waiting: keep what is fed so far, consistently
                self._prefilling.pop(0)
                seq.fed = seq.prompt_ids[: seq.position]
                if seq.fed:
                    self._keep(seq, seq.cache)
                self._close(seq)
                continue
            count = min(budget, len(seq.prompt_ids) - seq.position)
            try:
                logits = self.runner.forward(seq.seen[:, seq.position:seq.position + count], seq.cache, seq.adapter)
            except Exception as exc:  # this prompt failed (e.g. out of memory); the batch goes on
                self._prefilling.pop(0)
                self._close(seq, exc)
                continue
            seq.position += count
            budget -= count
            if seq.position < len(seq.prompt_ids):
                continue
            self._prefilling.pop(0)
            seq.fed = list(seq.prompt_ids)
            if self._advance(seq, logits):
                self._batch.add(seq.cache)
                self._active.append(seq)
                self.max_rows_seen = max(self.max_rows_seen, len(self._active))
            else:
                self._keep(seq, seq.cache)
                self._close(seq)
            seq.cache = None  # the batch holds it now (or the session does)

    def _step(self) -> None:
        """Feed every row its last token in one forward pass, then pick each row's next token."""
        for index in reversed(range(len(self._active))):
            if self._active[index].stopped:
                self._finish(index)
        if not self._active:
            return
        device = self.runner.device
        tokens = torch.tensor([[seq.next_token] for seq in self._active], device=device)
        logits = self.runner.forward(tokens, self._batch.cache, [seq.adapter for seq in self._active],
                                     **self._batch.step_inputs(device))
        self.steps += 1
        ended = []
        for row, seq in enumerate(self._active):
            if seq.stats is not None and len(self._active) - 1 > seq.stats.batched_with:
                seq.stats.batched_with = len(self._active) - 1
            seq.fed.append(seq.next_token)
            seq.seen = torch.cat([seq.seen, tokens[row:row + 1]], dim=1)
            if not self._advance(seq, logits[row:row + 1]):
                ended.append(row)
        for index in reversed(ended):
            self._finish(index)

    def _advance(self, seq: Sequence, logits: torch.Tensor) -> bool:
        """Pick the next token and hand it to the reader. False when the sequence ends here."""
        token = sample(logits, seq.seen, seq.processors, seq.options.greedy, seq.rng)
        if token in seq.stop_ids:
            return False
        seq.out.put(token)
        seq.produced += 1
        seq.next_token = token
        return seq.produced < seq.options.max_new_tokens and not seq.stopped

    def _finish(self, index: int) -> None:
        seq = self._active.pop(index)
        self._keep(seq, self._batch.remove(index))
        self._close(seq)

    def _keep(self, seq: Sequence, cache: DynamicCache) -> None:
        if seq.keep is not None and cache.get_seq_length() == len(seq.fed):
            seq.keep(CacheEntry(seq.fed, cache, seq.adapter))

    def _close(self, seq: Sequence, error: BaseException | None = None) -> None:
        seq.out.put(error if error is not None else _END)
        seq.done.set()

    def _fail_all(self, exc: BaseException, admitted: list[Sequence]) -> None:
        """The batch is lost (its caches may be half-updated): every affected reader gets the error."""
        for seq in self._active + self._prefilling + [s for s in admitted if not s.done.is_set()]:
            if not seq.done.is_set():
                self._close(seq, exc)
        self._active, self._prefilling = [], []
        self._batch = BatchCache(self.runner.base.config)
