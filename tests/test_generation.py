"""Streamed generation on the real demo model: stop ids, options, cancel, concurrency."""

import threading
import time

import pytest
from pydantic import ValidationError

from llm.generation import IncrementalDecoder
from llm.options import GenerationOptions
from llm.prompts import conversation, encode
from llm.runner import ModelRunner
from tests.concurrency import at_once
from tests.reference import alone

GREEDY = GenerationOptions(temperature=0, max_new_tokens=24, repetition_penalty=1.0)


def ask(backend, text, options=GREEDY, system="You are a helpful assistant."):
    stream = backend.stream(conversation(system, [{"role": "user", "content": text}]), options)
    return list(stream), stream.stats


@pytest.mark.model
def test_answer_streams_in_several_pieces_with_stats(backend):
    pieces, stats = ask(backend, "What is the capital of France?")
    text = "".join(pieces)
    assert len(pieces) > 3
    assert "Paris" in text
    assert stats.prompt_tokens > 10 and stats.completion_tokens > 3
    assert stats.first_token_s is not None and stats.first_token_s < stats.total_s
    assert stats.tokens_per_s and stats.tokens_per_s > 0
    assert stats.finish_reason in {"stop", "length"}


@pytest.mark.model
def test_generation_stops_on_end_of_turn_and_leaks_no_special_tokens(backend, demo_model):
    options = GenerationOptions(temperature=0, max_new_tokens=200)
    pieces, stats = ask(backend, "Say hello.", options)
    text = "".join(pieces)
    assert stats.finish_reason == "stop" and stats.completion_tokens < 200
    assert "<|im_end|>" not in text and "<|im_start|>" not in text
    assert demo_model.stop_ids  # taken from the generation config / tokenizer


@pytest.mark.model
def test_stop_ids_are_honoured_whichever_they_are(demo_model):
    tok = demo_model.tokenizer
    prompt = encode(tok, [{"role": "user", "content": "Count: one, two, three, four"}])
    plain = alone(ModelRunner(demo_model.model), prompt, frozenset(), GREEDY)
    # Pretend the third generated token ends the turn (as <|eom_id|> would for Llama-3.1).
    cut = alone(ModelRunner(demo_model.model), prompt, frozenset({plain[2]}), GREEDY)
    assert cut == plain[: plain.index(plain[2])]


@pytest.mark.model
def test_greedy_is_deterministic_and_seed_makes_sampling_repeatable(backend):
    assert ask(backend, "Name a fruit.")[0] == ask(backend, "Name a fruit.")[0]
    sampled = GenerationOptions(temperature=1.2, top_p=0.95, top_k=100, seed=7, max_new_tokens=20)
    assert ask(backend, "Tell me a word.", sampled)[0] == ask(backend, "Tell me a word.", sampled)[0]


@pytest.mark.model
def test_max_new_tokens_is_a_hard_limit(backend):
    _, stats = ask(backend, "Write a long story about a dragon.", GenerationOptions(temperature=0, max_new_tokens=5))
    assert stats.completion_tokens == 5 and stats.finish_reason == "length"


@pytest.mark.model
def test_closing_the_stream_stops_the_computation(backend, demo_model, monkeypatch):
    calls = []
    model = demo_model.model
    original = model.forward

    def counting_forward(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting_forward)
    stream = backend.stream(
        conversation("", [{"role": "user", "content": "Write a long poem."}]),
        GenerationOptions(temperature=0, max_new_tokens=200),
    )
    next(stream), next(stream)
    stream.close()  # what Streamlit does when the user presses stop
    after_close = len(calls)
    assert after_close < 10
    assert stream.stats.finish_reason == "cancelled"
    time.sleep(0.5)  # the engine's worker thread would have run several more steps by now
    settled = len(calls)
    time.sleep(0.5)
    assert len(calls) == settled <= after_close + 1  # at most the step already under way when it closed


@pytest.mark.model
def test_cancel_event_stops_generation(backend):
    cancel = threading.Event()
    stream = backend.stream(
        conversation("", [{"role": "user", "content": "Write a long poem."}]),
        GenerationOptions(temperature=0, max_new_tokens=200),
        cancel=cancel,
    )
    next(stream)
    cancel.set()
    list(stream)
    stats = stream.stats
    assert stats.completion_tokens < 5 and stats.finish_reason == "cancelled"


@pytest.mark.model
def test_multibyte_text_is_never_split(demo_model):
    tok = demo_model.tokenizer
    text = "你好，世界 🦙 Привіт! mixed ✨ text"
    decoder = IncrementalDecoder(tok)
    out = "".join(decoder.push(t) for t in tok.encode(text, add_special_tokens=False))
    assert out == text


def test_options_are_validated_with_readable_errors():
    with pytest.raises(ValidationError, match="less than or equal to 2"):
        GenerationOptions(temperature=5)
    with pytest.raises(ValidationError, match="Extra inputs"):
        GenerationOptions(nonsense=1)


@pytest.mark.model
def test_two_sessions_at_once_each_get_their_own_answer(backend):
    """Different prompts and settings at the same moment on the one model: same as alone."""
    jobs = {
        "a": ("What is the capital of France?", GenerationOptions(temperature=0, max_new_tokens=20)),
        "b": ("Write a haiku about snow.", GenerationOptions(temperature=0.9, seed=3, max_new_tokens=30)),
        "c": ("你好！你是谁？", GenerationOptions(temperature=0, max_new_tokens=25, repetition_penalty=1.3)),
    }
    one_by_one = {k: "".join(ask(backend, q, o)[0]) for k, (q, o) in jobs.items()}
    jobs_at_once = [lambda q=q, o=o: "".join(ask(backend, q, o)[0]) for q, o in jobs.values()]
    together = dict(zip(jobs, at_once(jobs_at_once)))
    assert together == one_by_one
    assert len(set(one_by_one.values())) == 3
