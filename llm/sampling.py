"""Picking the next token: a request's own logits processors (penalty, schema, warpers) and the draw.

Both are per request: the processors keep state (the schema's parser, the prompt length), and the draw uses
the request's own RNG, seeded once (`llm.requests.DecodeState.start`), so a seed repeats an answer whatever
else is in the batch.
"""

from __future__ import annotations

import torch

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


def sample(logits: torch.Tensor, seen: torch.Tensor, processors, greedy: bool, rng: torch.Generator) -> int:
    """Pick the next token id. Sampling happens on the CPU so a seed gives the same answer on any device."""
    scores = processors(seen, logits.float())
    if greedy:
        return int(scores.argmax(dim=-1))
    probs = torch.softmax(scores, dim=-1).cpu()
    return int(torch.multinomial(probs, 1, generator=rng))
