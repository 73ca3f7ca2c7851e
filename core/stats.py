"""The figures under an answer, spelled once: the engine fills them (`llm.interface.GenerationStats.as_dict`
takes its keys from here), a message saves them (`core.message.Message.stats`), the page shows them.

Pure data with no import above `core.errors`, so the engine may import it (tests/test_layout.py).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Count = Annotated[int, Field(ge=0, le=10**9)]
Seconds = Annotated[float, Field(ge=0, le=10**7)]


class Stats(BaseModel):
    """What one answer took: its tokens, its speed, why it ended, and with how many others it was decoded."""

    # As the message's other parts (core.message): unknown keys kept (an import then drops them), strict types.
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    dropped_messages: Count | None = None  # history left out to fit the context
    cached_tokens: Count | None = None  # prompt tokens taken from the session's kept cache
    batched_with: Count | None = None  # the most other answers decoded in the same forward passes
    first_token_s: Seconds | None = None
    tokens_per_s: Annotated[float, Field(ge=0)] | None = None
    finish_reason: Annotated[str, Field(max_length=32)] | None = None  # "stop", "length", "cancelled", "error"


STATS_FIELDS = tuple(Stats.model_fields)  # the keys of a saved answer's "stats", in the order they are spelled


def continued(stats: dict, earlier: dict | None) -> dict:
    """A continued answer's figures (`stats`, as saved): its completion tokens count its `earlier` part's too."""
    before = ((earlier or {}).get("stats") or {}).get("completion_tokens")
    return {**stats, "completion_tokens": (stats.get("completion_tokens") or 0) + before} if before else stats
