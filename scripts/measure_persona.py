"""How often the demo persona's trait ("Fair winds") shows in answers to held-out prompts,
with its LoRA adapter and without it (same system prompt, greedy decoding, the demo model).

    .venv/bin/python scripts/measure_persona.py [--persona captain-quill] [--trait "fair winds"] [--dtype bfloat16]
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.settings import Settings  # noqa: E402
from llm.config import EngineConfig  # noqa: E402
from llm.loading import load_model  # noqa: E402
from llm.options import GenerationOptions  # noqa: E402
from llm.prompts import conversation  # noqa: E402
from llm.transformers_backend import TransformersBackend  # noqa: E402
from personas.registry import PersonaRegistry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persona", default="captain-quill")
    parser.add_argument("--trait", default="fair winds")
    parser.add_argument("--prompts", type=Path, default=ROOT / "datasets" / "captain_quill_heldout.json")
    parser.add_argument(
        "--dtype", choices=["auto", "bfloat16", "float16", "float32"], help="default: LLM_DTYPE, else auto"
    )
    args = parser.parse_args()
    settings = Settings(llm_model="demo", **({"llm_dtype": args.dtype} if args.dtype else {}))
    backend = TransformersBackend(load_model(EngineConfig.from_settings(settings)))
    persona = PersonaRegistry(backend, settings.adapters_dir, settings.personas_file).get(args.persona)
    if persona.name != args.persona or not persona.available:
        sys.exit(f"persona {args.persona!r} is not available: {persona.problem}")
    prompts = json.loads(args.prompts.read_text(encoding="utf-8"))
    options = GenerationOptions(temperature=0, max_new_tokens=96)
    hits = {"with adapter": 0, "without adapter": 0}
    for prompt in prompts:
        messages = conversation(persona.card.system_prompt, [{"role": "user", "content": prompt}])
        for label, model in (("with adapter", persona.model), ("without adapter", None)):
            text = "".join(backend.stream(messages, options, model=model))
            found = args.trait in text.lower()
            hits[label] += found
            print(f"[{label:15}] {'+' if found else '-'} {prompt!r} -> {text[:90]!r}")
    dtype = next(backend.loaded.model.parameters()).dtype
    print(f"\nTrait {args.trait!r} on {len(prompts)} held-out prompts (greedy, {backend.name}, {dtype}):")
    for label, n in hits.items():
        print(f"  {label:15}: {n}/{len(prompts)} = {100 * n / len(prompts):.0f}%")


if __name__ == "__main__":
    main()
