"""Web search behind one small interface: `make_provider(settings).search(query, options)`.

The providers (Google Custom Search, SearXNG) live in `rag.providers`, the checked shape of what they give
back in `rag.results`, and how their requests go out (one total deadline, no redirect off the configured
host) in `rag.transport`. Everything a page or the pipeline needs is importable from here.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from core.settings import Settings
from rag.providers import GoogleSearch, SearxngSearch
from rag.results import SearchError, SearchOptions, SearchResult

__all__ = [
    "PROVIDERS",
    "CachedSearch",
    "GoogleSearch",
    "SearchError",
    "SearchOptions",
    "SearchProvider",
    "SearchResult",
    "SearxngSearch",
    "make_provider",
]


class SearchProvider(Protocol):
    name: str

    def search(self, query: str, options: SearchOptions) -> list[SearchResult]: ...


PROVIDERS = {"google": GoogleSearch, "searxng": SearxngSearch}


class CachedSearch:
    """Identical searches within `ttl_s` are answered from memory (Google's free quota is 100 a day)."""

    def __init__(self, provider: SearchProvider, ttl_s: float, max_entries: int = 512):
        self.provider = provider
        self.name = provider.name
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[float, list[SearchResult]]] = {}

    def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        key = (" ".join(query.lower().split()), options)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit and now - hit[0] < self.ttl_s:
                return hit[1]
        results = self.provider.search(query, options)  # errors are not cached
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (now, results)
        return results


def make_provider(settings: Settings) -> CachedSearch:
    return CachedSearch(PROVIDERS[settings.search_provider](settings), settings.search_cache_ttl_s)
