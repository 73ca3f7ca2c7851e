"""Every KV cache counts toward KV_CACHE_BUDGET_MB: idle sessions' caches, prompts being fed, the batch's
rows with their padding and spare room. On the real demo model; answers stay token for token the plain path's."""

from __future__ import annotations

import threading

import pytest

from llm.batch_cache import spare_room
from llm.groups import MAX_GROUPS
from llm.interface import BackendError
from llm.kvcache import SessionCaches, kv_bytes_per_token
from llm.options import GenerationOptions
from llm.prompts import conversation, encode
from llm.requests import Request
from llm.transformers_backend import TransformersBackend
from tests.concurrency import at_once
from tests.reference import plain, prompt_ids

MB = 2**20
SENTENCE = "The harbour was quiet that night, and the old ships creaked at their moorings. "


def budget_backend(demo_model, budget_mb: int) -> TransformersBackend:
    return TransformersBackend(demo_model, budget_mb, 16, 8)


def watch(backend, monkeypatch) -> list[dict]:
    """At every forward pass (in the worker thread, between steps): what is in memory and what is counted."""
    seen: list[dict] = []
    original = backend.runner.forward
    scheduler, pool = backend.scheduler, backend.caches

    def spy(input_ids, cache, adapter=None, **kwargs):
        seen.append(
            {
                "idle": pool.nbytes,
                "held": pool.held,
                "in_flight": scheduler.kv_bytes(),
                "groups": [(g.cache.nbytes, g.held) for g in scheduler._groups],
                "rows": len(scheduler._active),
            }
        )
        return original(input_ids, cache, adapter, **kwargs)

    monkeypatch.setattr(backend.runner, "forward", spy)
    return seen


def queue_in_turn(scheduler, prompts: list[list[int]], monkeypatch) -> None:
    """Each prompt's row is queued only after the rows of the prompts before it in `prompts`."""
    turn = threading.Condition()
    queued = [0]
    original = scheduler._queue

    def in_order(row) -> None:
        index = prompts.index(list(row.request.prompt_ids))
        with turn:
            assert turn.wait_for(lambda: queued[0] == index, timeout=120), "an earlier prompt never queued"
            original(row)
            queued[0] += 1
            turn.notify_all()

    monkeypatch.setattr(scheduler, "_queue", in_order)


@pytest.mark.model
def test_a_request_that_can_never_fit_is_refused_with_the_fix(demo_model):
    backend = budget_backend(demo_model, 2)
    messages = conversation("", [{"role": "user", "content": "Tell me about whales."}])
    stream = backend.stream(messages, GenerationOptions(max_new_tokens=64))
    with pytest.raises(BackendError) as caught:
        stream.text()
    assert "KV_CACHE_BUDGET_MB" in str(caught.value) and "Lower max new tokens" in str(caught.value)
    assert stream.stats.finish_reason == "error" and backend.caches.held == 0


@pytest.mark.model
def test_a_request_that_does_not_fit_beside_another_waits_for_it(demo_model, monkeypatch):
    options = GenerationOptions(temperature=0, max_new_tokens=32, repetition_penalty=1.0)
    backend = budget_backend(demo_model, 6)  # one answer may need ~4.3 MB: two at once do not fit
    ids = [prompt_ids(backend, "Tell me about whales."), prompt_ids(backend, "Tell me about seals.")]
    need = backend.scheduler.planner.need_bytes(Request(tuple(ids[0]), frozenset(), options, None, None, None))
    assert need <= 6 * MB < 2 * need
    seen = watch(backend, monkeypatch)
    results = at_once([lambda i=i: list(backend.scheduler.generate(i, frozenset(), options)) for i in ids])
    assert results == [plain(backend, i, None, options) for i in ids]  # delayed, not refused, and unchanged
    assert max(s["rows"] for s in seen) == 1
    assert all(s["idle"] + s["held"] <= 6 * MB and s["in_flight"] <= s["held"] for s in seen)
    assert backend.caches.held == 0  # everything given back


@pytest.mark.model
def test_idle_caches_are_evicted_to_make_room_for_an_answer(demo_model, monkeypatch):
    backend = budget_backend(demo_model, 12)
    short = GenerationOptions(temperature=0, max_new_tokens=8, repetition_penalty=1.0)
    for n in range(3):
        messages = conversation("", [{"role": "user", "content": f"Say the number {n}. " + SENTENCE}])
        "".join(backend.stream(messages, short, session=f"idle-{n}"))
    idle_before = backend.caches.nbytes
    assert len(backend.caches) == 3 and idle_before > 6 * MB
    seen = watch(backend, monkeypatch)
    long_messages = conversation("", [{"role": "user", "content": SENTENCE * 7 + "What happened next?"}])
    options = GenerationOptions(temperature=0, max_new_tokens=40, repetition_penalty=1.0)
    answer = "".join(backend.stream(long_messages, options))
    assert answer == "".join(TransformersBackend(demo_model).stream(long_messages, options))
    assert all(s["idle"] + s["held"] <= 12 * MB and s["in_flight"] <= s["held"] for s in seen)
    assert max(s["held"] for s in seen) > 12 * MB - idle_before  # it could only fit because idle caches went
    assert backend.caches.take("idle-0") is None  # the least recently used went first


@pytest.mark.model
def test_eight_rows_of_mixed_lengths_pad_within_bounds_and_match_the_plain_path(demo_model, monkeypatch):
    """Prompts of 50 to 470 tokens at once: the short rows are not padded to the longest; the buffers stay within
    what the groups hold; every answer is the plain path's.

    They arrive in a fixed order (rows join groups in the order they queue), one that placing by padded
    positions packed badly (0.92 of one group padded to the longest; 0.74 placing by bytes): threads released
    together queue in any order, and the packing depends on it."""
    backend = budget_backend(demo_model, 4096)
    tokenizer = backend.loaded.tokenizer
    prompts = [
        encode(tokenizer, conversation("", [{"role": "user", "content": SENTENCE * n + "Tell me more."}]))
        for n in (1, 2, 3, 10, 6, 14, 24, 18)
    ]
    options = GenerationOptions(temperature=0, max_new_tokens=16, repetition_penalty=1.0)
    expected = [plain(backend, ids, None, options) for ids in prompts]
    seen = watch(backend, monkeypatch)
    queue_in_turn(backend.scheduler, prompts, monkeypatch)
    results = at_once([lambda p=p: list(backend.scheduler.generate(p, frozenset(), options)) for p in prompts], 600)
    assert results == expected
    full = [s for s in seen if s["rows"] == len(prompts)]
    assert full, "the eight rows were never in the batch together"
    per_token = kv_bytes_per_token(demo_model.model.config, demo_model.model.dtype)
    one_group = len(prompts) * spare_room(max(len(p) for p in prompts)) * per_token  # everyone padded to the longest
    peak = max(sum(size for size, _ in s["groups"]) for s in full)
    assert peak < 0.8 * one_group
    assert all(len(s["groups"]) <= MAX_GROUPS for s in seen)
    assert all(size <= held for s in seen for size, held in s["groups"])  # each group within what it holds


def test_holding_and_releasing_evicts_least_recently_used_first():
    import torch
    from transformers import DynamicCache

    from llm.kvcache import CacheEntry

    def entry(n_tokens: int) -> CacheEntry:
        cache = DynamicCache()
        cache.update(torch.zeros(1, 1, n_tokens, 256), torch.zeros(1, 1, n_tokens, 256), 0)  # 2 KiB per token
        return CacheEntry(list(range(n_tokens)), cache, None)

    pool = SessionCaches(budget_bytes=100 * 2048, max_sessions=10)
    for n in range(4):
        pool.put(f"s{n}", entry(20))  # 4 x 40 KiB idle
    assert not pool.hold(101 * 2048) and len(pool) == 4  # more than the whole budget: nothing evicted for nothing
    assert pool.hold(50 * 2048)
    assert pool.take("s0") is None and pool.take("s1") is None and pool.take("s2") is not None  # oldest went first
    pool.put("late", entry(60))  # 120 KiB: does not fit beside what is held, so it is not kept
    assert pool.take("late") is None and pool.nbytes + pool.held <= 100 * 2048
    pool.release(50 * 2048)
    assert pool.held == 0
