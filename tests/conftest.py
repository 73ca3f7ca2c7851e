"""Shared fixtures. Every path a test writes is under a temp folder, except the converted demo
weights, which are cached under data/models so the suite converts the GGUF only once."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("TEST_MODEL_CACHE_DIR", ROOT / "data" / "models"))
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Fresh settings per test: demo model, data in a temp dir, no secrets from the developer's machine."""
    from core.settings import get_settings

    for name in list(os.environ):
        if name.startswith(("LLM_", "OPENAI_", "GOOGLE_", "SEARXNG_", "APP_", "API_", "ALLOWED_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLM_MODEL", "demo")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODEL_CACHE_DIR", str(MODELS_DIR))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def demo_model():
    """The real bundled SmolLM2-135M-Instruct, loaded once for the whole run."""
    from core.settings import Settings
    from llm.loading import load_model

    return load_model(Settings(llm_model="demo", model_cache_dir=MODELS_DIR))


@pytest.fixture(scope="session")
def backend(demo_model):
    from llm.transformers_backend import TransformersBackend

    return TransformersBackend(demo_model)


@pytest.fixture(scope="session")
def quill_backend():
    """Its own copy of the demo model (attaching an adapter changes the model it is given), with the shipped
    Captain Quill adapter, a 64 MB / 4-session cache budget and batches of up to 8 rows."""
    from core.settings import Settings
    from llm.loading import load_model
    from llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(load_model(Settings(llm_model="demo", model_cache_dir=MODELS_DIR)), 64, 4, 8)
    backend.attach_adapter("captain-quill", ROOT / "adapters" / "captain-quill")
    return backend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def player():
    """A local server playing Google's Custom Search JSON API and SearXNG (tests/search_servers.py)."""
    from tests import search_servers

    server, url = search_servers.start()
    yield url
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run `scripts/setup.sh --test`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
