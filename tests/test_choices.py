"""Several answers to one prompt (OpenAI's `n`) on the real demo model: the prompt is prefilled once, each answer
decodes from a copy of that cache in the shared batch, and each equals the same request decoded alone with its
seed, token for token."""

from __future__ import annotations

import pytest

from llm.options import GenerationOptions
from tests.reference import alone, prompt_ids

pytestmark = pytest.mark.model
QUESTION = "Write a short poem about the sea and the wind and the ships that sail on it at night."


def seeded(seed: int, new_tokens: int = 20) -> GenerationOptions:
    return GenerationOptions(temperature=0.9, top_p=0.95, seed=seed, max_new_tokens=new_tokens)


def test_three_answers_share_one_prefill_and_each_repeats_its_seed_alone(quill_backend):
    scheduler, ids = quill_backend.scheduler, prompt_ids(quill_backend, QUESTION)
    prefills, fed = scheduler.prefills, scheduler.prefill_tokens
    choices = [seeded(7), seeded(8), seeded(9)]
    streams = scheduler.generate_copies(ids, frozenset(), choices)
    answers = [list(stream) for stream in streams]  # read one after the other: they decode together anyway
    assert scheduler.prefills - prefills == 1
    assert scheduler.prefill_tokens - fed == len(ids)  # one prefill, not three
    assert scheduler.max_rows_seen >= 3
    assert [len(a) for a in answers] == [20, 20, 20]
    assert len({tuple(a) for a in answers}) == 3  # differently seeded
    for options, answer in zip(choices, answers):
        assert answer == alone(quill_backend.runner, ids, frozenset(), options)


def test_copies_of_a_persona_prompt_keep_the_adapter_and_one_can_stop_alone(quill_backend):
    scheduler, ids = quill_backend.scheduler, prompt_ids(quill_backend, QUESTION)
    choices = [seeded(1, 30), seeded(2, 30), seeded(3, 30)]
    streams = scheduler.generate_copies(ids, frozenset(), choices, adapter="captain-quill")
    first = [next(stream) for stream in streams]
    streams[1].close()  # one of the answers is not wanted any more
    rest = [list(streams[0]), list(streams[2])]
    for options, head, tail in zip(choices[::2], first[::2], rest):
        assert [head, *tail] == alone(quill_backend.runner, ids, frozenset(), options, adapter="captain-quill")


def test_copies_closed_before_they_are_read_take_nothing(quill_backend):
    scheduler, ids = quill_backend.scheduler, prompt_ids(quill_backend, "Hi")
    prefills = scheduler.prefills
    for stream in scheduler.generate_copies(ids, frozenset(), [seeded(1), seeded(2)]):
        stream.close()
    assert scheduler.prefills == prefills
    assert quill_backend.caches.held == 0


def test_copies_through_the_backend_stream_text_with_their_own_stats(quill_backend):
    messages = [{"role": "user", "content": QUESTION}]
    answers = quill_backend.stream_choices(messages, [seeded(4, 12), seeded(5, 16)])
    texts = [answer.text() for answer in answers]
    assert all(texts)
    assert [a.stats.completion_tokens for a in answers] == [12, 16]
    assert answers[0].stats.prompt_tokens == answers[1].stats.prompt_tokens > 0
    assert all(a.stats.finish_reason == "length" for a in answers)
    assert all(a.stats.batched_with >= 1 for a in answers)
