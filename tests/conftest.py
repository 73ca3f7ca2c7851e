"""Shared fixtures. Every path a test writes is under a temp folder, except the converted demo
weights, which are cached under data/models so the suite converts the GGUF only once."""

from __future__ import annotations

import os
import socket
import types
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
    from llm.config import EngineConfig
    from llm.loading import load_model

    return load_model(EngineConfig(llm_model="demo", llm_dtype="float32", models_dir=MODELS_DIR))


@pytest.fixture(scope="session")
def backend(demo_model):
    from llm.transformers_backend import TransformersBackend

    return TransformersBackend(demo_model)


@pytest.fixture(scope="session")
def quill_backend():
    """Its own copy of the demo model (attaching an adapter changes the model it is given), with the shipped
    Captain Quill adapter, a 64 MB / 4-session cache budget and batches of up to 8 rows."""
    from llm.config import EngineConfig
    from llm.loading import load_model
    from llm.transformers_backend import TransformersBackend

    settings = EngineConfig(llm_model="demo", llm_dtype="float32", models_dir=MODELS_DIR)
    backend = TransformersBackend(load_model(settings), 64, 4, 8)
    backend.attach_adapter("captain-quill", ROOT / "adapters" / "captain-quill")
    return backend


@pytest.fixture(scope="session")
def bf16_quill_backend():
    """`quill_backend`'s twin with the demo model in bfloat16: its own copy, the shipped adapter, the same limits."""
    from llm.config import EngineConfig
    from llm.loading import load_model
    from llm.transformers_backend import TransformersBackend

    settings = EngineConfig(llm_model="demo", llm_dtype="bfloat16", models_dir=MODELS_DIR)
    backend = TransformersBackend(load_model(settings), 64, 4, 8)
    backend.attach_adapter("captain-quill", ROOT / "adapters" / "captain-quill")
    return backend


@pytest.fixture(params=["float32", "bfloat16"])
def any_quill(request):
    """`quill_backend` (float32) or `bf16_quill_backend`: a test using it runs once in each dtype."""
    return request.getfixturevalue("quill_backend" if request.param == "float32" else "bf16_quill_backend")


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


# --- the `model` marker: what the fast tier (`pytest -m "not model and not browser"`) leaves out -------------

# Fixtures that load the real demo model. A fixture built on one of them is caught too: pytest's closure of a
# test's fixtures names every fixture it needs, however deep.
MODEL_FIXTURES = frozenset({"demo_model", "backend", "quill_backend", "bf16_quill_backend", "any_quill"})
# Names whose use loads the model: in this process, or in a `streamlit run` server (it loads the model as it
# starts). Looked for in the test, in each of its fixtures and in the helpers from tests/ that they call.
MODEL_LOADERS = frozenset({"load_model", "load_from_folder", "TransformersBackend", "start_streamlit"})
# `python -m bench` loads the model; so does anything called from the bench package.
MODEL_COMMANDS = frozenset({"bench"})


def _code_names(code: types.CodeType) -> tuple[set[str], set[str]]:
    """The names and the string constants in `code` and in the functions, lambdas and comprehensions inside it."""
    names, strings = set(code.co_names), {c for c in code.co_consts if isinstance(c, str)}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            inner_names, inner_strings = _code_names(const)
            names |= inner_names
            strings |= inner_strings
    return names, strings


def _reaches_the_model(func, seen: set) -> bool:
    """Whether `func`, or a function of tests/ that it calls, loads the model or runs a command that does."""
    func = getattr(func, "__wrapped__", func)
    code = getattr(func, "__code__", None)
    if code is None or code in seen:
        return False
    seen.add(code)
    names, strings = _code_names(code)
    if names & MODEL_LOADERS or ("-m" in strings and strings & MODEL_COMMANDS):
        return True
    scope = getattr(func, "__globals__", {})
    for name in names:
        helper = scope.get(name)
        module = getattr(helper, "__module__", None) or ""
        if module.split(".")[0] == "bench":
            return True
        if isinstance(helper, types.FunctionType) and module.startswith("tests.") and module != "tests.browser":
            if _reaches_the_model(helper, seen):
                return True
    return False


def needs_the_model(item) -> bool:
    callspec = getattr(item, "callspec", None)
    parametrized = set(callspec.params) if callspec else set()  # `backend` may be a parameter, not the fixture
    if MODEL_FIXTURES & (set(getattr(item, "fixturenames", ())) - parametrized):
        return True
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info else ():
        funcs.extend(d.func for d in defs)
    seen: set = set()
    return any(f is not None and _reaches_the_model(f, seen) for f in funcs)


def pytest_collection_modifyitems(config, items):
    """The safety net: a test that needs the model gets the `model` marker even where its file forgot it."""
    for item in items:
        if item.get_closest_marker("model") is None and needs_the_model(item):
            item.add_marker(pytest.mark.model)


# And as it happens: a test without the marker that gets the real model in this process anyway (an AppTest of a
# page on the real backend, say, which no fixture shows) fails, naming the marker, instead of slowing the fast
# tier. What the model loads in its own process (a server, a command) is caught at collection only.
_running: list = [None]
_unmarked_uses: dict[str, str] = {}


def _watched(make, what: str):
    def watched(*args, **kwargs):
        made = make(*args, **kwargs)  # recorded once it worked: a load that fails quickly is no model
        item = _running[0]
        if item is not None and item.get_closest_marker("model") is None:
            _unmarked_uses.setdefault(item.nodeid, what)
        return made

    watched.__wrapped__ = make
    return watched


def pytest_configure(config):
    import llm.loading

    if not hasattr(llm.loading.load_from_folder, "__wrapped__"):
        llm.loading.load_from_folder = _watched(llm.loading.load_from_folder, "it loads the model")
    import runtime  # after the line above: it takes its own name for load_from_folder

    runtime.load_from_folder = llm.loading.load_from_folder
    if not hasattr(runtime.BACKENDS["transformers"], "__wrapped__"):  # the shared one, loaded or not yet
        runtime.BACKENDS["transformers"] = _watched(runtime.BACKENDS["transformers"], "it uses the model")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running[0] = item
    try:
        yield
    finally:
        _running[0] = None


@pytest.fixture(autouse=True)
def model_only_where_marked(request):
    yield
    what = _unmarked_uses.pop(request.node.nodeid, None)
    if what is not None:
        pytest.fail(
            f"{what} but has no `model` marker: add @pytest.mark.model (the fast tier, "
            '`pytest -m "not model and not browser"`, leaves such tests out)',
            pytrace=False,
        )
