"""What a team run holds, as data: its limits, the coordinator's steps, the experts' turns, the final answer.

The record is pure data (pydantic), so it sits in core/ beside the message that carries it (`core.message`):
a saved, exported or imported team conversation keeps its run typed. The run itself (its steps, its events,
its errors) lives in team/, which imports these from here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator

from core.errors import kept, restored

MAX_EXPERTS = 8  # rows of one batch (MAX_BATCH_SIZE's default): more would queue instead of answering together
MIN_EXPERT_TOKENS = 16  # an answer shorter than this is not worth a round: the budget is spent


def _words(value: object) -> str:
    value = restored(value)
    if not isinstance(value, str):
        raise ValueError("must be text")
    return value


# A note or an error: saved with its message id and values beside the English (core.errors.kept), so a reopened
# run says it in its reader's language; a run saved as plain English text reads back as it was.
Words = Annotated[str, PlainValidator(_words), PlainSerializer(kept, when_used="json")]


class Limits(BaseModel):
    """The run's limits, set in the page's sidebar (ranges and defaults live here only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experts_per_round: int = Field(3, ge=1, le=MAX_EXPERTS, description="Experts asked in one round, at most.")
    follow_up_rounds: int = Field(2, ge=0, le=5, description="Rounds of further questions after the first.")
    expert_tokens: int = Field(256, ge=MIN_EXPERT_TOKENS, le=4096, description="New tokens per expert answer.")
    synthesis_tokens: int = Field(512, ge=16, le=4096, description="New tokens for the final answer.")
    token_budget: int = Field(
        4096, ge=64, le=200_000, description="Tokens for the coordinator's plans and the experts' answers together."
    )


class Turn(BaseModel):
    """One expert asked one question in one round."""

    round: int
    expert: str  # persona name
    display_name: str
    avatar: str = "🎭"
    question: str
    answer: str = ""
    status: Literal["waiting", "answering", "done", "length", "stopped", "failed"] = "waiting"
    error: Words | None = None
    tokens: int = 0
    seconds: float = 0.0
    batched_with: int = 0  # other answers decoded in the same forward passes


class Step(BaseModel):
    """One of the coordinator's planning steps: the first plan or a follow-up."""

    round: int  # the consult round it plans
    kind: Literal["plan", "follow_up"]
    text: str = ""  # the coordinator's JSON, as written
    outcome: Literal["running", "planned", "fallback", "finished", "stopped"] = "running"
    note: Words | None = None  # why the plan fell back, or was cut
    asked: list[str] = []  # display names of the experts it asks
    tokens: int = 0
    seconds: float = 0.0


class TeamRun(BaseModel):
    """Everything about one run: what the page shows, the store saves and the API answers from."""

    team: str
    team_display_name: str
    task: str
    limits: Limits
    steps: list[Step] = []
    turns: list[Turn] = []
    consult_seconds: list[float] = []  # wall time of each consult round
    synthesis: str = ""
    synthesis_status: Literal["waiting", "writing", "done", "length", "stopped", "failed"] = "waiting"
    synthesis_error: Words | None = None
    synthesis_tokens: int = 0
    synthesis_seconds: float = 0.0
    ended_by: Literal["running", "finished", "rounds", "budget", "stopped"] = "running"
    tokens_used: int = 0  # against limits.token_budget
    seconds: float = 0.0

    @property
    def rounds(self) -> int:
        return max((t.round for t in self.turns), default=0)

    def settle(self) -> TeamRun:
        """A run saved part way (by the periodic save before a stop, a closed tab or a crash) as stopped:
        every part still going is marked stopped, what it had is kept."""
        if self.ended_by == "running":
            self.ended_by = "stopped"
            for turn in self.turns:
                if turn.status in ("waiting", "answering"):
                    turn.status = "stopped"
            for step in self.steps:
                if step.outcome == "running":
                    step.outcome = "stopped"
            if self.synthesis_status == "writing":
                self.synthesis_status = "stopped"
        return self
