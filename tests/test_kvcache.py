"""Keeping each session's KV cache between turns: same tokens as the plain path, less prefill."""

from __future__ import annotations

import pytest
import torch

from llm.kvcache import CacheEntry, SessionCaches, common_prefix
from llm.options import GenerationOptions
from llm.prompts import conversation, encode

GREEDY = GenerationOptions(temperature=0, max_new_tokens=24)
QUESTIONS = [
    "My name is Oksana and I live in Lviv.",
    "What is the capital of France?",
    "Tell me about whales.",
    "What is my name?",
    "Write one sentence about the sea.",
]


@pytest.fixture
def cached_backend(quill_backend):
    return quill_backend


@pytest.fixture
def prefill_lengths(cached_backend, monkeypatch):
    """The length of every multi-token forward (prefills) the runner is asked for."""
    lengths: list[int] = []
    original = cached_backend.runner.forward

    def spy(input_ids, cache, adapter=None, **kwargs):
        if input_ids.shape[1] > 1:
            lengths.append(input_ids.shape[1])
        return original(input_ids, cache, adapter, **kwargs)

    monkeypatch.setattr(cached_backend.runner, "forward", spy)
    return lengths


def answer(backend, system, history, session=None, model=None, options=GREEDY):
    return "".join(backend.stream(conversation(system, history), options, model=model, session=session))


@pytest.mark.model
def test_turns_reuse_the_cache_and_match_the_plain_path(cached_backend, prefill_lengths):
    history: list[dict] = []
    for turn, question in enumerate(QUESTIONS):
        history.append({"role": "user", "content": question})
        full_prompt = len(encode(cached_backend.loaded.tokenizer, conversation("Be brief.", history)))
        prefill_lengths.clear()
        cached = answer(cached_backend, "Be brief.", history, session="s1")
        fed = prefill_lengths[0]
        assert cached == answer(cached_backend, "Be brief.", history)  # no session: the plain path
        if turn > 0:
            assert fed < full_prompt / 2, (turn, fed, full_prompt)  # only the new tokens were fed
        history.append({"role": "assistant", "content": cached})


@pytest.mark.model
def test_regenerate_system_prompt_change_and_persona_switch(cached_backend, prefill_lengths):
    history = [{"role": "user", "content": "Tell me about the Moon."}]
    first = answer(cached_backend, "Be brief.", history, session="s2")
    history += [{"role": "assistant", "content": first}, {"role": "user", "content": "And the Sun?"}]
    answer(cached_backend, "Be brief.", history, session="s2")
    # Regenerate: the same prompt again; the cache is cropped back to it.
    assert answer(cached_backend, "Be brief.", history, session="s2") == answer(cached_backend, "Be brief.", history)
    # A changed system prompt shares (almost) nothing: same tokens as the plain path.
    assert answer(cached_backend, "Answer like a poet.", history, session="s2") == answer(
        cached_backend, "Answer like a poet.", history
    )
    # A persona switch: the cache built without the adapter is not used with it.
    prefill_lengths.clear()
    with_adapter = answer(cached_backend, "Answer like a poet.", history, session="s2", model="captain-quill")
    assert prefill_lengths[0] > 20
    assert with_adapter == answer(cached_backend, "Answer like a poet.", history, model="captain-quill")
    assert with_adapter != answer(cached_backend, "Answer like a poet.", history)


@pytest.mark.model
def test_a_stopped_answer_keeps_a_consistent_cache(cached_backend):
    history = [{"role": "user", "content": "Write a long poem about the sea."}]
    stream = cached_backend.stream(
        conversation("", history), GenerationOptions(temperature=0, max_new_tokens=60), session="s3"
    )
    partial = next(stream) + next(stream) + next(stream)
    stream.close()  # the stop button
    history += [{"role": "assistant", "content": partial}, {"role": "user", "content": "Shorter, please."}]
    assert answer(cached_backend, "", history, session="s3") == answer(cached_backend, "", history)


def test_idle_caches_are_evicted_least_recently_used_first():
    def entry(n_tokens: int) -> CacheEntry:
        from transformers import DynamicCache

        cache = DynamicCache()
        cache.update(torch.zeros(1, 1, n_tokens, 256), torch.zeros(1, 1, n_tokens, 256), 0)  # 1 KiB/token each
        return CacheEntry(list(range(n_tokens)), cache, None)

    pool = SessionCaches(budget_bytes=100 * 2048, max_sessions=3)
    for n in range(5):
        pool.put(f"s{n}", entry(10))
    assert len(pool) == 3 and pool.take("s0") is None and pool.take("s1") is None
    pool.put("s2", pool.take("s2"))  # s2 used again: now the newest
    pool.put("big", entry(60))  # over the byte budget: the oldest (s3) goes
    assert pool.take("s3") is None and pool.take("s2") is not None and pool.nbytes <= 100 * 2048


@pytest.mark.model
def test_fifty_idle_sessions_do_not_hold_fifty_caches(cached_backend):
    for n in range(50):
        answer(
            cached_backend,
            "",
            [{"role": "user", "content": f"Say the number {n}."}],
            session=f"idle-{n}",
            options=GenerationOptions(temperature=0, max_new_tokens=2),
        )
    assert len(cached_backend.caches) <= 4 and cached_backend.caches.nbytes <= 64 * 2**20


def test_common_prefix():
    assert (
        common_prefix([1, 2, 3], [1, 2, 4]) == 2
        and common_prefix([], [1]) == 0
        and common_prefix([1, 2], [1, 2, 3]) == 2
    )
