"""Scenarios 6 (a stored Responses turn), 7 (n=4 in one request against 4 requests) and 8 (the decode limit) of the
benchmark, short."""

from __future__ import annotations

import re

import pytest

from tests.test_bench import run_bench

pytestmark = [pytest.mark.slow, pytest.mark.model]


def test_bench_prints_the_store_cost_and_n_against_separate_requests(tmp_path):
    text = run_bench(tmp_path, "--only", "6", "7", "8", "--new-tokens", "4", "--repeats", "1")
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
    bandwidth = re.search(
        r"memory bandwidth \(torch, best of 5\): copy ([\d.]+) GB/s · triad ([\d.]+) GB/s · read \(sum\) ([\d.]+) GB/s",
        text,
    )
    assert bandwidth and min(float(bandwidth[i]) for i in (1, 2, 3)) > 0, text
    ceiling = re.search(
        r"one decode step reads the weights: (\d+) MB \(torch.float32\) → ceiling ([\d.]+) tokens/s", text
    )
    assert ceiling and 400 < int(ceiling[1]) < 700, text  # SmolLM2-135M in float32: about 540 MB
    for name in ("ours", "bare forward", "HF generate"):
        assert re.search(rf"{name} *: [\d.]+ tokens/s = \d+% of the ceiling", text), name
