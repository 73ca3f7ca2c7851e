"""Where things live holds: the engine imports no app concern, and its interface imports no torch."""

import ast
import subprocess
import sys

from tests.conftest import ROOT

# What the engine (llm/) may not import: the app around it. Of core/ it takes only the floor under everything,
# `core.errors` (and `core.text`, `core.urls`, and `core.stats`, the answer figures it fills): never the app's
# settings, its store or its access rules: it takes its own frozen configs (`llm.config`), built by `runtime`.
ENGINE_MAY_USE = ("core.errors", "core.stats", "core.text", "core.urls")
APP_CONCERNS = (
    "core",
    "runtime",
    "ui",
    "rag",
    "team",
    "server",
    "personas",
    "pages",
    "streamlit",
)


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_engine_imports_nothing_from_the_app():
    offending = {}
    for path in sorted((ROOT / "llm").glob("*.py")):
        bad = sorted(
            m
            for m in imported_modules(path)
            if m not in ENGINE_MAY_USE and any(m == c or m.startswith(c + ".") for c in APP_CONCERNS)
        )
        if bad:
            offending[path.name] = bad
    assert offending == {}


def engine_modules_the_app_imports() -> list[str]:
    """The engine's modules that the pages, the API and the app core import (runtime.py aside: it imports the
    in-process engine lazily, and the test below holds it): the interface, options, prompts and any other."""
    names = {"llm.interface", "llm.options", "llm.prompts"}
    paths = [ROOT / "app.py"]
    for folder in ("pages", "ui", "server", "core", "rag", "team"):
        paths.extend(sorted((ROOT / folder).rglob("*.py")))
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.startswith("llm."))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "llm":
                names.update(f"llm.{a.name}" for a in node.names)  # from llm import prompts
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("llm."):
                names.add(node.module)
    return sorted(names)


def test_the_interface_pages_and_the_api_import_is_torch_free():
    code = "import sys, llm.interface; print('torch' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
    # Each engine module the pages and the API import, one after another in one fresh process: the first one that
    # brings torch or transformers in is named.
    modules = engine_modules_the_app_imports()
    assert {"llm.interface", "llm.options", "llm.prompts", "llm.tools"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    print(name, *[m for m in ('torch', 'transformers') if m in sys.modules] or ['torch-free'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [f"{name} torch-free" for name in modules]


def test_core_is_the_floor_and_search_uses_only_the_engine_interface():
    """core/ imports nothing above it (not the engine, not the composition root `runtime`, no page, no API);
    rag/ uses the engine only through its interface, options and prompts."""
    above_core = ("llm", "runtime", "ui", "rag", "team", "server", "personas", "pages", "bench", "streamlit")
    allowed = {"llm.interface", "llm.options", "llm.prompts", "llm.compute_thread"}
    offending = {}
    for path in sorted((ROOT / "core").glob("*.py")):
        bad = sorted(m for m in imported_modules(path) if any(m == a or m.startswith(a + ".") for a in above_core))
        if bad:
            offending[f"core/{path.name}"] = bad
    for path in sorted((ROOT / "rag").glob("*.py")):
        bad = sorted(m for m in imported_modules(path) if m.startswith("llm.") and m not in allowed)
        if bad:
            offending[f"rag/{path.name}"] = bad
    assert offending == {}


def test_the_shared_objects_module_loads_torch_only_for_the_in_process_engine():
    """With LLM_BACKEND=openai the app never needs torch: runtime imports the engine lazily."""
    code = "import sys, runtime, ui.session, ui.page; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split()[-1] == "False"
