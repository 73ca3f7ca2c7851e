"""Words about a run, shared by the page and the saved conversation: why it ended, a status per expert,
the figures, and the whole run as Markdown (a saved run's text, so exports and search hold all of it).

Each takes the lookup of the language it speaks in (`gettext`, English by default): the page passes its own
(`ui.i18n._`), the saved text and the API stay English."""

from __future__ import annotations

from collections.abc import Callable

from core.errors import N_, english, translated
from team.record import TeamRun, Turn

Gettext = Callable[[str], str]

TURN_STATUS = {
    "waiting": N_("waiting"),
    "answering": N_("answering…"),
    "done": N_("done"),
    "length": N_("cut at its token limit"),
    "stopped": N_("stopped"),
    "failed": N_("failed"),
}


def ended_note(run: TeamRun, gettext: Gettext = english) -> str | None:
    """Why the run ended, when it is not the plain end (the coordinator finished)."""
    limits = run.limits
    if run.ended_by == "budget":
        return gettext(
            N_(
                "The token budget ({budget:,} tokens for plans and answers) ended the run after round {round}; the "
                "coordinator wrote the best answer from what it had."
            )
        ).format(budget=limits.token_budget, round=run.rounds)
    if run.ended_by == "rounds":
        one = N_(
            "The round limit ({count} follow-up round) ended the run; the coordinator wrote the best answer from "
            "what it had."
        )
        many = N_(
            "The round limit ({count} follow-up rounds) ended the run; the coordinator wrote the best answer from "
            "what it had."
        )
        return gettext(one if limits.follow_up_rounds == 1 else many).format(count=limits.follow_up_rounds)
    if run.ended_by == "stopped":
        return gettext(N_("Stopped: the run was stopped; what streamed until then is kept."))
    return None


def turn_status(turn: Turn, gettext: Gettext = english) -> str:
    words = gettext(TURN_STATUS[turn.status])
    if turn.status == "failed" and turn.error:
        words += f": {translated(turn.error, gettext)}"
    parts = [
        words,
        gettext(N_("{count:,} tokens")).format(count=turn.tokens),
        gettext(N_("{seconds:.1f} s")).format(seconds=turn.seconds),
    ]
    if turn.batched_with:
        other = N_("decoded in one batch with {count} other")
        others = N_("decoded in one batch with {count} others")
        parts.append(gettext(other if turn.batched_with == 1 else others).format(count=turn.batched_with))
    return " · ".join(parts)


def figures(run: TeamRun, gettext: Gettext = english) -> str:
    plans = sum(s.seconds for s in run.steps)
    parts = [gettext(N_("planning {seconds:.1f} s")).format(seconds=plans)]
    parts += [
        gettext(N_("round {number} {seconds:.1f} s")).format(number=n, seconds=seconds)
        for n, seconds in enumerate(run.consult_seconds, 1)
    ]
    parts += [
        gettext(N_("answer {seconds:.1f} s")).format(seconds=run.synthesis_seconds),
        gettext(N_("total {seconds:.1f} s")).format(seconds=run.seconds),
        gettext(N_("{used:,} of {budget:,} budget tokens used")).format(
            used=run.tokens_used, budget=run.limits.token_budget
        ),
        gettext(N_("{count:,} answer tokens")).format(count=run.synthesis_tokens),
    ]
    return " · ".join(parts)


def markdown(run: TeamRun) -> str:
    """The whole run as Markdown, in English (the saved text): the answer first, then how the team got there."""
    lines = [f"**{run.team_display_name}**", "", run.synthesis.strip() or "*(no answer was written)*", ""]
    if run.synthesis_status == "failed":
        lines += [f"*The answer failed: {run.synthesis_error}*", ""]
    if note := ended_note(run):
        lines += [f"*{note}*", ""]
    for step in run.steps:
        title = "Plan" if step.kind == "plan" else f"Follow-up before round {step.round}"
        lines += [f"#### {title} ({step.outcome})", "", "```json", step.text.strip(), "```", ""]
        if step.note:
            lines += [f"*{step.note}*", ""]
        for turn in (t for t in run.turns if t.round == step.round and step.outcome in ("planned", "fallback")):
            lines += [
                f"**{turn.display_name}** — asked: {turn.question}",
                "",
                turn.answer.strip() or "*(no answer)*",
                "",
                f"*{turn_status(turn)}*",
                "",
            ]
    lines.append(f"*{figures(run)}*")
    return "\n".join(lines)
