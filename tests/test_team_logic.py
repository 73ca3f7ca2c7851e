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


@pytest.mark.parametrize(
    "content, words",
    [
        ("[" * 100_000 + "]" * 100_000, "not valid JSON (recursion limit exceeded"),
        ('{"a":' * 100_000 + "1" + "}" * 100_000, "not valid JSON (recursion limit exceeded"),
        ('{"\\ud800": {}}', "not valid JSON (unexpected end of hex escape"),  # a lone surrogate: JSON refuses it
        ('{"a": "' + "x" * (1 << 20) + '"}', "larger than 1024 KB"),
        (json.dumps({f"t{n}": {} for n in range(201)}), "holds 201 teams, more than 200"),
    ],
)
def test_a_hostile_teams_file_is_refused_with_the_reason(tmp_path, content, words):
    teams, problem = load_teams(write(tmp_path, content), personas())
    assert teams == [] and words in problem, problem


def test_bad_entries_under_bad_names_are_listed_escaped_and_the_rest_resolve(tmp_path):
    good = {"display_name": "Good", "coordinator": "standards-coordinator", "experts": ["legal-expert"]}
    path = write(
        tmp_path,
        {
            "good": good,
            "bell\x07\u202e": good,
            "x" * 10_000: 5,
            "rtl": {**good, "display_name": "Board \u202eevil", "avatar": "\u202e"},
            "odd-key": {**good, "\u202e\x1b": 1},
        },
    )
    teams, problem = load_teams(path, personas())
    assert problem is None
    by_name = {t.name: t for t in teams}
    assert by_name["good"].available
    assert "letters, digits" in by_name["bell\\x07\\u202e"].problem
    long = by_name["x" * 63 + "…"]
    assert "malformed entry" in long.problem and long.card.display_name == "x" * 79 + "…"
    assert by_name["rtl"].available and by_name["rtl"].label == "\ufffd Board \ufffdevil"
    assert by_name["odd-key"].problem.startswith("malformed entry (\\u202e\\x1b: Extra inputs")
    for team in teams:  # what Streamlit's protobuf and the API's JSON must carry
        (team.name + team.label + (team.problem or "")).encode("utf-8")


def test_nothing_in_one_entry_or_the_file_makes_load_teams_raise(tmp_path, monkeypatch):
    from team import teams as teams_module

    real = teams_module._check
    monkeypatch.setattr(
        teams_module, "_check", lambda name, entry, found: 1 / 0 if name == "odd" else real(name, entry, found)
    )
    good = {"display_name": "Good", "coordinator": "standards-coordinator", "experts": ["legal-expert"]}
    path = write(tmp_path, {"odd": good, "good": good})
    teams, problem = load_teams(path, personas())
    assert problem is None and teams[1].available
    assert teams[0].problem == "it could not be read (ZeroDivisionError); the server log has the details"
    monkeypatch.setattr(teams_module, "read_json", lambda path, limit: [][0])
    assert load_teams(path, personas()) == ([], "The teams file cannot be read (IndexError). " + teams_module.FIX)


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


# --- cancelling a run from another thread (the API's client left, the page's stop) -----------------------------

PLAN = '{"asks": [{"expert": "computer-scientist", "question": "Is it safe?"}, '
PLAN += '{"expert": "legal-expert", "question": "Is it legal?"}]}'


class EndlessSteps:
    """A backend whose chosen steps ("plan", "expert", "synthesis") stream forever, a piece every 2 ms, and never
    look at the cancel event: only the run itself can stop them, by closing their streams."""

    name, notes, base_name = "endless", [], None

    def __init__(self, coordinator_prompt: str, endless: str):
        import threading

        self.coordinator_prompt, self.endless = coordinator_prompt, endless
        self.lock = threading.Lock()
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.streaming = threading.Semaphore(0)  # released once by each endless stream, at its tenth piece

    def stream(self, messages, options, *, model=None, session=None, cancel=None):
        from llm.interface import AnswerStream, GenerationStats

        if options.json_schema:
            kind = "plan"
        elif messages[0]["content"].startswith(self.coordinator_prompt):
            kind = "synthesis"
        else:
            kind = "expert"
        with self.lock:
            self.opened.append(kind)
        stats = GenerationStats()
        return AnswerStream(self._pieces(kind, stats), stats)

    def _pieces(self, kind: str, stats):
        import itertools
        import time

        try:
            if kind != self.endless:
                finite = [PLAN] if kind == "plan" else ["An", " answer."]
                stats.completion_tokens, stats.finish_reason = len(finite), "stop"
                yield from finite
                return
            for n in itertools.count():
                time.sleep(0.002)
                stats.completion_tokens = n + 1
                if n == 10:
                    self.streaming.release()
                yield "x"
        finally:
            with self.lock:
                self.closed.append(kind)


def _standards_team():
    teams, _ = load_teams(ROOT / "teams.json", personas())
    return next(t for t in teams if t.name == "ai-standards")


@pytest.mark.parametrize("endless, streams", [("plan", 1), ("expert", 2), ("synthesis", 1)])
def test_a_run_cancelled_from_another_thread_closes_every_open_stream_at_once(endless, streams):
    import threading
    import time

    from team.run import new_run, run_team

    team = _standards_team()
    backend = EndlessSteps(team.coordinator.card.system_prompt, endless)
    run = new_run(team, TASK, Limits(follow_up_rounds=0, expert_tokens=16, synthesis_tokens=16))
    cancel = threading.Event()
    events = []
    reader = threading.Thread(target=lambda: events.extend(run_team(backend, team, run, cancel=cancel)), daemon=True)
    reader.start()
    for _ in range(streams):
        assert backend.streaming.acquire(timeout=10)  # every endless stream of that step is streaming
    asked = time.perf_counter()
    cancel.set()  # from this thread, while the run's own thread (and the experts' threads) read their streams
    reader.join(timeout=5)
    assert not reader.is_alive() and time.perf_counter() - asked < 2.0
    assert sorted(backend.closed) == sorted(backend.opened)  # every stream the run opened was closed
    assert backend.opened.count(endless) == streams
    assert "synthesis" not in backend.opened or endless == "synthesis"  # nothing new starts once cancelled
    assert run.ended_by == "stopped" and events[-1].kind == "done"
    if endless == "plan":
        assert run.steps[0].outcome == "stopped" and run.turns == []
    elif endless == "expert":
        assert [t.status for t in run.turns] == ["stopped", "stopped"] and all(t.answer for t in run.turns)
    else:
        assert run.synthesis_status == "stopped" and run.synthesis.startswith("x")


def test_the_apis_team_answer_closes_from_another_thread_while_its_reader_waits(monkeypatch):
    import threading
    import time

    from server.api import loaded
    from server.api.catalog import Target
    from server.api.chat import ChatRun, start_chat
    from server.api.routes import _END, _next, usage
    from server.api.schemas import ChatRequest

    team = _standards_team()
    backend = EndlessSteps(team.coordinator.card.system_prompt, "plan")
    monkeypatch.setattr(loaded, "backend", lambda: backend)
    monkeypatch.setattr(
        loaded, "targets", lambda: {"team:ai-standards": Target("team:ai-standards", "team", "ai-standards")}
    )
    monkeypatch.setattr("runtime.get_registry", lambda backend: None)
    monkeypatch.setattr("team.answer.find_team", lambda registry, name: team)
    request = ChatRequest.model_validate(
        {
            "model": "team:ai-standards",
            "max_tokens": 16,
            "stop": ["zz"],
            "messages": [{"role": "user", "content": TASK}],
        }
    )

    def answer() -> ChatRun:  # the served path: the chat route's own start
        (run,) = start_chat(request)
        return run

    chat = answer()
    outcome = []

    def read() -> None:
        try:
            outcome.append(list(chat.stops))
        except Exception as exc:  # a ValueError ("generator already executing") would land here
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert backend.streaming.acquire(timeout=10)  # the coordinator plans; no text has come
    assert _next(chat) == ""  # the route's wait gives way every DISCONNECT_CHECK_S, stop strings or not
    asked = time.perf_counter()
    chat.close()  # from this thread, while the reader waits in next()
    assert time.perf_counter() - asked < 2.0
    reader.join(timeout=5)
    assert outcome == [[]] and _next(chat) is _END
    assert backend.closed == backend.opened == ["plan"] and chat.pieces.run.ended_by == "stopped"
    assert usage([chat])["completion_tokens"] > 10  # what the plan wrote before the stop is counted

    early = answer()
    early.close()  # closed before anything read it: nothing runs
    assert list(early.stops) == [] and backend.opened == ["plan"]


def test_shared_teams_read_the_file_once_per_version_of_it_and_of_the_personas(tmp_path, monkeypatch):
    import os

    from team import teams as teams_module

    path = tmp_path / "teams.json"
    path.write_text((ROOT / "teams.json").read_text(encoding="utf-8"), encoding="utf-8")
    reads = []
    real = teams_module.read_json
    monkeypatch.setattr(teams_module, "read_json", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    people = personas()
    first = teams_module.shared_teams(path, people)
    for _ in range(5):  # every request of a page or the API asks again
        assert teams_module.shared_teams(path, list(people)) == first
    assert len(reads) == 1 and first[0] and first[1] is None
    data = json.loads(path.read_text(encoding="utf-8"))
    data["second"] = dict(next(iter(data.values())), display_name="Second board")
    path.write_text(json.dumps(data), encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a new version, whatever the clock's resolution
    changed = teams_module.shared_teams(path, people)
    assert len(reads) == 2 and [t.name for t in changed[0]][-1] == "second"
    teams_module.shared_teams(path, personas())  # a persona refresh: new persona objects, resolved again
    assert len(reads) == 3
    path.unlink()
    assert (
        teams_module.shared_teams(path, people)[0] == []
        and "was not found" in teams_module.shared_teams(path, people)[1]
    )
