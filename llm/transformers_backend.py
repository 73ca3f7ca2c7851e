"""The in-process model as a `ChatBackend`: prompts built here, decoded by the batch scheduler."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from core.errors import N_, StudioError
from llm import constrained
from llm.generation import stream_text
from llm.interface import AnswerStream, BackendError, GenerationStats, OptionError, PromptTooLongError
from llm.kvcache import SessionCaches
from llm.loading import LoadedModel
from llm.lora import AdapterError
from llm.prompts import build_prompt
from llm.runner import ModelRunner
from llm.scheduler import BatchScheduler

log = logging.getLogger(__name__)


class TransformersBackend:
    """The in-process model. Thread-safe: each call has its own cache and RNG; the model is only read.
    Concurrent calls are decoded together, one batched forward pass per token (`llm.scheduler`)."""

    can_logprobs = True  # pieces carry their tokens' log probabilities when options.logprobs asks
    is_server = False  # the model is here: one base model and the adapters attached to it

    def __init__(
        self,
        loaded: LoadedModel,
        cache_budget_mb: int = 2048,
        cache_sessions: int = 16,
        max_batch: int = 8,
        prefill_chunk: int = 512,
        step: str = "eager",
    ):
        self.loaded = loaded
        self.name = self.base_name = loaded.name
        self.notes = loaded.notes
        self.runner = ModelRunner(loaded.model, step)
        # One KV budget for idle sessions' caches and the answers in flight; the scheduler keeps both.
        self.caches = SessionCaches(cache_budget_mb * 2**20, cache_sessions)
        self.scheduler = BatchScheduler(self.runner, max_batch, prefill_chunk, self.caches)

    def attach_adapter(self, name: str, folder: Path, card=None) -> str:
        """Load the adapter, or reload it if its files changed since (a new version; answers already streaming
        finish with the old one)."""
        try:
            self.runner.add_adapter(name, folder)
        except AdapterError as exc:  # checked before anything is installed: the others keep working
            raise BackendError(N_("the adapter cannot be used: {reason}"), reason=exc) from None
        return name

    def detach_adapter(self, name: str) -> None:
        """New answers can no longer use it (its folder went away or broke); answers streaming with it finish."""
        self.runner.remove_adapter(name)

    def stream(self, messages, options, *, model=None, session=None, cancel=None, tools=None) -> AnswerStream:
        return self._answers(messages, [options], model, session, cancel, tools)[0]

    def stream_choices(self, messages, choices, *, model=None, tools=None, cancel=None) -> list[AnswerStream]:
        """One answer per options to the same messages, from one prefill of the prompt (OpenAI's `n`)."""
        return self._answers(messages, choices, model, None, cancel, tools)

    def _answers(self, messages, choices, model, session, cancel, tools) -> list[AnswerStream]:
        if model not in (None, self.name) and model not in self.runner.adapters:
            raise BackendError(N_("No adapter named {model!r} is loaded. Press 'Refresh personas'."), model=model)
        adapter = None if model in (None, self.name) else model
        lm = self.loaded
        choices = [constrained.bind(o, lm.tokenizer, lm.stop_ids) for o in choices]  # json_schema, compiled here
        longest, resume = max(o.max_new_tokens for o in choices), any(o.continue_final_message for o in choices)
        prompt = build_prompt(lm.tokenizer, messages, longest, lm.context_length, tools, resume)
        streams = self.scheduler.generate_copies(prompt.input_ids, lm.stop_ids, choices, cancel, adapter, session)
        answers = []
        for tokens in streams:
            stats = GenerationStats(dropped_messages=prompt.dropped_messages)
            text = stream_text(tokens, lm.tokenizer, len(prompt.input_ids), stats)
            answers.append(AnswerStream(_explain_failures(text), stats))
        return answers

    def list_models(self) -> list[str]:
        return [self.name]

    def default_model(self) -> str | None:
        return None  # the one model here

    def figures(self) -> dict[str, int]:
        scheduler = self.scheduler
        return {
            "decode_steps": scheduler.steps,
            "most_rows_together": scheduler.max_rows_seen,
            "prompts_prefilled": scheduler.prefills,
            "prefill_tokens": scheduler.prefill_tokens,
        }

    def complete(self, prompt: str, options, *, model=None, cancel=None) -> AnswerStream:
        """Raw text continued as it is, decoded in the shared batch like any answer: no chat template and no
        system prompt. The tokenizer reads the text as it reads any (a BOS token added where it adds one, a
        special token's text taken as that token, as vLLM reads a completion prompt); the answer ends at the
        model's stop ids or max_new_tokens."""
        if model not in (None, self.name) and model not in self.runner.adapters:
            raise BackendError(N_("No adapter named {model!r} is loaded. Press 'Refresh personas'."), model=model)
        lm = self.loaded
        ids = list(lm.tokenizer(prompt)["input_ids"])
        if not ids:
            raise OptionError("prompt", N_("The prompt holds no tokens; send some text to continue."))
        if len(ids) + options.max_new_tokens > lm.context_length:
            raise PromptTooLongError(
                N_(
                    "The prompt is {count:,} tokens and {max_new_tokens:,} more are asked for, past the "
                    "{context_length:,}-token context. Shorten the prompt or ask for fewer tokens "
                    "(max_tokens)."
                ),
                count=len(ids),
                max_new_tokens=options.max_new_tokens,
                context_length=lm.context_length,
            )
        stats = GenerationStats()
        adapter = None if model in (None, self.name) else model
        tokens = self.scheduler.generate(ids, lm.stop_ids, options, cancel, adapter, None)
        return AnswerStream(_explain_failures(stream_text(tokens, lm.tokenizer, len(ids), stats)), stats)


def _explain_failures(chunks: Iterator[str]) -> Iterator[str]:
    """Turn the errors a forward pass can raise into a message that says what to do (the stats already say
    "error": `stream_text` counted it)."""
    try:
        yield from chunks
    except StudioError:  # already says what to do (e.g. one row's broken adapter, the KV budget)
        raise
    except torch.OutOfMemoryError:  # by type: a message that merely mentions memory is not this
        raise BackendError(
            N_(
                "The GPU ran out of memory for this answer. Lower max new tokens, start a new chat, "
                "or lower CONTEXT_LENGTH or KV_CACHE_BUDGET_MB."
            )
        ) from None
    except Exception as exc:
        log.error("generation failed: %s", type(exc).__name__, exc_info=exc)
        raise BackendError(
            N_("Generation failed ({kind}). The app is still running; try again."), kind=type(exc).__name__
        ) from exc
