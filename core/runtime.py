"""The process-wide backend, persona registry and reranker, built once and shared by every page and session
(`st.cache_resource`). Each is keyed by `shared_key` of the settings it is built from (marked at each setting in
`core.settings`), so changing one of those builds it anew, and changing any other setting does not."""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from core.settings import Settings, get_settings, shared_key
from llm.interface import ChatBackend
from llm.loading import Progress, cuda_available, fetch, load_from_folder, resolve_source

_fetch_lock = threading.Lock()  # two sessions opening the page at once must not download twice


@st.cache_resource(show_spinner="Loading the model into memory…")
def _transformers_backend(folder: str, kind: str, ref: str, engine_key: str, _settings: Settings) -> ChatBackend:
    # engine_key holds the settings that shape the loaded model and its scheduler: changing one loads anew.
    # Imported here: torch loads only when the in-process engine is the one asked for (not with LLM_BACKEND=openai).
    from llm.loading import ModelSource
    from llm.transformers_backend import TransformersBackend

    loaded = load_from_folder(Path(folder), ModelSource(kind, ref), _settings)
    return TransformersBackend(
        loaded,
        _settings.kv_cache_budget_mb,
        _settings.kv_cache_max_sessions,
        _settings.max_batch_size,
        _settings.prefill_chunk_tokens,
    )


def _make_transformers(settings: Settings, progress: Progress | None) -> ChatBackend:
    # Fetching (download / GGUF conversion) runs outside the cache so the page can show its progress.
    source = resolve_source(settings, cuda_available())
    with _fetch_lock:
        folder = fetch(source, settings.models_dir, progress)
    return _transformers_backend(str(folder), source.kind, source.ref, shared_key(settings, "engine"), settings)


@st.cache_resource(show_spinner=False)
def _openai_backend(server_key: str, _settings: Settings) -> ChatBackend:
    from llm.openai_backend import OpenAIBackend

    return OpenAIBackend(_settings)


def _make_openai(settings: Settings, progress: Progress | None) -> ChatBackend:
    return _openai_backend(shared_key(settings, "server"), settings)


BACKENDS = {"transformers": _make_transformers, "openai": _make_openai}


def get_backend(progress: Progress | None = None, settings: Settings | None = None) -> ChatBackend:
    """The shared backend for LLM_BACKEND. Raises `StudioError` with a fix when it cannot start."""
    settings = settings or get_settings()
    return BACKENDS[settings.llm_backend](settings, progress)


@st.cache_resource(show_spinner="Loading personas…")
def _registry(_backend: ChatBackend, backend_id: int, personas_key: str, _settings: Settings):
    from personas.registry import PersonaRegistry

    return PersonaRegistry(_backend, _settings.adapters_dir, _settings.personas_file)


def get_registry(backend: ChatBackend, settings: Settings | None = None):
    """One persona registry per backend and folders, shared by every page and the API (adapters load once)."""
    settings = settings or get_settings()
    return _registry(backend, id(backend), shared_key(settings, "personas"), settings)


@st.cache_resource(show_spinner="Loading the embedding model…")
def get_reranker(model_name: str):
    """The sentence-transformers model shared by search reranking and the API's embeddings."""
    from rag.rerank import Reranker

    return Reranker(model_name)
