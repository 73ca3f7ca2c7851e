"""Torch work outside the engine runs in a thread that ends with it (llm/compute_thread.py)."""

import threading

import pytest

from llm.compute_thread import in_own_thread


def test_runs_elsewhere_and_returns_the_result():
    caller = threading.get_ident()
    where, value = in_own_thread(lambda: (threading.get_ident(), 42))
    assert value == 42 and where != caller


def test_the_exception_reaches_the_caller():
    def broken():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        in_own_thread(broken)


def test_the_thread_is_gone_afterwards():
    before = threading.active_count()
    in_own_thread(lambda: sum(range(1000)))
    assert threading.active_count() == before
