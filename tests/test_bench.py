"""The benchmark script runs end to end on the demo model and prints its figures (short settings)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import MODELS_DIR, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.model]


def run_bench(tmp_path, *args: str) -> str:
    """`python -m bench` with `args` on the demo model; what it printed (it must exit 0)."""
    env = {**os.environ, "MODEL_CACHE_DIR": str(MODELS_DIR), "DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_bench_prints_baseline_and_ours_side_by_side(tmp_path):
    # scenarios 5-8 have tests of their own (tests/test_bench_constrained.py, tests/test_bench_api.py)
    text = run_bench(tmp_path, "--only", "1", "2", "3", "4", "--turns", "2", "--new-tokens", "6", "--sessions", "2")
    assert "device: CPU" in text
    assert re.search(r"ours\s+: total [\d.]+ s · turn 2 TTFT / turn 1 TTFT = [\d.]+x", text)
    assert re.search(r"2 sessions at the same moment \(personas: base, captain-quill\)", text)
    assert re.search(r"ours\s+: [\d.]+ tok/s aggregate \([\d.]+x one session's", text)
    assert re.search(r"[12] rows at most in one batched step · speed-up in each of 3 runs", text)
    assert re.search(r"persona switch.*\n\s+baseline \(reload base \+ adapter\): [\d.]+ s · ours", text)
    # scenario 4, the team's consult step (experts get at least MIN_EXPERT_TOKENS, 16, however few are asked)
    assert "4. team consult step: 3 experts (Captain Quill, Computer scientist, Legal expert), 16 new tokens" in text
    assert re.search(r"one after another: [\d.]+ s \([\d.]+ s, [\d.]+ s, [\d.]+ s\)", text)
    assert re.search(r"together \(consult\): [\d.]+ s = [\d.]+x the longest alone, [\d.]+x the sum · 3 rows", text)
