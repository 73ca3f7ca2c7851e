"""Continuous batching, the one decode loop: every answer in flight decodes in one forward pass per token.

One worker thread owns the batch. A request joins it as soon as its prompt is prefilled (nobody waits for
another's answer to finish; a long prompt is fed in chunks between the batch's steps, so it does not freeze the
answers already streaming) and leaves it at its end-of-turn, its length limit, or when its reader stops
listening (closing the token stream drops the row at the next step, so compute stops too). Rows carry their
own adapter: personas mix in one batch. A request alone is the same loop with one row, which is what the tests
compare batched answers against.

The scheduler owns the sessions' kept caches (`llm.kvcache.SessionCaches`): a request names its session, takes
its kept cache when it starts and leaves its new one when it ends. Rows of close lengths share a group (one
forward pass, left-padded: `llm.batch_cache`); padding is bounded, and a row that differs too much decodes in a
second group.

One row's failure is that row's: its logits are checked for NaN/inf (a broken adapter), its sampling is its own,
a forward pass that raises (out of memory) is retried row by row. A request is admitted only when what it may grow
to fits the KV budget, after evicting idle sessions' caches (`llm.groups` keeps that account).
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from copy import deepcopy

import torch
from transformers import DynamicCache

from core.errors import N_, StudioError
from llm.groups import Group, GroupPlanner, rows_alone
from llm.interface import BackendError
from llm.kvcache import CacheEntry, SessionCaches, kv_bytes_per_token, reuse
from llm.logprobs import scored
from llm.options import GenerationOptions
from llm.requests import DecodeState, Ended, Request, Row, TokenStream, invalid_numbers, sampling_failed
from llm.sampling import check_token_ids, sample

log = logging.getLogger(__name__)

IDLE_EXIT_S = 120.0  # the worker thread ends after this long without work; the next request starts one
_SCHEDULERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Let each worker finish its step before the interpreter goes: one killed inside a torch op aborts the process."""
    for scheduler in list(_SCHEDULERS):
        scheduler.close()


class BatchScheduler:
    """Runs every request on one model through one growing and shrinking batch (of a few groups)."""

    def __init__(self, runner, max_batch: int = 8, prefill_chunk: int = 512, caches: SessionCaches | None = None):
        self.runner = runner
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self.caches = caches  # kept caches and the KV budget; None: neither (a scheduler for tests, alone)
        self.planner = GroupPlanner(
            runner.base.config,
            kv_bytes_per_token(runner.base.config, runner.base.dtype),
            caches,
            runner.step != "eager",
        )
        self._prefilling: list[Row] = []
        self._waiting: deque[Row] = deque()
        self._lock = threading.Condition()  # guards _waiting; the idle worker waits on it
        self._worker: threading.Thread | None = None
        self._releasing = False  # release(): the worker ends at its next idle moment
        self._groups: list[Group] = []
        self.steps = 0  # batched decode steps run (for tests, the benchmark and the API's figures)
        self.prefills = 0  # prompts fed to their end (`n` answers to one prompt: one)
        self.prefill_tokens = 0  # prompt tokens fed (kept-cache tokens are not fed again)
        self.max_rows_seen = 0
        self._closing = False
        _SCHEDULERS.add(self)

    @property
    def _active(self) -> list[Row]:
        return [row for group in self._groups for row in group.rows]

    def kv_bytes(self) -> int:
        """Bytes the caches of requests in flight take now: the groups' buffers and prompts being fed."""
        feeding = [row.state.cache for row in self._prefilling if row.state.cache is not None]
        return sum(group.cache.nbytes for group in self._groups) + sum(CacheEntry([], c, None).nbytes for c in feeding)

    def close(self) -> None:
        """Stop the worker after its current step; readers still waiting get an error."""
        self._signal("_closing")

    def release(self) -> None:
        """End the worker once idle, its torch thread pool with it (two live pools halve every step on a small CPU:
        llm/compute_thread.py); the next request starts one."""
        self._signal("_releasing")

    def _signal(self, flag: str) -> None:
        with self._lock:
            setattr(self, flag, True)
            self._lock.notify()
        if (worker := self._worker) is not None:
            worker.join(timeout=30)

    def generate(
        self,
        prompt_ids: list[int],
        stop_ids: frozenset[int],
        options: GenerationOptions,
        cancel: threading.Event | None = None,
        adapter: str | None = None,
        session: str | None = None,
    ) -> TokenStream:
        """New token ids for one request (stop ids are not yielded), decoded in the shared batch. Nothing is queued,
        held or taken until the first `next()`; closing the stream takes the row out of the batch. Raises
        OptionError for options this model cannot take (a logit_bias id outside its vocabulary)."""
        return self.generate_copies(prompt_ids, stop_ids, [options], cancel, adapter, session)[0]

    def generate_copies(
        self, prompt_ids, stop_ids, choices: list[GenerationOptions], cancel=None, adapter=None, session=None
    ) -> list[TokenStream]:
        """Several answers to one prompt (OpenAI's `n`), one per options (each its own seed), as `generate` makes
        one: the prompt is prefilled once, then every answer decodes from a copy of that cache, as rows of the
        batch. They are admitted together (rows and KV budget for all), queued by the first `next()` on any of
        them. Only a single answer keeps a `session`'s cache."""
        for options in choices:
            check_token_ids(options, self.runner.base.config.vocab_size)
        rows: list[Row] = []
        lock = threading.Lock()

        def read(index: int) -> Iterator:
            with lock:
                if not rows:
                    kept = session if len(choices) == 1 else None
                    rows.extend(self._row(prompt_ids, stop_ids, options, cancel, adapter, kept) for options in choices)
                    rows[0].copies = rows[1:]
                    self._queue(rows[0])
            row = rows[index]
            try:
                while not isinstance(message := row.out.get(), Ended):
                    yield message
                yield message
            finally:
                row.abandoned.set()
                # Wait for the worker to hand the cache back (one step at most), so a next turn reuses it.
                row.done.wait(timeout=30)

        def abandon(index: int) -> None:  # also for a stream closed before it was read
            with lock:
                if rows:
                    rows[index].abandoned.set()

        return [TokenStream(read(i), on_close=lambda i=i: abandon(i)) for i in range(len(choices))]

    def _row(self, prompt_ids, stop_ids, options, cancel, adapter, session) -> Row:
        """A request's row, holding its adapter and (taken now) its session's kept cache."""
        state = DecodeState.start(options)
        request = Request(tuple(prompt_ids), stop_ids, options, self.runner.acquire(adapter), session, cancel)
        if session is not None and self.caches is not None:
            state.kept = self.caches.take(session)
            if state.kept is not None:
                state.held = state.kept.nbytes
                self.caches.hold(state.held, force=True)  # it is in memory already, out of the pool
        return Row(request, state)

    def _queue(self, row: Row) -> None:
        with self._lock:
            self._waiting.append(row)
            if self._worker is None:
                # One long-lived thread: torch's CPU thread pool belongs to the thread that calls it, and a
                # thread started per burst made a new pool each time (decode speed halved, erratically).
                self._worker = threading.Thread(target=self._run, name="llm-batch", daemon=True)
                self._worker.start()
            self._lock.notify()

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
                    # Idle: no work, no CPU. Released, or after a long idle, let go (and let an unused backend be
                    # freed); work is checked again under the lock, so a request that came at the timeout is kept.
                    if self._releasing or (not self._lock.wait(timeout=IDLE_EXIT_S) and not self._has_work()):
                        self._releasing, self._worker = False, None
                        return
                if self._closing:
                    continue
                admitted = self._admit()
            try:
                for row in admitted:
                    self._begin(row)
                self._prefill()
                if self._groups:
                    self._step()
            except BaseException as exc:  # a bug must not leave readers waiting forever
                log.exception("batched generation failed")
                self._fail_all(exc, admitted)

    def _has_work(self) -> bool:
        return bool(self._waiting or self._groups or self._prefilling or self._closing)

    def _admit(self) -> list[Row]:
        """Take waiting requests, first come first served, while there are free rows and KV budget."""
        admitted = []
        room = self.max_batch - len(self._active) - len(self._prefilling)
        while self._waiting and room > 0:
            row = self._waiting[0]
            busy = bool(admitted or self._groups or self._prefilling)
            together = [row, *row.copies]  # the answers to one prompt start together
            if len(together) > room and busy:
                break
            held = [member for member in together if member.stopped or self.planner.reserve(member, busy, together)]
            if len(held) < len(together):  # not enough KV budget until answers in flight end
                for member in held:
                    self.planner.release(member.state.held)
                    member.state.held = 0
                break
            admitted.append(self._waiting.popleft())
            room -= len(together)
        return admitted

    def _begin(self, row: Row) -> None:
        """Take up the session's kept cache (cropped to what the prompt shares with it) and queue the rest."""
        request, state = row.request, row.state
        refused = next((m.state.refused for m in (row, *row.copies) if m.state.refused is not None), None)
        if refused is None and len(row.copies) >= self.max_batch:
            refused = BackendError(
                N_("{count} answers at once need more rows than MAX_BATCH_SIZE allows."), count=len(row.copies) + 1
            )
        if refused is not None:
            self._end(row, refused)
            return
        if row.stopped and all(copy.stopped for copy in row.copies):
            self._end(row, entry=state.kept)  # untouched: give the session its cache back
            return
        try:
            state.cache, state.position = reuse(state.kept, request.prompt_ids, request.adapter)
            state.kept, state.cached_tokens = None, state.position
            if state.cache is None:
                state.cache = DynamicCache(config=self.runner.base.config)
            state.seen = torch.tensor([request.prompt_ids], device=self.runner.device)
        except Exception as exc:
            log.exception("a request could not start")
            self._end(row, exc)
            return
        if state.cached_tokens:
            row.report()
        self._prefilling.append(row)

    def _prefill(self) -> None:
        """Feed waiting prompts, at most `prefill_chunk` tokens in all, so a long prompt holds the
        sessions already answering for one chunk between their steps, not for its whole length."""
        budget = self.prefill_chunk
        while self._prefilling and budget > 0:
            row = self._prefilling[0]
            request, state = row.request, row.state
            if row.stopped and all(copy.stopped for copy in row.copies):  # keep what is fed so far, consistently
                self._prefilling.pop(0)
                state.fed = list(request.prompt_ids[: state.position])
                self._end(row, entry=self._entry(row, state.cache) if state.fed else None)
                continue
            count = min(budget, len(request.prompt_ids) - state.position)
            try:
                chunk = state.seen[:, state.position : state.position + count]
                logits = self.runner.forward(chunk, state.cache, request.adapter)
            except Exception as exc:  # this prompt failed (e.g. out of memory); the batch goes on
                self._prefilling.pop(0)
                self._end(row, exc)
                continue
            state.position += count
            budget -= count
            self.prefill_tokens += count
            if state.position < len(request.prompt_ids):
                continue
            self._prefilling.pop(0)
            state.fed = list(request.prompt_ids)
            self.prefills += 1
            finite = bool(torch.isfinite(logits).all())
            for member in self._fork(row):
                self._decode_from(member, logits.clone() if member is not row else logits, finite)

    def _fork(self, row: Row) -> list[Row]:
        """The row and its copies, each with a cache of its prompt (copied from the row's, fed once)."""
        state, members = row.state, []
        for copy in row.copies:
            if copy.stopped:
                self._end(copy)
                continue
            try:
                copy.state.cache = deepcopy(state.cache)
            except Exception as exc:  # e.g. out of memory for the copy: this answer only
                self._end(copy, exc)
                continue
            copy.state.take_prompt(state)
            members.append(copy)
        row.copies = []
        return [*members, row]

    def _decode_from(self, row: Row, logits: torch.Tensor, finite: bool) -> None:
        """A prefilled row's first token, then its place in a group (or its end)."""
        state = row.state
        try:
            going = self._advance(row, logits, finite)
        except Exception as exc:
            self._end(row, exc if isinstance(exc, StudioError) else sampling_failed(exc))
            return
        if not going:
            self._end(row, entry=self._entry(row, state.cache))
        else:
            try:
                self.planner.join(self._groups, row, state.cache)
                self.max_rows_seen = max(self.max_rows_seen, len(self._active))
            except Exception as exc:  # e.g. out of memory for the bigger buffers: this row only
                self._end(row, exc)
        state.cache = None  # a group holds it now (or the session does)

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
        tokens = torch.tensor([[row.state.next_token] for row in rows], device=device)
        try:
            adapters = [row.request.adapter for row in rows]
            if group.cache.static:
                logits = self.runner.forward_static(tokens, group.cache, adapters)
            else:
                logits = self.runner.forward(tokens, group.cache.cache, adapters, **group.cache.step_inputs(device))
            outcomes: list[torch.Tensor | BaseException] = list(logits.split(1))
            finite = torch.isfinite(logits).all(dim=-1).tolist()  # one check for the group, not one per row
        except Exception as exc:
            group.cache.set_width(width)  # the layers that ran before the failure wrote one position: undo it
            outcomes = rows_alone(self.runner, group, tokens, width, exc)
            finite = [isinstance(o, torch.Tensor) and bool(torch.isfinite(o).all()) for o in outcomes]
        ended: dict[int, BaseException | None] = {}
        for index, (row, outcome) in enumerate(zip(rows, outcomes)):
            if isinstance(outcome, BaseException):
                ended[index] = outcome
                continue
            state = row.state
            if len(rows) - 1 > state.batched_with:
                state.batched_with = len(rows) - 1
                row.report()
            state.fed.append(state.next_token)
            state.seen = torch.cat([state.seen, tokens[index : index + 1]], dim=1)
            try:
                if not self._advance(row, outcome, finite[index]):
                    ended[index] = None
            except Exception as exc:
                ended[index] = exc if isinstance(exc, StudioError) else sampling_failed(exc)
        for index in sorted(ended, reverse=True):
            self._finish(group, index, ended[index])

    def _advance(self, row: Row, logits: torch.Tensor, finite: bool) -> bool:
        """Pick the next token, check it against the stop ids and the length limit, and hand it to the reader.
        False when the answer ends here."""
        request, state = row.request, row.state
        if not finite:
            log.warning("non-finite logits in a row (adapter %s); that answer is stopped", request.adapter)
            raise invalid_numbers(row)
        token, scores = sample(logits, state.seen, state.processors, request.options.greedy, state.rng)
        if token in request.stop_ids:
            return False
        top = request.options.logprobs  # only rows that asked pay for their log probabilities
        row.out.put(token if top is None else scored(token, scores, top))
        state.produced += 1
        state.next_token = token
        return state.produced < request.options.max_new_tokens and not row.stopped

    def _finish(self, group: Group, index: int, error: BaseException | None = None) -> None:
        row, cache = self.planner.leave(group, index)
        self._end(row, error, None if error is not None else self._entry(row, cache))

    def _entry(self, row: Row, cache: DynamicCache) -> CacheEntry | None:
        """What the session keeps: the cache, if it holds exactly the tokens fed."""
        if row.request.session is None or self.caches is None or cache is None:
            return None
        if cache.get_seq_length() != len(row.state.fed):
            return None
        return CacheEntry(row.state.fed, cache, row.request.adapter)

    def _end(self, row: Row, error: BaseException | None = None, entry: CacheEntry | None = None) -> None:
        """The request is over: its KV budget and adapter given back, its cache kept, its reader told why."""
        if row.done.is_set():
            return
        for copy in row.copies:  # they never started: they end with the prompt they share
            self._end(copy, error)
        row.copies = []
        self.planner.release(row.state.held)
        row.state.held = 0
        if entry is not None and error is None and row.request.session is not None and self.caches is not None:
            self.caches.put(row.request.session, entry)
        self.runner.release(row.request.adapter)
        row.out.put(Ended("error", error) if error is not None else Ended(row.finish_reason))
        row.done.set()

    def _fail_all(self, exc: BaseException, admitted: list[Row]) -> None:
        """The batch is lost (its caches may be half-updated): every affected reader gets the error."""
        for row in self._active + self._prefilling + admitted:
            self._end(row, exc)
        self.planner.release(sum(group.held for group in self._groups))
        self._groups, self._prefilling = [], []
