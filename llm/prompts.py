"""Turning a conversation into model input, only through the tokenizer's chat template."""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass

from core.errors import N_
from llm import tools as tool_calling
from llm.interface import Message, PromptTooLongError

# Control-token text that any chat template may give meaning to. Message text written by a user, a web
# page, an import or a persona file must never reach a tokenizer as the real token.
GENERIC_MARKERS = (
    "<|",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "<<SYS>>",
    "<</SYS>>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<bos>",
    "<eos>",
)
# Joins the marker's first character to the rest: the text reads the same, but no longer matches the token.
BREAK = "\u200d"
_patterns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Prompt:
    input_ids: list[int]
    dropped_messages: int  # oldest history messages left out to fit the context


def turns(history: list[dict]) -> list[Message]:
    """The role/content pairs of stored or displayed messages, and the tool calls and results of tool-using turns,
    nothing else (ids, stats and sources stay out of the model's input). The one place history is stripped before
    it reaches a chat template."""
    kept = []
    for m in history:
        turn: Message = {"role": m["role"], "content": m["content"]}
        if m.get("tool_calls"):
            turn["tool_calls"] = m["tool_calls"]
        if m.get("tool_call_id"):
            turn["tool_call_id"] = m["tool_call_id"]
        kept.append(turn)
    return kept


def conversation(system_prompt: str, history: list[dict]) -> list[Message]:
    """System prompt (if any) followed by the history's role/content pairs, nothing else."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    return messages + turns(history)


def marker_pattern(markers) -> re.Pattern:
    strings = sorted({m for m in markers if len(m) > 1}, key=len, reverse=True)  # longest first
    return re.compile("|".join(map(re.escape, strings)))


_GENERIC = marker_pattern(GENERIC_MARKERS)


def _tokenizer_pattern(tokenizer) -> re.Pattern:
    """Every special and added token of `tokenizer` (plus the generic markers), built once per tokenizer."""
    try:
        return _patterns[tokenizer]
    except (KeyError, TypeError):
        pass
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    # Added tokens that are plain words (some vocabularies add them) are not control tokens: left alone.
    controls = [t.content for t in added.values() if t.special or not t.content.strip().isalnum()]
    markers = [*GENERIC_MARKERS, *getattr(tokenizer, "all_special_tokens", []), *controls]
    pattern = marker_pattern(markers)
    try:
        _patterns[tokenizer] = pattern
    except TypeError:  # not weak-referenceable: build it each time
        pass
    return pattern


def neutralise(text: str, pattern: re.Pattern = _GENERIC) -> str:
    """`text` with every control-token marker broken by a zero-width joiner after its first character.

    Repeated until none is left, since breaking one match can leave an overlapping one whole."""
    while pattern.search(text):
        text = pattern.sub(lambda m: m[0][0] + BREAK + m[0][1:], text)
    return text


def without_control_tokens(messages: list[Message], pattern: re.Pattern = _GENERIC) -> list[Message]:
    """The messages with control-token text neutralised in every content and every string of a tool call (the
    template adds the real ones)."""
    return [{**m, **neutralised({k: m[k] for k in ("content", "tool_calls") if k in m}, pattern)} for m in messages]


def neutralised(value, pattern: re.Pattern = _GENERIC):
    """`value` (text, or JSON-like lists and dicts of it, such as tool definitions) with every string neutralised."""
    if isinstance(value, str):
        return neutralise(value, pattern)
    if isinstance(value, list):
        return [neutralised(v, pattern) for v in value]
    if isinstance(value, dict):
        return {neutralised(k, pattern): neutralised(v, pattern) for k, v in value.items()}
    return value


def encode(
    tokenizer, messages: list[Message], tools: list[dict] | None = None, continue_final: bool = False
) -> list[int]:
    """Token ids of `messages` through the chat template; special tokens come only from the template. `tools`
    (OpenAI's definitions) go to a template that renders them, or into the system prompt (`llm.tools`). With
    `continue_final`, the last message (an answer cut short) is left open for the model to go on writing."""
    pattern = _tokenizer_pattern(tokenizer)
    messages, extra = without_control_tokens(messages, pattern), {}
    if tool_calling.uses_tools(messages, tools):
        tools = neutralised(tools, pattern) if tools else None
        if tool_calling.template_has_tools(tokenizer):
            messages, extra = tool_calling.for_template(messages, tools), ({"tools": tools} if tools else {})
        else:
            messages = tool_calling.as_text(messages, tools)
    if continue_final and messages and messages[-1]["role"] == "assistant":
        extra.update(add_generation_prompt=False, continue_final_message=True)
    else:
        extra["add_generation_prompt"] = True
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False, **extra)
    if hasattr(ids, "input_ids"):  # some tokenizers return a BatchEncoding regardless
        ids = ids["input_ids"]
    return list(ids)


def turn_starts(history: list[Message]) -> list[int]:
    """Where the kept history may start, fewest dropped first: whole turns (user + its answer) are
    dropped, so the kept history still starts with a user message. The last leaves one message or none.
    Tool results, and the answers written after them, belong to the turn whose call they answer: the kept
    history never starts with a result whose call was dropped."""
    starts, i = [0], 0
    while len(history) - i > 1:
        i += 2 if len(history) - i > 2 and history[i + 1]["role"] == "assistant" else 1
        while i < len(history) and (
            history[i]["role"] == "tool" or (history[i]["role"] == "assistant" and history[i - 1]["role"] == "tool")
        ):
            i += 1
        if i < len(history):
            starts.append(i)
    return starts


def build_prompt(
    tokenizer,
    messages: list[Message],
    max_new_tokens: int,
    context_length: int,
    tools: list[dict] | None = None,
    continue_final: bool = False,
) -> Prompt:
    """Encode `messages` (and the `tools` the model may call), dropping the oldest turns (never the system
    prompt or the tools) until the answer fits.

    The budget is prompt tokens + `max_new_tokens` <= `context_length`. The fewest turns that must go are
    found by searching from the newest end (dropping a turn never makes the prompt longer): about
    2·log2(turns) encodings, each no longer than about twice what fits, so a history of thousands of
    turns costs about what one context's worth does.
    """
    system = [m for m in messages[:1] if m["role"] == "system"]
    history = messages[len(system) :]
    budget = context_length - max_new_tokens
    if budget <= 0:
        raise PromptTooLongError(
            N_(
                "Max new tokens ({max_new_tokens}) leaves no room in the {context_length}-token context. "
                "Lower it in the sidebar."
            ),
            max_new_tokens=max_new_tokens,
            context_length=context_length,
        )
    starts = turn_starts(history)
    encoded: dict[int, list[int]] = {}

    def fits(k: int) -> bool:  # k: how many of `starts` to move past (k turns dropped)
        if k not in encoded:
            encoded[k] = encode(tokenizer, system + history[starts[k] :], tools, continue_final)
        return len(encoded[k]) <= budget

    last = len(starts) - 1
    # A chat whose text is shorter than the budget almost always fits whole: one encoding.
    if sum(len(m["content"]) for m in messages) <= budget and fits(0):
        return Prompt(encoded[0], 0)
    if not fits(last):
        raise PromptTooLongError(
            N_(
                "Your message needs {count:,} tokens but only {budget:,} fit ({context_length:,} context "
                "minus {max_new_tokens:,} for the answer). Shorten the message or the system prompt, or "
                "lower max new tokens."
            ),
            count=len(encoded[last]),
            budget=budget,
            context_length=context_length,
            max_new_tokens=max_new_tokens,
        )
    # Gallop from the newest end for a drop count that does not fit, then bisect: `low` never fits
    # (or is -1, before the first), `high` always fits.
    high, step = last, 1
    while high > 0 and fits(max(high - step, 0)):
        high, step = max(high - step, 0), step * 2
    low = max(high - step, 0) if high > 0 else -1
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return Prompt(encoded[high], starts[high])
