"""The reference every batched answer is compared with: the same scheduler code, one request alone.

A fresh `BatchScheduler` per call (no other rows, no kept cache, no KV budget) runs the request and is closed,
so its worker thread, and the torch thread pool that goes with it, end with the call.
"""

from __future__ import annotations

from llm.options import GenerationOptions
from llm.prompts import conversation, encode
from llm.scheduler import BatchScheduler

GREEDY = GenerationOptions(temperature=0, max_new_tokens=32)


def alone(runner, prompt_ids: list[int], stop_ids: frozenset[int], options: GenerationOptions, adapter=None):
    """The new token ids of this request decoded alone, its whole prompt fed into a fresh cache."""
    scheduler = BatchScheduler(runner)
    try:
        return list(scheduler.generate(prompt_ids, stop_ids, options, adapter=adapter))
    finally:
        scheduler.close()


def plain(backend, ids: list[int], adapter=None, options=GREEDY) -> list[int]:
    """`alone` on a backend's model, with its stop ids."""
    return alone(backend.runner, ids, backend.loaded.stop_ids, options, adapter)


def prompt_ids(backend, question: str, history: list[dict] | None = None) -> list[int]:
    return encode(backend.loaded.tokenizer, conversation("", (history or []) + [{"role": "user", "content": question}]))


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first position where two answers differ (one ending earlier counts), or None when they are equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def tie_gap(backend, ids: list[int], expected: list[int], got: list[int], adapter=None) -> float:
    """How far apart, in logits, `expected` and `got` were where they first differ: both tokens' logits at that
    position, from `backend` fed the prompt and `expected`'s tokens before it in one pass (an answer that ended
    there counts with its likeliest stop id). 0.0 when they do not differ."""
    import torch

    k = first_difference(expected, got)
    if k is None:
        return 0.0
    logits = backend.runner.forward(torch.tensor([ids + expected[:k]]), None, adapter)[0]
    stop = max(float(logits[token]) for token in backend.loaded.stop_ids)

    def logit(answer: list[int]) -> float:
        return float(logits[answer[k]]) if k < len(answer) else stop

    return abs(logit(expected) - logit(got))
