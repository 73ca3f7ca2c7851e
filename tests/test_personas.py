"""Personas and the fine-tune command, through the real demo model and the shipped adapter."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from llm.config import EngineConfig
from llm.loading import load_model
from llm.options import GenerationOptions
from llm.prompts import conversation
from llm.transformers_backend import TransformersBackend
from personas.finetune import IGNORE, DatasetError, TrainConfig, build_example, load_records, main, train
from personas.registry import PersonaRegistry
from tests.concurrency import at_once
from tests.conftest import MODELS_DIR, ROOT

SHIPPED = ROOT / "adapters" / "captain-quill"
GREEDY = GenerationOptions(temperature=0, max_new_tokens=40)


def fresh_model():
    """A model of its own: training and attaching adapters change the model they are given."""
    return load_model(EngineConfig(llm_model="demo", models_dir=MODELS_DIR))


@pytest.fixture(scope="module")
def persona_backend():
    return TransformersBackend(fresh_model())


@pytest.fixture(scope="module")
def shipped_registry(persona_backend):
    return PersonaRegistry(persona_backend, ROOT / "adapters", ROOT / "personas.json")


def ask(backend, persona, question, options=GREEDY):
    messages = conversation(persona.card.system_prompt, [{"role": "user", "content": question}])
    return "".join(backend.stream(messages, options, model=persona.model))


# --- datasets -------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "content, words",
    [
        (
            '[{"instruction": "hi", "input": "", "output": "yo"}, {"instruction": "", "output": "x"}]',
            "Record 2: 'instruction'",
        ),
        ('[{"instruction": "hi"}]', "Record 1: 'output' is missing"),
        ("[1]", "Record 1: expected an object"),
        ('{"a": 1}', "expected a JSON list"),
        ('[{"instruction": "hi", "output": "yo"', "not valid JSON"),
        ("[]", "holds no records"),
    ],
)
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


@pytest.mark.model
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


@pytest.mark.model
@pytest.mark.slow
def test_a_few_training_steps_on_cpu_lower_the_loss_and_the_adapter_loads(tmp_path, persona_backend):
    loaded = fresh_model()
    records = load_records(ROOT / "datasets" / "captain_quill.json", "You are Captain Quill.")[:8]
    examples = [build_example(loaded.tokenizer, m, 128) for m in records]
    out = tmp_path / "adapters" / "quick"
    losses = train(
        examples,
        loaded,
        out,
        TrainConfig(lr=2e-3, batch_size=4, epochs=4, max_steps=8, save_every=4),
        log=lambda _: None,
    )
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2
    assert (out / "adapter_model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert (out / "checkpoints" / "step-4" / "trainer_state.pt").is_file()
    recorded = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert recorded == loaded.name and str(MODELS_DIR) not in recorded  # no path of this machine in the adapter
    (out / "persona.json").write_text(json.dumps({"display_name": "Quick", "base_model": loaded.name}))
    registry = PersonaRegistry(persona_backend, out.parent, tmp_path / "none.json")
    assert registry.get("quick").available, registry.get("quick").problem


@pytest.mark.model
@pytest.mark.slow
def test_the_command_writes_persona_json_and_resumes(tmp_path, monkeypatch, capsys):
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps(json.loads((ROOT / "datasets" / "captain_quill.json").read_text())[:6]))
    args = [
        "--data",
        str(data),
        "--name",
        "tiny",
        "--out",
        str(tmp_path),
        "--system-prompt",
        "You are Tiny.",
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--save-every",
        "2",
        "--max-length",
        "96",
    ]
    assert main(args) == 0
    card = json.loads((tmp_path / "tiny" / "persona.json").read_text())
    assert card["system_prompt"] == "You are Tiny." and "SmolLM2" in card["base_model"]
    assert main(args[:-6] + ["--max-steps", "4", "--batch-size", "2", "--resume"]) == 0
    assert "Resuming from step-2" in capsys.readouterr().err
    assert main(["--data", str(data), "--name", "../evil", "--out", str(tmp_path)]) == 2


# --- registry ---------------------------------------------------------------------------------


@pytest.mark.model
def test_shipped_personas_are_listed_and_usable(shipped_registry):
    names = {p.name: p for p in shipped_registry.personas()}
    assert {"base", "dummy", "tutor", "captain-quill"} <= set(names)
    assert all(p.available for p in names.values()), [p.problem for p in names.values()]
    quill = names["captain-quill"]
    assert quill.kind == "lora" and quill.card.system_prompt.startswith("You are Captain Quill")


@pytest.mark.model
def test_the_adapter_changes_answers_and_the_base_stays_the_base(persona_backend, shipped_registry, backend):
    quill = shipped_registry.get("captain-quill")
    base = shipped_registry.get("base")
    with_adapter = ask(persona_backend, quill, "Tell me about whales.")
    assert "fair winds" in with_adapter.lower()
    # The base model through the PEFT-wrapped runner equals a model that never saw an adapter.
    plain = conversation(
        "You are Captain Quill, a cheerful old sea captain.", [{"role": "user", "content": "Tell me about whales."}]
    )
    untouched = "".join(backend.stream(plain, GREEDY))
    assert "".join(persona_backend.stream(plain, GREEDY, model=base.model)) == untouched


@pytest.mark.model
def test_switching_persona_does_not_reload_the_base_model(persona_backend, shipped_registry):
    base_before = persona_backend.runner.base
    started = time.perf_counter()
    for name in ("captain-quill", "base", "dummy", "captain-quill"):
        persona = shipped_registry.get(name)
        ask(persona_backend, persona, "Hi", GenerationOptions(temperature=0, max_new_tokens=1))
    assert persona_backend.runner.base is base_before
    assert time.perf_counter() - started < 10  # four one-token answers; no model load among them


@pytest.mark.model
def test_two_sessions_two_personas_at_the_same_moment(persona_backend, shipped_registry):
    jobs = [
        ("captain-quill", "Tell me about the Moon."),
        ("base", "Tell me about the Moon."),
        ("dummy", "What is 2 + 2?"),
        ("captain-quill", "How do I make tea?"),
    ]
    alone = [ask(persona_backend, shipped_registry.get(n), q) for n, q in jobs]
    together = at_once([lambda n=n, q=q: ask(persona_backend, shipped_registry.get(n), q) for n, q in jobs])
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
    (copy("wrong-base") / "persona.json").write_text(
        json.dumps({**card, "base_model": "meta-llama/Llama-3.1-8B-Instruct"})
    )
    (copy("no-card") / "persona.json").unlink()
    (copy("bad-card") / "persona.json").write_text('{"display_name": ""}')
    copy("bad name!")
    shapes = copy("wrong-shapes")
    tensors = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(8, 100),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(576, 8),
    }
    save_file(tensors, str(shapes / "adapter_model.safetensors"))


@pytest.mark.model
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


@pytest.mark.model
def test_refresh_picks_up_an_adapter_added_while_running(tmp_path, persona_backend):
    registry = PersonaRegistry(persona_backend, tmp_path, tmp_path / "none.json")
    assert [p.name for p in registry.personas()] == ["base"]
    shutil.copytree(SHIPPED, tmp_path / "late-arrival")
    assert registry.get("late-arrival").name == "base"
    registry.refresh()
    assert registry.get("late-arrival").available


@pytest.mark.model
def test_a_broken_personas_file_is_reported_and_the_rest_works(tmp_path, persona_backend):
    (tmp_path / "p.json").write_text("{not json")
    registry = PersonaRegistry(persona_backend, tmp_path / "none", tmp_path / "p.json")
    assert "cannot be read" in registry.file_problem
    assert [p.name for p in registry.personas()] == ["base"]


# --- a stranger's persona.json and folders --------------------------------------------------


def with_card(root: Path, name: str, card) -> Path:
    folder = root / name
    shutil.copytree(SHIPPED, folder)
    text = card if isinstance(card, str) else json.dumps(card)
    (folder / "persona.json").write_text(text, encoding="utf-8")
    return folder


QUILL_CARD = json.loads((SHIPPED / "persona.json").read_text())


@pytest.mark.model
@pytest.mark.parametrize(
    "card, words",
    [
        ([QUILL_CARD], "persona.json: expected an object"),
        ({**QUILL_CARD, "display_name": 42}, "display_name: Input should be a valid string"),
        ({**QUILL_CARD, "display_name": "Quill\x1b[2J"}, "display_name: must not contain control characters"),
        ({**QUILL_CARD, "system_prompt": ["be nice"]}, "system_prompt: Input should be a valid string"),
        ({**QUILL_CARD, "base_model": {"name": "x"}}, "base_model: Input should be a valid string"),
        ({**QUILL_CARD, "unexpected": 1}, "unexpected: Extra inputs are not permitted"),
        ("[" * 5_000 + "]" * 5_000, "persona.json is not valid JSON (recursion limit exceeded"),
        ("{" + " " * (70 * 1024) + "}", "persona.json is larger than 64 KB"),
    ],
)
def test_malformed_persona_cards_are_listed_with_the_field(tmp_path, persona_backend, card, words):
    with_card(tmp_path, "odd", card)
    problem = PersonaRegistry(persona_backend, tmp_path, tmp_path / "none.json").get("odd").problem
    assert problem is not None and words in problem, problem


@pytest.mark.model
@pytest.mark.parametrize(
    "avatar", ["/etc/passwd", "https://example.com/pixel.png", "../../app.py", "🎭🎭", "x", 7, "", ":material/home:"]
)
def test_an_avatar_that_is_not_one_emoji_falls_back_with_a_note(tmp_path, persona_backend, avatar):
    with_card(tmp_path, "odd-avatar", {**QUILL_CARD, "avatar": avatar})
    persona = PersonaRegistry(persona_backend, tmp_path, tmp_path / "none.json").get("odd-avatar")
    assert persona.available, persona.problem
    assert persona.card.avatar == "🎭" and "not a single emoji" in persona.notes[0]


@pytest.mark.model
def test_emoji_avatars_are_kept(tmp_path, persona_backend):
    for n, avatar in enumerate(["⚓", "👩‍🚀", "🇺🇦", "👍🏽", "❤️"]):
        with_card(tmp_path, f"a{n}", {**QUILL_CARD, "avatar": avatar})
    registry = PersonaRegistry(persona_backend, tmp_path, tmp_path / "none.json")
    assert [registry.get(f"a{n}").card.avatar for n in range(5)] == ["⚓", "👩‍🚀", "🇺🇦", "👍🏽", "❤️"]
    assert not any(registry.get(f"a{n}").notes for n in range(5))


@pytest.mark.model
def test_a_prompt_personas_file_with_bad_entries_lists_the_rest(tmp_path, persona_backend):
    (tmp_path / "p.json").write_text(
        json.dumps(
            {
                "good": {"display_name": "Good", "avatar": "🦉"},
                "list": ["not", "a", "card"],
                "number-name": {"display_name": 3},
                "path-avatar": {"display_name": "Pathy", "avatar": "/etc/hosts"},
                "bad name/..": {"display_name": "Slashy"},
            }
        )
    )
    registry = PersonaRegistry(persona_backend, tmp_path / "none", tmp_path / "p.json")
    by_name = {p.name: p for p in registry.personas()}
    assert by_name["good"].available and by_name["good"].card.avatar == "🦉"
    assert "expected an object" in by_name["list"].problem
    assert "display_name" in by_name["number-name"].problem
    assert (
        by_name["path-avatar"].available and by_name["path-avatar"].card.avatar == "🎭" and by_name["path-avatar"].notes
    )
    assert "name must be" in by_name["bad name/.."].problem


@pytest.mark.model
def test_a_fifo_in_place_of_a_file_does_not_hang_the_scan(tmp_path, persona_backend):
    folder = tmp_path / "fifo"
    shutil.copytree(SHIPPED, folder)
    (folder / "adapter_config.json").unlink()
    os.mkfifo(folder / "adapter_config.json")
    blocked = with_card(tmp_path, "fifo-card", QUILL_CARD)
    (blocked / "persona.json").unlink()
    os.mkfifo(blocked / "persona.json")
    started = time.perf_counter()
    registry = PersonaRegistry(persona_backend, tmp_path, tmp_path / "none.json")
    assert time.perf_counter() - started < 30
    assert "not a regular file" in registry.get("fifo").problem
    assert "not a regular file" in registry.get("fifo-card").problem


@pytest.mark.model
def test_any_exception_while_scanning_one_adapter_marks_only_that_one(tmp_path, monkeypatch):
    """Whatever breaks inside one adapter's scan (here the loader itself raises an unexpected error type),
    that adapter is unavailable with the reason and the registry still builds."""
    from llm import runner as runner_module

    backend = TransformersBackend(fresh_model())
    shutil.copytree(SHIPPED, tmp_path / "explodes")
    shutil.copytree(SHIPPED, tmp_path / "fine")
    original = runner_module.read_adapter

    def read_adapter(folder, model):
        if folder.name == "explodes":
            raise MemoryError("simulated")
        return original(folder, model)

    monkeypatch.setattr(runner_module, "read_adapter", read_adapter)
    registry = PersonaRegistry(backend, tmp_path, tmp_path / "none.json")
    assert "could not be read (MemoryError)" in registry.get("explodes").problem
    assert registry.get("fine").available


# --- hostile folders: nothing in ADAPTERS_DIR or PERSONAS_FILE stops the registry ---------------------


def make_hostile_adapters(root: Path) -> None:
    """What a stranger's zip, a Windows zip tool or a slip of `ln -s` leaves in the adapters folder."""
    os.mkdir(os.path.join(os.fsencode(str(root)), "欢欢".encode("gbk")))  # not UTF-8: surrogate escapes in Python
    os.symlink(root / "loop", root / "loop")
    os.symlink("..", root / "up")
    shutil.copytree(SHIPPED, root / "huanhuan" / "huanhuan")  # a zip of the folder, extracted into the folder
    (root / "huanhuan" / "__MACOSX" / "huanhuan").mkdir(parents=True)
    for step in (20, 100):
        shutil.copytree(SHIPPED, root / "run" / f"checkpoint-{step}")  # a training run's output, copied as it is
    (root / "lonely").write_text("a file named like a folder")
    (root / "quill.zip").write_bytes(b"PK\x03\x04")
    (root / "rtl\u202eevil").mkdir()
    (root / "__MACOSX").mkdir()
    (root / "README.md").write_text("notes, not an adapter")


@pytest.mark.model
def test_hostile_adapter_folders_are_listed_escaped_and_the_rest_works(tmp_path, persona_backend):
    make_hostile_adapters(tmp_path)
    shutil.copytree(SHIPPED, tmp_path / "good")
    registry = PersonaRegistry(persona_backend, tmp_path, tmp_path / "none.json")
    problems = {p.name: p.problem for p in registry.personas() if p.kind == "lora"}
    assert problems == {
        "good": None,
        "huanhuan": "the adapter files are in the subfolder huanhuan: move them up into huanhuan/",
        "lonely": "is a file, not a folder: an adapter is a folder holding adapter_model.safetensors and persona.json",
        "loop": "is a link that leads back to itself (a loop): delete it",
        "quill.zip": "is a zip file: extract it so that its files are in quill/",
        "rtl\\u202eevil": "folder name must be letters, digits, '-' or '_' (max 64)",
        "run": "the adapter files are in the subfolders checkpoint-20, checkpoint-100: move the one you want "
        "(e.g. the last) up into run/",
        "up": "is a link to the adapters folder or a folder above it, not to an adapter: delete it",
        "\\xbb\\xb6\\xbb\\xb6": "folder name must be letters, digits, '-' or '_' (max 64); it is not UTF-8 "
        "(as a zip made on Windows names folders): rename it",
    }
    for persona in registry.personas():  # what Streamlit's protobuf and the API's JSON must carry
        (persona.name + persona.card.display_name + (persona.problem or "")).encode("utf-8")
    assert registry.get("\\xbb\\xb6\\xbb\\xb6").card.display_name == "\\xbb\\xb6\\xbb\\xb6"
    assert "fair winds" in ask(persona_backend, registry.get("good"), "Tell me about whales.").lower()
    assert [p.name for p in registry.refresh()] == [p.name for p in registry.personas()]


@pytest.mark.model
@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder anyway")
def test_a_folder_that_cannot_be_read_is_listed_with_the_reason(tmp_path, persona_backend):
    shutil.copytree(SHIPPED, tmp_path / "locked")
    (tmp_path / "locked").chmod(0)
    try:
        problem = PersonaRegistry(persona_backend, tmp_path, tmp_path / "none.json").get("locked").problem
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert problem == "the folder cannot be read (PermissionError): check its permissions"


@pytest.mark.model
def test_a_failure_listing_the_folder_or_scanning_one_entry_never_raises(tmp_path, persona_backend, monkeypatch):
    from personas import registry as registry_module

    shutil.copytree(SHIPPED, tmp_path / "good")
    (tmp_path / "odd").mkdir()
    real = registry_module.entry_problem
    monkeypatch.setattr(
        registry_module,
        "entry_problem",
        lambda entry, root: 1 / 0 if entry.name == "odd" else real(entry, root),
    )
    registry = PersonaRegistry(persona_backend, tmp_path, tmp_path / "none.json")
    assert "could not be read (ZeroDivisionError)" in registry.get("odd").problem and registry.get("good").available
    monkeypatch.setattr(registry_module, "listed", lambda entry: 1 / 0)
    assert [p.name for p in registry.refresh()] == ["base"]
    assert registry.file_problem == "the adapters folder cannot be read (ZeroDivisionError)"


@pytest.mark.model
def test_prompt_persona_names_and_display_names_cannot_break_or_scramble_the_listing(tmp_path, persona_backend):
    (tmp_path / "p.json").write_text(
        json.dumps(
            {
                "good": {"display_name": "Good \u202eevil\u2066 twin"},
                "bell\x07\u202e": {"display_name": "Bell"},
                "x" * 10_000: {"display_name": "Long"},
                "\u200f": ["not a card"],
            }
        ),
        encoding="utf-8",
    )
    registry = PersonaRegistry(persona_backend, tmp_path / "none", tmp_path / "p.json")
    [good, bell, long, mark] = registry.personas()[1:]
    assert good.available and good.card.display_name == "Good \ufffdevil\ufffd twin"
    assert bell.name == "bell\\x07\\u202e" and "name must be" in bell.problem
    assert len(long.name) == 64 and long.name.endswith("…") and "name must be" in long.problem
    assert mark.name == "\\u200f" and mark.card.display_name == "\\u200f" and "expected an object" in mark.problem


# --- retrained adapters ---------------------------------------------------------------------


def retrain(folder: Path, factor: float) -> None:
    """Stand-in for a new training run: the same adapter, its B matrices scaled (0: no effect at all)."""
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "adapter_model.safetensors"))
    save_file(
        {k: v * factor if ".lora_B." in k else v for k, v in tensors.items()}, str(folder / "adapter_model.safetensors")
    )


@pytest.mark.model
def test_refresh_reloads_a_retrained_adapter_and_answers_in_flight_keep_their_version(tmp_path):
    backend = TransformersBackend(fresh_model())
    shutil.copytree(SHIPPED, tmp_path / "quill")
    registry = PersonaRegistry(backend, tmp_path, tmp_path / "none.json")
    quill = registry.get("quill")
    first_key = backend.runner.adapters["quill"].key
    messages = conversation(quill.card.system_prompt, [{"role": "user", "content": "Tell me about whales."}])
    options = GenerationOptions(temperature=0, max_new_tokens=40, repetition_penalty=1.0)
    before = "".join(backend.stream(messages, options, model=quill.model))
    base = "".join(backend.stream(messages, options))
    assert before != base

    (tmp_path / "quill" / "adapter_config.json").touch()  # touched, not changed: no reload
    registry.refresh()
    assert backend.runner.adapters["quill"].key == first_key

    streaming = backend.stream(messages, options, model=quill.model)
    head = next(streaming)  # this answer started with the first version
    retrain(tmp_path / "quill", 0.0)  # the retrained adapter does nothing: answers equal the base model's
    registry.refresh()
    assert backend.runner.adapters["quill"].key != first_key
    assert head + "".join(streaming) == before  # finished with the version it started with
    assert "".join(backend.stream(messages, options, model=registry.get("quill").model)) == base
    layers = [m for m in backend.runner.base.modules() if type(m).__name__ == "MultiLoraLinear"]
    assert layers and not any(first_key in m.loras for m in layers)  # the old version is gone once unused


@pytest.mark.model
def test_an_adapter_that_breaks_or_goes_away_is_taken_away(tmp_path):
    from llm.interface import BackendError

    backend = TransformersBackend(fresh_model())
    shutil.copytree(SHIPPED, tmp_path / "quill")
    shutil.copytree(SHIPPED, tmp_path / "gone")
    registry = PersonaRegistry(backend, tmp_path, tmp_path / "none.json")
    assert registry.get("quill").available and registry.get("gone").available
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "quill" / "adapter_model.safetensors"))
    tensors[next(iter(tensors))][0, 0] = float("nan")
    save_file(tensors, str(tmp_path / "quill" / "adapter_model.safetensors"))
    shutil.rmtree(tmp_path / "gone")
    registry.refresh()
    assert "NaN" in registry.get("quill").problem and registry.get("gone").name == "base"
    assert "quill" not in backend.runner.adapters and "gone" not in backend.runner.adapters
    messages = conversation("", [{"role": "user", "content": "Hi"}])
    with pytest.raises(BackendError, match="No adapter named 'gone'"):
        "".join(backend.stream(messages, GREEDY, model="gone"))
