"""Scenario 5 of the benchmark (a JSON-schema row against a free row) runs on the demo model (short settings)."""

from __future__ import annotations

import re

import pytest

from tests.test_bench import run_bench

pytestmark = [pytest.mark.slow, pytest.mark.model]


def test_bench_prints_the_constrained_row_against_the_free_one(tmp_path):
    text = run_bench(tmp_path, "--only", "5", "--new-tokens", "6", "--repeats", "1")
    assert re.search(r"5\. JSON-schema row against a free row: the same prompt, \d+ new tokens each .*1 runs", text)
    assert re.search(r"alone   : constrained [\d.]+ ms/token · free [\d.]+ ms/token · ratio [\d.]+x \(runs: ", text)
    assert re.search(r"in a batch of 2: constrained \+ free [\d.]+ ms/token · free \+ free [\d.]+ ms/token", text)
    assert re.search(r"peer \(HF generate, free, same model\): [\d.]+ ms/token", text)
    assert re.search(r"the schema's processor alone: [\d.]+ ms a token", text)
