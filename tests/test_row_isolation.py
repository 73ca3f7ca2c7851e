"""One row's failure in a batched step is that row's: a broken adapter, a sampling error or an out-of-memory
in one answer stops that answer with a message, and the answers batched with it are unchanged token for token.
Real demo model, the shipped adapter and a copy of it written to disk."""

from __future__ import annotations

import shutil
import threading

import pytest
import torch

from llm import scheduler as scheduling
from llm.interface import BackendError
from llm.lora import MultiLoraLinear
from llm.options import GenerationOptions
from llm.prompts import conversation
from tests.concurrency import at_once
from tests.conftest import ROOT
from tests.reference import plain, prompt_ids
from tests.test_batching import QUESTIONS

pytestmark = pytest.mark.model
OPTIONS = GenerationOptions(temperature=0, max_new_tokens=40, repetition_penalty=1.0)


@pytest.fixture
def poison(quill_backend, tmp_path):
    """A finite copy of the shipped adapter, loaded (so it passes the load-time checks), and a function that
    puts NaN into its tensors in place, as a broken adapter would produce at run time."""
    shutil.copytree(ROOT / "adapters" / "captain-quill", tmp_path / "poison")
    quill_backend.attach_adapter("poison", tmp_path / "poison")
    key = quill_backend.runner.adapters["poison"].key

    def spoil() -> None:
        for module in quill_backend.runner.base.modules():
            if isinstance(module, MultiLoraLinear) and key in module.loras:
                module.loras[key][1].fill_(float("nan"))  # B: every output of that row's LoRA is NaN

    yield spoil
    quill_backend.detach_adapter("poison")


def drain(stream) -> tuple[list[int], BaseException | None]:
    tokens = []
    try:
        for token in stream:
            tokens.append(token)
    except BackendError as exc:
        return tokens, exc
    return tokens, None


def test_a_nan_adapter_at_prefill_fails_alone(quill_backend, poison):
    ids = prompt_ids(quill_backend, QUESTIONS[0])
    expected = plain(quill_backend, ids, None, OPTIONS)
    poison()
    results = at_once(
        [
            lambda a=a: drain(quill_backend.scheduler.generate(ids, frozenset(), OPTIONS, adapter=a))
            for a in [None, "poison"]
        ]
    )
    assert results[0] == (expected, None)
    assert results[1][0] == [] and "adapter produced invalid numbers" in str(results[1][1])


def test_a_nan_adapter_mid_answer_in_a_mixed_batch_leaves_the_other_rows_unchanged(quill_backend, poison):
    """Base, Captain Quill and the poisoned adapter decode in one forward pass; the poison appears after all three
    joined. The base and Quill rows give exactly their answers alone; the poisoned row stops with a message."""
    ids = prompt_ids(quill_backend, QUESTIONS[0])
    expected = {
        None: plain(quill_backend, ids, None, OPTIONS),
        "captain-quill": plain(quill_backend, ids, "captain-quill", OPTIONS),
    }
    streams = {
        name: quill_backend.scheduler.generate(ids, frozenset(), OPTIONS, adapter=name)
        for name in (None, "captain-quill", "poison")
    }
    heads = {name: [next(stream)] for name, stream in streams.items()}  # all three are in the batch now
    poison()
    results = {name: drain(stream) for name, stream in streams.items()}
    for name in (None, "captain-quill"):
        tokens, error = results[name]
        assert error is None and heads[name] + tokens == expected[name]
        assert streams[name].batched_with == 2  # really decoded together with the poisoned row
    assert "This persona's adapter produced invalid numbers" in str(results["poison"][1])
    assert len(heads["poison"] + results["poison"][0]) < OPTIONS.max_new_tokens


def test_the_backend_shows_the_adapter_message_and_the_next_answer_works(quill_backend, poison):
    poison()
    messages = conversation("", [{"role": "user", "content": QUESTIONS[0]}])
    stream = quill_backend.stream(messages, OPTIONS, model="poison")
    with pytest.raises(BackendError, match="adapter produced invalid numbers"):
        stream.text()
    assert stream.stats.finish_reason == "error"
    assert "".join(quill_backend.stream(messages, OPTIONS)).strip()


def test_a_sampling_error_in_one_row_fails_that_row_only(quill_backend, monkeypatch):
    good, bad = prompt_ids(quill_backend, QUESTIONS[0]), prompt_ids(quill_backend, "Tell me about seals.")
    expected = plain(quill_backend, good, None, OPTIONS)
    original = scheduling.sample

    def sample(logits, seen, processors, greedy, rng):
        if seen.shape[1] == len(bad) + 3 and seen[0, : len(bad)].tolist() == bad:
            raise ValueError("simulated sampling failure")
        return original(logits, seen, processors, greedy, rng)

    monkeypatch.setattr(scheduling, "sample", sample)
    streams = [
        quill_backend.scheduler.generate(good, frozenset(), OPTIONS),
        quill_backend.scheduler.generate(bad, frozenset(), OPTIONS),
    ]
    heads = [[next(stream)] for stream in streams]
    (good_rest, good_error), (bad_rest, bad_error) = drain(streams[0]), drain(streams[1])
    assert good_error is None and heads[0] + good_rest == expected and streams[0].batched_with == 1
    assert len(heads[1] + bad_rest) == 3 and "Picking the next token failed (ValueError)" in str(bad_error)


def test_out_of_memory_in_one_row_fails_that_row_only(quill_backend, monkeypatch):
    """The batched step runs out of memory; retried row by row, the Quill row runs out again alone and gets the
    out-of-memory message; the base row goes on unchanged; the next request is served."""
    runner = quill_backend.runner
    original = runner.forward
    quill_key = runner.adapters["captain-quill"].key

    ran_out = threading.Event()

    def forward(input_ids, cache, adapter=None, **kwargs):
        # Out of memory once both rows share a step (so the base row is surely in the batch that fails), and
        # from then on whenever the Quill row decodes, alone in the row-by-row retry included.
        names = adapter if isinstance(adapter, list) else [adapter]
        if input_ids.shape[1] == 1 and quill_key in names and (len(names) == 2 or ran_out.is_set()):
            ran_out.set()
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(input_ids, cache, adapter, **kwargs)

    monkeypatch.setattr(runner, "forward", forward)
    messages = conversation("", [{"role": "user", "content": QUESTIONS[0]}])
    expected = "".join(quill_backend.stream(messages, OPTIONS))
    models = (None, "captain-quill")

    def read(stream):
        try:
            return stream.text(), stream.stats
        except BackendError as exc:
            return exc, stream.stats

    streams = [quill_backend.stream(messages, OPTIONS, model=model) for model in models]
    results = dict(zip(models, at_once([lambda s=s: read(s) for s in streams])))
    assert results[None][0] == expected and results[None][1].batched_with == 1
    assert (
        "ran out of memory" in str(results["captain-quill"][0]) and results["captain-quill"][1].finish_reason == "error"
    )
    monkeypatch.setattr(runner, "forward", original)
    assert "".join(quill_backend.stream(messages, OPTIONS, model="captain-quill")).strip()


def test_an_error_that_only_mentions_memory_is_not_called_out_of_memory(quill_backend, monkeypatch):
    runner = quill_backend.runner
    original = runner.forward

    def forward(input_ids, cache, adapter=None, **kwargs):
        if input_ids.shape[1] == 1:
            raise RuntimeError("index out of memory range")  # text alone must not decide the message
        return original(input_ids, cache, adapter, **kwargs)

    monkeypatch.setattr(runner, "forward", forward)
    with pytest.raises(BackendError) as caught:
        "".join(quill_backend.stream(conversation("", [{"role": "user", "content": "Hi"}]), OPTIONS))
    assert "Generation failed (RuntimeError)" in str(caught.value) and "ran out of memory" not in str(caught.value)
