"""Speed benchmark: the tutorial's way (baseline) against ours, side by side.

    .venv/bin/python -m bench                # the bundled demo model, on whatever device is there
    .venv/bin/python -m bench --gpu-shape    # a randomly initialised model with Llama-3.1-8B's exact
                                             # configuration in bf16 on CUDA (no download needed), its memory
                                             # plan first and its measured memory last (bench/gpu_shape.py)
    .venv/bin/python -m bench --gpu-shape --tiny  # the same run on CPU, a 2-layer model of the same architecture

Scenarios: (1) an 8-turn conversation, ~80-token user turns, 64 new tokens each, greedy;
(2) 4 sessions sending at the same moment with mixed personas; (3) persona switching;
(4) a team's consult step: 3 experts (one a LoRA persona) asked at once, against asking them one after another;
(5) a JSON-schema-constrained row against a free row, per token (bench/constrained.py); (6) what storing a
Responses turn costs (bench/store_cost.py); (7) n=4 answers in one request against 4 requests (bench/choices.py);
(8) the decode limit: measured memory bandwidth, the bytes a step reads, the ceiling, and shares of it (bench/limit.py).
Baseline: full history re-encoded each turn, a blocking `generate`, one user at a time, and a
persona switch that reloads the base model and its adapter (as the tutorial's demo does).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import threading
import time

import torch

from bench.choices import report_choices
from bench.compiled import report as report_compiled
from bench.constrained import report_constrained
from bench.gpu_shape import SHAPES, GpuShapeRun
from bench.limit import report_limit
from bench.store_cost import report_store
from core.settings import PROJECT_ROOT, Settings
from llm.compute_thread import in_own_thread
from llm.config import EngineConfig
from llm.interface import GenerationStats
from llm.loading import LoadedModel, load_model
from llm.options import GenerationOptions
from llm.prompts import conversation, encode
from llm.transformers_backend import TransformersBackend

WORDS = (
    "ship harbour wind compass island river mountain lantern market garden story letter winter summer "
    "village bridge forest candle anchor rope kitchen teacher window morning evening music bread"
).split()
TEAM = "harbour-council"  # teams.json: Captain Quill (LoRA), Computer scientist, Legal expert
PEAK_GBPS = {"H200": 4800, "H100": 3350, "A100": 2039, "L40S": 864, "4090": 1008, "A10": 600}  # HBM/GDDR specs


def user_turn(tokenizer, n: int, target_tokens: int = 80) -> str:
    """A deterministic user message of about `target_tokens` tokens."""
    words, i = [], n * 7
    while len(tokenizer.encode(" ".join(words), add_special_tokens=False)) < target_tokens:
        words.append(WORDS[i % len(WORDS)])
        i += 3
    return f"Question {n}: tell me a story about " + " ".join(words)


def options(new_tokens: int) -> GenerationOptions:
    return GenerationOptions(temperature=0, max_new_tokens=new_tokens, repetition_penalty=1.0)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# --- the two ways to answer ---------------------------------------------------------------------


def baseline_answer(lm: LoadedModel, messages, new_tokens: int, model=None) -> tuple[str, float, int]:
    """The tutorial's way: re-encode everything, one blocking generate. Returns (text, seconds, tokens)."""
    model = model or lm.model
    ids = torch.tensor([encode(lm.tokenizer, messages)], device=lm.device)
    sync(lm.device)
    started = time.perf_counter()

    def generate():
        with torch.inference_mode():
            return model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=lm.tokenizer.pad_token_id or lm.tokenizer.eos_token_id,
            )

    # In a thread of its own, as the app runs all torch work outside the engine (llm/compute_thread.py).
    out = in_own_thread(generate)
    sync(lm.device)
    new = out[0, ids.shape[1] :]
    return lm.tokenizer.decode(new, skip_special_tokens=True), time.perf_counter() - started, len(new)


def our_answer(backend: TransformersBackend, messages, new_tokens: int, session=None, model=None):
    stream = backend.stream(messages, options(new_tokens), model=model, session=session)
    return stream.text(), stream.stats


# --- scenarios ----------------------------------------------------------------------------------


def conversation_turns(lm: LoadedModel, backend: TransformersBackend, turns: int, new_tokens: int) -> dict:
    """`lm` is a model without adapters for the baseline; `backend` holds its own copy."""
    rows = {"baseline": [], "ours": []}
    backend.scheduler.release()  # the baseline alone with its pool: a live worker's would halve its steps
    for way in rows:
        history: list[dict] = []
        for n in range(turns):
            history.append({"role": "user", "content": user_turn(lm.tokenizer, n)})
            messages = conversation("You are a helpful assistant.", history)
            if way == "baseline":
                text, seconds, tokens = baseline_answer(lm, messages, new_tokens)
                rows[way].append((seconds, tokens / seconds, seconds))  # blocking: first text at the end
            else:
                text, stats = our_answer(backend, messages, new_tokens, session="bench-conversation")
                rows[way].append((stats.first_token_s, stats.tokens_per_s or 0.0, stats.total_s))
            history.append({"role": "assistant", "content": text})
    return rows


def concurrent_sessions(lm, backend, personas: list[str | None], new_tokens: int, repeats: int = 3) -> dict:
    question = "Tell me about the harbour at night."
    # Baseline: one user at a time; each waits for the ones before to finish.
    clock, ttfts, produced = 0.0, [], 0
    backend.scheduler.release()
    for _ in personas:
        _, seconds, tokens = baseline_answer(lm, conversation("", [{"role": "user", "content": question}]), new_tokens)
        clock += seconds
        ttfts.append(clock)
        produced += tokens
    baseline = {"tokens_per_s": produced / clock, "ttft": ttfts}
    # Ours, `repeats` times (one session alone, then all at once): this machine's speed drifts between runs.
    runs = sorted(
        (ours_together(backend, personas, question, new_tokens) for _ in range(repeats)),
        key=lambda run: run["tokens_per_s"] / run["single_tokens_per_s"],
    )
    ours = runs[len(runs) // 2]  # the median run by speed-up
    ours["speedups"] = [run["tokens_per_s"] / run["single_tokens_per_s"] for run in runs]
    return {"baseline": baseline, "ours": ours}


def ours_together(backend, personas: list[str | None], question: str, new_tokens: int) -> dict:
    _, single = our_answer(backend, conversation("", [{"role": "user", "content": question}]), new_tokens)
    results: list[GenerationStats | None] = [None] * len(personas)
    barrier = threading.Barrier(len(personas))

    def run(i: int) -> None:
        barrier.wait()
        _, results[i] = our_answer(
            backend, conversation("", [{"role": "user", "content": question}]), new_tokens, model=personas[i]
        )

    backend.scheduler.max_rows_seen = 0
    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(personas))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - started
    return {
        "tokens_per_s": sum(r.completion_tokens for r in results) / wall,
        "ttft": [r.first_token_s for r in results],
        "single_tokens_per_s": single.completion_tokens / single.total_s,
        "rows": backend.scheduler.max_rows_seen,
    }


def persona_switch(config: EngineConfig, backend: TransformersBackend, adapter_dir) -> dict:
    """Time from choosing a persona to its first token."""
    from peft import PeftModel

    messages = conversation(
        "You are Captain Quill, a cheerful old sea captain.", [{"role": "user", "content": "Hello!"}]
    )
    backend.scheduler.release()
    started = time.perf_counter()
    lm = load_model(config)  # the tutorial reloads the base model...
    model = PeftModel.from_pretrained(lm.model, str(adapter_dir))  # ...and the adapter on top
    baseline_answer(lm, messages, 1, model=model)
    baseline = time.perf_counter() - started
    _, stats = our_answer(backend, messages, 1, model="captain-quill")
    return {"baseline": baseline, "ours": stats.first_token_s}


def team_consult(backend: TransformersBackend, new_tokens: int, repeats: int = 3) -> dict:
    """The consult step of the 3-expert team (every expert asked the task), against the same three
    questions asked one after another. Returns the median run by speed-up."""
    from personas.registry import PersonaRegistry
    from team.plan import fallback_plan
    from team.prompts import expert_messages
    from team.run import MIN_EXPERT_TOKENS, Limits, consult, new_run
    from team.teams import load_teams

    registry = PersonaRegistry(backend, PROJECT_ROOT / "adapters", PROJECT_ROOT / "personas.json")
    teams, _ = load_teams(PROJECT_ROOT / "teams.json", registry.personas())
    team = next(t for t in teams if t.name == TEAM)
    if not team.available:
        raise SystemExit(f"the team {TEAM!r} cannot run: {team.problem}")
    task = team.card.example_task
    new_tokens = max(new_tokens, MIN_EXPERT_TOKENS)  # the least an expert may be given
    asks = fallback_plan([p.name for p in team.experts], task, len(team.experts))
    runs = []
    for _ in range(repeats):
        alone = []
        for ask in asks:
            expert = team.expert(ask.expert)
            _, stats = our_answer(backend, expert_messages(expert, task, ask.question), new_tokens, model=expert.model)
            alone.append(stats.total_s)
        run = new_run(team, task, Limits(expert_tokens=new_tokens, token_budget=200_000))
        backend.scheduler.max_rows_seen = 0
        for _ in consult(backend, team, run, asks, 1, options(new_tokens), threading.Event()):
            pass
        runs.append(
            {
                "alone": alone,
                "together": run.consult_seconds[0],
                "rows": backend.scheduler.max_rows_seen,
                "tokens": new_tokens,
                "experts": [t.display_name for t in run.turns],
            }
        )
    runs.sort(key=lambda r: sum(r["alone"]) / r["together"])
    median = runs[len(runs) // 2]
    median["speedups"] = [sum(r["alone"]) / r["together"] for r in runs]
    return median


# --- reporting ----------------------------------------------------------------------------------


def bandwidth_share(lm: LoadedModel, tokens_per_s: float) -> str:
    if lm.device != "cuda":
        return "n/a (CPU)"
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_GBPS.items() if k in name), None)
    weights = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    achieved = weights * tokens_per_s / 1e9
    return f"{achieved:.0f} GB/s" + (f" = {100 * achieved / peak:.0f}% of {name}'s {peak} GB/s" if peak else "")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gpu-shape", action="store_true", help="Llama-3.1-8B's exact shape, random bf16 weights, CUDA"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="with --gpu-shape: the same run on CPU, a 2-layer model of that shape"
    )
    parser.add_argument(
        "--dtype",
        choices=["auto", "bfloat16", "float16", "float32"],
        default=None,
        help="the demo model's dtype, for ours and the baseline alike (default: LLM_DTYPE, else auto)",
    )
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument(
        "--sessions",
        type=int,
        nargs="+",
        default=None,
        help="concurrent session counts for scenario 2 (default: 4; 4 and 8 with --gpu-shape)",
    )
    parser.add_argument(
        "--only",
        type=int,
        nargs="+",
        default=None,
        choices=range(1, 10),
        help="scenarios to run (default 1-8; 9, the compiled step, compiles for minutes: with --gpu-shape, or named)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of scenarios 2, 4, 5 and 7, the median shown (this machine's speed drifts between runs)",
    )
    args = parser.parse_args()
    if args.tiny and not args.gpu_shape:
        parser.error("--tiny goes with --gpu-shape")
    args.sessions = args.sessions or ([4, 8] if args.gpu_shape else [4])
    args.only = args.only or [1, 2, 3, 4, 5, 6, 7, 8] + ([9] if args.gpu_shape else [])
    dtype = {"llm_dtype": args.dtype} if args.dtype else {}
    config = EngineConfig.from_settings(Settings(llm_model="demo", **dtype))
    demo = load_model(config)
    gpu = GpuShapeRun.start(demo, SHAPES["tiny" if args.tiny else "8b"]) if args.gpu_shape else None
    lm = gpu.lm if gpu else dataclasses.replace(demo, stop_ids=frozenset())  # no stop ids: exactly N tokens
    # Attaching an adapter injects LoRA layers into the model it is given: ours gets its own copy, unless no
    # scenario runs the baseline on `lm` (scenario 4 alone).
    own_copy = not args.gpu_shape and {1, 2, 3} & set(args.only)
    ours = dataclasses.replace(load_model(config), stop_ids=frozenset()) if own_copy else lm
    backend = TransformersBackend(ours)
    adapter = PROJECT_ROOT / "adapters" / "captain-quill"
    if not args.gpu_shape:
        backend.attach_adapter("captain-quill", adapter)
    device = torch.cuda.get_device_name() if lm.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    dtype = next(lm.model.parameters()).dtype
    print(f"model: {lm.name} · device: {device} · {dtype} · torch {torch.__version__}\n")

    if 1 in args.only:
        report_conversation(lm, backend, args.turns, args.new_tokens)
    if 2 in args.only:
        mixed = [None, "captain-quill"] * 4
        for count in args.sessions:
            personas = [None] * count if args.gpu_shape else mixed[:count]
            report_concurrent(lm, backend, personas, args.new_tokens, args.repeats)
    if 3 in args.only and not args.gpu_shape:
        switch = persona_switch(config, backend, adapter)
        print("3. persona switch, choice to first token")
        print(
            f"   baseline (reload base + adapter): {switch['baseline']:.2f} s · ours (adapter already loaded): "
            f"{switch['ours']:.3f} s"
        )
    elif 3 in args.only:
        print("3. persona switch: not measured with --gpu-shape (the shipped adapter fits the demo model only)")
    if 4 in args.only and not args.gpu_shape:
        report_team(backend, args.new_tokens, args.repeats)
    elif 4 in args.only:
        print("4. team consult: not measured with --gpu-shape (the team's LoRA expert fits the demo model only)")
    if 5 in args.only and not args.gpu_shape:
        report_constrained(config, args.new_tokens, args.repeats)  # the demo model, a copy of its own
    elif 5 in args.only:
        print("5. JSON-schema row: not measured with --gpu-shape (a random model's answers do not end)")
    if 6 in args.only:
        report_store(our_answer(backend, conversation("", [{"role": "user", "content": "Hi!"}]), 16)[1].total_s)
    if 7 in args.only:
        report_choices(backend, args.new_tokens, args.repeats)
    if 8 in args.only:
        report_limit(lm, backend, args.new_tokens)
    if 9 in args.only:
        backend.scheduler.release()  # its idle worker's torch pool would halve the other backends' steps
        report_compiled(lm, args.new_tokens, [4, 8] if args.sessions == [4] else args.sessions, args.repeats)
    if gpu:
        gpu.finish(backend, args.new_tokens)


def report_conversation(lm, backend, turns: int, new_tokens: int) -> None:
    rows = conversation_turns(lm, backend, turns, new_tokens)
    print(f"1. {turns}-turn conversation (~80-token user turns, {new_tokens} new tokens, greedy)")
    print("   turn | baseline TTFT | ours TTFT | baseline tok/s | ours tok/s")
    for n, (b, o) in enumerate(zip(rows["baseline"], rows["ours"]), 1):
        print(f"   {n:4} | {b[0]:11.3f} s | {o[0]:7.3f} s | {b[1]:14.1f} | {o[1]:10.1f}")
    for way in ("baseline", "ours"):
        first, last = rows[way][0][0], rows[way][-1][0]
        total = sum(r[2] for r in rows[way])
        print(
            f"   {way:8}: total {total:.1f} s · turn {turns} TTFT / turn 1 TTFT = {last / first:.2f}x · "
            f"median decode {statistics.median(r[1] for r in rows[way]):.1f} tok/s"
        )
    print(f"   single-stream decode: {bandwidth_share(lm, statistics.median(r[1] for r in rows['ours']))}\n")


def report_concurrent(lm, backend, personas: list[str | None], new_tokens: int, repeats: int) -> None:
    result = concurrent_sessions(lm, backend, personas, new_tokens, repeats)
    b, o = result["baseline"], result["ours"]
    print(f"2. {len(personas)} sessions at the same moment (personas: {', '.join(p or 'base' for p in personas)})")
    print(
        f"   baseline: {b['tokens_per_s']:.1f} tok/s aggregate · TTFT per session: "
        + ", ".join(f"{t:.2f} s" for t in b["ttft"])
    )
    print(
        f"   ours    : {o['tokens_per_s']:.1f} tok/s aggregate "
        f"({o['tokens_per_s'] / o['single_tokens_per_s']:.2f}x one "
        f"session's {o['single_tokens_per_s']:.1f}) · TTFT per session: " + ", ".join(f"{t:.2f} s" for t in o["ttft"])
    )
    print(
        f"   ours: {o['rows']} rows at most in one batched step · speed-up in each of {len(o['speedups'])} runs: "
        + ", ".join(f"{x:.2f}x" for x in o["speedups"])
        + " (the median run is shown)\n"
    )


def report_team(backend, new_tokens: int, repeats: int) -> None:
    result = team_consult(backend, new_tokens, repeats)
    alone, together = result["alone"], result["together"]
    print(
        f"4. team consult step: {len(alone)} experts ({', '.join(result['experts'])}), {result['tokens']} new "
        "tokens each, greedy"
    )
    print(f"   one after another: {sum(alone):.2f} s (" + ", ".join(f"{s:.2f} s" for s in alone) + ")")
    print(
        f"   together (consult): {together:.2f} s = {together / max(alone):.2f}x the longest alone, "
        f"{together / sum(alone):.2f}x the sum · {result['rows']} rows at most in one batched step"
    )
    print(
        f"   speed-up over one after another in each of {len(result['speedups'])} runs: "
        + ", ".join(f"{x:.2f}x" for x in result["speedups"])
        + " (the median run is shown)\n"
    )


if __name__ == "__main__":
    main()
