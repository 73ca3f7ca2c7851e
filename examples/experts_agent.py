"""The multi-agent tutorial against the studio: a standards coordinator, a LangGraph ReAct agent, whose tools
are two expert personas. Each tool is a `/v1/chat/completions` call with the persona as the model, so the
experts answer with their own system prompts (and LoRA adapters, for an adapter persona) from the one loaded
model, in the same batch as everyone else. The coordinator asks them and writes one answer.

    streamlit run app.py                                   # in another terminal, or on the GPU box
    python examples/experts_agent.py                       # the AI-standards task
    python examples/experts_agent.py --task "..." --json   # another task; the transcript as JSON

`--consult-each` makes the coordinator call every expert once, in order, before it answers (a named
`tool_choice`, then `none`), which a small model such as the demo one needs; Llama-3.1-8B chooses for itself
with `tool_choice="auto"`. The key comes from `--api-key` or `STUDIO_API_KEY` (the app's `API_KEY`), and is
never printed."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field

TASK = "Draft AI compliance standards that keep AI systems from harming people."
COORDINATOR = "standards-coordinator"
QUESTION_CHARS = 200  # the schema bounds a question, so a forced call always closes within CALL_TOKENS
CALL_TOKENS = 256
# tool name -> (persona model id, what the coordinator reads about it)
EXPERTS = {
    "ask_computer_scientist": (
        "computer-scientist",
        "Ask the computer scientist: AI systems, software, testing and data privacy. Input: one concrete question.",
    ),
    "ask_legal_expert": (
        "legal-expert",
        "Ask the legal expert: laws, regulation, data protection and liability. Input: one concrete question.",
    ),
}


@dataclass
class Consultation:
    expert: str
    question: str
    answer: str


@dataclass
class Transcript:
    task: str
    consultations: list[Consultation] = field(default_factory=list)
    answer: str = ""


def expert_tools(client, transcript: Transcript, max_tokens: int) -> list:
    """One LangChain tool per expert persona; each call is one chat completion with the persona as the model."""
    from langchain_core.tools import StructuredTool
    from pydantic import BaseModel, Field

    class Question(BaseModel):
        question: str = Field(max_length=QUESTION_CHARS, description="one concrete question for the expert")

    def make(name: str, model: str, description: str):
        def ask(question: str) -> str:
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, temperature=0
            )
            answer = reply.choices[0].message.content or ""
            transcript.consultations.append(Consultation(model, question, answer))
            return answer

        return StructuredTool.from_function(ask, name=name, description=description, args_schema=Question)

    return [make(name, model, description) for name, (model, description) in EXPERTS.items()]


def coordinator(base_url: str, api_key: str, tools: list, max_tokens: int, consult_each: bool):
    """The coordinator's model for the agent: free to choose (`auto`), or one named expert per turn, then none."""
    from langchain_core.messages import ToolMessage
    from langchain_openai import ChatOpenAI

    def chat_model(bound: int):
        return ChatOpenAI(model=COORDINATOR, base_url=base_url, api_key=api_key, max_tokens=bound, temperature=0)

    caller = chat_model(max(max_tokens, CALL_TOKENS))  # a call cut short is no call: the agent would stop there
    if not consult_each:
        return caller.bind_tools(tools)
    turns = [caller.bind_tools(tools, tool_choice=tool.name) for tool in tools]
    turns.append(chat_model(max_tokens).bind_tools(tools, tool_choice="none"))

    def pick(state, runtime):
        answered = sum(isinstance(message, ToolMessage) for message in state["messages"])
        return turns[min(answered, len(turns) - 1)]

    return pick


def synthesis_prompt(tool_count: int):
    """With `--consult-each`: once every expert has answered, the coordinator sees the task and the advice as one
    request to write the answer in prose (a small model shown the raw calls only imitates them)."""
    from langchain_core.messages import HumanMessage, ToolMessage

    def prompt(state):
        messages = list(state["messages"])
        advice = [message for message in messages if isinstance(message, ToolMessage)]
        if len(advice) < tool_count:
            return messages
        notes = "\n\n".join(f"Advice from {message.name}:\n{message.content}" for message in advice)
        return [HumanMessage(f"Task: {messages[0].content}\n\n{notes}\n\nWrite one complete, practical answer.")]

    return prompt


def run(task: str, base_url: str, api_key: str, max_tokens: int = 200, consult_each: bool = False) -> Transcript:
    """Asks the team; returns who was asked what, what they said, and the coordinator's answer."""
    import openai

    with warnings.catch_warnings():  # langgraph 1.x points to `langchain.agents`, a package we do not need
        warnings.filterwarnings("ignore", message="create_react_agent has been moved")
        from langgraph.prebuilt import create_react_agent

    transcript = Transcript(task)
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600)
    tools = expert_tools(client, transcript, max_tokens)
    model = coordinator(base_url, api_key, tools, max_tokens, consult_each)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="create_react_agent has been moved")
        agent = create_react_agent(model, tools, prompt=synthesis_prompt(len(tools)) if consult_each else None)
    result = agent.invoke({"messages": [("user", task)]}, {"recursion_limit": 2 * len(tools) + 4})
    transcript.answer = result["messages"][-1].content
    return transcript


def show(transcript: Transcript) -> str:
    lines = [f"Task: {transcript.task}", ""]
    for number, step in enumerate(transcript.consultations, 1):
        lines += [f"{number}. {step.expert} was asked: {step.question}", f"   {step.answer}", ""]
    return "\n".join(lines + ["Answer:", transcript.answer])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default=TASK, help="what the team should answer")
    parser.add_argument("--base-url", default=os.environ.get("STUDIO_BASE_URL", "http://127.0.0.1:6006/v1"))
    parser.add_argument("--api-key", default=os.environ.get("STUDIO_API_KEY", "none"), help="the app's API_KEY")
    parser.add_argument("--max-tokens", type=int, default=200, help="the bound on each expert's and the answer")
    parser.add_argument("--consult-each", action="store_true", help="ask every expert once, then answer")
    parser.add_argument("--json", action="store_true", help="print the transcript as JSON")
    args = parser.parse_args(argv)

    import openai

    try:
        transcript = run(args.task, args.base_url, args.api_key, args.max_tokens, args.consult_each)
    except openai.APIConnectionError:
        print(f"No studio answers at {args.base_url}: start it with `streamlit run app.py`, or pass --base-url.")
        return 2
    except openai.APIStatusError as error:
        print(f"The studio refused the request: {error.message}")
        return 2
    print(json.dumps(asdict(transcript), ensure_ascii=False, indent=2) if args.json else show(transcript))
    return 0


if __name__ == "__main__":
    sys.exit(main())
