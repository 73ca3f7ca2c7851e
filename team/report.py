"""Words about a run, shared by the page and the saved conversation: why it ended, a status per expert,
the figures, and the whole run as Markdown (a saved run's text, so exports and search hold all of it)."""

from __future__ import annotations

from team.record import TeamRun, Turn

TURN_STATUS = {
    "waiting": "waiting",
    "answering": "answering…",
    "done": "done",
    "length": "cut at its token limit",
    "stopped": "stopped",
    "failed": "failed",
}


def ended_note(run: TeamRun) -> str | None:
    """Why the run ended, when it is not the plain end (the coordinator finished)."""
    limits = run.limits
    if run.ended_by == "budget":
        return (
            f"The token budget ({limits.token_budget:,} tokens for plans and answers) ended the run after "
            f"round {run.rounds}; the coordinator wrote the best answer from what it had."
        )
    if run.ended_by == "rounds":
        return (
            f"The round limit ({limits.follow_up_rounds} follow-up round{'s' if limits.follow_up_rounds != 1 else ''}) "
            "ended the run; the coordinator wrote the best answer from what it had."
        )
    if run.ended_by == "stopped":
        return "Stopped: the run was stopped; what streamed until then is kept."
    return None


def turn_status(turn: Turn) -> str:
    words = TURN_STATUS[turn.status]
    if turn.status == "failed" and turn.error:
        words += f": {turn.error}"
    parts = [words, f"{turn.tokens:,} tokens", f"{turn.seconds:.1f} s"]
    if turn.batched_with:
        parts.append(f"decoded in one batch with {turn.batched_with} other{'s' if turn.batched_with > 1 else ''}")
    return " · ".join(parts)


def figures(run: TeamRun) -> str:
    plans = sum(s.seconds for s in run.steps)
    parts = [f"planning {plans:.1f} s"]
    parts += [f"round {n} {seconds:.1f} s" for n, seconds in enumerate(run.consult_seconds, 1)]
    parts += [
        f"answer {run.synthesis_seconds:.1f} s",
        f"total {run.seconds:.1f} s",
        f"{run.tokens_used:,} of {run.limits.token_budget:,} budget tokens used",
        f"{run.synthesis_tokens:,} answer tokens",
    ]
    return " · ".join(parts)


def markdown(run: TeamRun) -> str:
    """The whole run as Markdown: the answer first, then how the team got there."""
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
