"""Personas and the fine-tune command, through the real demo model and the shipped adapter."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from llm.backends import TransformersBackend
from llm.finetune import IGNORE, DatasetError, TrainConfig, build_example, load_records, main, train
from llm.generation import GenerationStats
from llm.loading import load_model
from llm.options import GenerationOptions
from llm.personas import PersonaRegistry
from llm.prompts import conversation
from llm.settings import Settings
from tests.conftest import MODELS_DIR, ROOT

SHIPPED = ROOT / "adapters" / "captain-quill"
GREEDY = GenerationOptions(temperature=0, max_new_tokens=40)


def fresh_model():
    """A model of its own: training and attaching adapters change the model they are given."""
    return load_model(Settings(llm_model="demo", model_cache_dir=MODELS_DIR))


@pytest.fixture(scope="module")
def persona_backend():
    return TransformersBackend(fresh_model())


@pytest.fixture(scope="module")
def shipped_registry(persona_backend):
    return PersonaRegistry(persona_backend, ROOT / "adapters", ROOT / "personas.json")


def ask(backend, persona, question, options=GREEDY):
    messages = conversation(persona.card.system_prompt, [{"role": "user", "content": question}])
    return "".join(backend.stream(messages, options, GenerationStats(), model=persona.model))


# --- datasets -------------------------------------------------------------------------------

def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("content, words", [
    ('[{"instruction": "hi", "input": "", "output": "yo"}, {"instruction": "", "output": "x"}]', "Record 2: 'instruction'"),
    ('[{"instruction": "hi"}]', "Record 1: 'output' is missing"),
    ('[1]', "Record 1: expected an object"),
    ('{"a": 1}', "expected a JSON list"),
    ('[{"instruction": "hi", "output": "yo"', "not valid JSON"),
    ('[]', "holds no records"),
])
def test_malformed_json_datasets_are_refused_with_the_record(tmp_path, content, words):
    with pytest.raises(DatasetError, match=words):
        load_records(write(tmp_path, "d.json", content), "")


def test_malformed_jsonl_names_the_line(tmp_path):
    good = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    bad = json.dumps({"messages": [{"role": "user", "content": "a"}]})
    with pytest.raises(DatasetError, match="Record 2: the last message must be the assistant"):
        load_records(write(tmp_path, "d.jsonl", good + "\n" + bad + "\n"), "")
    with pytest.raises(DatasetError, match="line 2: not valid JSON"):
        load_records(write(tmp_path, "e.jsonl", good + "\n{oops\n"), "")


def test_examples_use_the_chat_template_and_mask_the_prompt(demo_model):
    tok = demo_model.tokenizer
    [messages] = load_records(ROOT / "datasets" / "captain_quill.json", "You are Captain Quill.")[:1]
    ids, labels = build_example(tok, messages, 512)
    learnt = [t for t in labels if t != IGNORE]
    assert tok.decode(ids).startswith("<|im_start|>system\nYou are Captain Quill.<|im_end|>")
    assert tok.decode(learnt).startswith(messages[-1]["content"])  # only the answer (and its end-of-turn)
    assert labels[: len(ids) - len(learnt)] == [IGNORE] * (len(ids) - len(learnt))
    short_ids, short_labels = build_example(tok, messages, 20)
    assert len(short_ids) == len(short_labels) == 20


# --- fine-tuning ------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_few_training_steps_on_cpu_lower_the_loss_and_the_adapter_loads(tmp_path, persona_backend):
    loaded = fresh_model()
    records = load_records(ROOT / "datasets" / "captain_quill.json", "You are Captain Quill.")[:8]
    examples = [build_example(loaded.tokenizer, m, 128) for m in records]
    out = tmp_path / "adapters" / "quick"
    losses = train(examples, loaded, out, TrainConfig(lr=2e-3, batch_size=4, epochs=4, max_steps=8, save_every=4),
                   log=lambda _: None)
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2
    assert (out / "adapter_model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert (out / "checkpoints" / "step-4" / "trainer_state.pt").is_file()
    recorded = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert recorded == loaded.name and str(MODELS_DIR) not in recorded  # no path of this machine in the adapter
    (out / "persona.json").write_text(json.dumps({"display_name": "Quick", "base_model": loaded.name}))
    registry = PersonaRegistry(persona_backend, out.parent, tmp_path / "none.json")
    assert registry.get("quick").available, registry.get("quick").problem


@pytest.mark.slow
def test_the_command_writes_persona_json_and_resumes(tmp_path, monkeypatch, capsys):
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps(json.loads((ROOT / "datasets" / "captain_quill.json").read_text())[:6]))
    args = ["--data", str(data), "--name", "tiny", "--out", str(tmp_path), "--system-prompt", "You are Tiny.",
            "--max-steps", "3", "--batch-size", "2", "--save-every", "2", "--max-length", "96"]
    assert main(args) == 0
    card = json.loads((tmp_path / "tiny" / "persona.json").read_text())
    assert card["system_prompt"] == "You are Tiny." and "SmolLM2" in card["base_model"]
    assert main(args[:-6] + ["--max-steps", "4", "--batch-size", "2", "--resume"]) == 0
    assert "Resuming from step-2" in capsys.readouterr().err
    assert main(["--data", str(data), "--name", "../evil", "--out", str(tmp_path)]) == 2


# --- registry ---------------------------------------------------------------------------------

def test_shipped_personas_are_listed_and_usable(shipped_registry):
    names = {p.name: p for p in shipped_registry.personas()}
    assert {"base", "dummy", "tutor", "captain-quill"} <= set(names)
    assert all(p.available for p in names.values()), [p.problem for p in names.values()]
    quill = names["captain-quill"]
    assert quill.kind == "lora" and quill.card.system_prompt.startswith("You are Captain Quill")


def test_the_adapter_changes_answers_and_the_base_stays_the_base(persona_backend, shipped_registry, backend):
    quill = shipped_registry.get("captain-quill")
    base = shipped_registry.get("base")
    with_adapter = ask(persona_backend, quill, "Tell me about whales.")
    assert "fair winds" in with_adapter.lower()
    # The base model through the PEFT-wrapped runner equals a model that never saw an adapter.
    plain = conversation("You are Captain Quill, a cheerful old sea captain.", [{"role": "user", "content": "Tell me about whales."}])
    untouched = "".join(backend.stream(plain, GREEDY, GenerationStats()))
    assert "".join(persona_backend.stream(plain, GREEDY, GenerationStats(), model=base.model)) == untouched


def test_switching_persona_does_not_reload_the_base_model(persona_backend, shipped_registry):
    base_before = persona_backend.runner.base
    started = time.perf_counter()
    for name in ("captain-quill", "base", "dummy", "captain-quill"):
        persona = shipped_registry.get(name)
        ask(persona_backend, persona, "Hi", GenerationOptions(temperature=0, max_new_tokens=1))
    assert persona_backend.runner.base is base_before
    assert time.perf_counter() - started < 10  # four one-token answers; no model load among them


def test_two_sessions_two_personas_at_the_same_moment(persona_backend, shipped_registry):
    jobs = [("captain-quill", "Tell me about the Moon."), ("base", "Tell me about the Moon."),
            ("dummy", "What is 2 + 2?"), ("captain-quill", "How do I make tea?")]
    alone = [ask(persona_backend, shipped_registry.get(n), q) for n, q in jobs]
    together: list[str | None] = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i):
        barrier.wait()
        together[i] = ask(persona_backend, shipped_registry.get(jobs[i][0]), jobs[i][1])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    [t.start() for t in threads]
    [t.join(timeout=300) for t in threads]
    assert together == alone
    assert alone[0] != alone[1]  # the persona really differs from the base on the same prompt


def make_bad_adapters(root: Path) -> None:
    def copy(name):
        shutil.copytree(SHIPPED, root / name)
        return root / name

    (copy("corrupt") / "adapter_model.safetensors").write_bytes(b"\x00garbage" * 10)
    pickle_only = copy("pickle-only")
    (pickle_only / "adapter_model.safetensors").rename(pickle_only / "adapter_model.bin")
    card = json.loads((SHIPPED / "persona.json").read_text())
    (copy("wrong-base") / "persona.json").write_text(json.dumps({**card, "base_model": "meta-llama/Llama-3.1-8B-Instruct"}))
    (copy("no-card") / "persona.json").unlink()
    (copy("bad-card") / "persona.json").write_text('{"display_name": ""}')
    copy("bad name!")
    shapes = copy("wrong-shapes")
    tensors = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(8, 100),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(576, 8)}
    save_file(tensors, str(shapes / "adapter_model.safetensors"))


def test_bad_adapters_are_listed_unavailable_with_the_reason(tmp_path, persona_backend):
    make_bad_adapters(tmp_path)
    shutil.copytree(SHIPPED, tmp_path / "good")
    registry = PersonaRegistry(persona_backend, tmp_path, tmp_path / "none.json")
    problems = {p.name: p.problem for p in registry.personas()}
    assert problems["good"] is None
    assert "corrupt" in problems["corrupt"]
    assert "pickle" in problems["pickle-only"]
    assert "trained on meta-llama/Llama-3.1-8B-Instruct" in problems["wrong-base"]
    assert problems["no-card"] == "persona.json is missing"
    assert "malformed" in problems["bad-card"]
    assert "folder name" in problems["bad name!"]
    assert "shapes do not match" in problems["wrong-shapes"]
    assert "fair winds" in ask(persona_backend, registry.get("good"), "Tell me about whales.").lower()


def test_refresh_picks_up_an_adapter_added_while_running(tmp_path, persona_backend):
    registry = PersonaRegistry(persona_backend, tmp_path, tmp_path / "none.json")
    assert [p.name for p in registry.personas()] == ["base"]
    shutil.copytree(SHIPPED, tmp_path / "late-arrival")
    assert registry.get("late-arrival").name == "base"
    registry.refresh()
    assert registry.get("late-arrival").available


def test_a_broken_personas_file_is_reported_and_the_rest_works(tmp_path, persona_backend):
    (tmp_path / "p.json").write_text("{not json")
    registry = PersonaRegistry(persona_backend, tmp_path / "none", tmp_path / "p.json")
    assert "cannot be read" in registry.file_problem
    assert [p.name for p in registry.personas()] == ["base"]
