"""A scripted ChatBackend for page-logic tests: answers, mid-stream errors, stops and figures as told, no model.

    fake = install(monkeypatch, Reply(["Hel", "lo."]), Reply(["Par"], error=BackendError("lost")))

Each `stream` call takes the next scripted `Reply` (then `FakeBackend.default`); every call is recorded. The
pages get the fake through `runtime.get_backend`, as they get the real one. Each page also has one
AppTest through the real demo model; these are for what the page does with what comes back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import StudioError
from llm.interface import AnswerStream, GenerationStats, Message
from llm.options import GenerationOptions

_alive: list = []  # the registry cache is keyed by id(backend): a freed fake's id must not be reused


def _stop() -> BaseException:
    """What a press of the stop button raises in the page's thread while an answer streams."""
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    return StopException()


@dataclass
class Reply:
    """One scripted answer: its pieces (one token each), then an error, a stop, or an end."""

    pieces: list[str] = field(default_factory=lambda: ["Hello", " there", "."])
    error: StudioError | None = None  # raised after the pieces (at once when there are none)
    stop_after: int | None = None  # the user presses stop after this many pieces
    prompt_tokens: int = 12
    dropped_messages: int = 0
    cached_tokens: int = 0
    batched_with: int = 0


@dataclass
class Call:
    messages: list[Message]
    options: GenerationOptions
    model: str | None
    session: str | None
    cancel: threading.Event | None


class FakeBackend:
    """Implements llm.interface.ChatBackend from a script."""

    base_name = None  # like a server: adapters are not checked against a base model
    is_server = True
    can_logprobs = False

    def __init__(self, *replies: Reply, name: str = "fake-model", notes: list[str] | None = None):
        self.replies = list(replies)
        self.default = Reply()
        self.name = name
        self.notes = list(notes or [])
        self.calls: list[Call] = []
        self.closed = 0  # streams stopped before their end (a stop, a closed tab)
        self.adapters: dict[str, Path] = {}
        _alive.append(self)

    def stream(
        self,
        messages: list[Message],
        options: GenerationOptions,
        *,
        model: str | None = None,
        session: str | None = None,
        cancel: threading.Event | None = None,
    ) -> AnswerStream:
        self.calls.append(Call(messages, options, model, session, cancel))
        reply = self.replies.pop(0) if self.replies else self.default
        stats = GenerationStats(
            prompt_tokens=reply.prompt_tokens,
            dropped_messages=reply.dropped_messages,
            cached_tokens=reply.cached_tokens,
            batched_with=reply.batched_with,
        )
        return AnswerStream(self._pieces(reply, options, stats, cancel), stats)

    def _pieces(self, reply: Reply, options: GenerationOptions, stats: GenerationStats, cancel):
        pieces = reply.pieces[: options.max_new_tokens]
        finished = False
        try:
            for n, piece in enumerate(pieces):
                if reply.stop_after is not None and n == reply.stop_after:
                    raise _stop()
                if cancel is not None and cancel.is_set():
                    stats.finish_reason = "cancelled"
                    finished = True
                    return
                stats.completion_tokens += 1
                stats.first_token_s = stats.first_token_s or 0.01
                stats.total_s = 0.01 * (n + 1)  # figures as a fast model's: 100 tokens a second
                yield piece
            if reply.error is not None:
                stats.finish_reason = "error"
                finished = True
                raise reply.error
            stats.finish_reason = "length" if len(reply.pieces) > options.max_new_tokens else "stop"
            finished = True
        finally:
            if not finished:
                self.closed += 1

    def list_models(self) -> list[str]:
        return [self.name]

    def default_model(self) -> str | None:
        return None

    def figures(self) -> dict[str, int]:
        return {}

    def resolve_model(self, model: str | None) -> str:
        return model or self.name

    def attach_adapter(self, name: str, folder: Path, card) -> str:
        self.adapters[name] = folder
        return name

    def detach_adapter(self, name: str) -> None:
        self.adapters.pop(name, None)


def install(monkeypatch, *replies: Reply, **kwargs) -> FakeBackend:
    """A fake backend the pages get instead of the real one (for the rest of the test)."""
    fake = FakeBackend(*replies, **kwargs)
    monkeypatch.setattr("runtime.get_backend", lambda progress=None, settings=None: fake)
    return fake
