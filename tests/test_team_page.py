"""The team page through AppTest: a run with the real demo model drawn step by step, saved, reloaded; the
pickers' refusals with a scripted backend (tests/fake_backend.py)."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from tests.fake_backend import install

PAGE = "pages/3_Team.py"
TASK = "Draft AI rules for a school."


def team_page(query: dict | None = None) -> AppTest:
    """The app's entry point, opened at /Team (with `query` in the URL)."""
    at = AppTest.from_file("../app.py", default_timeout=600)
    at.query_params.update(query or {})
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def open_page() -> AppTest:
    return team_page()


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown] + [c.value for c in at.caption]


@pytest.mark.model
def test_real_model_the_default_team_runs_and_its_saved_run_reloads_from_the_url():
    at = open_page()
    assert at.selectbox(key="team.current").value == "ai-standards"
    for key, value in (("team.expert_tokens", 16), ("team.synthesis_tokens", 16), ("team.follow_up_rounds", 0)):
        at.number_input(key=key).set_value(value)
    at.slider(key="team.temperature").set_value(0.0)
    at.chat_input(key="team.input").set_value(TASK).run()
    assert not at.exception and not at.error, (at.exception, at.error)
    shown = texts(at)
    assert any("0 follow-up rounds · 16 tokens per expert" in t for t in shown)  # the limits are visible
    panels = [t for t in shown if t.startswith("**") and ("Computer scientist" in t or "Legal expert" in t)]
    asked = [t for t in shown if t.startswith("Asked: ")]
    figures = [t for t in shown if "tokens · " in t and " s" in t]
    assert panels and len(asked) == len(panels) == len(figures)  # name, question, tokens and time per expert
    assert any("AI standards board · answer" in t for t in shown)
    assert any(t.startswith("planning ") and "budget tokens used" in t for t in shown)
    plans = [e.proto.label for e in at.get("expandable")] + [e.label for e in at.main if type(e).__name__ == "Status"]
    assert any("(step 1 of at most 1)" in label.replace("\\", "") for label in plans), plans  # 0 follow-ups: 1 step
    [bar] = at.get("progress")  # the token budget, spent
    assert 0 < bar.value <= 100 and bar.proto.text.startswith("Token budget: ")
    cid = at.query_params["c"]
    cid = cid[0] if isinstance(cid, list) else cid
    answer = [t for t in shown if t not in (TASK,)]

    again = team_page({"c": cid})
    reloaded = texts(again)
    assert TASK in reloaded
    assert [t for t in reloaded if t.startswith("Asked: ")] == asked
    assert any("AI standards board · answer" in t for t in reloaded)
    synthesis = answer[answer.index(next(t for t in answer if "AI standards board · answer" in t)) + 1]
    assert synthesis in reloaded  # the same answer text, drawn from the saved run
    first_asked = next(i for i, t in enumerate(reloaded) if t.startswith("Asked: "))
    assert reloaded.index(synthesis) < first_asked  # a saved run shows its answer first, the transcript below

    # Exports hold the whole run: Markdown as text, JSON with the run's record too.
    from core.settings import get_settings
    from core.store import Store, to_markdown

    db = Store(get_settings().database_path)
    exported = db.export_json(cid)
    assert exported["page"] == "team" and exported["messages"][1]["team_run"]["task"] == TASK
    markdown = to_markdown(exported)
    assert "#### Plan (" in markdown and "— asked: " in markdown and "budget tokens used" in markdown
    # An import keeps the run's record (core.message.Message.team_run, checked), and the page draws the run.
    imported = db.import_json(exported)
    restored = team_page({"c": imported})
    assert TASK in texts(restored)
    assert [t for t in texts(restored) if t.startswith("Asked: ")] == asked
    assert synthesis in texts(restored)


def test_teams_that_cannot_run_are_listed_with_the_reason(tmp_path, monkeypatch):
    install(monkeypatch)
    teams = tmp_path / "teams.json"
    teams.write_text(
        json.dumps(
            {
                "ok": {"display_name": "Fine team", "coordinator": "tutor", "experts": ["dummy"]},
                "ghost": {"display_name": "Ghosts", "coordinator": "tutor", "experts": ["nobody-here"]},
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("TEAMS_FILE", str(teams))
    at = open_page()
    picker = at.selectbox(key="team.current")
    assert picker.value == "ok" and len(picker.options) == 1  # only the team that can run is offered
    assert any("nobody-here" in c.value and "does not exist" in c.value for c in at.sidebar.caption)


def test_no_team_file_says_how_to_fix_it(tmp_path, monkeypatch):
    install(monkeypatch)
    monkeypatch.setenv("TEAMS_FILE", str(tmp_path / "missing.json"))
    at = open_page()
    assert any("TEAMS_FILE" in w.value for w in at.sidebar.warning)
    assert any("No team can run" in e.value for e in at.error)
    assert at.chat_input(key="team.input").disabled
