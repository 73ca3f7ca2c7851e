"""The coordinator's plan: which experts to ask and what, as JSON matching a schema.

The schema is built per team (expert names are an enum) and per round (how many may be asked). The
in-process model is held to it token by token, so its plan is valid by construction; a server's answer
is checked here. A weak model still writes silly plans (empty or repeated questions, the same expert
twice): `parse_plan` keeps what is usable, and `fallback_plan` asks every expert the task as given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import N_, StudioError, Text, problems

MAX_QUESTION_CHARS = 200  # a question longer than this is cut by the schema; it also bounds the plan's length
MIN_QUESTION_CHARS = 3  # shorter "questions" ("", "?", "..") are replaced by the task itself
# Characters of a plan beyond its questions: {"asks": [ ... ]} and per ask {"expert": "", "question": ""}, ", ",
# whitespace runs (llm.constrained.MAX_WHITESPACE_RUN) between its parts, and room for escapes in a question.
PLAN_OVERHEAD_CHARS = 16
ASK_OVERHEAD_CHARS = 48
ESCAPE_ALLOWANCE = 2  # a question's characters may each be written as up to this many (e.g. \" for ")


@dataclass(frozen=True)
class Ask:
    expert: str  # persona name
    question: str


class _PlanAsk(BaseModel):
    model_config = ConfigDict(extra="ignore")

    expert: str
    question: str = ""


class _Plan(BaseModel):
    model_config = ConfigDict(extra="ignore")

    asks: list[_PlanAsk] = Field(max_length=64)


class PlanError(StudioError, ValueError):
    """The coordinator's answer is not a usable plan; the message says why. It never reaches a user as an error:
    the step falls back to asking every expert the task (or ends the consulting) and its note says why."""


def plan_schema(experts: list[str], max_asks: int, min_asks: int = 1) -> dict:
    """JSON schema of a plan: `{"asks": [{"expert": <one of experts>, "question": <text>}, ...]}`.

    `min_asks` 0 lets the coordinator finish (a follow-up with nothing left to ask)."""
    return {
        "type": "object",
        "properties": {
            "asks": {
                "type": "array",
                "minItems": min_asks,
                "maxItems": max_asks,
                "items": {
                    "type": "object",
                    "properties": {
                        "expert": {"type": "string", "enum": list(experts)},
                        "question": {"type": "string", "maxLength": MAX_QUESTION_CHARS},
                    },
                    "required": ["expert", "question"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["asks"],
        "additionalProperties": False,
    }


def plan_token_bound(experts: list[str], max_asks: int) -> int:
    """The most tokens a plan matching `plan_schema` can take (every token is at least one character):
    the budget that lets a constrained plan always finish."""
    longest = max(map(len, experts), default=0)
    return PLAN_OVERHEAD_CHARS + max_asks * (ASK_OVERHEAD_CHARS + longest + ESCAPE_ALLOWANCE * MAX_QUESTION_CHARS)


def parse_plan(
    text: str, experts: list[str], max_asks: int, task: str, asked: set[tuple[str, str]] = frozenset()
) -> list[Ask]:
    """The usable asks in the coordinator's answer: known experts, one question each (the first), at most
    `max_asks`, none already asked (`asked`: (expert, question) pairs). An empty or too short question
    becomes the task. May return [] (nothing left to ask). Raises PlanError when the text is not a plan."""
    try:
        data = json.loads(_json_part(text), strict=False)  # strict=False: a raw newline inside a question is fine
        plan = _Plan.model_validate(data)
    except ValueError as exc:  # json's and pydantic's errors
        raise PlanError(_reason(exc)) from None
    asks, seen = [], set()
    for item in plan.asks:
        question = " ".join(item.question.split())[:MAX_QUESTION_CHARS]
        if len(question) < MIN_QUESTION_CHARS:
            question = task
        key = (item.expert, _normal(question))
        if item.expert not in experts or item.expert in seen or key in asked:
            continue
        seen.add(item.expert)
        asks.append(Ask(item.expert, question))
    return asks[:max_asks]


def fallback_plan(experts: list[str], task: str, max_asks: int) -> list[Ask]:
    """Every expert (up to `max_asks`, in the team's order) asked the task as given."""
    return [Ask(name, task) for name in experts[:max_asks]]


def asked_key(expert: str, question: str) -> tuple[str, str]:
    return expert, _normal(question)


def _normal(question: str) -> str:
    return " ".join(question.lower().split()).rstrip("?.! ")


def _json_part(text: str) -> str:
    """A server without JSON mode may wrap the object in prose or a ``` fence: take the outermost {...}."""
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def _reason(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        where, problem = problems(exc)[0]
        return Text(
            N_("the plan does not match its schema ({where}: {problem})"), where=where or "plan", problem=problem
        )
    if isinstance(exc, json.JSONDecodeError):
        return Text(N_("the plan is not valid JSON ({reason} at character {pos})"), reason=exc.msg, pos=exc.pos)
    return Text(N_("the plan is not usable ({reason})"), reason=exc)
