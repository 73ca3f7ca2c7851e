"""The composition root: the process-wide backend, persona registry and reranker, built once from the settings
and shared by every page, session and the API. It sits above everything it composes (core/, llm/, personas/,
rag/), so core/ stays a floor. Each is keyed by the settings it is built from (marked at each setting in
`core.settings`), so changing one of those builds it anew, and changing any other setting does not. They are held
here, not in a Streamlit cache, so that nothing a browser sends can empty them and load a second copy of the
model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from core.errors import N_, Text
from core.settings import Settings, get_settings, shared_key
from llm.config import EngineConfig, ServerConfig
from llm.interface import ChatBackend
from llm.loading import Progress, cuda_available, fetch, load_from_folder, resolve_source

_fetch_lock = threading.Lock()  # two sessions opening the page at once must not download twice
_status_lock = threading.Lock()
_loading: list = [None]  # (message, fraction) last reported by whoever is loading the model, or None
T = TypeVar("T")
_built: dict[tuple, object] = {}
_building: dict[tuple, threading.Lock] = {}
_guard = threading.Lock()


def shared(key: tuple, build: Callable[[], T]) -> T:
    """The one object for `key`, built by the first caller while later ones wait (a failure is not kept: the
    next caller tries again)."""
    with _guard:
        if key in _built:
            return _built[key]  # type: ignore[return-value]
        lock = _building.setdefault(key, threading.Lock())
    with lock:
        with _guard:
            if key in _built:
                return _built[key]  # type: ignore[return-value]
        value = build()
        with _guard:
            _built[key] = value
        return value


def _transformers_backend(folder: str, kind: str, ref: str, config: EngineConfig) -> ChatBackend:
    # Imported here: torch loads only when the in-process engine is the one asked for (not with LLM_BACKEND=openai).
    from llm.loading import ModelSource
    from llm.static_step import step_for
    from llm.transformers_backend import TransformersBackend

    loaded = load_from_folder(Path(folder), ModelSource(kind, ref), config)
    return TransformersBackend(
        loaded,
        config.kv_cache_budget_mb,
        config.kv_cache_max_sessions,
        config.max_batch_size,
        config.prefill_chunk_tokens,
        step_for(config.llm_compile, loaded.model),
    )


def loading_status() -> tuple[str, float | None] | None:
    """What the model's loader (whichever caller started it: a page, the API's own loader) reported last, or
    None when nothing is loading. A page that waits for another's load shows this."""
    with _status_lock:
        return _loading[0]


def _reporting(progress: Progress | None) -> Progress:
    def report(message: str, fraction: float | None) -> None:
        with _status_lock:
            _loading[0] = (message, fraction)
        if progress is not None:
            progress(message, fraction)

    return report


def _make_transformers(settings: Settings, progress: Progress | None) -> ChatBackend:
    # Fetching (download / GGUF conversion) runs outside the cache so the page can show its progress.
    report, config = _reporting(progress), EngineConfig.from_settings(settings)
    try:
        source = resolve_source(config, cuda_available())
        with _fetch_lock:
            folder = fetch(source, config.models_dir, report)
        # The engine's config is in the key: changing anything that shapes the model or its scheduler loads anew.
        key = ("transformers", str(folder), source.kind, source.ref, config)
        if key not in _built:
            report(Text(N_("Loading the model into memory…")), None)
        return shared(key, lambda: _transformers_backend(str(folder), source.kind, source.ref, config))
    finally:
        with _status_lock:
            _loading[0] = None


def _openai_backend(config: ServerConfig) -> ChatBackend:
    from llm.openai_backend import OpenAIBackend

    return OpenAIBackend(config)


def _make_openai(settings: Settings, progress: Progress | None) -> ChatBackend:
    config = ServerConfig.from_settings(settings)
    return shared(("openai", config), lambda: _openai_backend(config))


BACKENDS = {"transformers": _make_transformers, "openai": _make_openai}


def get_backend(progress: Progress | None = None, settings: Settings | None = None) -> ChatBackend:
    """The shared backend for LLM_BACKEND. Raises `StudioError` with a fix when it cannot start."""
    settings = settings or get_settings()
    return BACKENDS[settings.llm_backend](settings, progress)


def _registry(backend: ChatBackend, settings: Settings):
    from personas.registry import PersonaRegistry

    return PersonaRegistry(backend, settings.adapters_dir, settings.personas_file)


def get_registry(backend: ChatBackend, settings: Settings | None = None):
    """One persona registry per backend and folders, shared by every page and the API (adapters load once)."""
    settings = settings or get_settings()
    return shared(("registry", id(backend), shared_key(settings, "personas")), lambda: _registry(backend, settings))


def get_reranker(model_name: str):
    """The sentence-transformers model shared by search reranking and the API's embeddings."""
    from rag.rerank import Reranker

    return shared(("reranker", model_name), lambda: Reranker(model_name))
