"""Picking the next token: a request's own logits processors (penalties, bias, schema, warpers) and the draw.

Both are per request: the processors keep state (the schema's parser, the prompt length), and the draw uses
the request's own RNG, seeded once (`llm.requests.DecodeState.start`), so a seed repeats an answer whatever
else is in the batch.
"""

from __future__ import annotations

import torch

from core.errors import N_
from llm.interface import OptionError
from llm.options import GenerationOptions


class AnswerPenalties:
    """OpenAI's presence and frequency penalties, as an HF-style logits processor `(ids (B, T), scores (B, V))`:
    scores[j] -= c[j] * frequency + (c[j] > 0) * presence, where c[j] counts token j in the answer so far.

    Stateful, so one per request: the prompt length is recorded on the first call (when the ids are exactly the
    prompt) and the counts grow by the tokens added since the previous call."""

    def __init__(self, presence: float, frequency: float):
        self.presence, self.frequency = presence, frequency
        self.counted: int | None = None  # ids[:, :counted] are in `counts` (or are the prompt)
        self.counts: torch.Tensor | None = None  # (B, V)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.counts is None:
            self.counts = torch.zeros_like(scores)
            self.counted = input_ids.shape[1]
        new = input_ids[:, self.counted :].to(scores.device)
        if new.numel():
            self.counts.scatter_add_(1, new, torch.ones_like(new, dtype=scores.dtype))
            self.counted = input_ids.shape[1]
        return scores - self.counts * self.frequency - (self.counts > 0).to(scores.dtype) * self.presence


class LogitBias:
    """OpenAI's logit_bias: a fixed bias per token id added to the scores `(B, V)`."""

    def __init__(self, bias: tuple[tuple[int, float], ...]):
        self.ids = [token for token, _ in bias]
        self.values = [value for _, value in bias]
        self._bias: torch.Tensor | None = None  # (V,), built on the first call, on the scores' device

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._bias is None:
            bias = torch.zeros(scores.shape[-1], dtype=scores.dtype, device=scores.device)
            bias[torch.tensor(self.ids, dtype=torch.long, device=scores.device)] = torch.tensor(
                self.values, dtype=scores.dtype, device=scores.device
            )
            self._bias = bias
        return scores + self._bias


def check_token_ids(options: GenerationOptions, vocabulary_size: int) -> None:
    """Raise OptionError (naming logit_bias) when a biased token id is not in the model's vocabulary."""
    outside = [token for token, _ in options.logit_bias if token >= vocabulary_size]
    if outside:
        raise OptionError(
            "logit_bias",
            N_("logit_bias names token {token}, which is not in the model's vocabulary (ids 0 to {last_id})."),
            token=outside[0],
            last_id=vocabulary_size - 1,
        )


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
    if options.presence_penalty or options.frequency_penalty:
        processors.append(AnswerPenalties(options.presence_penalty, options.frequency_penalty))
    if options.logit_bias:  # after the penalties and before the warpers, as OpenAI applies it
        processors.append(LogitBias(options.logit_bias))
    if not options.greedy:
        processors.append(TemperatureLogitsWarper(options.temperature))
        if options.top_k:
            processors.append(TopKLogitsWarper(options.top_k))
        if options.top_p < 1.0:
            processors.append(TopPLogitsWarper(options.top_p))
    return processors


def sample(
    logits: torch.Tensor, seen: torch.Tensor, processors, greedy: bool, rng: torch.Generator
) -> tuple[int, torch.Tensor]:
    """Pick the next token id; also returns the scores it was drawn from, (1, V) after every processor (what
    log probabilities are reported from). Sampling happens on the CPU so a seed gives the same answer on any
    device."""
    scores = processors(seen, logits.float())
    if greedy:
        return int(scores.argmax(dim=-1)), scores
    probs = torch.softmax(scores, dim=-1).cpu()
    return int(torch.multinomial(probs, 1, generator=rng)), scores
