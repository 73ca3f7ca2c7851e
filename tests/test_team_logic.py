"""Teams and plans without the model: the teams file's checks, a weak model's silly plans, the limits."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import ValidationError

from personas.registry import BASE, Persona, PersonaCard, load_prompt_personas
from team.plan import (
    MAX_QUESTION_CHARS,
    Ask,
    PlanError,
    asked_key,
    fallback_plan,
    parse_plan,
    plan_schema,
    plan_token_bound,
)
from team.run import Limits
from team.teams import load_teams
from tests.conftest import ROOT

EXPERTS = ["computer-scientist", "legal-expert", "captain-quill"]
TASK = "Draft AI rules."


def personas() -> list[Persona]:
    prompt, problem = load_prompt_personas(ROOT / "personas.json")
    assert problem is None
    quill = Persona(
        "captain-quill", PersonaCard(display_name="Captain Quill"), "lora", problem=None, model="captain-quill"
    )
    return [BASE, *prompt, quill]


def write(tmp_path, data) -> object:
    path = tmp_path / "teams.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_the_shipped_teams_resolve_against_the_shipped_personas():
    teams, problem = load_teams(ROOT / "teams.json", personas())
    assert problem is None
    by_name = {t.name: t for t in teams}
    default = teams[0]
    assert default.name == "ai-standards" and default.available
    assert default.coordinator.name == "standards-coordinator"
    assert [p.name for p in default.experts] == ["computer-scientist", "legal-expert"]
    assert all(p.card.system_prompt for p in (default.coordinator, *default.experts))  # prompt personas we wrote
    lora = by_name["harbour-council"]
    assert lora.available and any(p.kind == "lora" for p in lora.experts)


def test_a_team_naming_a_missing_or_unavailable_persona_is_listed_with_the_reason(tmp_path):
    broken_quill = Persona(
        "captain-quill",
        PersonaCard(display_name="Captain Quill"),
        "lora",
        problem="adapter_model.safetensors is missing",
    )
    people = [p for p in personas() if p.name != "captain-quill"] + [broken_quill]
    path = write(
        tmp_path,
        {
            "good": {"display_name": "Good", "coordinator": "standards-coordinator", "experts": ["legal-expert"]},
            "ghost": {"display_name": "Ghost", "coordinator": "standards-coordinator", "experts": ["nobody-here"]},
            "sea": {"display_name": "Sea", "coordinator": "standards-coordinator", "experts": ["captain-quill"]},
            "twice": {"display_name": "Twice", "coordinator": "tutor", "experts": ["dummy", "dummy"]},
            "typo": {"display_name": "Typo", "coordinator": "tutor", "expert": ["dummy"]},
            "../evil": {"display_name": "Evil", "coordinator": "tutor", "experts": ["dummy"]},
        },
    )
    teams, problem = load_teams(path, people)
    assert problem is None
    reasons = {t.name: t.problem for t in teams}
    assert reasons["good"] is None
    assert "'nobody-here', which does not exist" in reasons["ghost"]
    assert "'captain-quill' is unavailable: adapter_model.safetensors is missing" in reasons["sea"]
    assert "listed twice" in reasons["twice"]
    assert "malformed entry" in reasons["typo"]
    assert "letters, digits" in reasons["../evil"]


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", "cannot be read"),
        ("[1, 2]", "object of name: team"),
        ("\udcff", "cannot be read"),
    ],
)
def test_a_broken_teams_file_says_so(tmp_path, content, words):
    path = tmp_path / "teams.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    teams, problem = load_teams(path, personas())
    assert teams == [] and words in problem


def test_a_missing_teams_file_names_the_setting(tmp_path):
    teams, problem = load_teams(tmp_path / "nope.json", personas())
    assert teams == [] and "TEAMS_FILE" in problem


def test_the_plan_schema_bounds_experts_asks_and_question_length():
    schema = plan_schema(EXPERTS, 2)
    good = {"asks": [{"expert": "legal-expert", "question": "Which laws apply?"}]}
    jsonschema.validate(good, schema)
    for bad in (
        {"asks": []},
        {"asks": [{"expert": "pirate", "question": "?"}]},
        {"asks": [{"expert": "legal-expert", "question": "x" * (MAX_QUESTION_CHARS + 1)}]},
        {"asks": [{"expert": "legal-expert", "question": "a"}] * 3},
        {"asks": [{"expert": "legal-expert", "question": "a", "tool": "rm -rf"}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    jsonschema.validate({"asks": []}, plan_schema(EXPERTS, 2, min_asks=0))  # a follow-up may finish
    # The token bound covers the longest plan the schema allows, written out loosely, with escapes.
    longest = {"asks": [{"expert": max(EXPERTS, key=len), "question": 'é"' * (MAX_QUESTION_CHARS // 2)}] * 2}
    assert len(json.dumps(longest, indent=2, ensure_ascii=False)) < plan_token_bound(EXPERTS, 2)


def test_silly_plans_keep_what_is_usable():
    text = json.dumps(
        {
            "asks": [
                {"expert": "legal-expert", "question": "  Which   laws\napply? "},
                {"expert": "legal-expert", "question": "Ask twice?"},  # the same expert again: first question kept
                {"expert": "pirate", "question": "Arr?"},  # not in the team
                {"expert": "computer-scientist", "question": ""},  # empty: the task itself
            ]
        }
    )
    assert parse_plan(text, EXPERTS, 3, TASK) == [
        Ask("legal-expert", "Which laws apply?"),
        Ask("computer-scientist", TASK),
    ]
    assert parse_plan(text, EXPERTS, 1, TASK) == [Ask("legal-expert", "Which laws apply?")]
    # A follow-up that repeats what was asked: only the new question is left.
    asked = {asked_key("legal-expert", "Which laws apply"), asked_key("computer-scientist", TASK)}
    assert parse_plan(text, EXPERTS, 3, TASK, asked) == [Ask("legal-expert", "Ask twice?")]
    asked.add(asked_key("legal-expert", "ask TWICE"))
    assert parse_plan(text, EXPERTS, 3, TASK, asked) == []
    # A server without JSON mode wraps it in prose and a fence.
    assert parse_plan(f"Sure! Here is the plan:\n```json\n{text}\n```", EXPERTS, 3, TASK)[0].expert == "legal-expert"


@pytest.mark.parametrize(
    "text, words",
    [
        ("I would ask the lawyer first.", "not valid JSON"),
        ('{"asks": "everyone"}', "does not match its schema (asks"),
        ('{"plan": []}', "does not match its schema (asks: Field required)"),
        ('{"asks": [{"question": "who?"}]}', "asks.0.expert"),
        ("", "not valid JSON"),
    ],
)
def test_unusable_plans_say_why(text, words):
    with pytest.raises(PlanError) as caught:
        parse_plan(text, EXPERTS, 3, TASK)
    assert words in str(caught.value)


def test_the_fallback_asks_every_expert_the_task_as_given():
    assert fallback_plan(EXPERTS, TASK, 8) == [Ask(e, TASK) for e in EXPERTS]
    assert fallback_plan(EXPERTS, TASK, 2) == [Ask(e, TASK) for e in EXPERTS[:2]]  # experts per round still holds


def test_limits_refuse_values_out_of_range():
    assert Limits().follow_up_rounds == 2  # the default round limit
    for bad in (
        {"experts_per_round": 0},
        {"experts_per_round": 9},
        {"expert_tokens": 2},
        {"token_budget": 10},
        {"follow_up_rounds": -1},
        {"rounds": 3},
    ):
        with pytest.raises(ValidationError):
            Limits(**bad)


def test_a_run_saved_part_way_reads_back_as_stopped_keeping_its_text():
    from team.run import Step, TeamRun, Turn

    run = TeamRun(
        team="t",
        team_display_name="T",
        task=TASK,
        limits=Limits(),
        steps=[Step(round=1, kind="plan", text='{"asks": [', outcome="planned")],
        turns=[
            Turn(
                round=1,
                expert="legal-expert",
                display_name="Legal expert",
                question="Q?",
                answer="Half an answ",
                status="answering",
            ),
            Turn(
                round=1,
                expert="computer-scientist",
                display_name="Computer scientist",
                question="Q?",
                answer="Done.",
                status="done",
            ),
        ],
    )
    saved = TeamRun.model_validate(json.loads(json.dumps(run.model_dump(mode="json"))))
    settled = saved.settle()
    assert settled.ended_by == "stopped"
    assert [(t.status, t.answer) for t in settled.turns] == [("stopped", "Half an answ"), ("done", "Done.")]
    assert settled.steps[0].outcome == "planned"
