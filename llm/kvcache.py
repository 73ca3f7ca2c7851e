"""Each session's KV cache, kept between turns so a new turn only feeds its new tokens.

An entry remembers the exact token ids its cache holds. The next prompt reuses the longest common
prefix and the cache is cropped there, so regenerate, an edited or trimmed history, a changed system
prompt or sampling prompt all fall back correctly (a changed system prompt shares almost nothing).
A persona switch changes the adapter, and a cache is only reused with the adapter that built it.
Idle entries are evicted least recently used first, under a byte budget and a count limit. The budget
is for every cache, not only idle ones: what answers in flight hold or may still grow to is `held`
(the batch scheduler holds it), and idle entries make room for it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class CacheEntry:
    tokens: list[int]  # ids whose keys/values the cache holds, position by position
    cache: object  # transformers DynamicCache
    adapter: str | None

    @property
    def nbytes(self) -> int:
        total = 0
        for layer in getattr(self.cache, "layers", []):
            for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if tensor is not None and hasattr(tensor, "nelement"):
                    total += tensor.nelement() * tensor.element_size()
        return total


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def reuse(entry: CacheEntry | None, prompt_ids: list[int], adapter: str | None) -> tuple[object | None, int]:
    """(cache cropped to the shared prefix, tokens already in it), or (None, 0) when nothing is shared.

    At least one prompt token is always left to feed: its logits pick the first new token."""
    if entry is None or entry.adapter != adapter:
        return None, 0
    keep = min(common_prefix(entry.tokens, prompt_ids), len(prompt_ids) - 1)
    if keep <= 0:
        return None, 0
    held = entry.cache.get_seq_length()
    if held > keep:
        entry.cache.crop(keep - held)  # transformers 5: a negative count removes that many from the end
    return entry.cache, keep


def kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    """Bytes of keys and values one token takes in one row of the cache, over all layers."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * dtype.itemsize


class SessionCaches:
    """A pool of per-session caches, and the one KV byte budget for everything in memory.

    The batch scheduler takes a session's entry while it answers and puts the new one back; it holds bytes for the
    answers in flight (`hold`, `release`), which makes room by evicting idle entries, least recently used
    first; `put` evicts so that idle + held stays within the budget."""

    def __init__(self, budget_bytes: int, max_sessions: int):
        self.budget_bytes = budget_bytes
        self.max_sessions = max_sessions
        self.held = 0  # bytes of answers in flight: taken entries and the scheduler's reservations
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, session: str) -> CacheEntry | None:
        with self._lock:
            return self._entries.pop(session, None)

    def put(self, session: str, entry: CacheEntry) -> None:
        with self._lock:
            self._entries[session] = entry  # newest last
            self._evict()

    def hold(self, nbytes: int, force: bool = False) -> bool:
        """Count `nbytes` more as held, evicting idle entries for room. False (nothing evicted, nothing held)
        when even an empty pool would not leave that much, unless `force`d (memory already in use, e.g. a taken
        entry)."""
        with self._lock:
            if not force and self.held + nbytes > self.budget_bytes:
                return False
            self.held += nbytes
            self._evict()
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.held = max(0, self.held - nbytes)

    def _evict(self) -> None:
        while self._entries and (len(self._entries) > self.max_sessions or self.nbytes + self.held > self.budget_bytes):
            self._entries.popitem(last=False)  # least recently used first

    @property
    def nbytes(self) -> int:
        """Bytes of the idle entries."""
        return sum(e.nbytes for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
