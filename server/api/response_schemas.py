"""Request bodies of the Responses and Conversations APIs, in OpenAI's shapes (unknown fields ignored). Items are
read by `server.api.items`; a request's tools, tool choice and text format become the chat-completions fields the
one answer path (`chat.start_chat`) checks."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from server.api.errors import ApiError
from server.api.schemas import MAX_CHARS, Items

MAX_NEW_ITEMS = 20  # OpenAI's bound on the items one conversations call adds
Key = Annotated[str, Field(max_length=64)]
Metadata = Annotated[dict[Key, Annotated[str, Field(max_length=512)]], Field(max_length=16)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")
    PARAMS: ClassVar[frozenset[str]] = frozenset()  # field names a validation error's location may name


class ConversationRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = Field(None, max_length=64)
    schema_: dict | None = Field(None, alias="schema")
    strict: StrictBool | None = None
    description: str | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: TextFormat | None = None


class ResponseRequest(Body):
    PARAMS = frozenset(
        {
            "model",
            "input",
            "instructions",
            "max_output_tokens",
            "temperature",
            "top_p",
            "stream",
            "store",
            "previous_response_id",
            "conversation",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "text",
            "format",
            "metadata",
            "background",
            "type",
            "name",
            "schema",
            "strict",
            "id",
        }
    )

    model: str = Field(min_length=1, max_length=200)
    input: Any = None  # a string or a list of items (`items.read_items`)
    instructions: str | None = Field(None, max_length=MAX_CHARS)
    max_output_tokens: StrictInt | None = Field(None, ge=1)
    temperature: StrictFloat | None = None
    top_p: StrictFloat | None = None
    stream: StrictBool = False
    store: StrictBool = True
    previous_response_id: str | None = Field(None, min_length=1, max_length=200)
    conversation: Annotated[str, Field(min_length=1, max_length=200)] | ConversationRef | None = None
    tools: Items | None = None
    tool_choice: Any = None
    parallel_tool_calls: StrictBool | None = None
    text: TextConfig | None = None
    metadata: Metadata | None = None
    background: StrictBool | None = None

    def conversation_id(self) -> str | None:
        return self.conversation.id if isinstance(self.conversation, ConversationRef) else self.conversation

    def chat_fields(self) -> dict:
        """tools, tool_choice and text.format as chat completions spell them (checked there)."""
        fields: dict[str, Any] = {}
        if self.tools is not None:
            fields["tools"] = [chat_tool(tool, index) for index, tool in enumerate(self.tools)]
        if self.tool_choice is not None:
            fields["tool_choice"] = chat_tool_choice(self.tool_choice)
        if self.parallel_tool_calls is not None:
            fields["parallel_tool_calls"] = self.parallel_tool_calls
        text_format = self.text.format if self.text else None
        if text_format is not None and text_format.type == "json_object":
            fields["response_format"] = {"type": "json_object"}
        elif text_format is not None and text_format.type == "json_schema":
            if text_format.schema_ is None:
                raise ApiError(400, "text.format.schema: a json_schema format needs its schema.", param="text.format")
            schema = {"name": text_format.name or "answer", "schema": text_format.schema_, "strict": text_format.strict}
            fields["response_format"] = {"type": "json_schema", "json_schema": schema}
        return fields


def chat_tool(tool: Any, index: int) -> Any:
    """A Responses function tool (`{"type": "function", "name", "parameters"}`) as a chat-completions tool."""
    if isinstance(tool, dict) and tool.get("type") == "function" and "function" not in tool:
        function = {key: tool[key] for key in ("name", "description", "parameters", "strict") if key in tool}
        return {"type": "function", "function": function}
    if isinstance(tool, dict) and tool.get("type") != "function":
        raise ApiError(
            400,
            f"tools.{index}.type: only function tools are supported, not {str(tool.get('type'))[:40]!r}.",
            param=f"tools.{index}.type",
            code="unsupported_parameter",
        )
    return tool  # checked (and refused with the reason) by the chat path


def chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


class ConversationCreate(Body):
    PARAMS = frozenset({"items", "metadata"})

    items: Annotated[list[Any], Field(max_length=MAX_NEW_ITEMS)] | None = None
    metadata: Metadata | None = None


class ConversationUpdate(Body):
    PARAMS = frozenset({"metadata"})

    metadata: Metadata


class ItemsCreate(Body):
    PARAMS = frozenset({"items"})

    items: Annotated[list[Any], Field(min_length=1, max_length=MAX_NEW_ITEMS)]
