"""A team run through the real demo model: constrained plans, one batch for the experts, budgets, stop."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from core.errors import StudioError
from llm.options import GenerationOptions
from personas.registry import PersonaRegistry
from team import report
from team.answer import team_answer
from team.plan import Ask, PlanError, plan_schema
from team.prompts import expert_messages, plan_messages
from team.run import Limits, TeamError, consult, new_run, plan, run_team
from team.teams import load_teams
from tests.conftest import ROOT

pytestmark = pytest.mark.model
GREEDY = GenerationOptions(temperature=0)
TASKS = [
    "Draft AI compliance standards that keep AI systems from harming people.",
    "Should a hospital let a chatbot answer patients' questions?",
    "We want to sell a face recognition door lock in Europe. What must we check?",
    "Write rules for using customer emails to train a spam filter.",
]


@pytest.fixture(scope="module")
def registry(backend, tmp_path_factory):
    """The shipped prompt personas on the shared demo backend (no adapters: those go on `quill_backend`)."""
    return PersonaRegistry(backend, tmp_path_factory.mktemp("no-adapters"), ROOT / "personas.json")


@pytest.fixture(scope="module")
def standards(registry):
    teams, _ = load_teams(ROOT / "teams.json", registry.personas())
    return next(t for t in teams if t.name == "ai-standards")


@pytest.fixture(scope="module")
def harbour(quill_backend):
    registry = PersonaRegistry(quill_backend, ROOT / "adapters", ROOT / "personas.json")
    teams, _ = load_teams(ROOT / "teams.json", registry.personas())
    team = next(t for t in teams if t.name == "harbour-council")
    assert team.available, team.problem
    return team


def drain(events) -> list:
    return list(events)


def test_plans_are_valid_json_by_construction_across_tasks(backend, standards):
    """Three plans decoded at once (rows of one batch, each with its own constraint), greedy and sampled."""
    names = [p.name for p in standards.experts]
    schema = plan_schema(names, 2)

    def constrained(task: str, options: GenerationOptions):
        run = new_run(standards, task, Limits())
        asks = drain_return(plan(backend, standards, run, options, threading.Event()))
        return run.steps[0], asks

    def unconstrained(task: str) -> str:
        messages = plan_messages(standards.coordinator, standards.experts, task, 2)
        return "".join(backend.stream(messages, GenerationOptions(temperature=0, max_new_tokens=32)))

    options = [GREEDY, GenerationOptions(temperature=0.8, seed=3), GREEDY]
    with ThreadPoolExecutor(len(TASKS)) as pool:
        results = list(pool.map(constrained, TASKS[:3], options))
        free = list(pool.map(unconstrained, TASKS[:2]))
    for step, asks in results:
        assert step.outcome == "planned", step.note
        jsonschema.validate(json.loads(step.text), schema)  # an independent validator agrees
        assert asks and all(a.expert in names and a.question.strip() for a in asks)
        assert step.asked == [standards.expert(a.expert).card.display_name for a in asks]
    # The same prompts without the constraint: the demo model does not write a usable plan on its own.
    unusable = 0
    for text in free:
        try:
            jsonschema.validate(json.loads(text), schema)
        except (ValueError, jsonschema.ValidationError):
            unusable += 1
    assert unusable >= 1, free


def drain_return(generator):
    """Run a step generator to its end; its return value."""
    try:
        while True:
            next(generator)
    except StopIteration as end:
        return end.value


def test_consult_puts_every_expert_in_one_batch_and_each_answers_as_it_would_alone(quill_backend, harbour):
    asks = [
        Ask("captain-quill", "How do I keep a boat safe at night?"),
        Ask("computer-scientist", "Which booking website features matter most?"),
        Ask("legal-expert", "Which permits does a public sailing event need?"),
    ]
    run = new_run(harbour, "Plan a night-time sailing event.", Limits(expert_tokens=16))
    quill_backend.scheduler.max_rows_seen = 0
    events = drain(consult(quill_backend, harbour, run, asks, 1, GREEDY, threading.Event()))
    assert quill_backend.scheduler.max_rows_seen == 3
    assert [e.kind for e in events].count("turn_done") == 3 and events[0].kind == "round"
    assert {e.index for e in events if e.kind == "piece"} == {0, 1, 2}  # every panel streamed
    for turn, ask in zip(run.turns, asks):
        assert turn.batched_with == 2  # decoded in the same forward passes as the two others
        assert turn.status in ("done", "length") and turn.tokens > 0 and turn.seconds > 0
        expert = harbour.expert(ask.expert)
        alone = "".join(
            quill_backend.stream(
                expert_messages(expert, run.task, ask.question),
                GREEDY.model_copy(update={"max_new_tokens": 16}),
                model=expert.model,
            )
        )
        assert turn.answer == alone, turn.expert
    assert run.turns[0].answer != run.turns[1].answer  # each row had its own persona
    assert len(run.consult_seconds) == 1 and run.tokens_used == sum(t.tokens for t in run.turns)


def test_the_budget_ends_the_run_and_the_coordinator_still_answers(backend, standards):
    run = new_run(
        standards, TASKS[0], Limits(expert_tokens=16, synthesis_tokens=16, follow_up_rounds=2, token_budget=100)
    )
    events = drain(run_team(backend, standards, run, GREEDY))
    assert run.ended_by == "budget"
    assert run.tokens_used <= 100
    assert run.synthesis.strip() and run.synthesis_status in ("done", "length")
    assert events[-1].kind == "done" and any(e.kind == "synthesis_piece" for e in events)
    assert "token budget (100 tokens" in report.ended_note(run)
    assert "token budget" in report.markdown(run)


def test_a_stopped_run_keeps_what_streamed_and_stops_computing(backend, standards):
    run = new_run(standards, TASKS[1], Limits(expert_tokens=400))
    events = run_team(backend, standards, run, GREEDY)
    pieces = 0
    for event in events:
        if event.kind == "piece" and event.text:
            pieces += 1
        if pieces >= 6:
            break
    events.close()  # what Streamlit's stop does to the page's loop
    assert run.ended_by == "stopped"
    streamed = [t for t in run.turns if t.answer]
    assert streamed and all(t.status in ("stopped", "done") for t in run.turns)
    assert any(t.status == "stopped" for t in run.turns)
    assert sum(len(t.answer) for t in run.turns) > 0 and run.synthesis == ""
    steps = backend.scheduler.steps
    time.sleep(1.0)
    assert backend.scheduler.steps == steps  # no row is computing any more
    assert "Stopped" in report.ended_note(run)


def test_one_call_runs_a_team_for_the_api(backend, registry):
    """`team_answer` is the path the API serves `team:<name>` through: the synthesis as text pieces."""
    limits = Limits(expert_tokens=16, synthesis_tokens=16, follow_up_rounds=0)
    pieces = team_answer(backend, registry, "ai-standards", TASKS[2], limits, GREEDY)
    text = "".join(pieces)
    assert text.strip() and text == pieces.run.synthesis
    with pytest.raises(TeamError, match="No team named 'nope'"):
        team_answer(backend, registry, "nope", "x", limits)
    # The second shipped team needs the LoRA persona, which this registry has not got.
    with pytest.raises(TeamError, match="'captain-quill', which does not exist"):
        team_answer(backend, registry, "harbour-council", "x", limits)
    assert issubclass(TeamError, StudioError) and issubclass(PlanError, ValueError)


def test_the_constraint_looks_only_at_the_answer_on_the_plain_path_too(backend):
    """One request alone (`tests.reference.alone`) with a schema: the prompt, full of braces, does not count."""
    from llm import constrained
    from llm.prompts import encode
    from tests.reference import alone

    lm = backend.loaded
    schema = {
        "type": "object",
        "properties": {"verdict": {"enum": ["safe", "unsafe"]}},
        "required": ["verdict"],
        "additionalProperties": False,
    }
    options = constrained.bind(
        GREEDY.model_copy(update={"max_new_tokens": 24, "json_schema": json.dumps(schema)}), lm.tokenizer, lm.stop_ids
    )
    prompt = encode(lm.tokenizer, [{"role": "user", "content": 'Reply {"verdict": ...} about {"code": "rm -rf /"} {'}])
    text = lm.tokenizer.decode(alone(backend.runner, prompt, lm.stop_ids, options))
    jsonschema.validate(json.loads(text), schema)
    with pytest.raises(ValueError, match="compiled for the tokenizer"):  # never silently unconstrained
        alone(backend.runner, prompt, lm.stop_ids, GenerationOptions(**options.model_dump()))
