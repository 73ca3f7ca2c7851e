"""A team on the `openai` backend, against a local server: the plan is asked for with `response_format`
(a JSON schema) and checked; an unusable plan falls back to asking every expert the task; rounds end."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm.config import ServerConfig
from llm.openai_backend import OpenAIBackend
from llm.options import GenerationOptions
from personas.registry import BASE, load_prompt_personas
from team import report
from team.run import Limits, new_run, run_team
from team.teams import load_teams
from tests.conftest import ROOT

TASK = "Draft AI compliance standards."


class PlanServer(BaseHTTPRequestHandler):
    """Answers a request with `response_format` with `plan(n)` (n counts such requests), others with a
    line naming the persona that was asked (the first word of its system prompt's role)."""

    protocol_version = "HTTP/1.1"
    requests: list[dict] = []
    plan = staticmethod(lambda n: "")

    def log_message(self, *args):
        pass

    refuse = staticmethod(lambda body: None)  # a (status, message) to answer a request with instead

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        PlanServer.requests.append(body)
        if refusal := PlanServer.refuse(body):
            data = json.dumps({"error": {"message": refusal[1], "type": "invalid_request_error"}}).encode()
            self.send_response(refusal[0])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if "response_format" in body:
            text = PlanServer.plan(sum("response_format" in r for r in PlanServer.requests))
        else:
            system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
            text = "Answer from " + ("the coordinator" if "coordinator" in system else system.split(",")[0])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
        for event in [{"index": 0, "delta": {"content": text}, "finish_reason": None}, finish]:
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [event]}
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        done = b"data: [DONE]\n\n"
        self.wfile.write(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), PlanServer)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


@pytest.fixture
def team():
    personas, _ = load_prompt_personas(ROOT / "personas.json")
    teams, _ = load_teams(ROOT / "teams.json", [BASE, *personas])
    PlanServer.requests = []
    PlanServer.refuse = staticmethod(lambda body: None)
    return next(t for t in teams if t.name == "ai-standards")


def run_on(server: str, team, plan, limits: Limits):
    PlanServer.plan = staticmethod(plan)
    backend = OpenAIBackend(ServerConfig(openai_base_url=server, openai_model="m", request_timeout_s=10))
    run = new_run(team, TASK, limits)
    list(run_team(backend, team, run, GenerationOptions(temperature=0)))
    return run


def test_the_plan_is_asked_for_as_a_json_schema_and_used(server, team):
    def plan(n):
        asks = [{"expert": "legal-expert", "question": "Which laws apply?"}] if n == 1 else []
        return json.dumps({"asks": asks})

    run = run_on(server, team, plan, Limits(follow_up_rounds=1))
    first = PlanServer.requests[0]
    schema = first["response_format"]["json_schema"]["schema"]
    assert first["response_format"]["type"] == "json_schema"
    assert schema["properties"]["asks"]["items"]["properties"]["expert"]["enum"] == [
        "computer-scientist",
        "legal-expert",
    ]
    assert run.steps[0].outcome == "planned" and run.steps[0].asked == ["Legal expert"]
    assert [(t.expert, t.question, t.answer) for t in run.turns] == [
        ("legal-expert", "Which laws apply?", "Answer from You are a legal expert who knows laws")
    ]
    assert run.steps[1].outcome == "finished" and run.ended_by == "finished"  # the follow-up asked nothing
    assert run.synthesis == "Answer from the coordinator"
    # The synthesis request quotes the expert's answer, naming the expert.
    assert (
        "[Legal expert] answered: Answer from You are a legal expert"
        in PlanServer.requests[-1]["messages"][-1]["content"]
    )
    assert "response_format" not in PlanServer.requests[-1]


@pytest.mark.parametrize(
    "text, why",
    [
        ("I would ask the lawyer first, then the engineer.", "not valid JSON"),
        ('{"asks": [{"expert": "pirate", "question": "Arr?"}]}', "asks no expert"),
    ],
)
def test_an_unusable_plan_falls_back_to_every_expert_and_says_so(server, team, text, why):
    run = run_on(server, team, lambda n: text, Limits(follow_up_rounds=0))
    step = run.steps[0]
    assert step.outcome == "fallback" and why in step.note and "every expert was asked the task as given" in step.note
    assert [(t.expert, t.question) for t in run.turns] == [("computer-scientist", TASK), ("legal-expert", TASK)]
    assert all(t.answer and t.status == "done" for t in run.turns)
    assert run.synthesis == "Answer from the coordinator" and run.ended_by == "finished"


def test_the_round_limit_ends_a_coordinator_that_keeps_asking(server, team):
    def plan(n):
        return json.dumps({"asks": [{"expert": "computer-scientist", "question": f"Question {n}?"}]})

    run = run_on(server, team, plan, Limits(follow_up_rounds=2))
    assert [t.question for t in run.turns] == ["Question 1?", "Question 2?", "Question 3?"]
    assert run.rounds == 3 and run.ended_by == "rounds"
    assert run.synthesis == "Answer from the coordinator"


def test_the_page_says_when_the_plan_fell_back(server, team, monkeypatch):
    from streamlit.testing.v1 import AppTest

    PlanServer.plan = staticmethod(lambda n: "Let me think about who to ask.")
    for name, value in (("LLM_BACKEND", "openai"), ("OPENAI_BASE_URL", server), ("OPENAI_MODEL", "m")):
        monkeypatch.setenv(name, value)
    at = AppTest.from_file("../pages/3_Team.py", default_timeout=120).run()
    at.number_input(key="team.follow_up_rounds").set_value(0)
    at.chat_input(key="team.input").set_value(TASK).run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert any(
        "unusable (the plan is not valid JSON" in w.value and "every expert was asked the task as given" in w.value
        for w in at.warning
    )
    assert [c.value for c in at.caption if c.value.startswith("Asked: ")] == [
        "Asked: Draft AI compliance standards\\."
    ] * 2
    assert any(m.value == "Answer from the coordinator" for m in at.markdown)


def test_a_server_that_refuses_json_mode_gets_the_fallback_plan(server, team):
    PlanServer.refuse = staticmethod(
        lambda body: (400, "response_format is not supported") if "response_format" in body else None
    )
    run = run_on(server, team, lambda n: "", Limits(follow_up_rounds=0))
    assert run.steps[0].outcome == "fallback"
    assert "could not write it" in run.steps[0].note and "response_format is not supported" in run.steps[0].note
    assert len(run.turns) == 2 and run.synthesis == "Answer from the coordinator"


def test_a_failed_expert_is_shown_as_failed_and_the_synthesis_goes_on_with_the_others(server, team):
    def refuse(body):
        system = body["messages"][0]["content"]
        return (400, "this expert is broken") if system.startswith("You are a legal expert") else None

    PlanServer.refuse = staticmethod(refuse)
    run = run_on(server, team, lambda n: "not a plan", Limits(follow_up_rounds=0))
    by_expert = {t.expert: t for t in run.turns}
    assert by_expert["legal-expert"].status == "failed" and "this expert is broken" in by_expert["legal-expert"].error
    assert by_expert["computer-scientist"].status == "done"
    assert run.synthesis == "Answer from the coordinator" and run.ended_by == "finished"
    quoted = PlanServer.requests[-1]["messages"][-1]["content"]
    assert "[Computer scientist] answered" in quoted and "Legal expert" not in quoted
    assert "failed: " in report.turn_status(by_expert["legal-expert"])
