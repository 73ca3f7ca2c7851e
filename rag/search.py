"""Web search behind one small interface: Google Custom Search first, SearXNG second.

Google closed its Custom Search JSON API to new customers and ends it on 2027-01-01, so a
self-hosted SearXNG is the way forward; `SEARCH_PROVIDER` picks one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from core.errors import StudioError
from core.settings import Settings, display_url

# googleapiclient logs each request URL, key included, at INFO. Keep it quiet whatever the root level.
logging.getLogger("googleapiclient.discovery").setLevel(logging.WARNING)


class SearchError(StudioError):
    """Search failed; the message says why and what to do."""


@dataclass(frozen=True)
class SearchResult:
    title: str
    link: str
    snippet: str


class SearchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    num: int = Field(5, ge=1, le=10, description="How many results to fetch (Google allows 1-10).")
    language: str = Field("", max_length=16, description="Restrict to a language, e.g. lang_en, lang_zh-CN.")
    safe: Literal["off", "active"] = "active"
    date_restrict: str = Field("", pattern=r"^([dwmy]\d{1,4})?$", description="e.g. d7 (a week), m6, y1.")


class SearchProvider(Protocol):
    name: str

    def search(self, query: str, options: SearchOptions) -> list[SearchResult]: ...


def _clean(text: object, limit: int) -> str:
    return " ".join(str(text or "").split())[:limit]


class GoogleSearch:
    """Google Custom Search JSON API through google-api-python-client (static discovery: no fetch)."""

    name = "Google Custom Search"

    def __init__(self, settings: Settings):
        if not settings.google_api_key or not settings.google_cse_id:
            raise SearchError(
                "Google search needs GOOGLE_API_KEY and GOOGLE_CSE_ID. Put them in .streamlit/secrets.toml "
                '(GOOGLE_API_KEY = "…", GOOGLE_CSE_ID = "…") or the environment, or set SEARCH_PROVIDER=searxng.'
            )
        self._key = settings.google_api_key.get_secret_value()
        self._cx = settings.google_cse_id.get_secret_value()
        self.endpoint = settings.google_cse_endpoint
        self.timeout_s = settings.search_timeout_s

    def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        import httplib2
        from googleapiclient.discovery import build
        from googleapiclient.errors import HttpError

        # A fresh Http per call: httplib2 objects are not thread-safe. It reads HTTPS_PROXY itself.
        http = httplib2.Http(timeout=self.timeout_s)
        client_options = {"api_endpoint": self.endpoint} if self.endpoint else None
        params = {"q": query, "cx": self._cx, "num": options.num, "safe": options.safe}
        if options.language:
            params["lr"] = options.language
        if options.date_restrict:
            params["dateRestrict"] = options.date_restrict
        try:
            service = build(
                "customsearch",
                "v1",
                developerKey=self._key,
                static_discovery=True,
                http=http,
                client_options=client_options,
                cache_discovery=False,
            )
            data = service.cse().list(**params).execute(num_retries=0)
        except HttpError as exc:
            raise self._explain_status(exc.status_code, exc.content) from None
        except (TimeoutError, OSError, httplib2.HttpLib2Error) as exc:
            raise _network_error(
                "Google",
                display_url(self.endpoint) if self.endpoint else "customsearch.googleapis.com",
                exc,
                self.timeout_s,
            ) from None
        except (ValueError, json.JSONDecodeError):
            raise SearchError("Google answered with something that is not valid JSON. Try again later.") from None
        if not isinstance(data, dict):
            raise SearchError("Google answered with something that is not the expected JSON. Try again later.")
        return [
            SearchResult(_clean(i.get("title"), 300), _clean(i.get("link"), 2000), _clean(i.get("snippet"), 1000))
            for i in data.get("items", [])
            if isinstance(i, dict) and i.get("link")
        ]

    def _explain_status(self, status: int, content: bytes) -> SearchError:
        if status == 400:
            return SearchError(
                "Google rejected the request (400): the API key or engine id is not valid. Check "
                "GOOGLE_API_KEY and GOOGLE_CSE_ID."
            )
        if status == 403:
            return SearchError(
                "Google refused access (403). The Custom Search JSON API is closed to new customers and ends on "
                "2027-01-01; if your project has no access, switch to SearXNG (SEARCH_PROVIDER=searxng, see "
                "the README)."
            )
        if status == 429:
            return SearchError(
                "Google's daily search quota is used up (429; the free tier allows 100 a day). Try tomorrow, "
                "or use SearXNG."
            )
        if status >= 500:
            return SearchError(f"Google search failed on Google's side ({status}). Try again in a moment.")
        return SearchError(
            f"Google search failed ({status}). Try again in a moment; if it keeps failing, check GOOGLE_API_KEY "
            "and GOOGLE_CSE_ID, or use SearXNG (SEARCH_PROVIDER=searxng)."
        )


class SearxngSearch:
    """A self-hosted SearXNG instance's JSON API (`formats: [html, json]` in its settings.yml)."""

    name = "SearXNG"

    def __init__(self, settings: Settings):
        self.url = settings.searxng_url.rstrip("/")
        self.shown = display_url(self.url)  # what messages say: never credentials in the URL
        self.timeout_s = settings.search_timeout_s

    def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        import requests

        params = {"q": query, "format": "json", "safesearch": 1 if options.safe == "active" else 0}
        if options.language:
            params["language"] = options.language.removeprefix("lang_")
        if options.date_restrict:
            params["time_range"] = {"d": "day", "w": "week", "m": "month", "y": "year"}[options.date_restrict[0]]
        try:
            response = requests.get(f"{self.url}/search", params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise _network_error("SearXNG", self.shown, exc, self.timeout_s) from None
        if response.status_code == 403:
            raise SearchError(
                f"SearXNG at {self.shown} refused JSON output (403). Enable it: add `json` under `search: formats:` "
                "in its settings.yml and restart it."
            )
        if response.status_code == 429:
            raise SearchError(
                f"SearXNG at {self.shown} is rate limiting (429). Disable its limiter for local use, or wait."
            )
        if response.status_code >= 400:
            raise SearchError(
                f"SearXNG at {self.shown} failed ({response.status_code}). Its log says why; check SEARXNG_URL, "
                "or try again in a moment."
            )
        try:
            results = response.json().get("results", [])
        except (ValueError, AttributeError):
            raise SearchError(
                f"SearXNG at {self.shown} did not answer with JSON. Is JSON output enabled in settings.yml?"
            ) from None
        return [
            SearchResult(_clean(r.get("title"), 300), _clean(r.get("url"), 2000), _clean(r.get("content"), 1000))
            for r in results[: options.num]
            if isinstance(r, dict) and r.get("url")
        ]


def _network_error(who: str, where: str, exc: Exception, timeout_s: float) -> SearchError:
    if "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower():
        return SearchError(
            f"{who} did not answer within {timeout_s:g} s (SEARCH_TIMEOUT_S). Try again, or check your proxy "
            "(HTTPS_PROXY)."
        )
    return SearchError(
        f"Cannot reach {who} at {where}. Is it running and reachable? (Behind a proxy, set HTTPS_PROXY.)"
    )


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
