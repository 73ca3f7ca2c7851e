"""The messages of a team run: the coordinator's plan and follow-up, each expert's question, the synthesis.

Experts' answers are model output: they go into the coordinator's prompts as quoted material (the chat
template is the only source of special tokens, see llm.prompts), each cut to a bounded length.
"""

from __future__ import annotations

from llm.prompts import Message
from personas.registry import Persona

ANSWER_CHARS_IN_PROMPT = 2000  # of each expert answer shown to the coordinator: a long one cannot crowd out the rest
PLAN_FORMAT = '{"asks": [{"expert": "<expert name>", "question": "<one short question>"}]}'


def roster(experts: tuple[Persona, ...]) -> str:
    return "\n".join(
        f"- {p.name}: {p.card.display_name}" + (f". {p.card.description}" if p.card.description else "")
        for p in experts
    )


def _coordinator(coordinator: Persona, duty: str) -> str:
    return f"{coordinator.card.system_prompt}\n\n{duty}".strip()


def plan_messages(coordinator: Persona, experts: tuple[Persona, ...], task: str, max_asks: int) -> list[Message]:
    duty = (
        f"You lead a team of experts. Decide which experts to ask about the user's task and write one short, "
        f"specific question for each (at most {max_asks}).\nThe experts:\n{roster(experts)}\n"
        f"Reply with JSON only, in this form: {PLAN_FORMAT}"
    )
    return [{"role": "system", "content": _coordinator(coordinator, duty)}, {"role": "user", "content": task}]


def follow_up_messages(
    coordinator: Persona, experts: tuple[Persona, ...], task: str, answers: str, max_asks: int
) -> list[Message]:
    duty = (
        f"You lead a team of experts and have their answers to the user's task. If an important point is "
        f"still missing, ask further questions (at most {max_asks}, one per expert); if nothing is missing, "
        f'ask nothing: {{"asks": []}}.\nThe experts:\n{roster(experts)}\n'
        f"Reply with JSON only, in this form: {PLAN_FORMAT}"
    )
    return [
        {"role": "system", "content": _coordinator(coordinator, duty)},
        {"role": "user", "content": f"Task: {task}\n\nThe answers so far:\n\n{answers}"},
    ]


def expert_messages(expert: Persona, task: str, question: str) -> list[Message]:
    """What an expert is sent: its own persona prompt, and the question (with the task, when the question is
    not the task itself). The same messages alone give the same greedy answer as in the batch."""
    text = question if question == task else f"We are working on this task: {task}\n\nYour question: {question}"
    system = [{"role": "system", "content": expert.card.system_prompt}] if expert.card.system_prompt.strip() else []
    return [*system, {"role": "user", "content": text}]


def synthesis_messages(coordinator: Persona, task: str, answers: str) -> list[Message]:
    if answers:
        duty = (
            "Write the final answer to the user's task from your experts' answers below. After each point, "
            "name the expert it came from in brackets, like [Legal expert]. Where the experts disagree, say so."
        )
        user = f"Task: {task}\n\nYour experts' answers:\n\n{answers}\n\nWrite the final answer."
    else:
        duty = "None of your experts could answer. Answer the user's task yourself, briefly, and say so."
        user = task
    return [{"role": "system", "content": _coordinator(coordinator, duty)}, {"role": "user", "content": user}]


def quoted_answers(items: list[tuple[str, str, str]]) -> str:
    """(expert display name, question, answer) triples as the coordinator reads them."""
    blocks = []
    for name, question, answer in items:
        text = answer.strip()
        if len(text) > ANSWER_CHARS_IN_PROMPT:
            text = text[:ANSWER_CHARS_IN_PROMPT].rstrip() + " …"
        blocks.append(f"[{name}] was asked: {question}\n[{name}] answered: {text}")
    return "\n\n".join(blocks)
