"""One answer inside the scheduler: what was asked (`Request`), how far decoding got (`DecodeState`), and the
queue between the worker that decodes it and the caller that reads it (`Row`, `TokenStream`).

The worker thread is the only one to touch a `DecodeState`. It never writes into anything the caller owns:
what the caller needs to know besides the tokens (cached prompt tokens, how many rows shared its steps, why it
ended, its error) goes through the row's queue as data, and `TokenStream` turns it into attributes in the
reading thread.
"""

from __future__ import annotations

import queue
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from core.errors import N_
from llm.interface import BackendError
from llm.kvcache import CacheEntry
from llm.logprobs import Scored
from llm.options import GenerationOptions
from llm.sampling import make_processors


@dataclass(frozen=True)
class Request:
    """What one caller asked for. Never changes once queued."""

    prompt_ids: tuple[int, ...]
    stop_ids: frozenset[int]
    options: GenerationOptions
    adapter: str | None  # the adapter version's key (`ModelRunner.acquire`), held until the request ends
    session: str | None  # whose kept cache to start from and to leave the new one for; None: nothing kept
    cancel: threading.Event | None  # set by a caller that stops several answers at once (the team page)

    @property
    def final(self) -> int:
        """The most tokens its cache can hold: the prompt and every new token."""
        return len(self.prompt_ids) + self.options.max_new_tokens


@dataclass(eq=False)
class DecodeState:
    """How far one request got. Made in the caller's thread, then touched only by the worker."""

    rng: torch.Generator
    processors: object  # transformers LogitsProcessorList: stateful, so one per request
    kept: CacheEntry | None = None  # the session's cache, taken for this answer until it starts
    cache: object = None  # its own cache while its prompt is fed
    position: int = 0  # prompt tokens in that cache
    seen: torch.Tensor | None = None  # (1, T) prompt + answer so far, for the penalty and the schema
    fed: list[int] = field(default_factory=list)  # what the cache holds
    produced: int = 0
    next_token: int | None = None
    cached_tokens: int = 0  # prompt tokens taken from the session's kept cache
    batched_with: int = 0  # the most other rows in one of its forward passes
    held: int = 0  # bytes of the KV budget counted for it (until it joins a group, which holds them)
    refused: BaseException | None = None  # why it was not admitted

    def take_prompt(self, other: DecodeState) -> None:
        """Start where `other` is after its prompt (`n` answers to one prompt; its cache is copied by the caller)."""
        self.seen, self.fed = other.seen.clone(), list(other.fed)
        self.position, self.cached_tokens = other.position, other.cached_tokens

    @classmethod
    def start(cls, options: GenerationOptions) -> DecodeState:
        """Seeding and processor set-up, the one place they happen. Raises ValueError for options that cannot
        be decoded as given (a json_schema not compiled for the tokenizer)."""
        seed = options.seed if options.seed is not None else secrets.randbits(63)
        return cls(torch.Generator().manual_seed(seed), make_processors(options))


@dataclass(frozen=True)
class Figures:
    """What the worker tells the reader about its row besides tokens (sent when they change)."""

    cached_tokens: int
    batched_with: int


@dataclass(frozen=True)
class Ended:
    """The last message of a row: why it ended ("stop", "length", "cancelled", "error") and its error."""

    reason: str
    error: BaseException | None = None


@dataclass(eq=False)
class Row:
    """A request in the scheduler: what was asked, how far it got, and the queue to its reader."""

    request: Request
    state: DecodeState
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # ints (Scored), Figures, then one Ended
    abandoned: threading.Event = field(default_factory=threading.Event)  # the reader went away
    done: threading.Event = field(default_factory=threading.Event)  # the worker let go of it
    # Other answers to the same prompt (`n` > 1): they wait, outside the queue, for this row's prefill, then each
    # decodes from a copy of its cache. Emptied once they are on their own.
    copies: list[Row] = field(default_factory=list)

    @property
    def stopped(self) -> bool:
        cancel = self.request.cancel
        return self.abandoned.is_set() or (cancel is not None and cancel.is_set())

    @property
    def finish_reason(self) -> str:
        """Why it ended without an error."""
        if self.stopped:
            return "cancelled"
        return "length" if self.state.produced >= self.request.options.max_new_tokens else "stop"

    def report(self) -> None:
        self.out.put(Figures(self.state.cached_tokens, self.state.batched_with))


class TokenStream:
    """One request's new token ids, read from its row's queue in the caller's thread.

    The figures the worker sent along land here, in the reading thread: `cached_tokens`, `batched_with`, the last
    token's log probabilities in `scored` (for a request that asked for them), and once the stream ends,
    `finish_reason` (None while it runs). The row's error is raised where the tokens end.
    `close()` takes the row out of the batch (at the worker's next step)."""

    def __init__(self, messages: Iterator, on_close=None):
        self._messages = messages
        self._on_close = on_close  # also called for a stream closed before it was read
        self.cached_tokens = 0
        self.batched_with = 0
        self.finish_reason: str | None = None
        self.scored: Scored | None = None

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> int:
        for message in self._messages:
            if isinstance(message, int):
                return message
            if isinstance(message, Scored):
                self.scored = message
                return message.token
            if isinstance(message, Figures):
                self.cached_tokens, self.batched_with = message.cached_tokens, message.batched_with
                continue
            self.finish_reason = message.reason
            self.close()
            if message.error is not None:
                raise message.error
        raise StopIteration

    def close(self) -> None:
        self._messages.close()
        if self._on_close is not None:
            self._on_close()


def invalid_numbers(row: Row) -> BackendError:
    if row.request.adapter:
        return BackendError(
            N_(
                "This persona's adapter produced invalid numbers (NaN or infinity), so its answer was "
                "stopped; other answers are not affected. Choose another persona, and retrain or remove "
                "this adapter."
            )
        )
    return BackendError(
        N_(
            "The model produced invalid numbers (NaN or infinity) for this answer, so it was stopped. "
            "Try again; if it repeats, load the model in float32 or bfloat16 (LLM_DTYPE)."
        )
    )


def sampling_failed(exc: Exception) -> BackendError:
    error = BackendError(
        N_(
            "Picking the next token failed ({kind}), so this answer was stopped; other answers are "
            "not affected. Try again, or change the sampling options."
        ),
        kind=type(exc).__name__,
    )
    error.__cause__ = exc
    return error
