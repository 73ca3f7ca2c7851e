"""The last step: the coordinator writes the final answer from every expert that answered.

It has its own token limit (`Limits.synthesis_tokens`), outside the shared budget, so a run whose rounds
or budget are spent still ends with an answer.
"""

from __future__ import annotations

from collections.abc import Iterator

from core.errors import StudioError, text_of
from llm.interface import GenerationStats
from llm.options import GenerationOptions
from team import prompts
from team.coordinate import answers_so_far
from team.record import Event, TeamRun
from team.teams import Team


def synthesise(backend, team: Team, run: TeamRun, options: GenerationOptions, cancel) -> Iterator[Event]:
    """The coordinator's final answer from every expert that answered (failed ones are left out)."""
    messages = prompts.synthesis_messages(team.coordinator, run.task, answers_so_far(run))
    stats = GenerationStats()
    run.synthesis_status = "writing"
    yield Event("synthesis")
    stream = None
    try:
        stream = backend.stream(
            messages,
            options.model_copy(update={"max_new_tokens": run.limits.synthesis_tokens, "json_schema": None}),
            cancel=cancel,
            model=team.coordinator.model,
        )
        stats = stream.stats
        for piece in stream:
            run.synthesis += piece
            run.synthesis_tokens, run.synthesis_seconds = stats.completion_tokens, stats.total_s
            yield Event("synthesis_piece", text=piece)
            if cancel.is_set():  # set from another thread (a stop, a client gone): the row leaves at once
                break
    except StudioError as exc:
        run.synthesis_status, run.synthesis_error = "failed", text_of(exc)
    finally:
        if stream is not None:
            stream.close()
        run.synthesis_tokens, run.synthesis_seconds = stats.completion_tokens, stats.total_s
        if run.synthesis_status == "writing":
            run.synthesis_status = {"stop": "done", "length": "length"}.get(stats.finish_reason, "stopped")
