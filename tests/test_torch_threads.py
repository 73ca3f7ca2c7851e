"""Where torch computes, through the real demo model: only in the engine's worker, or in a thread that ends with
its work (llm/compute_thread.py). A second long-lived thread holding an OpenMP pool (a server's thread that
converted weights, an API worker that embedded texts) halved every decode step on a 2-core box, and nothing but
the figures showed it."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest
import torch

from tests.test_api import BASE

pytestmark = [pytest.mark.model, pytest.mark.slow]
ENGINE_WORKER = "llm-batch"  # llm/scheduler.py's thread
PARALLEL_NUMEL = 32_768  # torch's grain size: smaller tensors are copied without the thread pool


@pytest.fixture
def computing_threads(monkeypatch):
    """thread -> what it computed (module calls, conversions, large copies), recorded in every thread."""
    seen: dict[threading.Thread, set[str]] = defaultdict(set)
    inside = threading.local()

    def recorded(original):
        def wrapper(self, *args, **kwargs):
            if not getattr(inside, "depth", 0):  # the outermost call only: a model, not each of its layers
                seen[threading.current_thread()].add(f"{type(self).__name__}.{original.__name__}")
            inside.depth = getattr(inside, "depth", 0) + 1
            try:
                return original(self, *args, **kwargs)
            finally:
                inside.depth -= 1

        return wrapper

    copy = torch.Tensor.copy_

    def large_copy(self, *args, **kwargs):
        if self.numel() >= PARALLEL_NUMEL:
            seen[threading.current_thread()].add("Tensor.copy_")
        return copy(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", recorded(torch.nn.Module.__call__))
    monkeypatch.setattr(torch.nn.Module, "_apply", recorded(torch.nn.Module._apply))
    monkeypatch.setattr(torch.Tensor, "copy_", large_copy)
    return seen


def test_torch_computes_only_in_the_engine_worker_or_in_threads_that_end_with_their_work(computing_threads):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    import runtime
    from rag.results import SearchResult
    from server.api.routes import api_routes

    hi = [{"role": "user", "content": "Hi"}]
    with TestClient(Starlette(routes=api_routes()), base_url="http://127.0.0.1:6006") as client:
        deadline = time.monotonic() + 300
        while client.get("/health").status_code == 503 and time.monotonic() < deadline:  # the load, in its thread
            time.sleep(0.5)
        asked = [
            ("/v1/chat/completions", {"model": BASE, "messages": hi, "max_tokens": 6}),
            ("/v1/chat/completions", {"model": BASE, "messages": hi, "max_tokens": 6, "n": 2, "logprobs": True}),
            ("/v1/chat/completions", {"model": BASE, "messages": hi, "max_tokens": 6, "stream": True}),
            ("/v1/completions", {"model": BASE, "prompt": "Once", "max_tokens": 6}),
            ("/v1/responses", {"model": BASE, "input": "Hi", "max_output_tokens": 16}),
            ("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": ["a harbour", "a pier"]}),
        ]
        for path, body in asked:
            answer = client.post(path, json=body)
            assert answer.status_code == 200, (path, answer.text)
        reranker = runtime.get_reranker("bundled")  # as the search page uses it, here from the test's own thread
        assert reranker.rerank("pier", [SearchResult("Pier", "https://e.com", "a pier"), SearchResult("X", "", "y")])
        # while the server still runs: its threads (the API's workers, the event loop's) are alive, as in a server
        lasting = {
            thread.name: sorted(work)
            for thread, work in computing_threads.items()
            if thread.name != ENGINE_WORKER and thread.is_alive()
        }
    assert computing_threads, "nothing was recorded: the check itself is broken"
    assert any(thread.name == ENGINE_WORKER for thread in computing_threads), "the engine decoded nowhere"
    assert not lasting, f"torch work in threads that outlive it (each keeps an OpenMP pool): {lasting}"
