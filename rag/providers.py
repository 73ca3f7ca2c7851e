"""The search providers: Google Custom Search first, SearXNG second.

Google closed its Custom Search JSON API to new customers and ends it on 2027-01-01, so a self-hosted SearXNG
is the way forward; `SEARCH_PROVIDER` picks one. Each search is one request within SEARCH_TIMEOUT_S in all
(`rag.transport.within`), its answer checked by the schemas in `rag.results`. Google is never followed through
a redirect (its API does not redirect); SearXNG is followed through at most MAX_REDIRECTS that keep the
scheme, host and port of SEARXNG_URL, and through none that leave them.
"""

from __future__ import annotations

import json
import logging

import requests
from requests.adapters import HTTPAdapter

from core.errors import N_, Text
from core.settings import Settings
from core.urls import display_url
from rag.results import (
    GoogleAnswer,
    SearchError,
    SearchOptions,
    SearchResult,
    SearxngAnswer,
    UnusableAnswer,
    read_answer,
)
from rag.transport import DeadlinePassed, OffHostRedirect, redirect_target, same_origin, within

# googleapiclient logs each request URL, key included, at INFO. Keep it quiet whatever the root level.
logging.getLogger("googleapiclient.discovery").setLevel(logging.WARNING)

GOOGLE_API = "https://customsearch.googleapis.com/"
MAX_REDIRECTS = 3  # same-host redirects SearXNG may send (e.g. to the path it is mounted under)
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a page of SearXNG results is tens of kB; more is not a search answer


class GoogleSearch:
    """Google Custom Search JSON API through google-api-python-client (static discovery: no fetch)."""

    name = "Google Custom Search"

    def __init__(self, settings: Settings):
        if not settings.google_api_key or not settings.google_cse_id:
            raise SearchError(
                N_(
                    "Google search needs GOOGLE_API_KEY and GOOGLE_CSE_ID. Put them in .streamlit/secrets.toml "
                    '(GOOGLE_API_KEY = "…", GOOGLE_CSE_ID = "…") or the environment, or set SEARCH_PROVIDER=searxng.'
                )
            )
        self._key = settings.google_api_key.get_secret_value()
        self._cx = settings.google_cse_id.get_secret_value()
        self.endpoint = settings.google_cse_endpoint
        self.shown = display_url(self.endpoint) if self.endpoint else "customsearch.googleapis.com"
        self.timeout_s = settings.search_timeout_s

    def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        import httplib2
        from googleapiclient.discovery import build
        from googleapiclient.errors import HttpError

        # A fresh Http per call: httplib2 objects are not thread-safe. It reads HTTPS_PROXY itself.
        http = httplib2.Http(timeout=self.timeout_s)
        http.follow_redirects = False  # a redirect comes back as an HttpError with its 3xx status
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
            request = service.cse().list(**params)
            data = within(
                self.timeout_s,
                lambda: request.execute(num_retries=0),
                lambda: [conn.sock for conn in list(http.connections.values())],
            )
        except DeadlinePassed:
            raise _timeout_error("Google", self.timeout_s) from None
        except HttpError as exc:
            raise self._explain_status(exc.status_code, exc.resp.get("location", "")) from None
        except (TimeoutError, OSError, httplib2.HttpLib2Error) as exc:
            raise _network_error("Google", self.shown, exc, self.timeout_s) from None
        except (ValueError, RecursionError):  # not UTF-8, not JSON, or JSON nested past what Python reads
            raise SearchError(N_("Google answered with something that is not valid JSON. Try again later.")) from None
        try:
            return read_answer(data, GoogleAnswer, options.num)
        except UnusableAnswer as exc:
            raise SearchError(
                N_("Google answered with something that is not the expected JSON ({reason}). Try again later."),
                reason=exc,
            ) from None

    def _explain_status(self, status: int, location: str) -> SearchError:
        if 300 <= status < 400:
            target = redirect_target(self.endpoint or GOOGLE_API, location)
            if not same_origin(target, self.endpoint or GOOGLE_API):
                return SearchError(
                    N_(
                        "Google's endpoint {where} redirected to another host ({target}); a search is never sent "
                        "on to another host. Check GOOGLE_CSE_ENDPOINT (unset, it is Google's)."
                    ),
                    where=self.shown,
                    target=OffHostRedirect(target).shown,
                )
            return SearchError(
                N_(
                    "Google's endpoint {where} answered with a redirect ({status}), which the API never "
                    "does. Check GOOGLE_CSE_ENDPOINT (unset, it is Google's)."
                ),
                where=self.shown,
                status=status,
            )
        if status == 400:
            return SearchError(
                N_(
                    "Google rejected the request (400): the API key or engine id is not valid. Check "
                    "GOOGLE_API_KEY and GOOGLE_CSE_ID."
                )
            )
        if status == 403:
            return SearchError(
                N_(
                    "Google refused access (403). The Custom Search JSON API is closed to new customers and ends on "
                    "2027-01-01; if your project has no access, switch to SearXNG (SEARCH_PROVIDER=searxng, see "
                    "the README)."
                )
            )
        if status == 429:
            return SearchError(
                N_(
                    "Google's daily search quota is used up (429; the free tier allows 100 a day). Try tomorrow, "
                    "or use SearXNG."
                )
            )
        if status >= 500:
            return SearchError(
                N_("Google search failed on Google's side ({status}). Try again in a moment."), status=status
            )
        return SearchError(
            N_(
                "Google search failed ({status}). Try again in a moment; if it keeps failing, check "
                "GOOGLE_API_KEY and GOOGLE_CSE_ID, or use SearXNG (SEARCH_PROVIDER=searxng)."
            ),
            status=status,
        )


class SearxngSearch:
    """A self-hosted SearXNG instance's JSON API (`formats: [html, json]` in its settings.yml)."""

    name = "SearXNG"

    def __init__(self, settings: Settings):
        self.url = settings.searxng_url.rstrip("/")
        self.shown = display_url(self.url)  # what messages say: never credentials in the URL
        self.timeout_s = settings.search_timeout_s

    def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        params = {"q": query, "format": "json", "safesearch": 1 if options.safe == "active" else 0}
        if options.language:
            params["language"] = options.language.removeprefix("lang_")
        if options.date_restrict:
            params["time_range"] = {"d": "day", "w": "week", "m": "month", "y": "year"}[options.date_restrict[0]]
        adapter = _RecordingAdapter()
        try:
            status, body = within(self.timeout_s, lambda: self._get(adapter, params), adapter.sockets)
        except DeadlinePassed:
            raise _timeout_error(Text(N_("SearXNG at {where}"), where=self.shown), self.timeout_s) from None
        except OffHostRedirect as exc:
            raise SearchError(
                N_(
                    "SearXNG at {where} redirected to another host ({target}); a search is never sent on to "
                    "another host. Fix SEARXNG_URL: set it to the address SearXNG itself answers on."
                ),
                where=self.shown,
                target=exc.shown,
            ) from None
        except requests.RequestException as exc:
            raise _network_error("SearXNG", self.shown, exc, self.timeout_s) from None
        self._check_status(status)
        try:
            data = json.loads(body.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            raise SearchError(
                N_("SearXNG at {where} did not answer with JSON. Is JSON output enabled in settings.yml?"),
                where=self.shown,
            ) from None
        try:
            return read_answer(data, SearxngAnswer, options.num)
        except UnusableAnswer as exc:
            raise SearchError(
                N_(
                    "SearXNG at {where} answered with JSON that is not a search answer ({reason}). Check "
                    "that SEARXNG_URL points at SearXNG itself."
                ),
                where=self.shown,
                reason=exc,
            ) from None

    def _get(self, adapter: _RecordingAdapter, params: dict | None) -> tuple[int, bytes]:
        """The status and body of /search, through same-host redirects only (this runs under the deadline)."""
        url = f"{self.url}/search"
        with requests.Session() as session:
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            for _ in range(MAX_REDIRECTS + 1):
                try:
                    r = session.get(url, params=params, timeout=self.timeout_s, allow_redirects=False, stream=True)
                except requests.RequestException:
                    raise
                except ValueError:  # requests parses a redirect's Location even when not following it
                    raise OffHostRedirect("") from None
                with r:
                    if not r.is_redirect:
                        return r.status_code, (self._body(r) if r.status_code < 300 else b"")
                    url, params = redirect_target(r.url, r.headers["location"]), None
                if not same_origin(url, self.url):
                    raise OffHostRedirect(url)
        raise SearchError(
            N_(
                "SearXNG at {where} redirected more than {count} times. Set SEARXNG_URL to the "
                "address SearXNG itself answers on."
            ),
            where=self.shown,
            count=MAX_REDIRECTS,
        )

    def _body(self, response) -> bytes:
        body = bytearray()
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise SearchError(
                    N_(
                        "SearXNG at {where} sent an answer over {limit} MB, which is not a page of "
                        "search results. Check that SEARXNG_URL points at SearXNG itself."
                    ),
                    where=self.shown,
                    limit=MAX_ANSWER_BYTES // 2**20,
                )
        return bytes(body)

    def _check_status(self, status: int) -> None:
        if status == 403:
            raise SearchError(
                N_(
                    "SearXNG at {where} refused JSON output (403). Enable it: add `json` under `search: "
                    "formats:` in its settings.yml and restart it."
                ),
                where=self.shown,
            )
        if status == 429:
            raise SearchError(
                N_("SearXNG at {where} is rate limiting (429). Disable its limiter for local use, or wait."),
                where=self.shown,
            )
        if status >= 400:
            raise SearchError(
                N_(
                    "SearXNG at {where} failed ({status}). Its log says why; check SEARXNG_URL, or try again "
                    "in a moment."
                ),
                where=self.shown,
                status=status,
            )


class _Recorded:
    """Mixed into urllib3's connection class: each connection notes itself before it connects."""

    records_to: list

    def connect(self):
        self.records_to.append(self)
        super().connect()


class _RecordingAdapter(HTTPAdapter):
    """Keeps every connection it opens, so the deadline can shut their sockets down mid-read."""

    def __init__(self):
        super().__init__(max_retries=0)
        self.opened: list = []

    def get_connection_with_tls_context(self, *args, **kwargs):
        pool = super().get_connection_with_tls_context(*args, **kwargs)
        if getattr(pool.ConnectionCls, "records_to", None) is not self.opened:
            pool.ConnectionCls = type("Recorded", (_Recorded, pool.ConnectionCls), {"records_to": self.opened})
        return pool

    def sockets(self) -> list:
        return [conn.sock for conn in list(self.opened)]


def _timeout_error(who: str, timeout_s: float) -> SearchError:
    return SearchError(
        N_(
            "The search provider ({who}) did not answer within {timeout_s:g} s (SEARCH_TIMEOUT_S). "
            "Try again; if it keeps happening, raise SEARCH_TIMEOUT_S or check your proxy "
            "(HTTPS_PROXY)."
        ),
        who=who,
        timeout_s=timeout_s,
    )


def _network_error(who: str, where: str, exc: Exception, timeout_s: float) -> SearchError:
    if "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower():
        return _timeout_error(who, timeout_s)
    return SearchError(
        N_("Cannot reach {who} at {where}. Is it running and reachable? (Behind a proxy, set HTTPS_PROXY.)"),
        who=who,
        where=where,
    )
