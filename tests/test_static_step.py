"""The fixed-shape decode step (`llm/static_step.py`) and its compiled form give the eager step's greedy tokens, for
mixed prompts, a persona, a late arrival and a stop; compiled, it builds no new graph over 100 steps or when rows
join and leave within a bucket (dynamo's own counters). The bucket layout is checked against `BatchCache` row by row.
"""

from __future__ import annotations

import copy
import threading
import time

import pytest
import torch
from transformers import DynamicCache

from llm.batch_cache import BatchCache
from llm.options import GenerationOptions
from llm.runner import ModelRunner
from llm.scheduler import BatchScheduler
from llm.static_step import StaticBatchCache, length_bucket, rows_bucket, step_for, supports

GREEDY = GenerationOptions(max_new_tokens=24, temperature=0.0)
PERSONA = "tiny-persona"


def tiny_llama():
    """A 2-layer random Llama (grouped-query attention, untied head), logits spread wide so greedy picks are clear."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=0.3,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model and a random LoRA adapter for it, saved by PEFT as a trained one would be."""
    from peft import LoraConfig, get_peft_model

    model = tiny_llama()
    folder = tmp_path_factory.mktemp("adapter") / PERSONA
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(model), lora).save_pretrained(folder)
    return model, folder


def runner_for(model, folder, step: str) -> ModelRunner:
    runner = ModelRunner(copy.deepcopy(model), step)  # attaching an adapter wraps the layers of the model it is given
    runner.add_adapter(PERSONA, folder)
    return runner


ASKS = [  # (prompt ids, adapter): lengths far apart, so rows are left-padded against each other
    ([5, 17, 33, 2, 9, 41, 7], None),
    (list(range(40, 60)), PERSONA),
    ([3, 3, 8], None),
]
LATE = (list(range(100, 112)), PERSONA)  # joins while the others are half way


def answers(runner: ModelRunner, stop: int | None = None) -> list[list[int]]:
    """Every ask's greedy tokens, decoded together in one scheduler; LATE starts after the first has 3 tokens."""
    scheduler = BatchScheduler(runner, max_batch=8)
    stops = [frozenset({stop}) if stop is not None and i == 0 else frozenset() for i in range(len(ASKS) + 1)]
    streams = [scheduler.generate(ids, stops[i], GREEDY, adapter=name) for i, (ids, name) in enumerate(ASKS)]
    out: list[list[int]] = [[] for _ in range(len(ASKS) + 1)]
    threads = [threading.Thread(target=lambda i=i: out[i].extend(streams[i])) for i in range(1, len(ASKS))]
    [t.start() for t in threads]
    for token in streams[0]:
        out[0].append(token)
        if len(out[0]) == 3:
            late = scheduler.generate(LATE[0], stops[-1], GREEDY, adapter=LATE[1])
            threads.append(threading.Thread(target=out[-1].extend, args=(late,)))
            threads[-1].start()
    [t.join() for t in threads]
    scheduler.close()
    assert scheduler.steps > 0 and scheduler.max_rows_seen >= 3
    return out


def graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


@pytest.mark.slow
def test_compiled_step_gives_the_eager_greedy_tokens_and_builds_no_graph_within_a_bucket(tiny, record_property):
    model, folder = tiny
    eager = runner_for(model, folder, "eager")
    expected = answers(eager)
    assert all(len(tokens) == GREEDY.max_new_tokens for tokens in expected[1:])
    stop = expected[0][4]
    with_stop = answers(eager, stop)
    assert with_stop[0] == expected[0][: expected[0].index(stop)]  # the stop ends that row there, and is not given

    compiled = runner_for(model, folder, "compiled")
    assert compiled.step == "compiled"
    started = time.perf_counter()
    assert answers(compiled) == expected  # the first pass compiles each bucket the rows pass through
    compile_s = time.perf_counter() - started
    record_property("compile_s", round(compile_s, 1))
    print(f"compiling the tiny model's buckets took {compile_s:.1f} s")
    assert answers(compiled, stop) == with_stop

    scheduler = BatchScheduler(compiled, max_batch=8)
    long = GenerationOptions(max_new_tokens=100, temperature=0.0)
    pair = [scheduler.generate(ids, frozenset(), GREEDY, adapter=name) for ids, name in ASKS[:2]]
    [next(stream) for stream in pair]  # both queued before either is read to its end: two rows
    assert [list(stream) for stream in pair] == [tokens[1:] for tokens in expected[:2]]
    # (every bucket of 1, 2 and 4 rows has been built now)
    tokens = list(scheduler.generate(ASKS[0][0], frozenset(), long, adapter=PERSONA))
    steps, before = scheduler.steps, graphs()
    assert list(scheduler.generate(ASKS[0][0], frozenset(), long, adapter=PERSONA)) == tokens
    assert len(tokens) == 100 and scheduler.steps - steps >= 98 and graphs() == before  # 100 steps: no recompilation
    assert answers(compiled, stop) == with_stop  # rows join (3 to 4) and leave (4 to 3) within a bucket...
    assert graphs() == before  # ...and no new graph
    assert tokens == list(BatchScheduler(eager, max_batch=8).generate(ASKS[0][0], frozenset(), long, adapter=PERSONA))
    scheduler.close()


def test_static_step_uncompiled_gives_the_eager_greedy_tokens(tiny):
    model, folder = tiny
    expected = answers(runner_for(model, folder, "eager"))
    assert answers(runner_for(model, folder, "static")) == expected


@pytest.mark.model
def test_static_step_on_the_demo_model_with_its_persona(tmp_path):
    """The real demo model and the shipped adapter: the fixed-shape step gives the eager step's answers."""
    from pathlib import Path

    from llm.config import EngineConfig
    from llm.loading import load_model
    from llm.transformers_backend import TransformersBackend
    from tests.conftest import MODELS_DIR

    adapter = Path(__file__).resolve().parent.parent / "adapters" / "captain-quill"
    lm = load_model(EngineConfig(llm_model="demo", llm_dtype="float32", models_dir=MODELS_DIR))
    questions = [
        ("Tell me about the sea.", None),
        ("What is two plus two? Explain at length please, with details about arithmetic.", "captain-quill"),
        ("Hi", None),
    ]

    def run(step: str) -> list[str]:
        backend = TransformersBackend(copy.deepcopy(lm), step=step)
        backend.attach_adapter("captain-quill", adapter)
        out = [""] * len(questions)

        def ask(i: int) -> None:
            text, model = questions[i]
            out[i] = "".join(backend.stream([{"role": "user", "content": text}], GREEDY, model=model))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert backend.scheduler.max_rows_seen >= 2
        return out

    eager = run("eager")
    assert all(eager) and run("static") == eager


def single(length: int, seed: int, layers: int = 2) -> DynamicCache:
    generator = torch.Generator().manual_seed(seed)
    return DynamicCache(
        ddp_cache_data=[
            (torch.randn(1, 2, length, 8, generator=generator), torch.randn(1, 2, length, 8, generator=generator))
            for _ in range(layers)
        ]
    )


def test_buckets_hold_the_same_rows_as_the_batch_cache():
    config = tiny_llama().config
    plain, static = BatchCache(config), StaticBatchCache(config)
    for seed, length in enumerate([5, 300, 3]):  # the long row outgrows the first length bucket
        plain.add(single(length, seed))
        static.add(single(length, seed))
        assert static.pads == plain.pads and static.width == plain.width
        assert static.shape == (rows_bucket(seed + 1), length_bucket(plain.width + 1))
        for ours, theirs in zip(static.cache.layers, plain.cache.layers):
            assert torch.equal(ours.keys[: seed + 1], theirs.keys)
            assert torch.equal(ours.values[: seed + 1], theirs.values)
    assert static.shape == (4, 512)
    taken, expected = static.remove(1), plain.remove(1)
    assert torch.equal(taken.layers[0].keys, expected.layers[0].keys)
    assert static.pads == plain.pads and static.width == plain.width and static.shape == (2, 512)
    for ours, theirs in zip(static.cache.layers, plain.cache.layers):
        assert torch.equal(ours.keys[:2], theirs.keys)
    inputs, tensors = plain.step_inputs("cpu"), static.step_tensors("cpu")
    width = plain.width
    assert torch.equal(tensors["mask"][:, :, :, : width + 1], inputs["attention_mask"])
    assert not tensors["mask"][:, :, :, width + 1 :].any()
    assert torch.equal(tensors["positions"], inputs["position_ids"])


def test_compile_setting_chooses_the_step():
    model = tiny_llama()
    assert supports(model)
    assert step_for("on", model) == "compiled" and step_for("off", model) == "eager"
    assert step_for("auto", model) == "eager"  # no measurement says a float32 CPU step is faster compiled
    model.config.model_type = "mistral"
    assert step_for("on", model) == "eager"  # the step is written for Llama's layers only


def test_an_unknown_compile_setting_is_refused_naming_it():
    from pydantic import ValidationError

    from core.settings import Settings

    with pytest.raises(ValidationError) as refused:
        Settings(llm_compile="fast")
    assert "llm_compile" in str(refused.value) and "'auto', 'on' or 'off'" in str(refused.value)
