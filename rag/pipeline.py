"""Search answers as small named steps: standalone_query → retrieve (search + rerank) → answer messages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.errors import N_, StudioError, Text, text_of
from llm.options import GenerationOptions
from llm.prompts import Message
from rag.prompts import answer_messages, rewrite_messages
from rag.rerank import Reranker
from rag.search import SearchOptions, SearchResult

REWRITE_OPTIONS = GenerationOptions(temperature=0, max_new_tokens=48, repetition_penalty=1.0)


@dataclass
class Retrieval:
    query: str
    sources: list[SearchResult] = field(default_factory=list)
    error: str | None = None  # why there are no sources, when search failed


def standalone_query(backend, history: list[Message], question: str, model: str | None = None) -> str:
    """A follow-up ("and in 2023?") rewritten with the conversation into a query that stands alone."""
    if not history:
        return question
    text = "".join(backend.stream(rewrite_messages(history, question), REWRITE_OPTIONS, model=model))
    query = text.strip().splitlines()[0] if text.strip() else ""
    # The label first, then the quotes: `Search query: "x"` is x.
    query = re.sub(r"^(search query|query)\s*:\s*", "", query.strip(), flags=re.I).strip(" \"'`")
    return query[:300] if len(query) >= 3 else question


def retrieve(provider, reranker: Reranker, query: str, options: SearchOptions, keep: int) -> Retrieval:
    """Search, then keep the `keep` snippets closest in meaning to the query. Never raises StudioError."""
    if provider is None:
        return Retrieval(query, error=Text(N_("Search is not configured.")))
    try:
        results = provider.search(query, options)
    except StudioError as exc:
        return Retrieval(query, error=text_of(exc))
    if not results:
        return Retrieval(query, error=Text(N_("The search returned no results.")))
    ranked = reranker.rerank(query, results)[:keep]
    return Retrieval(query, [r for _, r in ranked])


def build_messages(history: list[Message], question: str, retrieval: Retrieval) -> list[Message]:
    return answer_messages(history, question, retrieval.sources)


def cited_numbers(answer: str, n_sources: int) -> list[int]:
    """Source numbers the answer cites as [n] (also [1][2] and [1, 2])."""
    found = set()
    for group in re.findall(r"\[(\d+(?:\s*,\s*\d+)*)\]", answer):
        found.update(int(x) for x in group.split(","))
    return sorted(n for n in found if 1 <= n <= n_sources)
