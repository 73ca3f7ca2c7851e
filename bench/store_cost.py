"""What storing a Responses-API turn costs (`store: true`, OpenAI's default) beside answering it: the write of one
response (its input, output and object, with the pruning it does) into a store already holding `RESPONSES_MAX_STORED`
responses, the append of its items to a conversation, and the read of a 50-turn `previous_response_id` chain, against
`store: false` (nothing written) and the answer itself. Medians of `repeats` runs, in a temp folder."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from core.api_store import ApiObject, ApiStore, new_api_id
from core.store import Store, new_message_id

ANSWER = "A sentence of a typical answer, about sixteen tokens long, repeated. " * 12  # ~200 tokens


def _turn(parent: str | None, cid: str | None) -> ApiObject:
    rid = new_api_id("resp")
    user = {"id": new_message_id(), "role": "user", "content": "What is the capital of France? " * 4}
    answer = {"id": new_message_id(), "role": "assistant", "content": ANSWER, "stats": {"completion_tokens": 200}}
    body = {"response": {"id": rid, "object": "response", "output": [{"type": "message", "text": ANSWER}]}}
    return ApiObject(rid, "response", parent, cid, time.time(), {**body, "input": [user], "output": [answer]})


def measure(stored: int = 10_000, repeats: int = 50) -> dict:
    """Milliseconds: one stored turn (write + conversation append), one chain read."""
    with tempfile.TemporaryDirectory() as folder:
        api = ApiStore(Store(Path(folder) / "c.sqlite3"), 30 * 86_400, stored)
        with api.store._connect(write=True) as db:  # a full store: every write also prunes
            rows = [_turn(None, None) for _ in range(stored)]
            db.executemany(
                "INSERT INTO api_objects (id, kind, parent, conversation_id, created, body) VALUES (?, ?, ?, ?, ?, ?)",
                [(r.id, r.kind, r.parent, r.conversation_id, r.created - 1, "{}") for r in rows],
            )
        cid = api.create_conversation([], {})
        writes, parent = [], None
        for _ in range(repeats):
            turn = _turn(parent, cid)
            start = time.perf_counter()
            api.put(turn, turn.body["input"] + turn.body["output"])  # as server/api/responses.save stores a turn
            writes.append((time.perf_counter() - start) * 1000)
            parent = turn.id
        reads = []
        for _ in range(repeats):
            start = time.perf_counter()
            chain = api.chain(parent)
            reads.append((time.perf_counter() - start) * 1000)
        return {
            "write_ms": statistics.median(writes),
            "worst_write_ms": max(writes),
            "chain_turns": len(chain),
            "chain_ms": statistics.median(reads),
        }


def report_store(answer_s: float | None = None, repeats: int = 50) -> None:
    figures = measure(repeats=repeats)
    print(f"6. a stored Responses turn, in a store holding 10,000 responses (median of {repeats})")
    print(
        f"   store: true : {figures['write_ms']:.2f} ms to write it and append its items "
        f"(worst {figures['worst_write_ms']:.2f} ms) · store: false: 0 ms"
    )
    print(f"   reading a {figures['chain_turns']}-turn previous_response_id chain: {figures['chain_ms']:.2f} ms")
    if answer_s is not None:
        print(f"   the answer itself (demo model, 16 new tokens): {answer_s * 1000:.0f} ms")
