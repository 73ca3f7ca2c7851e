"""Where things live holds: the engine imports no app concern, and its interface imports no torch."""

import ast
import subprocess
import sys

from tests.conftest import ROOT

# What the engine (llm/) may not import: the app around it.
APP_CONCERNS = (
    "core.store",
    "core.runtime",
    "core.conversation_schema",
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
        bad = sorted(m for m in imported_modules(path) if any(m == c or m.startswith(c + ".") for c in APP_CONCERNS))
        if bad:
            offending[path.name] = bad
    assert offending == {}


def engine_modules_the_app_imports() -> list[str]:
    """The engine's modules that the pages, the API and the app core import (core/runtime.py aside: it imports the
    in-process engine lazily, and the test below holds it): the interface, options, prompts and any other."""
    names = {"llm.interface", "llm.options", "llm.prompts"}
    paths = [ROOT / "app.py"]
    for folder in ("pages", "ui", "server", "core", "rag", "team"):
        paths.extend(p for p in sorted((ROOT / folder).rglob("*.py")) if p != ROOT / "core" / "runtime.py")
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


def test_the_app_core_and_search_do_not_reach_into_the_engine_internals():
    """core/ (except runtime.py, which builds the shared objects) and rag/ use the engine only through its
    interface, options and prompts."""
    allowed = {"llm.interface", "llm.options", "llm.prompts", "llm.compute_thread"}
    offending = {}
    for folder in ("core", "rag"):
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.name == "runtime.py":
                continue
            bad = sorted(m for m in imported_modules(path) if m.startswith("llm.") and m not in allowed)
            if bad:
                offending[f"{folder}/{path.name}"] = bad
    assert offending == {}


def test_the_shared_objects_module_loads_torch_only_for_the_in_process_engine():
    """With LLM_BACKEND=openai the app never needs torch: core.runtime imports the engine lazily."""
    code = "import sys, core.runtime, ui.session; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split()[-1] == "False"
