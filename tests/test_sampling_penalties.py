"""OpenAI's presence and frequency penalties, logit_bias and log probabilities: the arithmetic on small tensors,
the options' bounds, the API's mapping, and (marked slow) the demo model with several of them in one batch."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from llm.interface import OptionError, Piece, TokenLogprob
from llm.logprobs import RULED_OUT, scored
from llm.options import GenerationOptions
from llm.sampling import AnswerPenalties, LogitBias, check_token_ids, make_processors, sample
from server.api.errors import ApiError
from server.api.logprobs import Logprobs
from server.api.schemas import ChatRequest
from server.api.translate import to_options

LOGITS = torch.tensor([[1.0, 2.0, 0.5, -1.0, 3.0, 0.0]])  # (1, V=6)
PROMPT = [4, 4, 1]  # counted by nothing: the penalties look at the answer only


def openai_formula(logits: torch.Tensor, answer: list[int], presence: float, frequency: float) -> torch.Tensor:
    """OpenAI's documented definition, written out per token."""
    out = logits.clone()
    for j in range(logits.shape[-1]):
        count = answer.count(j)
        out[0, j] -= count * frequency + (1.0 if count > 0 else 0.0) * presence
    return out


@pytest.mark.parametrize("presence, frequency", [(0.5, 0.0), (0.0, 0.7), (1.5, -0.25), (-2.0, 2.0)])
def test_penalties_follow_openais_formula_over_the_answer_only(presence, frequency):
    penalties = AnswerPenalties(presence, frequency)
    seen = torch.tensor([PROMPT])
    assert torch.equal(penalties(seen, LOGITS.clone()), LOGITS)  # first call: the prompt, nothing counted
    answer: list[int] = []
    for token in [2, 2, 5, 2, 0]:
        answer.append(token)
        seen = torch.cat([seen, torch.tensor([[token]])], dim=1)
        got = penalties(seen, LOGITS.clone())
        assert torch.allclose(got, openai_formula(LOGITS, answer, presence, frequency)), answer


def test_penalties_count_several_new_tokens_at_once_and_rows_apart():
    penalties = AnswerPenalties(1.0, 0.5)
    prompt = torch.tensor([[0, 1], [3, 3]])
    logits = LOGITS.repeat(2, 1)
    penalties(prompt, logits)
    seen = torch.cat([prompt, torch.tensor([[1, 1, 4], [2, 5, 5]])], dim=1)
    got = penalties(seen, logits.clone())
    assert torch.allclose(got[0:1], openai_formula(LOGITS, [1, 1, 4], 1.0, 0.5))
    assert torch.allclose(got[1:2], openai_formula(LOGITS, [2, 5, 5], 1.0, 0.5))


def test_logit_bias_is_added_to_the_logits():
    bias = LogitBias(GenerationOptions(logit_bias={"0": 100, "4": -100, "2": 0.5}).logit_bias)
    got = bias(torch.tensor([PROMPT]), LOGITS.clone())
    assert torch.allclose(got, LOGITS + torch.tensor([[100.0, 0.0, 0.5, 0.0, -100.0, 0.0]]))


def test_processors_come_only_when_asked_and_bias_goes_after_the_penalties():
    assert not any(isinstance(p, (AnswerPenalties, LogitBias)) for p in make_processors(GenerationOptions()))
    options = GenerationOptions(temperature=0, repetition_penalty=1.0, frequency_penalty=1.0, logit_bias={"3": 5})
    kinds = [type(p) for p in make_processors(options)]
    assert kinds == [AnswerPenalties, LogitBias]
    processors = make_processors(options)
    seen = torch.tensor([PROMPT])
    token, scores = sample(LOGITS.clone(), seen, processors, True, torch.Generator())
    assert token == 3 and math.isclose(float(scores[0, 3]), 4.0)  # -1 + 5 beats 3 (token 4)


def test_options_keep_logit_bias_hashable_and_sorted():
    options = GenerationOptions(logit_bias={"17": 2, "3": -1.5})
    assert options.logit_bias == ((3, -1.5), (17, 2.0))
    assert hash(options) == hash(GenerationOptions(logit_bias={"3": -1.5, "17": 2}))


@pytest.mark.parametrize(
    "values",
    [
        {"presence_penalty": 2.01},
        {"presence_penalty": -2.5},
        {"frequency_penalty": 3},
        {"frequency_penalty": float("nan")},
        {"logit_bias": {"abc": 1}},
        {"logit_bias": {"-1": 1}},
        {"logit_bias": {"1.5": 1}},
        {"logit_bias": {"1": 100.5}},
        {"logit_bias": {"1": True}},
        {"logit_bias": {"1": "5"}},
        {"logit_bias": {"1": float("inf")}},
        {"logit_bias": {str(i): 1 for i in range(301)}},
        {"logit_bias": {"1": 1, "01": 2}},
        {"logit_bias": "1:100"},
        {"logprobs": 21},
        {"logprobs": -1},
    ],
)
def test_options_out_of_range_are_refused_naming_the_field(values):
    with pytest.raises(ValidationError) as caught:
        GenerationOptions(**values)
    assert caught.value.errors()[0]["loc"][0] == next(iter(values))


def test_a_token_id_outside_the_vocabulary_is_named():
    check_token_ids(GenerationOptions(logit_bias={"5": 1}), 6)
    with pytest.raises(OptionError) as caught:
        check_token_ids(GenerationOptions(logit_bias={"5": 1, "6": 1}), 6)
    assert caught.value.field == "logit_bias" and "6" in str(caught.value)


def chat(**fields) -> ChatRequest:
    return ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


def test_the_api_maps_its_fields_onto_the_options():
    options = to_options(chat(presence_penalty=0.5, frequency_penalty=-1, logit_bias={"9": -100}, logprobs=True))
    assert (options.presence_penalty, options.frequency_penalty, options.logit_bias) == (0.5, -1.0, ((9, -100.0),))
    assert options.logprobs == 0
    assert to_options(chat(logprobs=True, top_logprobs=5)).logprobs == 5
    defaults = to_options(chat(logprobs=False))
    assert (defaults.presence_penalty, defaults.frequency_penalty, defaults.logit_bias, defaults.logprobs) == (
        0.0,
        0.0,
        (),
        None,
    )
    assert chat(presence_penalty=1, logit_bias={"1": 1}, logprobs=True, top_logprobs=3).unsupported() is None


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"logit_bias": {"abc": 5}}, "logit_bias"),
        ({"logit_bias": {"-1": 5}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"logit_bias": {str(i): 1 for i in range(10_000)}}, "logit_bias"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
    ],
)
def test_bad_values_are_a_400_naming_the_field(fields, param):
    with pytest.raises(ApiError) as caught:
        to_options(chat(**fields))
    assert (caught.value.status, caught.value.param) == (400, param)
    assert "Value error" not in str(caught.value)


def test_scored_values_are_log_probabilities_of_the_processed_scores():
    scores = torch.tensor([[2.0, 1.0, float("-inf"), 0.0]])
    found = scored(1, scores, 3)
    expected = torch.log_softmax(scores[0], dim=-1)
    assert math.isclose(found.logprob, float(expected[1]), rel_tol=1e-6)
    assert [token for token, _ in found.top] == [0, 1, 3]
    assert all(value <= 0 for _, value in found.top)
    assert scored(2, scores, 4).logprob == RULED_OUT and scored(2, scores, 4).top[-1] == (2, RULED_OUT)
    assert scored(0, scores, 0).top == ()


def test_log_probabilities_are_handed_out_with_the_text_they_belong_to():
    def entry(text: str) -> TokenLogprob:
        return TokenLogprob(text, -0.5, tuple(text.encode()))

    pieces = iter([Piece.with_logprobs("Hel", [entry("He"), entry("l")]), Piece.with_logprobs("lo", [entry("lo")])])
    kept = Logprobs(pieces)
    assert list(kept) == ["Hel", "lo"]
    assert [e["token"] for e in kept.upto(2)] == ["He"]
    assert [e["token"] for e in kept.upto(3)] == ["l"]
    assert kept.upto(3) == []
    assert kept.upto(None) == [{"token": "lo", "logprob": -0.5, "bytes": [108, 111], "top_logprobs": []}]


# --- the demo model ------------------------------------------------------------------------------------------


def _ids(backend, question: str) -> list[int]:
    from tests.reference import prompt_ids

    return prompt_ids(backend, question)


def _greedy(**values) -> GenerationOptions:
    return GenerationOptions(temperature=0, repetition_penalty=1.0, max_new_tokens=16, **values)


@pytest.mark.model
@pytest.mark.slow
def test_rows_with_different_penalties_in_one_batch_each_answer_as_alone(backend):
    from tests.concurrency import at_once
    from tests.reference import plain

    ids = _ids(backend, "Write a list of fruits, one per line.")
    options = [
        _greedy(),
        _greedy(frequency_penalty=2.0),
        _greedy(presence_penalty=2.0, logit_bias={str(ids[-1]): -5}),
        _greedy(presence_penalty=-1.0, frequency_penalty=0.5),
    ]
    expected = [plain(backend, ids, options=o) for o in options]
    assert len({tuple(tokens) for tokens in expected}) >= 3  # the penalties change the answer
    scheduler, stop_ids = backend.scheduler, backend.loaded.stop_ids
    scheduler.max_rows_seen = 0
    got = at_once([lambda o=o: list(scheduler.generate(ids, stop_ids, o)) for o in options])
    assert got == expected
    assert scheduler.max_rows_seen >= 2  # they shared steps


@pytest.mark.model
@pytest.mark.slow
def test_a_large_bias_makes_a_token_appear_and_minus_100_bans_it(backend):
    from tests.reference import plain

    ids = _ids(backend, "What is the capital of France?")
    greedy = plain(backend, ids, options=_greedy())
    favourite = backend.loaded.tokenizer.encode(" Paris", add_special_tokens=False)[0]
    forced = plain(backend, ids, options=_greedy(logit_bias={str(favourite): 100}))
    assert forced and set(forced) == {favourite}
    banned = plain(backend, ids, options=_greedy(logit_bias={str(greedy[0]): -100}))
    assert greedy[0] not in banned and banned != greedy


@pytest.mark.model
@pytest.mark.slow
def test_a_bias_on_a_token_outside_the_vocabulary_is_refused_before_anything_runs(backend):
    with pytest.raises(OptionError):
        backend.stream([{"role": "user", "content": "hi"}], _greedy(logit_bias={"10000000": 1}))


@pytest.mark.model
@pytest.mark.slow
def test_greedy_logprobs_put_the_chosen_token_first(backend):
    from tests.reference import plain

    messages = [{"role": "user", "content": "Say hello in French, then in Ukrainian: привіт."}]
    options = _greedy(logprobs=3)
    stream = backend.stream(messages, options)
    pieces = list(stream)
    entries = [entry for piece in pieces for entry in getattr(piece, "logprobs", ())]
    text = "".join(pieces)
    assert len(entries) == stream.stats.completion_tokens > 0
    assert b"".join(bytes(e.bytes) for e in entries).decode() == text  # per token, adding up to the text
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top) == 3
        assert entry.top[0].token == entry.token and entry.top[0].logprob == entry.logprob  # greedy: the top one
        assert [t.logprob for t in entry.top] == sorted((t.logprob for t in entry.top), reverse=True)
    assert plain(backend, _ids(backend, "hi"), options=options) == plain(backend, _ids(backend, "hi"))


@pytest.mark.model
@pytest.mark.slow
def test_sampled_logprobs_hold_the_sampled_token_among_the_top_ones(backend):
    options = GenerationOptions(temperature=0.8, top_k=5, seed=3, max_new_tokens=12, logprobs=5)
    pieces = list(backend.stream([{"role": "user", "content": "Tell me a story."}], options))
    entries = [entry for piece in pieces for entry in getattr(piece, "logprobs", ())]
    assert entries
    for entry in entries:
        assert entry.logprob <= 0 and entry.token in [t.token for t in entry.top]
        assert sum(math.exp(t.logprob) for t in entry.top) == pytest.approx(1.0, abs=1e-4)  # top-k of 5: all of it
    plain_pieces = list(backend.stream([{"role": "user", "content": "Tell me a story."}], _greedy()))
    assert all(type(piece) is str for piece in plain_pieces)  # rows that did not ask get plain text


def test_the_chat_sidebar_offers_both_penalties_and_sends_them(monkeypatch):
    from tests.fake_backend import Reply, install
    from tests.test_app import open_app, send

    fake = install(monkeypatch, Reply(["Hi."]))
    at = open_app()
    for key, name in (("chat.presence", "presence_penalty"), ("chat.frequency", "frequency_penalty")):
        slider = at.slider(key=key)
        assert (slider.min, slider.max, slider.value) == (-2.0, 2.0, GenerationOptions.model_fields[name].default)
        assert slider.label != at.slider(key="chat.rep").label
    at.slider(key="chat.presence").set_value(0.5)
    at.slider(key="chat.frequency").set_value(-1.0)
    send(at, "Hello")
    options = fake.calls[-1].options
    assert (options.presence_penalty, options.frequency_penalty) == (0.5, -1.0)


def test_a_server_backend_is_sent_the_penalties_and_the_bias_as_openai_spells_them():
    from llm.config import ServerConfig
    from llm.openai_backend import OpenAIBackend

    backend = OpenAIBackend(ServerConfig(openai_base_url="http://127.0.0.1:9/v1", openai_model="m", openai_api_key="k"))
    messages = [{"role": "user", "content": "hi"}]
    sent = backend._request("m", messages, GenerationOptions(presence_penalty=0.5, logit_bias={"7": -100}))
    assert (sent["presence_penalty"], sent["logit_bias"]) == (0.5, {"7": -100.0}) and "frequency_penalty" not in sent
    plain = backend._request("m", messages, GenerationOptions())
    assert plain.keys().isdisjoint({"presence_penalty", "frequency_penalty", "logit_bias"})
    assert backend.can_logprobs is False  # the API refuses logprobs there (not forwarded)


@pytest.mark.parametrize("kind, backend", [("team", "local"), ("served", "server")])
def test_logprobs_are_refused_where_no_one_computes_them(monkeypatch, kind, backend):
    from server.api import loaded
    from server.api.catalog import Target
    from server.api.chat import start_chat

    class Backend:
        can_logprobs = backend == "local"

    monkeypatch.setattr(loaded, "backend", Backend)
    monkeypatch.setattr(loaded, "targets", lambda: {"m": Target("m", kind, "m")})
    with pytest.raises(ApiError) as caught:
        start_chat(chat(logprobs=True, top_logprobs=2))
    assert (caught.value.status, caught.value.param) == (400, "logprobs")


def test_n_for_a_team_or_past_max_choices_is_refused_before_any_answer_starts(monkeypatch):
    from server.api import loaded
    from server.api.catalog import Target
    from server.api.chat import start_chat
    from server.api.translate import seeded

    class Backend:
        def stream_choices(self, *args, **kwargs):
            raise AssertionError("no answer may start")

    monkeypatch.setattr(loaded, "backend", Backend)
    monkeypatch.setattr(loaded, "targets", lambda: {"t": Target("t", "team", "t"), "m": Target("m", "base", "m")})
    monkeypatch.setenv("MAX_CHOICES", "3")
    from core.settings import get_settings

    get_settings.cache_clear()
    for model, n, words in [
        ("t", 2, "a team gives one answer"),
        ("m", 4, "between 1 and 3 answers"),
        ("m", 0, "MAX_CHOICES"),
    ]:
        with pytest.raises(ApiError) as caught:
            start_chat(chat(model=model, n=n))
        assert (caught.value.status, caught.value.param) == (400, "n") and words in str(caught.value)
    assert [seeded(None, 2), seeded(5, 2), seeded(2**32 - 1, 1)] == [None, 7, 0]
