"""Scenario 7: OpenAI's `n`. Four answers to one ~400-token prompt asked in one request (`n=4`: the prompt is
prefilled once and each answer decodes from a copy of its cache, as rows of one batch) against four requests for
it sent at the same moment (four prefills of the same prompt, then the same batch). Sampled (temperature 0.8),
answer `i` seeded `i` both ways; the engine's own counters say how many prompts and prompt tokens were fed.
`repeats` runs, the median by wall time shown.
"""

from __future__ import annotations

import statistics
import threading
import time

from llm.options import GenerationOptions
from llm.prompts import conversation

DOCUMENT = (
    "The harbour master's log for the week records three arrivals, one departure delayed by fog, a dispute "
    "about mooring fees settled by the council, and a lantern on the north pier that failed twice. "
)
QUESTION = "Summarise this log for the harbour council in two sentences:\n\n" + DOCUMENT * 9


def choice_options(n: int, new_tokens: int) -> list[GenerationOptions]:
    return [GenerationOptions(temperature=0.8, max_new_tokens=new_tokens, seed=i) for i in range(n)]


def read_all(streams) -> list:
    """Every answer read at once, each in its own thread (as the API's streamed choices are); their stats."""

    def read(stream) -> None:
        stream.text()

    threads = [threading.Thread(target=read, args=(s,)) for s in streams]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return [s.stats for s in streams]


def one_request(backend, messages, choices) -> list:
    return read_all(backend.stream_choices(messages, choices))


def separate_requests(backend, messages, choices) -> list:
    results: list = [None] * len(choices)
    barrier = threading.Barrier(len(choices))

    def run(i: int) -> None:
        barrier.wait()
        stream = backend.stream(messages, choices[i])
        stream.text()
        results[i] = stream.stats

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(choices))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results


def measured(backend, way, messages, choices) -> dict:
    scheduler = backend.scheduler
    prefills, fed = scheduler.prefills, scheduler.prefill_tokens
    started = time.perf_counter()
    stats = way(backend, messages, choices)
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "tokens_per_s": sum(s.completion_tokens for s in stats) / wall,
        "first_token": statistics.median(s.first_token_s for s in stats),
        "prefills": scheduler.prefills - prefills,
        "prefill_tokens": scheduler.prefill_tokens - fed,
    }


def n_answers(backend, n: int, new_tokens: int, repeats: int) -> dict:
    messages = conversation("", [{"role": "user", "content": QUESTION}])
    choices = choice_options(n, new_tokens)
    one_request(backend, messages, choices[:1])  # warm-up
    results: dict[str, list[dict]] = {"n": [], "separate": []}
    for _ in range(repeats):
        results["n"].append(measured(backend, one_request, messages, choices))
        results["separate"].append(measured(backend, separate_requests, messages, choices))
    median = {way: sorted(runs, key=lambda r: r["wall"])[len(runs) // 2] for way, runs in results.items()}
    median["speedups"] = [s["wall"] / o["wall"] for o, s in zip(results["n"], results["separate"])]
    return median


def report_choices(backend, new_tokens: int, repeats: int, n: int = 4) -> None:
    r = n_answers(backend, n, new_tokens, repeats)
    print(
        f"7. n={n} answers to one prompt, {new_tokens} new tokens each, sampled, {repeats} runs (median by wall time)"
    )
    for way, label in (("n", f"one request, n={n}  "), ("separate", f"{n} requests at once")):
        o = r[way]
        print(
            f"   {label}: {o['wall']:.2f} s · {o['tokens_per_s']:.1f} tok/s aggregate · first token "
            f"{o['first_token']:.2f} s (median) · {o['prefills']} prefill(s), {o['prefill_tokens']} prompt tokens fed"
        )
    print("   n=" + str(n) + " over separate requests, each run: " + ", ".join(f"{x:.2f}x" for x in r["speedups"]))
    print()
