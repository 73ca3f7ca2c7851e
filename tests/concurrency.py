"""Start several answers at the same moment, each from its own thread, as Streamlit sessions do."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def at_once(jobs: list[Callable[[], T]], timeout: float = 300) -> list[T]:
    """Run every job in a thread of its own, all released by one barrier; their results, in order. A job's
    exception is raised here; a job still running after `timeout` seconds fails the call."""
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = jobs[index]()
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    if errors:
        raise errors[0]
    assert not any(thread.is_alive() for thread in threads), f"a job ran longer than {timeout} s"
    return results
