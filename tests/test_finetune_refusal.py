"""`python -m personas.finetune` refuses, with the reason and a non-zero exit code, to write an adapter that
learnt nothing: examples cut before their answer, a loss that stops being finite, settings that train 0 steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llm.config import EngineConfig
from llm.loading import load_model
from personas.finetune import (
    IGNORE,
    DatasetError,
    TrainConfig,
    TrainingError,
    build_example,
    learnable,
    load_records,
    main,
    train,
)
from tests.conftest import MODELS_DIR, ROOT

RECORDS = [
    {"instruction": q, "input": "", "output": a}
    for q, a in [
        ("What is your name?", "I am Tiny, a small helper."),
        ("Where do you live?", "In a very small house."),
        ("Say hi.", "Hi there!"),
        ("Count to three.", "One, two, three."),
    ]
]
SYSTEM = "You are Tiny, a small and friendly helper who answers in one short sentence."


def finetune(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """The real command in its own process, so its exit code is the one a shell sees."""
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps(RECORDS), encoding="utf-8")
    env = {**os.environ, "LLM_MODEL": "demo", "MODEL_CACHE_DIR": str(MODELS_DIR), "DATA_DIR": str(tmp_path / "data")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "personas.finetune",
            "--data",
            str(data),
            "--name",
            "tiny",
            "--out",
            str(tmp_path / "adapters"),
            "--system-prompt",
            SYSTEM,
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.model
def test_every_example_cut_before_its_answer_is_refused_before_training(tmp_path):
    done = finetune(tmp_path, "--max-length", "24")
    assert done.returncode == 2, done.stderr
    assert "Every example is cut at --max-length 24 before its answer starts" in done.stderr
    assert "Raise --max-length" in done.stderr and "Traceback" not in done.stderr
    assert "fine-tuning" not in done.stderr  # no training step ran
    assert not (tmp_path / "adapters" / "tiny").exists()


@pytest.mark.model
@pytest.mark.slow
def test_a_loss_that_stops_being_finite_stops_training_and_writes_nothing(tmp_path):
    done = finetune(tmp_path, "--lr", "1e30", "--max-steps", "4", "--batch-size", "2")  # weights blow up at step 1
    assert done.returncode == 2, done.stderr
    assert "The loss became nan at step 2: training stopped, no adapter was written. Lower --lr" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "adapters" / "tiny").exists()  # no folder the persona page would list as broken


@pytest.mark.model
@pytest.mark.slow
def test_a_failed_retrain_keeps_the_adapter_that_was_there(tmp_path):
    assert finetune(tmp_path, "--max-steps", "1", "--batch-size", "2").returncode == 0
    adapter = tmp_path / "adapters" / "tiny" / "adapter_model.safetensors"
    before = adapter.read_bytes()
    done = finetune(tmp_path, "--lr", "1e30", "--max-steps", "4", "--batch-size", "2", "--save-every", "1")
    assert done.returncode == 2 and "The loss became nan" in done.stderr
    assert adapter.read_bytes() == before  # the persona that worked still works


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--epochs", "0", "--epochs must be above 0"),
        ("--max-steps", "0", "--max-steps must be at least 1"),
        ("--batch-size", "0", "--batch-size must be at least 1"),
        ("--lr", "nan", "--lr must be above 0"),
        ("--lr", "-1", "--lr must be above 0"),
        ("--r", "0", "--r must be at least 1"),
        ("--max-length", "-5", "--max-length must be at least 16"),
        ("--dropout", "1", "--dropout must be from 0 up to"),
    ],
)
def test_settings_that_cannot_train_are_refused_with_the_flag(tmp_path, capsys, flag, value, words):
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps(RECORDS), encoding="utf-8")
    assert main(["--data", str(data), "--name", "tiny", "--out", str(tmp_path / "adapters"), flag, value]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "adapters").exists()


@pytest.mark.model
def test_train_called_directly_refuses_too_and_only_learnable_examples_are_kept(tmp_path):
    loaded = load_model(EngineConfig(llm_model="demo", models_dir=MODELS_DIR))
    data = tmp_path / "d.json"
    data.write_text(json.dumps(RECORDS), encoding="utf-8")
    records = load_records(data, SYSTEM)
    cut = [build_example(loaded.tokenizer, m, 24) for m in records]
    assert all(set(labels) == {IGNORE} for _, labels in cut)  # really cut before every answer
    with pytest.raises(DatasetError, match="Every example is cut"):
        train(cut, loaded, tmp_path / "out", TrainConfig(max_length=24, max_steps=1), log=lambda _: None)
    assert not (tmp_path / "out").exists()
    whole = build_example(loaded.tokenizer, records[0], 256)
    said = []
    assert learnable([*cut, whole], 24, said.append) == [whole]
    assert said == ["4 of 5 examples are cut at --max-length 24 before their answer starts; they are left out."]


def test_train_config_validates_in_python_too():
    with pytest.raises(TrainingError, match="--save-every must be at least 1"):
        TrainConfig(save_every=0)


def test_an_avatar_that_is_not_one_emoji_is_refused_before_the_model_loads(tmp_path):
    done = finetune(tmp_path, "--avatar", "/etc/passwd")
    assert done.returncode == 2 and "--avatar" in done.stderr and "Traceback" not in done.stderr
    assert "Loading" not in done.stderr and not (tmp_path / "adapters" / "tiny").exists()
