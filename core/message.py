"""The one conversation message: what the pages build, the store saves, an export carries, an import checks and
the API stores, with the small constructors every message is made through (`Message.user`, `Message.answer`,
`Message.stored`) and `as_state`, the plain dict a page keeps in its session state.

An answer's figures are `core.stats.Stats`; a team run's record is `core.team_run.TeamRun`, so a team
conversation keeps its run's structure through a save, an export and an import.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.errors import N_, Text, key_name
from core.stats import Count, Stats
from core.team_run import TeamRun

__all__ = ["CalledFunction", "Count", "LongText", "Message", "ShortText", "Source", "Stats", "ToolCall"]

MAX_SOURCES = 50  # a search answer cites at most SEARCH_SOURCES (<= 10) sources


def new_message_id() -> str:
    """Unique within a conversation (64 random bits); given once, when the message is created."""
    return secrets.token_hex(8)


class Part(BaseModel):
    # extra="allow": unknown keys are collected (and then dropped by an import, kept by a read: see
    # core.conversation_schema) instead of failing; strict: "5" is not a number and "yes" is not true.
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


ShortText = Annotated[str, Field(max_length=500)]
LongText = Annotated[str, Field(max_length=1_000_000)]


def _flat(settings: dict[str, Any]) -> dict[str, Any]:
    """Sampling settings are shown as figures only: numbers, text, true/false, nothing nested."""
    for key, value in settings.items():
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValueError(Text(N_("setting {name} must be a number, text or true/false"), name=key_name(key)))
        if isinstance(value, str) and len(value) > 500:
            raise ValueError(Text(N_("setting {name} is longer than 500 characters"), name=key_name(key)))
    return settings


class Source(Part):
    title: LongText = ""
    link: LongText = ""
    snippet: LongText = ""


class CalledFunction(Part):
    name: Annotated[str, Field(max_length=200)]
    arguments: LongText  # JSON text, as the model wrote it


class ToolCall(Part):
    """A function call an assistant message made (OpenAI's shape); its result is a `tool` message."""

    id: Annotated[str, Field(max_length=200)]
    type: Literal["function"] = "function"
    function: CalledFunction


class Message(Part):
    # system and tool messages, and assistant messages holding tool_calls, come from the API (core/api_store.py)
    role: Literal["user", "assistant", "system", "tool"]
    content: str
    tool_calls: Annotated[list[ToolCall], Field(max_length=128)] | None = None
    tool_call_id: Annotated[str, Field(max_length=200)] | None = None  # a tool message: the call it answers
    id: Annotated[str, Field(max_length=64)] | None = None
    replaces: Annotated[str, Field(max_length=64)] | None = None  # the answer a regenerated one took the place of
    parent: Annotated[str, Field(max_length=64)] | None = None  # the message it follows (core/versions.py)
    feedback: Literal["up", "down"] | None = None  # the 👍/👎 a person gave an answer
    time: Annotated[float, Field(ge=0, le=10**11)] | None = None  # seconds since 1970
    model: ShortText | None = None
    persona: ShortText | None = None
    system_prompt: LongText | None = None
    settings: (
        Annotated[dict[Annotated[str, Field(max_length=64)], Any], Field(max_length=64), AfterValidator(_flat)] | None
    ) = None
    stats: Stats | None = None
    dropped: Count | None = None
    cut: bool | None = None
    query: LongText | None = None
    sources: Annotated[list[Source], Field(max_length=MAX_SOURCES)] | None = None
    cited: Annotated[list[Annotated[int, Field(ge=1, le=1000)]], Field(max_length=MAX_SOURCES)] | None = None
    team: ShortText | None = None  # the team that answered (a team run's message)
    team_run: TeamRun | None = None  # the run's record: its steps, turns and synthesis (ui/team.py draws it)
    run_id: ShortText | None = None  # the API's assistants run that wrote it (`thread.run` id)...
    assistant_id: ShortText | None = None  # ...and that run's assistant

    # --- the ways a message is made ---------------------------------------------------------------

    @classmethod
    def new(cls, role: str, content: str, **fields: Any) -> Message:
        """A message written now, with its id: the message's key in the store from its first save on."""
        made = {"role": role, "content": content, "time": time.time(), "id": new_message_id()}
        return cls.model_validate({**made, **fields})

    @classmethod
    def user(cls, text: str) -> Message:
        """What a person wrote."""
        return cls.new("user", text)

    @classmethod
    def answer(cls, content: str = "", **fields: Any) -> Message:
        """An assistant's answer as it starts (model, settings, sources, ...: `fields`); it grows as it streams."""
        return cls.new("assistant", content, **fields)

    @classmethod
    def tool_result(cls, content: str, call_id: str) -> Message:
        """A tool's output, answering the assistant's call `call_id` (the API's runs and responses)."""
        return cls.new("tool", content, tool_call_id=call_id)

    @classmethod
    def team_answer(cls, run: TeamRun, text: str, **fields: Any) -> Message:
        """The assistant message that holds a team run: its Markdown as text (for exports and search), the record."""
        return cls.answer(text, **{"team": run.team, **fields, "team_run": run})

    @classmethod
    def stored(cls, data: dict) -> Message:
        """A message dict about to be saved (a page's state, the API's), checked; raises ValidationError."""
        return cls.model_validate(data)

    def as_state(self) -> dict:
        """The message as the plain dict a page keeps in session state and the store saves (only what was set)."""
        state = self.model_dump(mode="json", exclude_unset=True)
        if self.team_run is not None:  # whole: its steps and turns are appended in place, never counted as set
            state["team_run"] = self.team_run.model_dump(mode="json")
        return state
