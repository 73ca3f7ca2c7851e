"""Run a piece of torch work in a thread that ends with it.

PyTorch's OpenMP build gives every thread that computes its own pool of worker threads, and the pool lives as
long as that thread. Once a second long-lived thread has a pool (a Streamlit script thread that embedded
snippets, an API worker that served /v1/embeddings), the process has more OpenMP threads than a small box has
cores, OpenMP stops spinning between parallel regions, and the engine's batched decode steps got 2.3x slower on
the 2-core CI machine (team consult step: 3.0 s -> 7.0 s; one row alone barely changed). Work run through
`in_own_thread` takes its pool with it when it returns, so the engine's worker stays the only thread holding one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def in_own_thread(work: Callable[[], T], name: str = "compute") -> T:
    """`work()` run in a fresh thread, waited for; its result returned, its exception raised here."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the caller, who decides
            box["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
