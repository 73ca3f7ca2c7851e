"""Continuous batching: every session that is answering decodes in one forward pass per token.

One worker thread owns the batch. A request joins it as soon as its prompt is prefilled (nobody
waits for another's answer to finish; a long prompt is fed in chunks between the batch's steps, so
it does not freeze the answers already streaming) and leaves it at its end-of-turn, its length limit, or when
its reader stops listening (the stop button closes the token iterator; the row is dropped at the
next step, so compute stops too). Rows carry their own adapter: personas mix in one batch.

Rows have different lengths, so their caches sit side by side left-padded to a common width; the
attention mask hides the padding and each row's position ids are its true length, which gives the
same attention as the row alone. A row's cache is handed back unpadded when it leaves, for its
session's next turn. Padding is bounded: a row whose length differs too much from a group's decodes in a
second group (one more forward pass per step) rather than padding the short rows to the long one.

One row's failure is that row's: its logits are checked for NaN/inf (a broken adapter), its sampling
is its own, and a forward pass that raises (e.g. out of memory) is retried row by row, so only the
rows that fail alone get the error. Every cache counts toward the KV budget (`llm.kvcache.SessionCaches`):
a request is admitted only when what it may grow to fits, after evicting idle sessions' caches, and a
group holds what its rows may grow to, padding and spare room included.
"""

from __future__ import annotations

import atexit
import logging
import math
import queue
import secrets
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from core.errors import StudioError
from llm.generation import make_processors, sample
from llm.interface import BackendError, GenerationStats
from llm.kvcache import CacheEntry, SessionCaches, kv_bytes_per_token, reuse
from llm.options import GenerationOptions

log = logging.getLogger(__name__)

_END = object()  # end of a token stream
IDLE_EXIT_S = 120.0  # the worker thread ends after this long without work; the next request starts one
# A row joins a group only if the group's left padding stays within this share of its cache slots, or within
# PADDING_SLACK positions per row (short prompts: a few padded positions cost less than a second forward pass).
# Otherwise it starts a new group, up to MAX_GROUPS: each group is a forward pass of the whole model per step, so
# beyond that a row joins the group it pads least, if the KV budget holds the padding (else a group of its own).
MAX_PADDING_SHARE = 0.25
PADDING_SLACK = 64
MAX_GROUPS = 2
SPARE_MIN = 32  # spare positions at the end of a cache buffer, so most steps write in place
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

    def __init__(self, config):
        self.config = config
        self.cache: DynamicCache | None = None
        self.pads: list[int] = []

    def __len__(self) -> int:
        return len(self.pads)

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


@dataclass
class Sequence:
    """One request's state while it is waiting or in the batch."""

    prompt_ids: list[int]
    stop_ids: frozenset[int]
    options: GenerationOptions
    adapter: str | None  # the adapter version's key (`ModelRunner.acquire`), held until the request ends
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
    held: int = 0  # bytes of the KV budget counted for it (until it joins a group, which holds them)
    refused: BaseException | None = None  # why it was not admitted

    def __post_init__(self):
        seed = self.options.seed if self.options.seed is not None else secrets.randbits(63)
        self.rng = torch.Generator().manual_seed(seed)
        self.processors = make_processors(self.options)
        self.seen: torch.Tensor | None = None

    @property
    def stopped(self) -> bool:
        return self.abandoned.is_set() or (self.cancel is not None and self.cancel.is_set())

    @property
    def final(self) -> int:
        """The most tokens its cache can hold: the prompt and every new token."""
        return len(self.prompt_ids) + self.options.max_new_tokens


@dataclass
class Group:
    """Rows decoded in one forward pass: lengths close enough that padding them to one width is cheap."""

    cache: BatchCache
    rows: list[Sequence] = field(default_factory=list)
    held: int = 0  # bytes of the KV budget it holds: what its buffers can grow to before its rows end


def invalid_numbers(seq: Sequence) -> BackendError:
    if seq.adapter:
        return BackendError(
            "This persona's adapter produced invalid numbers (NaN or infinity), so its answer was "
            "stopped; other answers are not affected. Choose another persona, and retrain or remove "
            "this adapter."
        )
    return BackendError(
        "The model produced invalid numbers (NaN or infinity) for this answer, so it was stopped. "
        "Try again; if it repeats, load the model in float32 or bfloat16 (LLM_DTYPE)."
    )


def sampling_failed(exc: Exception) -> BackendError:
    error = BackendError(
        f"Picking the next token failed ({type(exc).__name__}), so this answer was stopped; other "
        "answers are not affected. Try again, or change the sampling options."
    )
    error.__cause__ = exc
    return error


class BatchScheduler:
    """Runs every request on one model through one growing and shrinking batch (of a few groups)."""

    def __init__(self, runner, max_batch: int = 8, prefill_chunk: int = 512, budget: SessionCaches | None = None):
        self.runner = runner
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self.budget = budget  # None: no KV budget (tests of the scheduler alone)
        self.bytes_per_token = kv_bytes_per_token(runner.base.config, runner.base.dtype)
        self._prefilling: list[Sequence] = []
        self._waiting: deque[Sequence] = deque()
        self._lock = threading.Condition()  # guards _waiting; the idle worker waits on it
        self._worker: threading.Thread | None = None
        self._groups: list[Group] = []
        self.steps = 0  # batched decode steps run (for tests and the benchmark)
        self.forward_passes = 0  # decode forward passes: one per group and step
        self.max_rows_seen = 0
        self._closing = False
        _SCHEDULERS.add(self)

    @property
    def _active(self) -> list[Sequence]:
        return [seq for group in self._groups for seq in group.rows]

    def kv_bytes(self) -> int:
        """Bytes the caches of requests in flight take now: the groups' buffers and prompts being fed."""
        prefilling = sum(CacheEntry([], seq.cache, None).nbytes for seq in self._prefilling if seq.cache is not None)
        return sum(group.cache.nbytes for group in self._groups) + prefilling

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

        `reused` is the session's kept entry, taken from `budget`: its bytes count as held until the request ends.
        Nothing is queued until the first `next()`; closing the iterator takes the row out of the batch."""
        key = self.runner.acquire(adapter)  # a reload from now on does not change this answer's adapter
        seq = Sequence(list(prompt_ids), stop_ids, options, key, reused, keep, cancel, stats)
        if reused is not None and self.budget is not None:
            seq.held = reused.nbytes
            self.budget.hold(seq.held, force=True)  # it is in memory already, out of the pool
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
                admitted = self._admit()
            try:
                for seq in admitted:
                    self._begin(seq)
                self._prefill()
                if self._groups:
                    self._step()
            except BaseException as exc:  # a bug must not leave readers waiting forever
                log.exception("batched generation failed")
                self._fail_all(exc, admitted)

    def _has_work(self) -> bool:
        return bool(self._waiting or self._groups or self._prefilling or self._closing)

    def _admit(self) -> list[Sequence]:
        """Take waiting requests, first come first served, while there are free rows and KV budget."""
        admitted = []
        room = self.max_batch - len(self._active) - len(self._prefilling)
        while self._waiting and room > 0:
            seq = self._waiting[0]
            if not seq.stopped and not self._reserve(seq, in_flight=bool(admitted)):
                break  # not enough KV budget until answers in flight end
            admitted.append(self._waiting.popleft())
            room -= 1
        return admitted

    def _worst_bytes(self, pads: list[int], finals: list[int]) -> int:
        """What a group's buffers can grow to: its pads stay while its rows are in it, each row grows to its final
        length, and every row is as wide as the widest (plus spare room)."""
        return len(pads) * spare_room(max(p + f for p, f in zip(pads, finals))) * self.bytes_per_token

    def _need_bytes(self, seq: Sequence) -> int:
        """The most this request's cache can take in a group of its own (joining a group that pads it is held then)."""
        return self._worst_bytes([0], [seq.final])

    def _reserve(self, seq: Sequence, in_flight: bool) -> bool:
        """Hold the KV budget `seq` may need (idle caches are evicted for it). False: wait for answers in flight
        to end. A request that could never fit is admitted only to be refused with the reason."""
        if self.budget is None:
            return True
        need = max(self._need_bytes(seq), seq.held)
        if self.budget.hold(need - seq.held):
            seq.held = need
            return True
        if in_flight or self._groups or self._prefilling:
            return False
        if need <= self.budget.budget_bytes:  # only other waiting requests' kept caches are in the way
            for other in self._waiting:
                if other is not seq and other.reused is not None:
                    self.budget.release(other.held)
                    other.reused, other.held = None, 0
            if self.budget.hold(need - seq.held):
                seq.held = need
                return True
        mb = 2**20
        seq.refused = BackendError(
            f"This answer could need {math.ceil(need / mb)} MB of KV cache (a {len(seq.prompt_ids)}-token prompt plus "
            f"up to {seq.options.max_new_tokens} new tokens), more than KV_CACHE_BUDGET_MB allows in all "
            f"({self.budget.budget_bytes // mb} MB). Lower max new tokens, start a new chat, or raise "
            "KV_CACHE_BUDGET_MB."
        )
        return True

    def _begin(self, seq: Sequence) -> None:
        """Take up the session's kept cache (cropped to what the prompt shares with it) and queue the rest."""
        if seq.refused is not None:
            self._end(seq, seq.refused)
            return
        if seq.stopped:
            self._end(seq, entry=seq.reused)  # untouched: give the session its cache back
            return
        try:
            seq.cache, seq.position = reuse(seq.reused, seq.prompt_ids, seq.adapter)
            seq.reused = None
            if seq.stats is not None:
                seq.stats.cached_tokens = seq.position
            if seq.cache is None:
                seq.cache = DynamicCache(config=self.runner.base.config)
            seq.seen = torch.tensor([seq.prompt_ids], device=self.runner.device)
        except Exception as exc:
            log.exception("a request could not start")
            self._end(seq, exc)
            return
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
                self._end(seq, entry=self._entry(seq, seq.cache) if seq.fed else None)
                continue
            count = min(budget, len(seq.prompt_ids) - seq.position)
            try:
                logits = self.runner.forward(seq.seen[:, seq.position : seq.position + count], seq.cache, seq.adapter)
            except Exception as exc:  # this prompt failed (e.g. out of memory); the batch goes on
                self._prefilling.pop(0)
                self._end(seq, exc)
                continue
            seq.position += count
            budget -= count
            if seq.position < len(seq.prompt_ids):
                continue
            self._prefilling.pop(0)
            seq.fed = list(seq.prompt_ids)
            try:
                going = self._advance(seq, logits, bool(torch.isfinite(logits).all()))
            except Exception as exc:
                self._end(seq, exc if isinstance(exc, StudioError) else sampling_failed(exc))
                continue
            if not going:
                self._end(seq, entry=self._entry(seq, seq.cache))
            else:
                try:
                    self._join(seq, seq.cache)
                except Exception as exc:  # e.g. out of memory for the bigger buffers: this row only
                    self._end(seq, exc)
            seq.cache = None  # a group holds it now (or the session does)

    def _join(self, seq: Sequence, cache: DynamicCache) -> None:
        """Put a row in the group it pads least within the bound; else in a new group (up to MAX_GROUPS); else in
        the group it pads least if the KV budget holds that padding; else in a group of its own."""
        length = cache.get_seq_length()
        options = []
        for group in self._groups:
            pads = group.cache.pads_after(length)
            within = padding_ok(pads, max(group.cache.width, length))
            need = self._worst_bytes(pads, [row.final for row in group.rows] + [seq.final])
            options.append((not within, sum(pads), need, group))
        options.sort(key=lambda option: option[:2])
        if len(self._groups) < MAX_GROUPS:
            options = [option for option in options if not option[0]]
        for _, _, need, group in options:
            extra = need - group.held - seq.held
            if extra <= 0 or self.budget is None or self.budget.hold(extra):
                break
        else:
            group, need = Group(BatchCache(self.runner.base.config)), self._need_bytes(seq)
            extra = need - seq.held
        try:
            group.cache.add(cache)
        except Exception:  # e.g. out of memory for the bigger buffers: the group is as it was
            if extra > 0 and self.budget is not None:
                self.budget.release(extra)
            raise
        group.rows.append(seq)
        if extra < 0 and self.budget is not None:
            self.budget.release(-extra)  # e.g. a kept cache bigger than what this answer needs
        group.held, seq.held = need, 0
        if group not in self._groups:
            self._groups.append(group)
        self.max_rows_seen = max(self.max_rows_seen, len(self._active))

    def _step(self) -> None:
        """Feed every row its last token, one forward pass per group, then pick each row's next token."""
        for group in self._groups:
            for index in reversed(range(len(group.rows))):
                if group.rows[index].stopped:
                    self._finish(group, index)
        stepping = [group for group in self._groups if group.rows]
        for group in stepping:
            self._step_group(group)
        if stepping:
            self.steps += 1
        self._groups = [group for group in self._groups if group.rows]

    def _step_group(self, group: Group) -> None:
        rows, device, width = group.rows, self.runner.device, group.cache.width
        tokens = torch.tensor([[seq.next_token] for seq in rows], device=device)
        self.forward_passes += 1
        try:
            logits = self.runner.forward(
                tokens, group.cache.cache, [seq.adapter for seq in rows], **group.cache.step_inputs(device)
            )
            outcomes: list[torch.Tensor | BaseException] = list(logits.split(1))
            finite = torch.isfinite(logits).all(dim=-1).tolist()  # one check for the group, not one per row
        except Exception as exc:
            group.cache.set_width(width)  # the layers that ran before the failure wrote one position: undo it
            outcomes = self._rows_alone(group, tokens, width, exc)
            finite = [isinstance(o, torch.Tensor) and bool(torch.isfinite(o).all()) for o in outcomes]
        ended: dict[int, BaseException | None] = {}
        for row, (seq, outcome) in enumerate(zip(rows, outcomes)):
            if isinstance(outcome, BaseException):
                ended[row] = outcome
                continue
            if seq.stats is not None:
                seq.stats.batched_with = max(seq.stats.batched_with, len(rows) - 1)
            seq.fed.append(seq.next_token)
            seq.seen = torch.cat([seq.seen, tokens[row : row + 1]], dim=1)
            try:
                if not self._advance(seq, outcome, finite[row]):
                    ended[row] = None
            except Exception as exc:
                ended[row] = exc if isinstance(exc, StudioError) else sampling_failed(exc)
        for row in sorted(ended, reverse=True):
            self._finish(group, row, ended[row])

    def _rows_alone(self, group: Group, tokens: torch.Tensor, width: int, exc: Exception) -> list:
        """After a failed forward pass of a group: each row alone (through views of the group's buffers), so a
        row that fails alone (too long for the memory left, a broken adapter) fails alone."""
        if len(group.rows) == 1:
            return [exc]
        log.warning(
            "a batched step of %d rows failed (%s); retrying them one at a time", len(group.rows), type(exc).__name__
        )
        if isinstance(exc, torch.OutOfMemoryError) and torch.cuda.is_available():
            torch.cuda.empty_cache()
        try:
            group.cache.reserve(1)
        except Exception as grow_failed:
            return [grow_failed] * len(group.rows)
        outcomes: list[torch.Tensor | BaseException] = []
        device = self.runner.device
        for row, seq in enumerate(group.rows):
            try:
                outcomes.append(
                    self.runner.forward(
                        tokens[row : row + 1],
                        group.cache.row_view(row),
                        seq.adapter,
                        **group.cache.step_inputs(device, row),
                    )
                )
            except Exception as row_failed:
                outcomes.append(row_failed)
        group.cache.set_width(width + 1)
        return outcomes

    def _advance(self, seq: Sequence, logits: torch.Tensor, finite: bool) -> bool:
        """Pick the next token and hand it to the reader. False when the sequence ends here."""
        if not finite:
            log.warning("non-finite logits in a row (adapter %s); that answer is stopped", seq.adapter)
            raise invalid_numbers(seq)
        token = sample(logits, seq.seen, seq.processors, seq.options.greedy, seq.rng)
        if token in seq.stop_ids:
            return False
        seq.out.put(token)
        seq.produced += 1
        seq.next_token = token
        return seq.produced < seq.options.max_new_tokens and not seq.stopped

    def _finish(self, group: Group, index: int, error: BaseException | None = None) -> None:
        seq = group.rows.pop(index)
        cache = group.cache.remove(index)
        need = self._worst_bytes(group.cache.pads, [row.final for row in group.rows]) if group.rows else 0
        if self.budget is not None:
            self.budget.release(group.held - need)  # the rest can grow to less now (fewer rows, less padding)
        group.held = need
        self._end(seq, error, None if error is not None else self._entry(seq, cache))

    def _entry(self, seq: Sequence, cache: DynamicCache) -> CacheEntry | None:
        if seq.keep is not None and cache is not None and cache.get_seq_length() == len(seq.fed):
            return CacheEntry(seq.fed, cache, seq.adapter)
        return None

    def _end(self, seq: Sequence, error: BaseException | None = None, entry: CacheEntry | None = None) -> None:
        """The request is over: give back its KV budget and adapter, keep its cache for the session, tell the reader."""
        if seq.done.is_set():
            return
        if self.budget is not None and seq.held:
            self.budget.release(seq.held)
            seq.held = 0
        if entry is not None and error is None and seq.keep is not None:
            seq.keep(entry)
        self.runner.release(seq.adapter)
        seq.out.put(error if error is not None else _END)
        seq.done.set()

    def _fail_all(self, exc: BaseException, admitted: list[Sequence]) -> None:
        """The batch is lost (its caches may be half-updated): every affected reader gets the error."""
        for seq in self._active + self._prefilling + admitted:
            self._end(seq, exc)
        if self.budget is not None:
            self.budget.release(sum(group.held for group in self._groups))
        self._groups, self._prefilling = [], []
