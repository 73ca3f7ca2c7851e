"""Log probabilities of the answer's tokens, for the rows that ask for them (`GenerationOptions.logprobs`).

The worker takes them from the scores the token was drawn from, after every sampling option (penalties, bias,
schema, temperature, top-k/top-p), as ids and numbers (`scored`); the reading thread turns them into text and
bytes (`TokenTexts`), so the worker's step pays only a log-softmax and a top-k for the rows that asked.
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass

import torch

from llm.interface import TokenLogprob

# What OpenAI reports for a token the sampling options ruled out (a log probability of minus infinity).
RULED_OUT = -9999.0


@dataclass(frozen=True)
class Scored:
    """A new token with its log probability and the likeliest alternatives, as the worker sends it."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]  # (id, log probability), likeliest first


def _finite(value: float) -> float:
    return value if math.isfinite(value) else RULED_OUT


def scored(token: int, scores: torch.Tensor, top: int) -> Scored:
    """`token` as drawn from `scores` (1, V), with its log probability and the `top` likeliest alternatives."""
    logprobs = torch.log_softmax(scores[0].float(), dim=-1)
    chosen = float(logprobs[token])
    if not top:
        return Scored(token, _finite(chosen), ())
    values, ids = torch.topk(logprobs, min(top, logprobs.shape[-1]))
    pairs = tuple((int(i), _finite(float(v))) for i, v in zip(ids.tolist(), values.tolist()))
    return Scored(token, _finite(chosen), pairs)


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level alphabet (Llama 3, SmolLM2): each vocabulary character stands for one byte."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


class TokenTexts:
    """Token ids as OpenAI shows them in logprobs: the token's text and its exact UTF-8 bytes (a token may hold
    part of a character: its text then shows the bytes escaped, as `\\xe2`)."""

    _cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._bytes: dict[int, bytes] = {}

    @classmethod
    def of(cls, tokenizer) -> TokenTexts:
        """One per tokenizer (what it learns about each id is kept)."""
        found = cls._cache.get(tokenizer)
        if found is None:
            found = cls._cache[tokenizer] = cls(tokenizer)
        return found

    def raw(self, token: int) -> bytes:
        found = self._bytes.get(token)
        if found is None:
            found = self._bytes[token] = self._read(token)
        return found

    def _read(self, token: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(token)
        byte_of = _byte_of_char()
        if isinstance(piece, str) and piece and all(char in byte_of for char in piece):
            return bytes(byte_of[char] for char in piece)
        return self.tokenizer.decode([token]).encode("utf-8")  # not byte-level (e.g. a special token)

    def describe(self, token: int, logprob: float) -> tuple[str, float, tuple[int, ...]]:
        raw = self.raw(token)
        return raw.decode("utf-8", errors="backslashreplace"), logprob, tuple(raw)

    def entry(self, scored: Scored) -> TokenLogprob:
        """What the reader hands on with the text: the token and its alternatives, as text and bytes."""
        top = tuple(TokenLogprob(*self.describe(token, value)) for token, value in scored.top)
        return TokenLogprob(*self.describe(scored.token, scored.logprob), top=top)
