"""A run's translation onto a Responses request, and the bound on runs computing at once (no model, no server)."""

from __future__ import annotations

import time

import pytest

from server.api import runs
from server.api.errors import ApiError


def shape(**fields) -> dict:
    base = {
        "id": "run_x",
        "model": "m",
        "instructions": "Be brief.",
        "temperature": 0,
        "top_p": None,
        "max_completion_tokens": 7,
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "response_format": "auto",
    }
    return base | fields


def test_a_run_becomes_the_responses_request_its_turn_answers():
    plain = runs.response_request(shape(), stream=False)
    assert (plain.model, plain.instructions, plain.max_output_tokens, plain.temperature) == ("m", "Be brief.", 7, 0.0)
    assert plain.tools is None and plain.text is None and plain.store  # a run's turns are stored with its thread
    schema = {"name": "pier", "schema": {"type": "object"}, "strict": True}
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    shaped = runs.response_request(
        shape(response_format={"type": "json_schema", "json_schema": schema}, tools=[tool], tool_choice="required"),
        stream=True,
    )
    assert shaped.text.format.type == "json_schema" and shaped.text.format.schema_ == {"type": "object"}
    assert shaped.chat_fields()["tools"] == [tool] and shaped.chat_fields()["tool_choice"] == "required"
    assert (
        runs.response_request(shape(response_format={"type": "json_object"}), False).text.format.type == "json_object"
    )


def test_a_bad_setting_is_refused_naming_it():
    with pytest.raises(ApiError) as caught:
        runs.response_request(shape(max_completion_tokens=-1), stream=False)
    assert caught.value.status == 400 and caught.value.param == "max_completion_tokens"


def test_past_the_bound_of_runs_computing_at_once_a_run_is_refused_before_it_starts(monkeypatch):
    monkeypatch.setattr(runs, "LIVE", {f"run_{i}": object() for i in range(runs.MAX_LIVE)})
    run = runs.Run(shape(id="run_new"), "cid")
    with pytest.raises(ApiError) as caught:
        runs.begin(run, [], stream=False)
    assert caught.value.status == 429 and "wait for one to end" in str(caught.value)
    assert "run_new" not in runs.LIVE and run.turn is None


def test_a_run_waiting_for_tool_outputs_expires_at_its_expires_at_and_only_then(monkeypatch):
    saved = []
    monkeypatch.setattr(runs.Run, "save", lambda run: saved.append(dict(run.shape)))
    action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": []}}
    later = runs.Run(shape(status="requires_action", required_action=action, expires_at=int(time.time()) + 60), "c")
    assert runs.expired_if_due(later).shape["status"] == "requires_action" and not saved
    due = runs.Run(shape(status="requires_action", required_action=action, expires_at=int(time.time()) - 1), "c")
    assert runs.expired_if_due(due).shape["status"] == "expired" and due.shape["required_action"] is None
    assert [s["status"] for s in saved] == ["expired"]  # stored so: a restart reads it back expired
    done = runs.Run(shape(status="completed", expires_at=int(time.time()) - 1), "c")
    assert runs.expired_if_due(done).shape["status"] == "completed" and len(saved) == 1


def test_a_second_run_on_a_thread_whose_run_computes_is_refused_naming_it(monkeypatch):
    monkeypatch.setattr(runs, "LIVE", {"run_busy": runs.Run(shape(id="run_busy"), "thread-a")})
    with pytest.raises(ApiError) as caught:
        runs.begin(runs.Run(shape(id="run_new"), "thread-a"), [], stream=False)
    assert caught.value.status == 400 and caught.value.code == "invalid_state" and "run_busy" in str(caught.value)
    assert set(runs.LIVE) == {"run_busy"}
