"""Scenario 8: the machine's limit for single-stream decode, measured, and ours, the bare forward and HF `generate`
as shares of it.

A decode step reads every weight once (the KV cache of a short prompt is small beside them), so its floor is the
weights' bytes over the memory bandwidth. The bandwidth is measured here, not assumed: a large tensor copy
(read + write), the STREAM triad `a = b + s * c` (two reads, one write) and a sum (reads only, as a step reads its
weights) in torch, best of `repeats`, on the model's device. Ceiling = the best bandwidth / bytes a step reads.

Every measurement computes in a thread that ends with it (`llm.compute_thread`): a thread that has run torch
keeps an OpenMP pool while it lives, and with a second pool in the process (the engine's worker) every step
ran at half speed on 2 cores. The bandwidth copy in the main thread did that to every figure here once.
"""

from __future__ import annotations

import time

import torch

from llm.compute_thread import in_own_thread
from llm.options import GenerationOptions
from llm.prompts import conversation, encode

QUESTION = "Tell me about the harbour at night."


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bandwidth(device: str, mib: int = 512, repeats: int = 5) -> dict[str, float]:
    """GB/s of a copy, of the triad and of a sum, best of `repeats` (bytes moved: 2x, 3x and 1x the array)."""
    n = mib * 2**20 // 4
    b, c = torch.rand(n, device=device), torch.rand(n, device=device)
    a = torch.empty_like(b)
    best = {"copy": 0.0, "triad": 0.0, "read": 0.0}
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        a.copy_(b)
        _sync(device)
        best["copy"] = max(best["copy"], 2 * 4 * n / (time.perf_counter() - started) / 1e9)
        started = time.perf_counter()
        torch.add(b, c, alpha=3.0, out=a)
        _sync(device)
        best["triad"] = max(best["triad"], 3 * 4 * n / (time.perf_counter() - started) / 1e9)
        started = time.perf_counter()
        torch.sum(b)
        _sync(device)
        best["read"] = max(best["read"], 4 * n / (time.perf_counter() - started) / 1e9)
    return best


def step_bytes(model) -> int:
    """Bytes of the weights (each parameter once: tied embeddings count once), which one decode step reads."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def bare_forward_tokens_per_s(lm, new_tokens: int) -> float:
    """The model's own forward with its KV cache, greedy, one token at a time: no sampling options, no batch."""
    ids = torch.tensor([encode(lm.tokenizer, conversation("", [{"role": "user", "content": QUESTION}]))])
    ids = ids.to(lm.device)

    def run() -> float:
        with torch.inference_mode():
            out = lm.model(input_ids=ids, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            _sync(lm.device)
            started = time.perf_counter()
            for _ in range(new_tokens - 1):
                out = lm.model(input_ids=token, past_key_values=cache, use_cache=True)
                cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            token.item()
            return (new_tokens - 1) / (time.perf_counter() - started)

    return in_own_thread(run)


def generate_tokens_per_s(lm, new_tokens: int) -> float:
    """HF `generate`, greedy: (n - 1) tokens over the time of n less the time of one (prefill left out)."""
    ids = torch.tensor([encode(lm.tokenizer, conversation("", [{"role": "user", "content": QUESTION}]))])
    ids = ids.to(lm.device)
    pad = lm.tokenizer.pad_token_id or lm.tokenizer.eos_token_id

    def timed(n: int) -> float:
        _sync(lm.device)
        started = time.perf_counter()
        with torch.inference_mode():
            lm.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                do_sample=False, pad_token_id=pad,
            )  # fmt: skip
        _sync(lm.device)
        return time.perf_counter() - started

    one, many = in_own_thread(lambda: timed(1)), in_own_thread(lambda: timed(new_tokens))
    return (new_tokens - 1) / (many - one)


def ours_tokens_per_s(backend, new_tokens: int) -> float:
    options = GenerationOptions(temperature=0, max_new_tokens=new_tokens)
    stream = backend.stream(conversation("", [{"role": "user", "content": QUESTION}]), options)
    stream.text()
    return stream.stats.tokens_per_s  # decode rate: the first token (prefill's) left out


def decode_limit(lm, backend, new_tokens: int) -> dict:
    bytes_read = step_bytes(lm.model)
    measured = in_own_thread(lambda: bandwidth(lm.device))  # no torch pool left in this thread: see below
    ceiling = max(measured.values()) * 1e9 / bytes_read
    ours_tokens_per_s(backend, 4)  # warm-up
    rates = {"ours": ours_tokens_per_s(backend, new_tokens)}
    backend.scheduler.release()  # its worker's pool would halve the peers' steps; the next request starts one
    rates["bare forward"] = bare_forward_tokens_per_s(lm, new_tokens)
    rates["HF generate"] = generate_tokens_per_s(lm, new_tokens)
    dtype = next(lm.model.parameters()).dtype
    return {"bandwidth": measured, "bytes": bytes_read, "dtype": dtype, "ceiling": ceiling, "rates": rates}


def report_limit(lm, backend, new_tokens: int) -> None:
    r = decode_limit(lm, backend, new_tokens)
    bw = r["bandwidth"]
    print(f"8. the decode limit on this machine ({lm.device}), single stream, {new_tokens} new tokens, greedy")
    print(
        f"   memory bandwidth (torch, best of 5): copy {bw['copy']:.1f} GB/s · triad {bw['triad']:.1f} GB/s · "
        f"read (sum) {bw['read']:.1f} GB/s"
    )
    print(
        f"   one decode step reads the weights: {r['bytes'] / 1e6:.0f} MB ({r['dtype']}) → ceiling "
        f"{r['ceiling']:.1f} tokens/s"
    )
    for name, rate in r["rates"].items():
        print(f"   {name:13}: {rate:.1f} tokens/s = {100 * rate / r['ceiling']:.0f}% of the ceiling")
    print()
