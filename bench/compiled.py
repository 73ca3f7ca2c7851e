"""Scenario 9: the compiled fixed-shape step (`llm.static_step`, `LLM_COMPILE=on`) against the eager one and against
transformers' continuous batching (`generate_batch`), on the same prompts, greedy.

Each way gets a fresh backend on the same loaded model (the model itself is only read). For the compiled step, the
first answer of each shape is a warm-up: the time it takes beyond an eager answer is what compiling costs at start,
printed per bucket. Then single-stream tok/s and 4 and 8 sessions at once (aggregate tok/s), median of `repeats`.
"""

from __future__ import annotations

import statistics
import threading
import time

from llm.options import GenerationOptions
from llm.prompts import conversation, encode
from llm.transformers_backend import TransformersBackend

QUESTIONS = [
    "Tell me about the harbour at night.",
    "What do sailors eat on a long voyage?",
    "Describe a lighthouse keeper's morning.",
    "Why is the sea salty?",
    "How does a ship's compass work?",
    "Name three famous pirates and what they did.",
    "What is a knot, as sailors measure speed?",
    "Write a short poem about the tide.",
]


def _messages(question: str) -> list[dict]:
    return conversation("", [{"role": "user", "content": question}])


def _together(backend, count: int, new_tokens: int) -> float:
    """Aggregate tok/s of `count` sessions asking at the same moment."""
    options = GenerationOptions(max_new_tokens=new_tokens, temperature=0.0)
    produced = [0] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        stream = backend.stream(_messages(QUESTIONS[i % len(QUESTIONS)]), options)
        "".join(stream)
        produced[i] = stream.stats.completion_tokens

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return sum(produced) / (time.perf_counter() - started)


def _generate_batch(lm, count: int, new_tokens: int) -> float:
    """transformers' own continuous batching on the same prompts: aggregate tok/s (None where it cannot run)."""
    from transformers import GenerationConfig

    inputs = [encode(lm.tokenizer, _messages(QUESTIONS[i % len(QUESTIONS)])) for i in range(count)]
    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
    started = time.perf_counter()
    # Not under inference_mode: its loop runs in a thread of its own, which may not update tensors made in it.
    outputs = lm.model.generate_batch(inputs, config, progress_bar=False)
    seconds = time.perf_counter() - started
    produced = [len(out.generated_tokens) for out in outputs.values()]
    if len(produced) != count or min(produced) == 0:
        raise RuntimeError(f"{sum(1 for n in produced if n)} of {count} requests produced tokens")
    return sum(produced) / seconds


def measure(lm, new_tokens: int, sessions: list[int], repeats: int) -> dict:
    # The caller's backend has released its worker (see the loop's end).
    eager, compiled = TransformersBackend(lm), TransformersBackend(lm, step="compiled")
    if compiled.runner.step != "compiled":
        return {"skipped": f"{lm.name} is not a Llama-architecture model"}
    result: dict = {"compile_s": {}, "single": {}, "together": {}}
    single = GenerationOptions(max_new_tokens=new_tokens, temperature=0.0)
    for way, backend in (("eager", eager), ("compiled", compiled)):
        if way == "compiled":  # warm-up per bucket: what compiling costs, beyond an eager answer of the same shape
            started = time.perf_counter()
            "".join(backend.stream(_messages(QUESTIONS[0]), single))
            result["compile_s"][1] = time.perf_counter() - started - result["eager_one_s"]
            for count in sessions:
                started = time.perf_counter()
                _together(backend, count, new_tokens)
                result["compile_s"][count] = time.perf_counter() - started
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            stream = backend.stream(_messages(QUESTIONS[0]), single)
            "".join(stream)
            runs.append(stream.stats.completion_tokens / (time.perf_counter() - started))
        result["single"][way] = statistics.median(runs)
        if way == "eager":
            result["eager_one_s"] = new_tokens / result["single"]["eager"]
        for count in sessions:
            tps = statistics.median(_together(backend, count, new_tokens) for _ in range(repeats))
            result["together"].setdefault(count, {})[way] = tps
        # Its worker thread ends: an idle worker keeps its torch thread pool, and two pools in one process
        # halve every step on a small CPU (llm/compute_thread.py), which would count against the next way.
        backend.scheduler.release()
    for count in sessions:
        try:
            result["together"][count]["generate_batch"] = _generate_batch(lm, count, new_tokens)
        except Exception as exc:  # a peer that cannot run here is reported, not fatal
            result["together"][count]["generate_batch"] = f"failed ({type(exc).__name__}: {str(exc)[:80]})"
    # Warm-up runs of several sessions compile every bucket the rows pass through on their way in; subtract the
    # steady time of the same run to leave the compile cost.
    for count in sessions:
        steady = result["together"][count]["compiled"]
        result["compile_s"][count] -= count * new_tokens / steady
    return result


def report(lm, new_tokens: int, sessions: list[int], repeats: int) -> None:
    result = measure(lm, new_tokens, sessions, repeats)
    if "skipped" in result:
        print(f"9. compiled step: skipped ({result['skipped']})\n")
        return
    print(f"9. compiled fixed-shape step (LLM_COMPILE=on) against eager, {new_tokens} new tokens, greedy")
    print(
        "   compile at start, per bucket of rows: "
        + ", ".join(f"{rows} row(s) {seconds:.0f} s" for rows, seconds in result["compile_s"].items())
    )
    single = result["single"]
    print(
        f"   single stream: eager {single['eager']:.1f} tok/s · compiled {single['compiled']:.1f} tok/s "
        f"({single['compiled'] / single['eager']:.2f}x)"
    )
    for count, ways in result["together"].items():
        peer = ways["generate_batch"]
        peer = f"{peer:.1f} tok/s" if isinstance(peer, float) else peer
        print(
            f"   {count} sessions at once, aggregate: eager {ways['eager']:.1f} tok/s · compiled "
            f"{ways['compiled']:.1f} tok/s · transformers generate_batch {peer}"
        )
    print()
