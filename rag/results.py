"""What a search gives back, and the schemas every provider's answer passes before any of it is used.

A provider's JSON comes from outside: the whole answer is checked with pydantic, and each result on its own,
so one result of the wrong shape is dropped while an answer that is not a search answer at all fails with a
plain message. Text is cleaned as it is read: lone surrogates (JSON "\\ud800") become U+FFFD, since the page
cannot send them to the browser, and control characters become spaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, ValidationError

from core.errors import StudioError

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


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


def clean_text(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters, with no lone surrogate and no control character."""
    # A surrogate pair split into two code points is joined again; a lone one becomes U+FFFD.
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return " ".join(_CONTROL.sub(" ", text).split())[:limit]


def _text(limit: int, *, required: bool = False) -> Any:
    """A string field cleaned to `limit` characters. Optional ones read null as "". Any other type (a
    number, a list, an object) fails the result it is in."""

    def clean(value: object) -> object:
        if value is None and not required:
            return ""
        return clean_text(value, limit) if isinstance(value, str) else value

    return Annotated[StrictStr, Field(min_length=1 if required else 0), BeforeValidator(clean)]


Title, Snippet, Link = _text(300), _text(1000), _text(2000, required=True)
# A link that is not http(s) (javascript:, a relative path) is kept: the page shows it as text, never a link.


class _Schema(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class GoogleItem(_Schema):
    title: Title = ""
    link: Link
    snippet: Snippet = ""

    def result(self) -> SearchResult:
        return SearchResult(self.title, self.link, self.snippet)


class SearxngResult(_Schema):
    title: Title = ""
    url: Link
    content: Snippet = ""

    def result(self) -> SearchResult:
        return SearchResult(self.title, self.url, self.content)


class _Answer(_Schema):
    """The part of an answer that is read; no list at all means no results. Each entry of `hits` is checked
    on its own against `Hit`."""

    Hit: ClassVar[type[GoogleItem | SearxngResult]]
    hits: list[Any] = []


class GoogleAnswer(_Answer):
    Hit = GoogleItem
    hits: list[Any] = Field([], alias="items")


class SearxngAnswer(_Answer):
    Hit = SearxngResult
    hits: list[Any] = Field([], alias="results")


class UnusableAnswer(Exception):
    """The answer is not a search answer, or none of its results can be used; the message says which."""


def read_answer(data: object, schema: type[_Answer], num: int) -> list[SearchResult]:
    """The first `num` usable results in a provider's decoded JSON `data`; raises UnusableAnswer."""
    name = schema.model_fields["hits"].alias
    try:
        hits = schema.model_validate(data).hits
    except ValidationError:
        raise UnusableAnswer(f"`{name}` is not a list" if isinstance(data, dict) else "not a JSON object") from None
    results = []
    for hit in hits:
        try:
            results.append(schema.Hit.model_validate(hit).result())
        except ValidationError:
            continue  # a result of the wrong shape is left out; the others still count
        if len(results) == num:
            break
    if hits and not results:
        fields = ", ".join(f"`{field}`" for field in schema.Hit.model_fields)
        raise UnusableAnswer(f"none of its {len(hits)} results has the expected fields ({fields}, as text)")
    return results
