"""One interface for every engine that can answer: `stream(messages, options, stats) -> Iterator[str]`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from core.errors import StudioError
from llm import constrained
from llm.batching import BatchScheduler
from llm.generation import stream_text
from llm.interface import AnswerStream, BackendError, GenerationStats
from llm.kvcache import SessionCaches
from llm.loading import LoadedModel
from llm.lora import AdapterError
from llm.prompts import build_prompt
from llm.runner import ModelRunner

log = logging.getLogger(__name__)


class TransformersBackend:
    """The in-process model. Thread-safe: each call has its own cache and RNG; the model is only read.
    Concurrent calls are decoded together, one batched forward pass per token (`llm.batching`)."""

    def __init__(
        self,
        loaded: LoadedModel,
        cache_budget_mb: int = 2048,
        cache_sessions: int = 16,
        max_batch: int = 8,
        prefill_chunk: int = 512,
    ):
        self.loaded = loaded
        self.name = self.base_name = loaded.name
        self.notes = loaded.notes
        self.runner = ModelRunner(loaded.model)
        # One KV budget for idle sessions' caches and the answers in flight (the scheduler holds its share).
        self.caches = SessionCaches(cache_budget_mb * 2**20, cache_sessions)
        self.scheduler = BatchScheduler(self.runner, max_batch, prefill_chunk, self.caches)

    def attach_adapter(self, name: str, folder: Path, card=None) -> str:
        """Load the adapter, or reload it if its files changed since (a new version; answers already streaming
        finish with the old one)."""
        try:
            self.runner.add_adapter(name, folder)
        except AdapterError as exc:  # checked before anything is installed: the others keep working
            raise BackendError(f"the adapter cannot be used: {exc}") from None
        return name

    def detach_adapter(self, name: str) -> None:
        """New answers can no longer use it (its folder went away or broke); answers streaming with it finish."""
        self.runner.remove_adapter(name)

    def stream(self, messages, options, *, model=None, session=None, cancel=None) -> AnswerStream:
        if model not in (None, self.name) and model not in self.runner.adapters:
            raise BackendError(f"No adapter named {model!r} is loaded. Press 'Refresh personas'.")
        adapter = None if model in (None, self.name) else model
        lm = self.loaded
        stats = GenerationStats()
        options = constrained.bind(options, lm.tokenizer, lm.stop_ids)  # a json_schema, compiled for this tokenizer
        prompt = build_prompt(lm.tokenizer, messages, options.max_new_tokens, lm.context_length)
        stats.dropped_messages = prompt.dropped_messages
        tokens = self._tokens(prompt.input_ids, options, cancel, adapter, session, stats)
        chunks = stream_text(tokens, lm.tokenizer, len(prompt.input_ids), options, stats, cancel)
        return AnswerStream(_explain_failures(chunks, stats), stats)

    def _tokens(self, prompt_ids, options, cancel, adapter, session, stats) -> Iterator[int]:
        # A generator, so the session's kept cache is taken (and counted as in flight) only once the answer
        # starts: a stream that is never read takes nothing.
        reused = self.caches.take(session) if session else None
        keep = (lambda entry: self.caches.put(session, entry)) if session else None
        yield from self.scheduler.generate(
            prompt_ids, self.loaded.stop_ids, options, cancel, adapter, reused, keep, stats
        )

    def list_models(self) -> list[str]:
        return [self.name]


def _explain_failures(chunks: Iterator[str], stats: GenerationStats) -> Iterator[str]:
    """Turn the errors a forward pass can raise into a message that says what to do."""
    try:
        yield from chunks
    except StudioError:  # already says what to do (e.g. one row's broken adapter, the KV budget)
        stats.finish_reason = "error"
        raise
    except torch.OutOfMemoryError:  # by type: a message that merely mentions memory is not this
        stats.finish_reason = "error"
        raise BackendError(
            "The GPU ran out of memory for this answer. Lower max new tokens, start a new chat, "
            "or lower CONTEXT_LENGTH or KV_CACHE_BUDGET_MB."
        ) from None
    except Exception as exc:
        stats.finish_reason = "error"
        log.error("generation failed: %s", type(exc).__name__, exc_info=exc)
        raise BackendError(f"Generation failed ({type(exc).__name__}). The app is still running; try again.") from exc
