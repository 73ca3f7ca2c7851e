"""Scenario 5: what holding a row to a JSON schema (`llm/constrained.py`) costs per token, against a free row.

The same prompt, greedy, on the demo model: the constrained row writes its JSON until the schema ends it, and
the free row is given that many new tokens. Each alone, then each beside another row in one batch (constrained +
free against free + free), `repeats` times with the medians shown. The peer is HF `generate` on the same model,
free. ms/token is decode time (the first token, which is prefill's, left out); the peer's is the time of `n`
tokens less the time of one, over `n - 1`.
"""

from __future__ import annotations

import json
import statistics
import threading
import time

import torch

from llm import constrained
from llm.compute_thread import in_own_thread
from llm.loading import load_model
from llm.options import GenerationOptions
from llm.prompts import conversation, encode
from llm.transformers_backend import TransformersBackend

# String fields with a floor and a ceiling, so the answer is long enough to time (~100-250 tokens; the demo model
# writes digits one token each) and, at the default settings, ends by itself before the token limit.
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "home_port": {"type": "string", "maxLength": 40},
        "cargo": {"type": "string", "minLength": 20, "maxLength": 120},
        "last_voyage": {"type": "string", "minLength": 100, "maxLength": 200},
    },
    "required": ["name", "home_port", "cargo", "last_voyage"],
}
QUESTION = (
    "Describe a merchant ship as JSON: its name, home port, cargo, and the story of its last voyage in a few sentences."
)


def ms_per_token(stats) -> float:
    return 1000 / stats.tokens_per_s if stats.tokens_per_s else float("nan")


def free_options(new_tokens: int) -> GenerationOptions:
    # A little repetition penalty on both rows: without one the demo model loops on a phrase, and a loop
    # revisits the same few parser states, which would flatter the constrained row.
    return GenerationOptions(temperature=0, max_new_tokens=new_tokens, repetition_penalty=1.1)


def schema_options(lm, limit: int) -> GenerationOptions:
    """Compiled once here (the tokenizer's vocabulary is built on first use, about a second), as the app does."""
    options = free_options(limit).model_copy(update={"json_schema": json.dumps(SCHEMA)})
    return constrained.bind(options, lm.tokenizer, lm.stop_ids)


def answer(backend, options: GenerationOptions):
    stream = backend.stream(conversation("", [{"role": "user", "content": QUESTION}]), options)
    return stream.text(), stream.stats


def together(backend, first: GenerationOptions, second: GenerationOptions):
    """Both answers started at the same moment (so they share the batch's steps); their stats."""
    results: list = [None, None]
    barrier = threading.Barrier(2)

    def run(i: int, options: GenerationOptions) -> None:
        barrier.wait()
        results[i] = answer(backend, options)[1]

    threads = [threading.Thread(target=run, args=(i, o)) for i, o in enumerate((first, second))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results


def peer_ms_per_token(lm, new_tokens: int) -> float:
    """HF `generate`, free, greedy, the same penalty: (time of n tokens - time of 1) / (n - 1), in ms."""
    ids = torch.tensor([encode(lm.tokenizer, conversation("", [{"role": "user", "content": QUESTION}]))])

    def generate(n: int) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            lm.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                repetition_penalty=1.1,
                pad_token_id=lm.tokenizer.pad_token_id or lm.tokenizer.eos_token_id,
            )
        return time.perf_counter() - started

    one, many = in_own_thread(lambda: generate(1)), in_own_thread(lambda: generate(new_tokens))
    return 1000 * (many - one) / max(new_tokens - 1, 1)


def processor_ms(lm, options: GenerationOptions, text: str) -> list[float]:
    """The schema's processor alone, replayed over the answer's tokens: ms per call (model left out)."""
    prompt = encode(lm.tokenizer, conversation("", [{"role": "user", "content": QUESTION}]))
    tokens = lm.tokenizer.encode(text, add_special_tokens=False)
    processor = options.grammar.processor()
    scores = torch.zeros(1, lm.model.config.vocab_size)
    seen, times = list(prompt), []
    for token in tokens:
        ids = torch.tensor([seen])
        started = time.perf_counter()
        processor(ids, scores)
        times.append(1000 * (time.perf_counter() - started))
        seen.append(token)
    return times


def constrained_cost(config, new_tokens: int, repeats: int) -> dict:
    """Medians of `repeats` runs of every configuration, with each run's ratios."""
    lm = load_model(config)  # its own copy: no adapter, and the model's own stop ids (the JSON ends on one)
    backend = TransformersBackend(lm)
    schema = schema_options(lm, limit=4 * new_tokens)
    text, stats = answer(backend, schema)  # also warms the model up
    tokens, ended = stats.completion_tokens, stats.finish_reason
    if ended == "stop":
        json.loads(text)  # JSON by construction; fail loudly here if not
    free = free_options(tokens)
    runs = []
    for _ in range(repeats):
        run = {"schema": ms_per_token(answer(backend, schema)[1]), "free": ms_per_token(answer(backend, free)[1])}
        mixed, pair = together(backend, schema, free), together(backend, free, free)
        run["mixed"] = statistics.mean(ms_per_token(s) for s in mixed)  # the two rows share their steps
        run["pair"] = statistics.mean(ms_per_token(s) for s in pair)
        backend.scheduler.release()  # the peer alone with its pool: a live worker's would halve its steps
        run["peer"] = peer_ms_per_token(lm, tokens)
        runs.append(run)
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    calls = in_own_thread(lambda: processor_ms(lm, schema, text))
    backend.scheduler.close()  # this copy's worker ends here, not beside the next scenario's
    return {
        **median,
        "tokens": tokens,
        "ended": ended,
        "alone_ratios": [r["schema"] / r["free"] for r in runs],
        "batch_ratios": [r["mixed"] / r["pair"] for r in runs],
        "processor": statistics.median(calls),
        "processor_total": sum(calls),
    }


def report_constrained(config, new_tokens: int, repeats: int) -> None:
    r = constrained_cost(config, new_tokens, repeats)
    why = "the JSON ended by itself" if r["ended"] == "stop" else "cut at the limit"
    print(
        f"5. JSON-schema row against a free row: the same prompt, {r['tokens']} new tokens each ({why}), greedy, "
        f"{repeats} runs, medians"
    )
    print(
        f"   alone   : constrained {r['schema']:.1f} ms/token · free {r['free']:.1f} ms/token · "
        f"ratio {r['schema'] / r['free']:.2f}x (runs: " + ", ".join(f"{x:.2f}x" for x in r["alone_ratios"]) + ")"
    )
    print(
        f"   in a batch of 2: constrained + free {r['mixed']:.1f} ms/token · free + free {r['pair']:.1f} ms/token · "
        f"ratio {r['mixed'] / r['pair']:.2f}x (runs: " + ", ".join(f"{x:.2f}x" for x in r["batch_ratios"]) + ")"
    )
    print(f"   peer (HF generate, free, same model): {r['peer']:.1f} ms/token")
    print(
        f"   the schema's processor alone: {r['processor']:.2f} ms a token (median), "
        f"{r['processor_total']:.0f} ms for the whole answer\n"
    )
