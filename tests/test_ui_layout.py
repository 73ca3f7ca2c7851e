"""The ui modules a page's conversation goes through call one way (ui/page.py's docstring draws the order): each
imports only those below it, so following a chat message from the page to the model and back enters each of
them once, and no module climbs back into one above it. `ChatSession` (ui/session.py) is the only writer of a
conversation's session-state keys."""

import ast

from tests.conftest import ROOT

# Lowest first. A module imports, of these, only modules of the layers below its own (not those beside it).
LAYERS = (
    ("ui.chat",),  # drawing helpers: the backend, the sidebar's options, a message
    ("ui.session",),  # the conversation's state
    ("ui.conversations",),  # that state synced with the store
    ("ui.answer", "ui.conversation_list", "ui.gestures"),  # an answer, the sidebar's list, the buttons
    ("ui.page",),  # the page sequence
)
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}
CHAT_PAGES = ("0_Chat", "1_Personas", "2_Search_answers", "3_Team")


def ui_imports(path) -> set[str]:
    """Every ui module `path` imports: at the top, inside a function, or only for type checking."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "ui":
            names.update(f"ui.{alias.name}" for alias in node.names)  # from ui import conversations
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {name for name in names if name.startswith("ui.")}


def module_path(name: str):
    return ROOT / (name.replace(".", "/") + ".py")


def test_each_conversation_module_imports_only_those_below_it():
    climbs = {}
    for name, rank in RANK.items():
        up = sorted(m for m in ui_imports(module_path(name)) if RANK.get(m, -1) >= rank)
        if up:
            climbs[name] = up
    assert climbs == {}


def test_the_page_sequence_is_the_pages_alone_and_each_chat_page_makes_one_call():
    importers = sorted(p.name for p in sorted((ROOT / "ui").glob("*.py")) if "ui.page" in ui_imports(p))
    assert importers == []
    for name in CHAT_PAGES:
        tree = ast.parse((ROOT / "pages" / f"{name}.py").read_text(encoding="utf-8"))
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "page"
        ]
        assert [call.func.attr for call in calls] == ["start", "run"], name


def test_only_the_session_names_its_keys():
    """No page and no other ui module reaches a conversation's keys (`session.keys.…`): it asks the session."""
    paths = [*sorted((ROOT / "ui").glob("*.py")), *sorted((ROOT / "pages").glob("*.py"))]
    reaching = {}
    for path in paths:
        if path == module_path("ui.session"):
            continue
        found = [
            node.lineno
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "keys"
        ]
        if found:
            reaching[path.name] = found
    assert reaching == {}
