"""Consulting: every planned expert asked at once, and their answers streamed into the run's turns.

Each ask's `backend.stream` call runs in its own thread, so the in-process scheduler decodes them as
rows of one batch, each row with its persona's prompt and adapter. The threads only put pieces on a
queue; the run's own thread applies them to the record (one writer) and yields an `Event` for each.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator

from core.errors import N_, StudioError, Text, text_of
from llm.interface import GenerationStats
from llm.options import GenerationOptions
from team import prompts
from team.plan import Ask
from team.record import MIN_EXPERT_TOKENS, Event, TeamRun, Turn
from team.teams import Team

log = logging.getLogger(__name__)

_DONE = object()


def consult(
    backend, team: Team, run: TeamRun, asks: list[Ask], round_: int, options: GenerationOptions, cancel
) -> Iterator[Event]:
    """Every ask at once, one thread each (rows of one batch in-process); answers stream as events.
    Returns False when the budget cannot pay for a single answer (the run then goes to its synthesis)."""
    remaining = run.limits.token_budget - run.tokens_used
    asks = asks[: max(remaining // MIN_EXPERT_TOKENS, 0)]
    if not asks:
        run.ended_by = "budget"
        return False
    cap = min(run.limits.expert_tokens, remaining // len(asks))
    expert_options = options.model_copy(update={"max_new_tokens": cap, "json_schema": None})
    first = len(run.turns)
    for ask in asks:
        persona = team.expert(ask.expert)
        run.turns.append(
            Turn(
                round=round_,
                expert=ask.expert,
                display_name=persona.card.display_name,
                avatar=persona.card.avatar,
                question=ask.question,
            )
        )
    yield Event("round", round_)
    out: queue.SimpleQueue = queue.SimpleQueue()
    threads = [
        threading.Thread(
            target=_ask,
            name=f"team-expert-{n}",
            daemon=True,
            args=(
                backend,
                team.expert(ask.expert),
                prompts.expert_messages(team.expert(ask.expert), run.task, ask.question),
                expert_options,
                cancel,
                first + n,
                out,
            ),
        )
        for n, ask in enumerate(asks)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            event = _apply(run, out.get())
            running -= event.kind == "turn_done"
            yield event
    finally:
        if running:  # the reader went away mid-round (stop): every row stops, what streamed is kept
            cancel.set()
        for thread in threads:
            thread.join(timeout=30)
        while not out.empty():
            _apply(run, out.get())
        run.consult_seconds.append(time.perf_counter() - started)
        run.tokens_used += sum(turn.tokens for turn in run.turns[first:])
    return True


def _ask(
    backend, expert, messages, options: GenerationOptions, cancel: threading.Event, index: int, out: queue.SimpleQueue
) -> None:
    """One expert's answer, piece by piece into `out` (runs in its own thread; draws nothing)."""
    stats = GenerationStats()
    stream = None
    try:
        if cancel.is_set():  # stopped before this expert began: no request goes out
            return
        stream = backend.stream(messages, options, cancel=cancel, model=expert.model)
        stats = stream.stats
        for piece in stream:
            out.put((index, piece, stats, None))
            if cancel.is_set():
                break
    except StudioError as exc:
        out.put((index, None, stats, text_of(exc)))
    except Exception as exc:  # a bug must not leave the round waiting: the expert is shown as failed
        log.error("an expert's answer failed: %s", type(exc).__name__, exc_info=exc)
        out.put(
            (
                index,
                None,
                stats,
                Text(N_("The answer failed ({kind}). The other experts go on."), kind=type(exc).__name__),
            )
        )
    finally:
        if stream is not None:
            stream.close()  # leaves the batch at once
        out.put((index, _DONE, stats, None))


def _apply(run: TeamRun, message: tuple) -> Event:
    """One message from an expert's thread, applied to its turn (only the run's own thread writes the record)."""
    index, piece, stats, error = message
    turn = run.turns[index]
    turn.tokens, turn.seconds = stats.completion_tokens, stats.total_s
    turn.batched_with = max(turn.batched_with, stats.batched_with)
    if piece is _DONE:
        if turn.status not in ("failed",):
            turn.status = {"stop": "done", "length": "length", "error": "failed"}.get(stats.finish_reason, "stopped")
            if turn.status == "failed" and not turn.error:
                turn.error = Text(N_("The answer failed."))
        return Event("turn_done", index)
    if error is not None:
        turn.status, turn.error = "failed", error
        return Event("piece", index)
    turn.answer += piece
    turn.status = "answering"
    return Event("piece", index, piece)
