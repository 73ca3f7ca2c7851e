"""From the scheduler's token ids to the text pieces a page streams, with the answer's figures.

Decoding itself is `llm.scheduler.BatchScheduler` (one loop for one request or many). This side runs in the
caller's thread and reads as it goes, so a consumer that stops iterating (Streamlit's stop button closes the
generator) closes the token stream, which stops the computation too, not just the rendering.
"""

from __future__ import annotations

from collections.abc import Iterator

from llm.interface import GenerationStats, Piece
from llm.logprobs import TokenTexts
from llm.requests import TokenStream
from llm.stream_stats import StreamTally


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


def stream_text(tokens: TokenStream, tokenizer, prompt_tokens: int, stats: GenerationStats) -> Iterator[str]:
    """Turn a request's new token ids into text pieces, filling in `stats` as they are read (in this thread).

    For a request that asked for log probabilities, each piece is a `Piece` carrying those of the tokens that
    arrived since the previous piece (tokens left without text at the end come in a last, empty piece)."""
    stats.prompt_tokens = prompt_tokens
    decoder = IncrementalDecoder(tokenizer)
    texts, pending = None, []  # TokenTexts once a token came with its log probabilities; their entries
    with StreamTally(stats) as tally:
        try:
            for token in tokens:
                tally.arrived()
                stats.cached_tokens, stats.batched_with = tokens.cached_tokens, tokens.batched_with
                piece = decoder.push(token)
                if tokens.scored is not None:
                    texts = texts or TokenTexts.of(tokenizer)
                    pending.append(texts.entry(tokens.scored))
                    if piece:
                        piece, pending = Piece.with_logprobs(piece, pending), []
                if piece:
                    yield piece
            if pending:
                yield Piece.with_logprobs("", pending)
            tally.ended(tokens.finish_reason)
        finally:
            tokens.close()  # stops the computation when the reader stops
            stats.cached_tokens, stats.batched_with = tokens.cached_tokens, tokens.batched_with
