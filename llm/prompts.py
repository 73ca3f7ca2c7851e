"""Turning a conversation into model input, only through the tokenizer's chat template."""

from __future__ import annotations

from dataclasses import dataclass

from llm.errors import PromptTooLongError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class Prompt:
    input_ids: list[int]
    dropped_messages: int  # oldest history messages left out to fit the context


def conversation(system_prompt: str, history: list[Message]) -> list[Message]:
    """System prompt (if any) followed by the history's role/content pairs, nothing else."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    return messages + [{"role": m["role"], "content": m["content"]} for m in history]


def encode(tokenizer, messages: list[Message]) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    if hasattr(ids, "input_ids"):  # some tokenizers return a BatchEncoding regardless
        ids = ids["input_ids"]
    return list(ids)


def build_prompt(tokenizer, messages: list[Message], max_new_tokens: int, context_length: int) -> Prompt:
    """Encode `messages`, dropping the oldest turns (never the system prompt) until the answer fits.

    The budget is prompt tokens + `max_new_tokens` <= `context_length`.
    """
    system = [m for m in messages[:1] if m["role"] == "system"]
    history = messages[len(system):]
    budget = context_length - max_new_tokens
    if budget <= 0:
        raise PromptTooLongError(
            f"Max new tokens ({max_new_tokens}) leaves no room in the {context_length}-token context. Lower it in the sidebar."
        )
    dropped = 0
    while True:
        ids = encode(tokenizer, system + history)
        if len(ids) <= budget:
            return Prompt(ids, dropped)
        if len(history) <= 1:
            raise PromptTooLongError(
                f"Your message needs {len(ids):,} tokens but only {budget:,} fit "
                f"({context_length:,} context minus {max_new_tokens:,} for the answer). "
                "Shorten the message or the system prompt, or lower max new tokens."
            )
        # Drop a whole turn (user + its answer) so the history still starts with a user message.
        cut = 2 if len(history) > 2 and history[1]["role"] == "assistant" else 1
        history = history[cut:]
        dropped += cut
