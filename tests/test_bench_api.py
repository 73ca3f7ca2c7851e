"""Scenarios 6 (a stored Responses turn), 7 (n=4 in one request against 4 requests) and 8 (the decode limit) of the
benchmark, short."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import MODELS_DIR, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.model]


def test_bench_prints_the_store_cost_and_n_against_separate_requests(tmp_path):
    env = {**os.environ, "MODEL_CACHE_DIR": str(MODELS_DIR), "DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "6", "7", "8", "--new-tokens", "4", "--repeats", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert re.search(r"6\. a stored Responses turn, in a store holding 10,000 responses", text)
    assert re.search(r"store: true : [\d.]+ ms to write it and append its items \(worst [\d.]+ ms\)", text)
    assert re.search(r"reading a 50-turn previous_response_id chain: [\d.]+ ms", text)
    assert re.search(r"the answer itself \(demo model, 16 new tokens\): \d+ ms", text)
    # n=4: one prefill of the prompt; four requests: four prefills of it, four times the prompt tokens fed
    one = re.search(r"one request, n=4  : .* (\d+) prefill\(s\), (\d+) prompt tokens fed", text)
    four = re.search(r"4 requests at once: .* (\d+) prefill\(s\), (\d+) prompt tokens fed", text)
    assert one and four, text
    assert int(one[1]) == 1 and int(four[1]) == 4 and int(four[2]) == 4 * int(one[2])
    assert re.search(r"n=4 over separate requests, each run: [\d.]+x", text)
    bandwidth = re.search(r"memory bandwidth \(torch, best of 5\): copy ([\d.]+) GB/s · triad ([\d.]+) GB/s", text)
    assert bandwidth and float(bandwidth[1]) > 0 and float(bandwidth[2]) > 0, text
    ceiling = re.search(
        r"one decode step reads the weights: (\d+) MB \(torch.float32\) → ceiling ([\d.]+) tokens/s", text
    )
    assert ceiling and 400 < int(ceiling[1]) < 700, text  # SmolLM2-135M in float32: about 540 MB
    for name in ("ours", "bare forward", "HF generate"):
        assert re.search(rf"{name} *: [\d.]+ tokens/s = \d+% of the ceiling", text), name
