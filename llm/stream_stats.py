"""The bookkeeping every engine's stream does as it is read: first-token time, counts, how it ended.

Torch-free, so the server backend (`llm.openai_backend`) shares it with the in-process one. It runs only in the
thread that reads the stream, so a `GenerationStats` has one writer: engines hand over what they know (tokens,
figures, why they ended) as data, and the reader writes it here.
"""

from __future__ import annotations

import time

from llm.interface import GenerationStats


class StreamTally:
    """`with StreamTally(stats) as tally:` around reading a stream. Until the stream says how it ended the
    answer counts as cancelled (the reader stopped); an exception out of the block marks it as an error."""

    def __init__(self, stats: GenerationStats):
        self.stats = stats
        stats.finish_reason = "cancelled"

    def __enter__(self) -> StreamTally:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None and issubclass(kind, Exception):  # not GeneratorExit: a closed stream was stopped
            self.stats.finish_reason = "error"
        self.stats.total_s = time.perf_counter() - self.stats.started

    def arrived(self, tokens: int = 1) -> None:
        """New tokens were read."""
        stats = self.stats
        now = time.perf_counter() - stats.started
        if stats.first_token_s is None:
            stats.first_token_s = now
        stats.completion_tokens += tokens
        stats.total_s = now

    def ended(self, reason: str) -> None:
        """The stream reached its end on its own: "stop", "length", or "cancelled" (its cancel event was set)."""
        self.stats.finish_reason = reason
