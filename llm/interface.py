"""What pages, the API and the team runner need from an engine, without importing torch or transformers.

`ChatBackend.stream(messages, options, ...)` returns an `AnswerStream`: iterate it for the answer's text
pieces (each a `Piece` carrying its tokens' log probabilities when `options.logprobs` asks and the backend
`can_logprobs`); its `stats` say how the answer went (tokens, times, why it ended). Closing the stream (or stopping
iterating and dropping it) stops the computation. The in-process engine is `llm.transformers_backend`, a
server is `llm.openai_backend`; both are chosen and loaded once per process by `runtime`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Required, TypedDict

from core.errors import StudioError
from core.stats import STATS_FIELDS
from llm.options import GenerationOptions


class Message(TypedDict, total=False):
    """One conversation message. A tool-using turn also carries the assistant's calls, or the call a result
    answers (OpenAI's shapes), so a call and its results travel and are trimmed together."""

    role: Required[str]  # "system" | "user" | "assistant" | "tool"
    content: Required[str]
    tool_calls: list[dict]  # assistant: [{"id", "type": "function", "function": {"name", "arguments": JSON text}}]
    tool_call_id: str  # tool: the id of the call this is the result of


class ModelLoadError(StudioError):
    """The model could not be fetched or loaded."""


class PromptTooLongError(StudioError):
    """A message does not fit in the model's context window."""


class BackendError(StudioError):
    """The generation backend (in-process or a server) failed while answering."""


class OptionError(StudioError):
    """A sampling option this model cannot use as given (e.g. a logit_bias token id outside its vocabulary);
    `field` names the option."""

    def __init__(self, field: str, message: str, /, **params):
        super().__init__(message, **params)
        self.field = field


@dataclass
class GenerationStats:
    """Figures shown under an answer. Written only by the thread that reads the stream, as pieces arrive."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    dropped_messages: int = 0
    cached_tokens: int = 0  # prompt tokens taken from this session's kept cache instead of being fed again
    batched_with: int = 0  # the most other answers decoded in the same forward passes as this one
    first_token_s: float | None = None
    total_s: float = 0.0
    finish_reason: str = "running"  # "stop" (end of turn), "length", "cancelled", "error"
    started: float = field(default_factory=time.perf_counter, repr=False)

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed, first token excluded (that one is prefill's)."""
        if self.first_token_s is None or self.completion_tokens < 2:
            return None
        decode_s = self.total_s - self.first_token_s
        return (self.completion_tokens - 1) / decode_s if decode_s > 0 else None

    def as_dict(self) -> dict:
        """The figures an answer saves and shows: the fields of `core.stats.Stats`, their one spelling."""
        return {name: getattr(self, name) for name in STATS_FIELDS}


@dataclass(frozen=True)
class TokenLogprob:
    """One answer token's log probability (after the sampling options), with its likeliest alternatives."""

    token: str  # its text; bytes of a character split across tokens are shown escaped (`\\xe2`)
    logprob: float  # <= 0; -9999.0 for a token the sampling options ruled out, as OpenAI reports it
    bytes: tuple[int, ...]  # its exact UTF-8 bytes
    top: tuple[TokenLogprob, ...] = ()  # likeliest first (their own `top` is empty)

    def as_dict(self) -> dict:
        """OpenAI's shape (`choices[].logprobs.content[]`)."""
        entry = {"token": self.token, "logprob": self.logprob, "bytes": list(self.bytes)}
        entry["top_logprobs"] = [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)} for t in self.top]
        return entry


class Piece(str):
    """A text piece that also carries its tokens' log probabilities (only when the request asked for them; other
    answers stream plain `str`). Several tokens may make one piece, and a token may finish in a later piece."""

    logprobs: tuple[TokenLogprob, ...] = ()

    @classmethod
    def with_logprobs(cls, text: str, logprobs: list[TokenLogprob]) -> Piece:
        piece = cls(text)
        piece.logprobs = tuple(logprobs)
        return piece


class AnswerStream:
    """One answer's text pieces; `stats` is complete once iteration ends (or the stream is closed)."""

    def __init__(self, pieces: Iterator[str], stats: GenerationStats):
        self._pieces = pieces
        self.stats = stats

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def text(self) -> str:
        """The whole answer (reads the stream to its end)."""
        return "".join(self)

    def close(self) -> None:
        """Stop the answer (and its computation) here; what streamed so far stays the caller's."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()


class ChatBackend(Protocol):
    name: str  # what the page shows as "model"
    notes: list[str]  # facts the page shows once (e.g. "this is the demo model")
    base_name: str | None  # the loaded base model, for checking adapters; None when a server decides
    can_logprobs: bool  # its pieces carry log probabilities when options.logprobs asks
    is_server: bool  # an OpenAI-compatible server decides which models and adapters there are (its ids as they are)

    def default_model(self) -> str | None:
        """The model an answer that names none gets, when a choice among several is offered (None: the first)."""
        ...

    def figures(self) -> dict[str, int]:
        """The engine's running counts for /health (decode steps, rows together…); {} when a server does the work."""
        ...

    def stream(
        self,
        messages: list[Message],
        options: GenerationOptions,
        *,
        model: str | None = None,  # a persona's model: an adapter here, a served model name on a server
        session: str | None = None,  # a stable id for one conversation: lets a backend keep its cache
        cancel: threading.Event | None = None,  # set by the team page's stop, which stops several answers
        tools: list[dict] | None = None,  # OpenAI's tool definitions the model may call (`llm.tools`)
    ) -> AnswerStream: ...

    def stream_choices(
        self,
        messages: list[Message],
        choices: list[GenerationOptions],  # one answer per options (OpenAI's `n`; each with its own seed)
        *,
        model: str | None = None,
        tools: list[dict] | None = None,
        cancel: threading.Event | None = None,  # stops them all
    ) -> list[AnswerStream]:
        """Several answers to the same messages, sharing the prompt's prefill where the backend can."""
        ...

    def list_models(self) -> list[str]: ...

    def attach_adapter(self, name: str, folder: Path, card) -> str:
        """Make a LoRA persona usable (or reload it if its files changed); returns the `model` to pass to
        `stream`. Raises BackendError."""
        ...

    def detach_adapter(self, name: str) -> None:
        """The persona went away or broke: new answers can no longer use it."""
        ...

    def complete(
        self,
        prompt: str,
        options: GenerationOptions,
        *,
        model: str | None = None,
        cancel: threading.Event | None = None,
    ) -> AnswerStream:
        """Raw text continued as it is (OpenAI's legacy completions): no chat template and no system prompt, so
        the caller writes any template it wants. Raises PromptTooLongError when the prompt and
        `options.max_new_tokens` do not fit in the context, BackendError for an unknown `model`."""
        ...
