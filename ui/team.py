"""Drawing helpers for the team page: the team picker, the limits, and a run (live, or saved).

These only draw and keep per-session state; the run itself is `team.run`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import streamlit as st
from pydantic import ValidationError

from core.errors import StudioError, validation_message
from core.message import Message
from core.settings import get_settings
from llm.options import GenerationOptions
from runtime import get_registry
from team import report
from team.run import Event, Limits, TeamRun, new_run, run_team
from team.teams import Team, shared_teams
from ui import conversations
from ui.chat import UI_UPDATE_S, field_range, sampling_widgets
from ui.i18n import N_, _, shown
from ui.safe_text import plain, safe_markdown

if TYPE_CHECKING:
    from ui.session import ChatSession

PANELS_PER_ROW = 4


# --- sidebar --------------------------------------------------------------------------------------


# Each limit's help, as Limits' descriptions say it (tests/test_i18n.py holds the two together).
LIMIT_HELP = {
    "experts_per_round": N_("Experts asked in one round, at most."),
    "follow_up_rounds": N_("Rounds of further questions after the first."),
    "expert_tokens": N_("New tokens per expert answer."),
    "synthesis_tokens": N_("New tokens for the final answer."),
    "token_budget": N_("Tokens for the coordinator's plans and the experts' answers together."),
}


def pick_team(backend) -> Team | None:
    """Sidebar picker among the teams that can run; the others are listed with the reason."""
    teams, problem = shared_teams(get_settings().teams_file, get_registry(backend).personas())
    usable = {t.name: t for t in teams if t.available}
    with st.sidebar:
        if problem:
            st.warning(safe_markdown(shown(problem)))
        choice = None
        if usable:
            choice = st.selectbox(_("Team"), list(usable), format_func=lambda n: usable[n].label, key="team.current")
        broken = [t for t in teams if not t.available]
        if broken:
            with st.expander(_("Unavailable ({count})").format(count=len(broken))):
                for t in broken:
                    st.caption(f"**{plain(t.name)}**: {safe_markdown(shown(t.problem or ''))}")
    return usable.get(choice) if choice else None


def sidebar_limits() -> tuple[Limits, GenerationOptions]:
    """The run's limits (always visible) and sampling, this session's own."""
    labels = {
        "experts_per_round": _("Experts per round"),
        "follow_up_rounds": _("Follow-up rounds"),
        "expert_tokens": _("New tokens per expert"),
        "synthesis_tokens": _("New tokens for the answer"),
        "token_budget": _("Token budget (plans + answers)"),
    }
    steps = {"expert_tokens": 32, "synthesis_tokens": 64, "token_budget": 256}
    values = {}
    with st.sidebar:
        st.subheader(_("Limits"))
        for name, label in labels.items():
            low, high, default = field_range(Limits, name)
            values[name] = st.number_input(
                label,
                low,
                high,
                default,
                step=steps.get(name, 1),
                key=f"team.{name}",
                help=_(LIMIT_HELP[name]),
            )
        with st.expander(_("Sampling"), expanded=False):
            sampling = sampling_widgets("team", ("temperature", "seed"))
    try:
        return Limits(**values), GenerationOptions(**sampling)
    except ValidationError as exc:
        reason = shown(validation_message(exc))
        st.sidebar.error(_("Invalid limit: {reason}. Using the defaults.").format(reason=reason))
        return Limits(), GenerationOptions()


def limits_caption(limits: Limits) -> str:
    return _(
        "Limits: {experts} experts per round · {rounds} follow-up rounds · {expert_tokens} tokens per expert · "
        "{answer_tokens} for the answer · budget {budget} tokens"
    ).format(
        experts=limits.experts_per_round,
        rounds=limits.follow_up_rounds,
        expert_tokens=limits.expert_tokens,
        answer_tokens=limits.synthesis_tokens,
        budget=f"{limits.token_budget:,}",
    )


# --- a run, drawn ---------------------------------------------------------------------------------


def step_title(step, run: TeamRun) -> str:
    """`Plan (step 1 of at most 3)`: a run plans once, then once before each follow-up round at most."""
    name = _("Plan") if step.kind == "plan" else _("Follow-up before round {number}").format(number=step.round)
    steps = 1 + run.limits.follow_up_rounds
    return _("{name} (step {number} of at most {steps})").format(
        name=name, number=run.steps.index(step) + 1, steps=steps
    )


class RunView:
    """Draws one run into the current container, step by step: live from events, or all at once."""

    def __init__(self, run: TeamRun):
        self.run = run
        self.steps: dict[int, tuple] = {}  # step index -> (status box, code placeholder)
        self.panels: dict[int, tuple] = {}  # turn index -> (answer placeholder, caption placeholder)
        self.answer = None
        self.dirty: set = set()
        self.last_draw = 0.0
        self.budget = st.empty()  # the token budget, spent so far: at the top of the run

    def budget_bar(self) -> None:
        used, budget = self.run.tokens_used, self.run.limits.token_budget
        words = _("Token budget: {used} of {budget} tokens spent").format(used=f"{used:,}", budget=f"{budget:,}")
        self.budget.progress(min(used / budget, 1.0) if budget else 1.0, text=words)

    def apply(self, event: Event) -> None:
        if event.kind == "step":
            self.step(event.index)
        elif event.kind == "plan_piece":
            self.dirty.add(("step", event.index))
        elif event.kind == "planned":
            self.planned(event.index)
        elif event.kind == "round":
            self.round(event.index)
        elif event.kind == "piece":
            self.dirty.add(("turn", event.index))
        elif event.kind == "turn_done":
            self.turn(event.index)
        elif event.kind == "synthesis":
            self.synthesis_start()
        elif event.kind == "synthesis_piece":
            self.dirty.add(("answer", 0))
        if self.dirty and time.perf_counter() - self.last_draw >= UI_UPDATE_S:
            self.flush()

    def flush(self) -> None:
        """Redraw what changed since the last draw (at most ~20 updates a second for all panels)."""
        for kind, index in sorted(self.dirty):
            if kind == "step" and index in self.steps:
                self.steps[index][1].code(self.run.steps[index].text.strip() or "…", language="json")
            elif kind == "turn":
                self.turn(index)
            elif kind == "answer" and self.answer is not None:
                self.answer.markdown(safe_markdown(self.run.synthesis) or "…")
        self.dirty.clear()
        self.budget_bar()
        self.last_draw = time.perf_counter()

    def step(self, index: int) -> None:
        step = self.run.steps[index]
        box = st.status(
            _("{step}: the coordinator is deciding…").format(step=step_title(step, self.run)),
            expanded=False,
            state="running",
        )
        with box:
            code = st.empty()
        self.steps[index] = (box, code)

    def planned(self, index: int) -> None:
        step, (box, code) = self.run.steps[index], self.steps[index]
        code.code(step.text.strip() or _("(nothing)"), language="json")
        title = step_title(step, self.run)
        label, state = {
            "planned": (_("{step}: asking {names}").format(step=title, names=", ".join(step.asked)), "complete"),
            "fallback": (_("{step}: unusable, so every expert is asked the task").format(step=title), "error"),
            "finished": (_("{step}: nothing more to ask").format(step=title), "complete"),
        }.get(step.outcome, (_("{step}: stopped").format(step=title), "error"))  # "running": saved mid-run
        box.update(label=plain(label), state=state)
        if step.outcome == "fallback" and step.note:
            st.warning(safe_markdown(shown(step.note)))  # a run's words may come from an imported file
        elif step.note:
            st.caption(plain(shown(step.note)))

    def round(self, number: int) -> None:
        turns = [i for i, t in enumerate(self.run.turns) if t.round == number]
        st.markdown(
            "**"
            + _("Round {number}").format(number=number)
            + "** · "
            + _("experts answering together: {count}").format(count=len(turns))
        )
        for start in range(0, len(turns), PANELS_PER_ROW):
            row = turns[start : start + PANELS_PER_ROW]
            for column, index in zip(st.columns(len(row)), row):
                turn = self.run.turns[index]
                with column.container(border=True):
                    st.markdown(f"**{plain(turn.avatar)} {plain(turn.display_name)}**")
                    st.caption(_("Asked: {question}").format(question=plain(turn.question)))
                    self.panels[index] = (st.empty(), st.empty())
                self.turn(index)

    def turn(self, index: int) -> None:
        turn = self.run.turns[index]
        answer, caption = self.panels[index]
        answer.markdown(
            safe_markdown(turn.answer) or ("…" if turn.status in ("waiting", "answering") else _("*(no answer)*"))
        )
        colour = {"failed": "red", "stopped": "orange", "length": "orange"}.get(turn.status)
        text = plain(report.turn_status(turn, _))
        caption.caption(f":{colour}[{text}]" if colour else text)

    def synthesis_start(self) -> None:
        st.markdown(f"**{plain(self.run.team_display_name)} · " + _("answer") + "**")
        self.answer = st.empty()
        self.answer.markdown("…")

    def finish(self) -> None:
        self.flush()
        run = self.run
        if self.answer is None and run.synthesis:
            self.synthesis_start()
        if self.answer is not None:
            self.answer.markdown(safe_markdown(run.synthesis) or _("*(no answer was written)*"))
        if run.synthesis_status == "failed":
            st.error(_("The answer failed: {reason}").format(reason=safe_markdown(shown(run.synthesis_error))))
        if run.synthesis_status == "length":
            st.caption(":orange[" + _("The answer was cut at its token limit.") + "]")
        if note := report.ended_note(run, _):
            (st.warning if run.ended_by == "stopped" else st.info)(note)
        st.caption(report.figures(run, _))

    def draw_all(self) -> None:
        """A finished (or saved) run at once: the answer first, as the export has it, then how it came about."""
        if self.run.synthesis or self.run.synthesis_status != "waiting":
            self.synthesis_start()
            self.answer.markdown(safe_markdown(self.run.synthesis) or _("*(no answer was written)*"))
        for index, step in enumerate(self.run.steps):
            self.step(index)
            self.planned(index)
            if step.outcome in ("planned", "fallback"):
                self.round(step.round)
        self.finish()


# --- history: a run is a user message (the task) and an assistant message (the run) --------------


def run_message(run: TeamRun, message: dict | None = None) -> dict:
    """The assistant message that holds a run: its Markdown as text (for exports and search), the record as data."""
    if message is None:
        return Message.team_answer(run, report.markdown(run)).as_state()
    # The pending message grows in place: the session holds this dict and saves it as the run goes on.
    message.update(
        Message.stored({**message, "content": report.markdown(run), "team": run.team, "team_run": run}).as_state()
    )
    return message


def saved_run(message: dict) -> TeamRun | None:
    """The run a saved message holds; None when it holds none or it does not check (then its text is shown)."""
    data = message.get("team_run")
    if not isinstance(data, dict):
        return None
    try:
        run = TeamRun.model_validate(data)
    except ValidationError:
        return None
    return run.settle()


def render_message(message: dict) -> None:
    with st.chat_message(message["role"], avatar="👥" if message["role"] == "assistant" else None):
        run = saved_run(message) if message["role"] == "assistant" else None
        if run is None:
            st.markdown(safe_markdown(message["content"], keep_lines=True, keep_indents=message["role"] == "user"))
        else:
            RunView(run).draw_all()


def run_live(
    session: ChatSession, backend, team: Team, task: str, limits: Limits, options: GenerationOptions
) -> TeamRun:
    """Run the team on `task`, drawing every step as it happens; the run lands in the history when it ends.

    While it runs, its message is the session's pending one (kept, as cut, if the page is stopped or the
    connection drops); a stop closes the run, which stops every expert's computation."""
    run = new_run(team, task, limits)
    pending = session.hold(run_message(run))
    on_progress = conversations.saver(session)
    cancel = threading.Event()
    events: Iterator[Event] = run_team(backend, team, run, options, cancel)
    last_save = 0.0
    with st.chat_message("assistant", avatar="👥"):
        view = RunView(run)
        try:
            for event in events:
                view.apply(event)
                if time.perf_counter() - last_save >= conversations.SAVE_EVERY_S:
                    on_progress(run_message(run, pending))
                    last_save = time.perf_counter()
        except StudioError as exc:
            st.error(shown(exc))
        finally:
            events.close()  # a stop lands here: the run ends and every row leaves the batch
            run_message(run, pending)
        view.finish()
    session.land(pending)
    return run
