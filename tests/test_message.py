"""The one conversation message (core/message.py): a team run kept typed through a save, an export and an
import; the answer figures spelled in one place; no message dict built by hand outside the message module."""

from __future__ import annotations

import ast
import inspect
import json

import pytest
from streamlit.testing.v1 import AppTest

from core.conversation_schema import ImportRefused, parse_export
from core.errors import N_, Text
from core.message import Message
from core.settings import get_settings
from core.stats import STATS_FIELDS, Stats
from core.store import Store
from core.team_run import Limits, Step, TeamRun, Turn
from llm.interface import GenerationStats
from tests.conftest import ROOT
from tests.fake_backend import install
from ui import chat
from ui.safe_text import plain, safe_markdown

TASK = "Draft AI rules for a school."


def a_run() -> TeamRun:
    """A finished run with a plan (whose note is saved as translatable words), two turns and an answer."""
    note = Text(N_("The plan was unusable ({problem}), so every expert was asked the task as given."), problem="x")
    return TeamRun(
        team="ai-standards",
        team_display_name="AI standards board",
        task=TASK,
        limits=Limits(follow_up_rounds=0, expert_tokens=16),
        steps=[Step(round=1, kind="plan", text="{}", outcome="fallback", note=note, asked=["Legal expert"], tokens=9)],
        turns=[
            Turn(
                round=1, expert="lawyer", display_name="Legal expert", question=TASK, answer="Be fair.", status="done"
            ),
            Turn(round=1, expert="cs", display_name="Computer scientist", question=TASK, status="length", tokens=16),
        ],
        consult_seconds=[1.5],
        synthesis="Rules: be fair.",
        synthesis_status="done",
        ended_by="finished",
        tokens_used=25,
    )


def team_conversation(store: Store, run: TeamRun) -> str:
    messages = [Message.user(TASK).as_state(), Message.team_answer(run, "the run as Markdown").as_state()]
    return store.create("team", TASK, messages)


def test_a_team_conversation_exported_and_imported_keeps_its_run(tmp_path):
    store, run = Store(tmp_path / "conversations.sqlite3"), a_run()
    exported = store.export_json(team_conversation(store, run))
    raw = json.dumps(exported, ensure_ascii=False).encode()
    export, dropped = parse_export(raw)
    assert dropped == []  # team and team_run are the message's own fields now
    assert export.messages[1].team_run == run and export.messages[1].team == "ai-standards"
    back = store.messages(store.import_json(json.loads(raw)))
    assert [m["role"] for m in back] == ["user", "assistant"] and back[1]["team"] == "ai-standards"
    again = TeamRun.model_validate(back[1]["team_run"])
    assert again == run and isinstance(again.steps[0].note, Text)  # the note is words again, not only English
    assert again.turns[1].status == "length" and again.limits.expert_tokens == 16


def test_an_imported_team_run_is_drawn_as_a_run(monkeypatch):
    install(monkeypatch)
    store = Store(get_settings().database_path)
    imported = store.import_json(store.export_json(team_conversation(store, a_run())))
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params["c"] = imported
    at.switch_page("pages/3_Team.py").run()
    assert not at.exception, at.exception
    shown = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert any("Legal expert" in t for t in shown) and any(t.startswith("Asked: ") for t in shown)
    assert "Rules: be fair." in shown  # the run's answer, drawn from its record


def test_an_imported_team_run_shows_its_words_as_written_and_a_bad_one_is_refused(monkeypatch):
    install(monkeypatch)
    store, run = Store(get_settings().database_path), a_run()
    exported = store.export_json(team_conversation(store, run))
    record = exported["messages"][1]["team_run"]
    record["steps"][0]["note"] = "![x](http://tracker.invalid/p.png) **loud**"
    record["team_display_name"] = "[click](http://tracker.invalid)"
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params["c"] = store.import_json(exported)
    at.switch_page("pages/3_Team.py").run()
    assert not at.exception, at.exception
    drawn = [w.value for w in at.warning] + [m.value for m in at.markdown]
    assert safe_markdown(record["steps"][0]["note"]) in drawn  # the note as an answer's text is: no image loads
    assert not any("![" in t for t in drawn)
    assert plain(record["team_display_name"]) + " · answer**" in " ".join(drawn)  # a name is shown as written

    del record["task"]
    with pytest.raises(ImportRefused, match=r"messages\[1\]\.team_run\.task: Field required"):
        parse_export(json.dumps(exported).encode())


def test_the_answer_figures_are_spelled_once():
    assert tuple(GenerationStats().as_dict()) == STATS_FIELDS == tuple(Stats.model_fields)
    assert tuple(Message.model_fields["stats"].annotation.__args__[0].model_fields) == STATS_FIELDS
    # The caption under an answer reads only those figures.
    tree = ast.parse(inspect.getsource(chat.stats_caption))
    read = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and getattr(n.value, "id", "") == "stats"}
    assert read and read <= set(STATS_FIELDS)
    shown = chat.stats_caption(GenerationStats(prompt_tokens=3, completion_tokens=4, first_token_s=0.5).as_dict())
    assert "first token 0.50 s" in shown and "7 tokens used (3 prompt + 4 answer)" in shown


# Dicts with a "role" key that are not conversation messages: prompts for the engine and OpenAI's wire shapes.
NOT_MESSAGES = {
    "core/conversation_schema.py": "a stored row as data, before Message checks it",
    "team/prompts.py": "the experts' and coordinator's prompts, for the engine",
    "rag/prompts.py": "the search prompts, for the engine",
    "ui/compare.py": "the side-by-side prompt, for the engine",
    "ui/api_panel.py": "example request bodies shown on the API page",
    "server/api/messages.py": "a chat request's messages as a prompt for the engine",
    "server/api/tools.py": "the assistant's reply in OpenAI's shape",
    "server/api/routes.py": "a streamed delta in OpenAI's shape",
    "server/api/items.py": "OpenAI's items (input and output shapes)",
    "server/api/response_events.py": "OpenAI's response events",
    "server/api/responses.py": "instructions as a system prompt for the engine",
    "server/api/assistants.py": "OpenAI's thread messages and input items",
    "server/api/runs.py": "OpenAI's run shapes",
}


def test_no_module_builds_a_message_dict_by_hand():
    """A conversation message is made through core.message.Message; dicts with a "role" key are prompts or
    OpenAI's shapes, in the modules listed above, and never hold a message's own fields (id, time)."""
    offending = []
    for folder in ("core", "ui", "pages", "team", "server", "rag"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name == "core/message.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Dict):
                    continue
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if "role" in keys and (name not in NOT_MESSAGES or keys & {"time", "parent", "stats", "model"}):
                    offending.append(f"{name}:{node.lineno}")
    assert offending == []


def test_a_run_grown_in_place_is_saved_whole(tmp_path):
    """A run's steps and turns are appended to its lists as it goes (pydantic never counts them as set)."""
    run = TeamRun(team="ai-standards", team_display_name="AI standards board", task=TASK, limits=Limits())
    run.steps.append(Step(round=1, kind="plan"))
    run.turns.append(Turn(round=1, expert="cs", display_name="Computer scientist", question=TASK))
    store = Store(tmp_path / "conversations.sqlite3")
    saved = store.messages(team_conversation(store, run))[1]
    assert TeamRun.model_validate(saved["team_run"]) == run and len(saved["team_run"]["turns"]) == 1
