"""A team as a model: a whole run read as text pieces, the coordinator's synthesis as it streams.

`team_answer` is the one way a team answers outside its page: the API serves `team:<name>` through it and the
tests call it. What it returns is an answer stream like the backends' (`pieces.stats` once it ends, `close()`
from any thread), so the API reads it as it reads a model's.
"""

from __future__ import annotations

import threading

from core.errors import N_
from llm.interface import GenerationStats
from llm.options import GenerationOptions
from team.record import Limits, TeamError, new_run
from team.run import run_team
from team.teams import Team, find_team


def team_answer(
    backend,
    registry,
    team_name: str,
    task: str,
    limits: Limits | None = None,
    options: GenerationOptions | None = None,
) -> TeamAnswer:
    """The team named `team_name` run on `task` (the run starts with the first read). Raises TeamError for an
    unknown or unavailable team; reading raises TeamError when the synthesis itself failed."""
    return TeamAnswer(backend, find_team(registry, team_name), task, limits, options)


class TeamAnswer:
    """A team run as text pieces. Every step of the run uses `options`; `limits` bound it as on the page.

    The run goes on in a thread of its own, started by the first read. Closing it, from any thread and also
    while another thread waits for a piece, sets the run's cancel event: every row of the run (plan, experts,
    synthesis) stops at its next step, and the waiting reader gets the end. No text comes while the team plans
    and consults, which can take minutes: `wait` lets a reader look up meanwhile (is its client still there?)."""

    _END = object()

    def __init__(
        self,
        backend,
        team: Team,
        task: str,
        limits: Limits | None = None,
        options: GenerationOptions | None = None,
    ):
        self.run, self.stats, self.cancel = new_run(team, task, limits), GenerationStats(), threading.Event()
        self._events = run_team(backend, team, self.run, options, self.cancel)
        self._ready = threading.Condition()
        self._pieces: list = []  # synthesis text not read yet, then _END or the run's error
        self._thread: threading.Thread | None = None

    def __iter__(self):
        return self

    def wait(self, timeout: float) -> bool:
        """True once a piece (or the end) is ready to read; False when none came within `timeout` seconds."""
        self._start()
        with self._ready:
            return bool(self._ready.wait_for(lambda: self._pieces, timeout))

    def __next__(self) -> str:
        self._start()
        with self._ready:
            self._ready.wait_for(lambda: self._pieces)
            item = self._pieces[0]
            if isinstance(item, str):
                return self._pieces.pop(0)
            self._pieces[0] = self._END  # a failure is raised once; later reads just end
        if item is not self._END:
            raise item
        self._settle()
        raise StopIteration

    def _start(self) -> None:
        with self._ready:
            if self._thread is None and not self.cancel.is_set():
                self._thread = threading.Thread(target=self._produce, name="team-answer", daemon=True)
                self._thread.start()

    def _produce(self) -> None:
        """The run, in its own thread: the synthesis' text to the reader, then the end (or the run's error)."""
        end = self._END
        try:
            for event in self._events:
                if event.kind == "synthesis_piece" and event.text:
                    self._put(event.text)
        except Exception as exc:  # raised to the reader where the pieces end; the API logs what is a bug
            end = exc
        finally:
            self._put(end)

    def _put(self, item) -> None:
        with self._ready:
            self._pieces.append(item)
            self._ready.notify_all()

    def _settle(self) -> None:
        self._tally()
        if self.run.synthesis_status == "failed":
            raise TeamError(N_("The team's final answer failed: {reason}"), reason=self.run.synthesis_error)

    def _tally(self) -> None:
        run = self.run
        self.stats.completion_tokens = run.tokens_used + run.synthesis_tokens  # every token the team generated
        self.stats.finish_reason = "length" if run.synthesis_status == "length" else "stop"

    def close(self) -> None:
        """Stops every row of the run at its next step, and returns once the run let go of them."""
        with self._ready:
            self.cancel.set()
            thread = self._thread
            if thread is None:  # closed before it was read: nothing ran, and nothing will
                self._pieces.append(self._END)
                self._ready.notify_all()
        if thread is not None:
            thread.join(timeout=30)
        self._tally()  # also when a stop string ended the answer: usage counts what the team generated
