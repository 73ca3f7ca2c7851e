"""The demo model in bfloat16 (`LLM_DTYPE=bfloat16`), end to end: its answers against float32's, the sampling
options, a JSON-schema row in a batch, the KV cache, fine-tuning on CPU and the HTTP API.

Tolerances, as measured on the 2-core CPU (2026-12-03): the last prompt position's logits differ from float32's by
at most 0.68 (a logit is rounded to bf16's 8-bit mantissa by the last matmul: 0.125 apart at 16-32); the greedy
answers to `QUESTIONS` were the same tokens as float32's for their whole length (up to 48 tokens; no first
difference). Exact ties between logits are frequent in bf16 (seen in log probabilities). A greedy bf16 answer may
still part from float32's at a near-tie, so answers are compared up to their first difference, and there the two
tokens' float32 logits must be within `VS_FLOAT32`. A batched bf16 row against the row alone: `BATCHED`."""

from __future__ import annotations

import json

import pytest
import torch

from llm.lora import MultiLoraLinear
from llm.options import GenerationOptions
from llm.prompts import conversation
from tests.reference import first_difference, plain, prompt_ids, tie_gap
from tests.test_batching import PERSONAS, QUESTIONS, together
from tests.test_finetune_refusal import RECORDS, SYSTEM

pytestmark = pytest.mark.model
# max |bf16 - fp32| over the vocabulary at the prompt's last position: measured 0.29-1.03 on 2026-12-04 (the
# persona row highest, its largest logit 22.8), up to 0.68 on an earlier machine; bf16 keeps 8 bits of mantissa
LOGITS = 1.25
VS_FLOAT32 = 1.0  # float32 logits of the two tokens where a bf16 greedy answer first differs
BATCHED = 1.5  # max |batched - alone| of a bf16 row's logits after one decode step (measured 0.82)
ANSWER = GenerationOptions(temperature=0, max_new_tokens=48)


def test_logits_and_greedy_answers_follow_float32(quill_backend, bf16_quill_backend):
    assert bf16_quill_backend.runner.base.dtype == torch.bfloat16 and quill_backend.runner.base.dtype == torch.float32
    for question, persona in zip(QUESTIONS, PERSONAS):
        ids = prompt_ids(quill_backend, question)
        fp32 = quill_backend.runner.forward(torch.tensor([ids]), None, persona)[0]
        bf16 = bf16_quill_backend.runner.forward(torch.tensor([ids]), None, persona)[0]
        assert bf16.dtype == torch.float32  # upcast once, before every sampling step
        assert (bf16 - fp32).abs().max() < LOGITS and int(bf16.argmax()) == int(fp32.argmax())
        expected = plain(quill_backend, ids, persona, ANSWER)
        got = plain(bf16_quill_backend, ids, persona, ANSWER)
        assert tie_gap(quill_backend, ids, expected, got, persona) < VS_FLOAT32, (first_difference(expected, got), got)


def test_adapter_weights_stay_float32_on_a_bf16_base(bf16_quill_backend):
    key = bf16_quill_backend.runner.adapters["captain-quill"].key
    layers = [m for m in bf16_quill_backend.runner.base.modules() if isinstance(m, MultiLoraLinear)]
    assert layers and all(m.base.weight.dtype == torch.bfloat16 for m in layers)
    assert all(t.dtype == torch.float32 for m in layers for t in m.loras[key][:2])
    x = torch.randn(2, 1, layers[0].in_features, dtype=torch.bfloat16)
    bf16_quill_backend.runner.routing.route(["captain-quill", None], x.device)
    try:
        with torch.inference_mode():
            y = layers[0](x)
    finally:
        bf16_quill_backend.runner.routing.clear()
    assert y.dtype == torch.bfloat16 and torch.equal(y[1], layers[0].base(x[1]))  # the base row is untouched


def test_penalties_bias_and_logprobs_in_bf16(bf16_quill_backend):
    backend, tokenizer = bf16_quill_backend, bf16_quill_backend.loaded.tokenizer
    france = conversation("", [{"role": "user", "content": "What is the capital of France?"}])
    paris = tokenizer.encode(" Paris", add_special_tokens=False)[0]
    forced = backend.stream(france, GenerationOptions(temperature=0, max_new_tokens=4, logit_bias={str(paris): 100}))
    assert forced.text().split() == ["Paris"] * 4
    greedy = GenerationOptions(temperature=0, max_new_tokens=16, repetition_penalty=1.0)
    fruits = conversation("", [{"role": "user", "content": "Write a list of fruits, one per line."}])
    base = backend.stream(fruits, greedy).text()
    for penalty in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}, {"repetition_penalty": 1.5}):
        assert backend.stream(fruits, greedy.model_copy(update=penalty)).text() != base
    pieces = list(backend.stream(fruits, greedy.model_copy(update={"logprobs": 3})))
    entries = [entry for piece in pieces for entry in piece.logprobs]
    assert b"".join(bytes(e.bytes) for e in entries).decode() == "".join(pieces) == base
    for entry in entries:
        # Greedy: a likeliest token. Not always the first listed: bf16 logits tie exactly far more often than
        # float32's (measured: ' An' and ' Apples' both at -1.9312 here), and top-k may order a tie either way.
        assert entry.logprob <= 0 and entry.logprob == entry.top[0].logprob
        assert [t.logprob for t in entry.top] == sorted((t.logprob for t in entry.top), reverse=True)


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "port": {"type": "string", "maxLength": 12}},
    "required": ["name", "port"],
}


def test_a_json_schema_row_beside_a_free_row_in_bf16(bf16_quill_backend):
    from llm.constrained import bind

    backend = bf16_quill_backend
    constrained = bind(
        GenerationOptions(temperature=0, max_new_tokens=60, json_schema=json.dumps(SCHEMA)),
        backend.loaded.tokenizer,
        backend.loaded.stop_ids,
    )
    requests = [(prompt_ids(backend, "Describe a ship as JSON."), "captain-quill"), (prompt_ids(backend, "Hi"), None)]
    expected_free = plain(backend, requests[1][0], None)
    backend.scheduler.max_rows_seen = 0
    got = at_once_with(backend, requests, [constrained, ANSWER.model_copy(update={"max_new_tokens": 32})])
    answer = json.loads(backend.loaded.tokenizer.decode(got[0], skip_special_tokens=True))
    assert set(answer) == {"name", "port"} and all(len(v) <= 12 for v in answer.values())
    assert got[1][:1] == expected_free[:1]  # the free row: as alone up to where bf16 batching parts it (test_batching)


def test_a_batched_bf16_step_stays_within_the_stated_tolerance_of_the_row_alone(bf16_quill_backend):
    """One decode step of a short (left-padded) row beside a long one, against the same step alone: in bf16 the
    logits differ by at most `BATCHED` (measured 0.82; float32: 4e-5)."""
    import copy

    from transformers import DynamicCache

    from llm.batch_cache import BatchCache

    runner = bf16_quill_backend.runner
    short, long_ = prompt_ids(bf16_quill_backend, "Hi"), prompt_ids(bf16_quill_backend, QUESTIONS[1])
    caches, firsts = [], []
    for ids in (long_, short):
        cache = DynamicCache(config=runner.base.config)
        firsts.append(int(runner.forward(torch.tensor([ids]), cache).argmax()))
        caches.append(cache)
    alone_ = runner.forward(torch.tensor([[firsts[1]]]), copy.deepcopy(caches[1]))[0]
    batch = BatchCache(runner.base.config)
    for cache in caches:
        batch.add(cache)
    both = runner.forward(torch.tensor([[t] for t in firsts]), batch.cache, [None, None], **batch.step_inputs("cpu"))
    assert batch.pads[1] > 0 and (both[1] - alone_).abs().max() < BATCHED


def at_once_with(backend, requests, options_per_row) -> list[list[int]]:
    from tests.concurrency import at_once

    def job(i: int):
        ids, adapter = requests[i]
        stop = backend.loaded.stop_ids
        return lambda: list(backend.scheduler.generate(ids, stop, options_per_row[i], None, adapter))

    return at_once([job(i) for i in range(len(requests))])


def test_the_kv_cache_is_bf16_and_counted_at_two_bytes(bf16_quill_backend):
    from llm.kvcache import kv_bytes_per_token

    backend, config = bf16_quill_backend, bf16_quill_backend.runner.base.config
    together(backend, [(prompt_ids(backend, "Hello!"), None)], sessions=["bf16-kv"])
    kept = backend.caches.take("bf16-kv")
    layer = kept.cache.layers[0]
    assert layer.keys.dtype == layer.values.dtype == torch.bfloat16
    per_token = kv_bytes_per_token(config, torch.bfloat16)
    assert per_token == 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2
    assert kept.nbytes == per_token * len(kept.tokens)


def test_fine_tuning_a_bf16_model_on_cpu_runs_under_bf16_autocast(tmp_path):
    from llm.config import EngineConfig
    from llm.loading import load_model
    from personas.finetune import TrainConfig, build_example, load_records, train
    from tests.conftest import MODELS_DIR

    loaded = load_model(EngineConfig(llm_model="demo", llm_dtype="bfloat16", models_dir=MODELS_DIR))
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps(RECORDS), encoding="utf-8")
    examples = [build_example(loaded.tokenizer, m, 128) for m in load_records(data, SYSTEM)]
    seen: list[bool] = []
    loaded.model.register_forward_pre_hook(lambda module, args: seen.append(torch.is_autocast_enabled("cpu")))
    losses = train(examples, loaded, tmp_path / "tiny", TrainConfig(max_steps=2, batch_size=2), log=lambda _: None)
    assert seen and all(seen) and len(losses) == 2 and all(0 < loss < 20 for loss in losses)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "tiny" / "adapter_model.safetensors"))
    assert saved and all(t.dtype == torch.float32 for t in saved.values())  # PEFT's float32 LoRA weights


@pytest.mark.slow
def test_the_api_answers_in_bf16_with_logprobs_and_bias(tmp_path):
    import openai

    from tests.browser import serving
    from tests.test_api import BASE

    key = "test-bf16-key-5c1e"
    with serving(tmp_path / "data", {"API_KEY": key, "LLM_DTYPE": "bfloat16", "CONTEXT_LENGTH": "1024"}) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)
        answer = client.chat.completions.create(
            model=BASE,
            messages=[{"role": "user", "content": "Say hello in Ukrainian."}],
            temperature=0,
            max_tokens=8,
            logprobs=True,
            top_logprobs=2,
            frequency_penalty=0.5,
        )
        content = answer.choices[0].logprobs.content
        # The tokens' bytes are the answer's text, and at most the start of one more character: 8 tokens of
        # Cyrillic can end inside a character, which the text leaves out until its last byte would come.
        said, text = b"".join(bytes(e.bytes) for e in content), answer.choices[0].message.content.encode()
        assert content and said.startswith(text) and len(said) - len(text) < 4
        assert said == text or said[len(text) :].decode("utf-8", "replace") == "\ufffd"
        assert all(e.logprob <= 0 and e.logprob == e.top_logprobs[0].logprob for e in content)  # ties: see above
