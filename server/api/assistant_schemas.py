"""Request bodies of the tutorial's assistants, threads and runs endpoints, in OpenAI's (retired) shapes, unknown
fields ignored. Tools and response formats are chat-completions shaped already; they are checked where the run
starts (`chat.start_chat`, through `runs.response_request`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from server.api.response_schemas import MAX_NEW_ITEMS, Body, Metadata
from server.api.schemas import MAX_CHARS, Items

Name = Annotated[str, Field(max_length=256)]
Instructions = Annotated[str, Field(max_length=MAX_CHARS)]


class AssistantFields(Body):
    PARAMS = frozenset(
        {"model", "name", "description", "instructions", "tools", "metadata", "temperature", "top_p"}
        | {"response_format"}
    )

    name: Name | None = None
    description: Annotated[str, Field(max_length=512)] | None = None
    instructions: Instructions | None = None
    tools: Items | None = None
    metadata: Metadata | None = None
    temperature: StrictFloat | StrictInt | None = Field(None, ge=0, le=2)
    top_p: StrictFloat | StrictInt | None = Field(None, ge=0, le=1)
    response_format: Any = None


class AssistantCreate(AssistantFields):
    model: str = Field(min_length=1, max_length=200)


class AssistantUpdate(AssistantFields):
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class ThreadMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant"]
    content: Any  # a string or text parts (`items.read_item` reads it)
    metadata: Metadata | None = None


class ThreadCreate(Body):
    PARAMS = frozenset({"messages", "metadata", "role", "content"})

    messages: Annotated[list[ThreadMessage], Field(max_length=MAX_NEW_ITEMS)] | None = None
    metadata: Metadata | None = None


class ThreadUpdate(Body):
    PARAMS = frozenset({"metadata"})

    metadata: Metadata


class MessageCreate(ThreadMessage, Body):
    PARAMS = frozenset({"role", "content", "metadata"})


class RunCreate(Body):
    PARAMS = frozenset(
        {"assistant_id", "model", "instructions", "additional_instructions", "additional_messages", "tools"}
        | {"tool_choice", "parallel_tool_calls", "temperature", "top_p", "max_completion_tokens", "stream"}
        | {"response_format", "metadata", "role", "content", "thread"}
    )

    assistant_id: str = Field(min_length=1, max_length=200)
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    instructions: Instructions | None = None
    additional_instructions: Instructions | None = None
    additional_messages: Annotated[list[ThreadMessage], Field(max_length=MAX_NEW_ITEMS)] | None = None
    tools: Items | None = None
    tool_choice: Any = None
    parallel_tool_calls: StrictBool | None = None
    temperature: StrictFloat | StrictInt | None = None
    top_p: StrictFloat | StrictInt | None = None
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    response_format: Any = None
    stream: StrictBool = False
    metadata: Metadata | None = None


class ThreadAndRunCreate(RunCreate):
    thread: ThreadCreate | None = None


class ToolOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tool_call_id: str = Field(min_length=1, max_length=200)
    output: Annotated[str, Field(max_length=MAX_CHARS)] = ""


class ToolOutputs(Body):
    PARAMS = frozenset({"tool_outputs", "tool_call_id", "output", "stream"})

    tool_outputs: Annotated[list[ToolOutput], Field(min_length=1, max_length=128)]
    stream: StrictBool = False
