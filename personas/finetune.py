"""Fine-tune a LoRA persona adapter from an instruction dataset, into a folder the persona page loads.

    python -m personas.finetune --data datasets/captain_quill.json --name captain-quill \\
        --display-name "Captain Quill" --system-prompt "You are Captain Quill, an old sea captain."

Input: a JSON list of {"instruction", "input", "output"} records (the huanhuan tutorial's format), or
JSONL with one {"messages": [{"role", "content"}, ...]} per line. The model is LLM_MODEL (the demo model
on a CPU machine). Examples are built with the model's own chat template, the persona's system prompt
included; only the answer tokens are learnt.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from core.errors import StudioError, problems
from llm.prompts import Message, turns
from personas.registry import SAFE_NAME, PersonaCard

IGNORE = -100  # label value the loss skips (prompt tokens)


class DatasetError(StudioError):
    """A dataset record is malformed, or nothing in it can be learnt; the message says which and why."""


class TrainingError(StudioError):
    """Training went wrong (the loss or the weights stopped being finite); no adapter was written."""


@dataclass(frozen=True)
class TrainConfig:
    """Defaults follow the tutorial our users know (LoRA r=8, alpha=32, dropout 0.1, lr 1e-4, 3 epochs)."""

    r: int = 8
    alpha: int = 32
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    lr: float = 1e-4
    epochs: float = 3.0
    batch_size: int = 4
    max_length: int = 512  # longer examples are cut here (prompt first, so the answer may be cut)
    save_every: int = 50  # steps between checkpoints
    max_steps: int | None = None  # stop early (tests, quick tries)
    seed: int = 42

    def __post_init__(self):
        # Zero steps would save the untouched adapter (its B matrices start at zero): an adapter that does nothing.
        at_least = {"r": 1, "alpha": 1, "batch_size": 1, "max_length": 16, "save_every": 1, "max_steps": 1}
        for field, low in at_least.items():
            value = getattr(self, field)
            if value is not None and value < low:
                raise TrainingError(f"--{field.replace('_', '-')} must be at least {low} (got {value}).")
        if not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise TrainingError(f"--epochs must be above 0 (got {self.epochs}).")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainingError(f"--lr must be above 0 (got {self.lr}); 1e-4 is a good start.")
        if not 0 <= self.dropout < 1:
            raise TrainingError(f"--dropout must be from 0 up to (not including) 1 (got {self.dropout}).")


def load_records(path: Path, system_prompt: str) -> list[list[Message]]:
    """Read a dataset into conversations, each starting with the persona's system prompt."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"Cannot read {path}: {exc}") from None
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path.name} line {n}: not valid JSON ({exc.msg}).") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno}).") from None
        if not isinstance(data, list):
            raise DatasetError(f"{path.name}: expected a JSON list of records.")
        rows = list(enumerate(data, 1))
    if not rows:
        raise DatasetError(f"{path.name} holds no records.")
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [system + _record_messages(n, row) for n, row in rows]


def _record_messages(n: int, row) -> list[Message]:
    if not isinstance(row, dict):
        raise DatasetError(f"Record {n}: expected an object, got {type(row).__name__}.")
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise DatasetError(f"Record {n}: 'messages' must be a non-empty list.")
        for m in messages:
            if (
                not isinstance(m, dict)
                or m.get("role") not in ("user", "assistant")
                or not isinstance(m.get("content"), str)
            ):
                raise DatasetError(f"Record {n}: each message needs role 'user' or 'assistant' and text content.")
        if messages[-1]["role"] != "assistant":
            raise DatasetError(f"Record {n}: the last message must be the assistant's answer.")
        return turns(messages)
    for key in ("instruction", "output"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise DatasetError(f"Record {n}: '{key}' is missing or empty.")
    if not isinstance(row.get("input", ""), str):
        raise DatasetError(f"Record {n}: 'input' must be text.")
    question = row["instruction"] + (("\n" + row["input"]) if row.get("input") else "")
    return [{"role": "user", "content": question}, {"role": "assistant", "content": row["output"]}]


def build_example(tokenizer, messages: list[Message], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels; only assistant turns are learnt (labels elsewhere are IGNORE)."""
    from llm.prompts import encode

    ids: list[int] = []
    labels: list[int] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = encode(tokenizer, messages[:i])
        full = tokenizer.apply_chat_template(messages[: i + 1], tokenize=True, return_dict=False)
        full = list(full["input_ids"] if hasattr(full, "input_ids") else full)
        if full[: len(prompt)] != prompt:
            raise DatasetError(
                "This model's chat template does not extend its own prompts; it cannot be fine-tuned here."
            )
        labels += [IGNORE] * (len(prompt) - len(ids)) + full[len(prompt) :]
        ids = full
    return ids[:max_length], labels[:max_length]


def learnable(
    examples: list[tuple[list[int], list[int]]], max_length: int, log=print
) -> list[tuple[list[int], list[int]]]:
    """The examples that keep some of their answer after the cut at `max_length`.

    An example cut before its answer has no token to learn from: a batch of only such examples has a loss of
    0/0 (NaN), and training on it writes an adapter that does nothing. Raises DatasetError when none is left."""
    kept = [(ids, labels) for ids, labels in examples if any(label != IGNORE for label in labels)]
    if not kept:
        raise DatasetError(
            f"Every example is cut at --max-length {max_length} before its answer starts (the system prompt and "
            "question alone are longer), so there is nothing to learn; no adapter was written. Raise --max-length, "
            "or shorten the system prompt and the questions."
        )
    if len(kept) < len(examples):
        log(
            f"{len(examples) - len(kept)} of {len(examples)} examples are cut at --max-length {max_length} before "
            "their answer starts; they are left out."
        )
    return kept


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id)
    labels = torch.full((len(batch), width), IGNORE)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return input_ids, labels, mask


def latest_checkpoint(out_dir: Path) -> Path | None:
    steps = sorted(out_dir.glob("checkpoints/step-*"), key=lambda p: int(p.name.split("-")[1]))
    return steps[-1] if steps else None


def train(examples, loaded, out_dir: Path, config: TrainConfig, resume: bool = False, log=print) -> list[float]:
    """Train a LoRA adapter on `examples` and save it (adapter files only) to `out_dir`. Returns losses.

    Raises DatasetError when no example has an answer token left, TrainingError when the loss or the weights
    stop being finite; then no adapter is written."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from tqdm import tqdm

    examples = learnable(examples, config.max_length, log)
    torch.manual_seed(config.seed)
    model = loaded.model
    bf16 = model.dtype == torch.bfloat16  # LLM_DTYPE: auto on CUDA, or bfloat16 on CPU
    on_cuda = loaded.device == "cuda"
    if on_cuda:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if checkpoint:
        model = PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
    else:
        lora = LoraConfig(
            r=config.r,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=list(config.target_modules),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total = math.ceil(steps_per_epoch * config.epochs)
    if config.max_steps:
        total = min(total, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / max(total, 1)))
    step = 0
    if checkpoint:
        state = torch.load(checkpoint / "trainer_state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        log(f"Resuming from {checkpoint.name} (step {step} of {total}).")
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else min(loaded.stop_ids)
    order = random.Random(config.seed)
    batches = []
    for _ in range(math.ceil(config.epochs)):
        shuffled = examples[:]
        order.shuffle(shuffled)
        batches += [shuffled[i : i + config.batch_size] for i in range(0, len(shuffled), config.batch_size)]
    losses: list[float] = []
    bar = tqdm(total=total, initial=step, desc="fine-tuning", unit="step", file=sys.stderr)
    with bar:  # closed before any error is printed
        while step < total:
            batch = collate(batches[step], pad_id)
            losses.append(_step(model, optimizer, scheduler, batch, loaded.device, step + 1, bf16))
            step += 1
            bar.set_postfix(loss=f"{losses[-1]:.3f}", epoch=f"{step / steps_per_epoch:.2f}")
            bar.update(1)
            if step % config.save_every == 0 and step < total:
                _check_weights(model, step)
                _save_checkpoint(model, optimizer, scheduler, step, out_dir)
    _check_weights(model, step)
    model.save_pretrained(str(out_dir), safe_serialization=True)  # adapter_model.safetensors only
    _name_the_base(out_dir / "adapter_config.json", loaded.name)
    return losses


def _step(model, optimizer, scheduler, batch, device: str, step: int, bf16: bool = False) -> float:
    """One optimizer step on one batch; returns its loss. Stops training when a number stops being finite.

    On a bfloat16 base the forward pass runs under bf16 autocast, on CUDA and CPU alike: PEFT keeps the LoRA
    weights (and so their gradients and Adam's moments) in float32, and autocast runs their matmuls in bf16 beside
    the base's instead of upcasting every activation; the loss is taken from float32 logits (transformers upcasts
    them). bf16 has float32's range, so no gradient scaler is needed (float16 would need one: it is not used)."""
    import torch

    input_ids, labels, mask = (t.to(device) for t in batch)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
    if not math.isfinite(loss.item()):
        raise TrainingError(
            f"The loss became {loss.item()} at step {step}: training stopped, no adapter was "
            "written. Lower --lr (it is often the cause), or check the dataset."
        )
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if not math.isfinite(grad_norm.item()):
        raise TrainingError(
            f"The gradients became {grad_norm.item()} at step {step}: training stopped, no "
            "adapter was written. Lower --lr, or check the dataset."
        )
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def _check_weights(model, step: int) -> None:
    """The adapter's weights are all finite numbers (an optimizer step can overflow with a finite loss)."""
    import torch

    for name, param in model.named_parameters():
        if param.requires_grad and not torch.isfinite(param).all():
            raise TrainingError(
                f"The adapter's weights stopped being finite numbers by step {step} ({name}): no "
                "adapter was written. Lower --lr."
            )


def _name_the_base(config_path: Path, base_name: str) -> None:
    """PEFT records the folder the base model was loaded from: a path on this machine. Name the model instead."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_name
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _save_checkpoint(model, optimizer, scheduler, step: int, out_dir: Path) -> None:
    import torch

    folder = out_dir / "checkpoints" / f"step-{step}"
    model.save_pretrained(str(folder), safe_serialization=True)
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step},
        folder / "trainer_state.pt",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m personas.finetune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset: .json list or .jsonl of messages")
    parser.add_argument("--name", required=True, help="adapter folder name (letters, digits, - and _)")
    parser.add_argument("--display-name", help="name shown in the page (default: --name)")
    parser.add_argument("--system-prompt", default="", help="the persona's system prompt, used in training and chat")
    parser.add_argument("--description", default="")
    parser.add_argument("--greeting", default="")
    parser.add_argument("--avatar", default="🎭")
    parser.add_argument("--out", type=Path, help="adapters folder (default: ADAPTERS_DIR)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    for field, default in TrainConfig.__dataclass_fields__.items():
        if field in ("target_modules", "seed"):
            continue
        kind = type(default.default) if default.default is not None else int
        parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=default.default)
    args = parser.parse_args(argv)
    try:
        config = TrainConfig(**{f: getattr(args, f) for f in TrainConfig.__dataclass_fields__ if hasattr(args, f)})
        return _run(args, config)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def persona_card(args, base_model: str) -> PersonaCard:
    """persona.json's content from the flags; a bad flag (e.g. an --avatar that is not one emoji) is named."""
    from pydantic import ValidationError

    try:
        return PersonaCard(
            display_name=args.display_name or args.name,
            description=args.description,
            system_prompt=args.system_prompt,
            greeting=args.greeting,
            avatar=args.avatar,
            base_model=base_model,
        )
    except ValidationError as exc:
        where, problem = problems(exc)[0]
        flag = "--" + where.split(".")[0].replace("_", "-") if where else "a flag"
        raise DatasetError(f"{flag}: {problem}.") from None


def _run(args, config: TrainConfig) -> int:
    from core.settings import get_settings
    from llm.config import EngineConfig
    from llm.loading import load_model

    if not SAFE_NAME.match(args.name):
        raise DatasetError(f"--name {args.name!r}: use letters, digits, '-' or '_' (max 64).")
    settings = get_settings()
    out_dir = (args.out or settings.adapters_dir) / args.name
    card = persona_card(args, base_model="(checked before training)")  # refused now, not after the run
    conversations = load_records(args.data, args.system_prompt)
    engine = EngineConfig.from_settings(settings)
    loaded = load_model(engine, progress=lambda message, _: print(message, file=sys.stderr))
    examples = [build_example(loaded.tokenizer, c, config.max_length) for c in conversations]
    cut = sum(len(ids) >= config.max_length for ids, _ in examples)
    print(f"{len(examples)} examples from {args.data}; {cut} cut at --max-length {config.max_length}.", file=sys.stderr)
    learnable(examples, config.max_length, log=lambda m: None)  # refuse before any folder is made
    if not args.resume and out_dir.exists():
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        losses = train(examples, loaded, out_dir, config, resume=args.resume, log=lambda m: print(m, file=sys.stderr))
    except TrainingError:
        if created:  # only checkpoints of a run that failed: not a persona the page should list as broken
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    card = card.model_copy(update={"base_model": loaded.name})
    (out_dir / "persona.json").write_text(card.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
    if losses:
        print(f"loss: first {losses[0]:.3f}, last {losses[-1]:.3f}; adapter written to {out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
