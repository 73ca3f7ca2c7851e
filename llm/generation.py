"""Decoding as small named steps: prefill, decode_one_token, sample, generate_tokens, stream_text.

`generate_tokens` is the plain path: one request, its own loop. The app decodes through
`llm.batching.BatchScheduler`, which shares each step among sessions and must match it token for token.
The plain loop runs in the caller's thread and yields as it goes, so a consumer that stops iterating
(Streamlit's stop button closes the generator) stops the computation too, not just the rendering.
Everything per request (cache, RNG, sampling options) is local: the shared model is only read.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import torch

from llm.interface import GenerationStats
from llm.options import GenerationOptions


def make_processors(options: GenerationOptions):
    """The request's own logits processors (fresh state each call: one set per request, even in a batch)."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if options.json_schema is not None:
        # First, so the penalty and the warpers only ever see tokens the schema allows.
        if options.grammar is None:
            raise ValueError("a json_schema must be compiled for the tokenizer first (llm.constrained.bind)")
        processors.append(options.grammar.processor())
    if options.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(options.repetition_penalty))
    if not options.greedy:
        processors.append(TemperatureLogitsWarper(options.temperature))
        if options.top_k:
            processors.append(TopKLogitsWarper(options.top_k))
        if options.top_p < 1.0:
            processors.append(TopPLogitsWarper(options.top_p))
    return processors


def prefill(runner, input_ids: torch.Tensor, cache, adapter: str | None) -> torch.Tensor:
    """Run the whole prompt once; returns the last position's logits, shape (1, vocab)."""
    return runner.forward(input_ids, cache, adapter)


def decode_one_token(runner, token: torch.Tensor, cache, adapter: str | None) -> torch.Tensor:
    """Feed one token (shape (1, 1)) against the cache; returns logits (1, vocab)."""
    return runner.forward(token, cache, adapter)


def sample(logits: torch.Tensor, seen: torch.Tensor, processors, greedy: bool, rng: torch.Generator) -> int:
    """Pick the next token id. Sampling happens on the CPU so a seed gives the same answer on any device."""
    scores = processors(seen, logits.float())
    if greedy:
        return int(scores.argmax(dim=-1))
    probs = torch.softmax(scores, dim=-1).cpu()
    return int(torch.multinomial(probs, 1, generator=rng))


def generate_tokens(
    runner,
    prompt_ids: list[int],
    stop_ids: frozenset[int],
    options: GenerationOptions,
    cancel: threading.Event | None = None,
    adapter: str | None = None,
) -> Iterator[int]:
    """Yield new token ids until an end-of-turn id, `max_new_tokens`, or `cancel` is set.

    The plain path: this request alone, its whole prompt fed into a fresh cache; the reference the batched,
    cache-reusing path is tested against. `runner` is an `llm.runner.ModelRunner`; `adapter` names a LoRA
    adapter on it (None: the base model). Stop ids are not yielded.
    """
    from transformers import DynamicCache

    device = runner.device
    cache = DynamicCache(config=runner.base.config)
    rng = torch.Generator().manual_seed(options.seed if options.seed is not None else secrets.randbits(63))
    processors = make_processors(options)
    seen = torch.tensor([prompt_ids], device=device)  # (1, T) prompt + answer so far, for the penalty
    logits = prefill(runner, seen, cache, adapter)
    for _ in range(options.max_new_tokens):
        token = sample(logits, seen, processors, options.greedy, rng)
        if token in stop_ids:
            return
        yield token
        if cancel is not None and cancel.is_set():
            return
        next_token = torch.tensor([[token]], device=device)
        seen = torch.cat([seen, next_token], dim=1)
        logits = decode_one_token(runner, next_token, cache, adapter)


class IncrementalDecoder:
    """Token ids in, text out, holding back bytes of a character split across tokens."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = 0  # characters of decode(self.ids) already returned

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # incomplete UTF-8 sequence: wait for the next token
            return ""
        new, self.emitted = text[self.emitted :], len(text)
        if new.endswith("\n"):  # start a fresh segment so decoding stays O(line), not O(answer)
            self.ids, self.emitted = [], 0
        return new


def stream_text(
    tokens: Iterator[int],
    tokenizer,
    prompt_tokens: int,
    options: GenerationOptions,
    stats: GenerationStats,
    cancel: threading.Event | None = None,
) -> Iterator[str]:
    """Turn new token ids (from `generate_tokens` or the batch scheduler) into text pieces, filling in `stats`."""
    stats.prompt_tokens = prompt_tokens
    decoder = IncrementalDecoder(tokenizer)
    stats.finish_reason = "cancelled"  # until the loop ends on its own
    try:
        for token in tokens:
            stats.completion_tokens += 1
            if stats.first_token_s is None:
                stats.first_token_s = time.perf_counter() - stats.started
            stats.total_s = time.perf_counter() - stats.started
            piece = decoder.push(token)
            if piece:
                yield piece
        if cancel is None or not cancel.is_set():
            stats.finish_reason = "length" if stats.completion_tokens >= options.max_new_tokens else "stop"
    finally:
        if hasattr(tokens, "close"):
            tokens.close()  # stops the computation when the reader stops
        stats.total_s = time.perf_counter() - stats.started
