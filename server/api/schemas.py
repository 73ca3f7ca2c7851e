"""Request bodies of the API, in OpenAI's shapes. Unknown fields are ignored (clients send many);
known fields we do not implement are refused by `unsupported` with the field's name.

Every list and the total text are bounded here, checked before the model sees anything, so that no request
can make the server work for long before it is refused or answered: what a request may cost is its
prompt (at most the context, trimmed in a fraction of a second) plus its own max_tokens of decoding.
Numbers and switches are strict: `true` is not 1, `"1"` is not a number (an int is still a float)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator
from pydantic_core import PydanticCustomError

MAX_BODY_BYTES = 4 * 2**20  # a request body past this is refused before it is parsed
DEFAULT_MAX_TOKENS = 1024  # when a request sets no max_tokens (OpenAI's default is "until the context ends")
# OpenAI allows 4 stop strings; 16 of up to 1,000 characters leave room for any real use, and keep the
# search for them linear and cheap (each new piece is searched with the longest one's length behind it).
MAX_STOPS = 16
MAX_STOP_CHARS = 1000
# Messages, content parts, embedding inputs: 2,048 is OpenAI's bound on embedding inputs, and more turns
# than any context holds once trimmed.
MAX_ITEMS = 2048
# All the text of one request's messages (or embedding inputs): about twice what fills Llama-3.1's 128k-token
# context, so any chat that can fit is accepted; tokenizing this much takes about a second.
MAX_CHARS = 1_000_000

Items = Annotated[list[Any], Field(max_length=MAX_ITEMS)]


def _stop_list(value: Any) -> Any:
    """`stop` as a list (OpenAI takes one string or a list); one string too long is named as `stop` itself."""
    if isinstance(value, str):
        if len(value) > MAX_STOP_CHARS:
            raise PydanticCustomError(
                "string_too_long", "String should have at most {max_length} characters", {"max_length": MAX_STOP_CHARS}
            )
        return [value]
    return value


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | Annotated[list[TextPart], Field(max_length=MAX_ITEMS)] | None = None
    tool_calls: Items | None = None  # an assistant's calls (checked by server.api.tools.tool_turn)
    tool_call_id: str | None = Field(None, max_length=200)  # a tool message: the call it answers

    def characters(self) -> int:
        if isinstance(self.content, str):
            return len(self.content)
        return sum(len(part.text or "") for part in self.content or [])


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: StrictBool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_ITEMS)]
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    temperature: StrictFloat | None = None
    top_p: StrictFloat | None = None
    seed: StrictInt | None = None
    stop: Annotated[
        Annotated[list[Annotated[str, Field(max_length=MAX_STOP_CHARS)]], Field(max_length=MAX_STOPS)] | None,
        BeforeValidator(_stop_list),
    ] = None
    # vLLM's extra sampling fields
    top_k: StrictInt | None = None
    repetition_penalty: StrictFloat | None = None
    # OpenAI's other fields (`functions`: refused by `unsupported`).
    n: StrictInt | None = None  # answers wanted: checked against MAX_CHOICES (`service.choice_count`)
    tools: Items | None = None
    functions: Items | None = None
    tool_choice: Any = None
    parallel_tool_calls: StrictBool | None = None  # accepted; a forced call is one call (server.api.tools)
    logprobs: StrictBool | None = None  # with top_logprobs: see GenerationOptions.logprobs
    top_logprobs: StrictInt | None = None
    response_format: dict | None = None
    presence_penalty: StrictFloat | None = None  # the penalties and logit_bias: ranges checked by GenerationOptions
    frequency_penalty: StrictFloat | None = None
    logit_bias: dict | None = None

    @field_validator("messages")
    @classmethod
    def _bounded_text(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        total = sum(message.characters() for message in messages)
        if total > MAX_CHARS:
            raise PydanticCustomError(
                "too_long", f"the messages hold {total:,} characters; at most {MAX_CHARS:,} are accepted"
            )
        return messages

    def unsupported(self) -> tuple[str, str] | None:
        """(field, why) for the first field set to something this server does not do."""
        checks = [
            ("functions", bool(self.functions), "function calling is not supported; use tools"),
        ]
        return next(((name, why) for name, bad, why in checks if bad), None)

    def stop_strings(self) -> list[str]:
        return [s for s in self.stop or [] if s]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    input: str | Annotated[list[str], Field(min_length=1, max_length=MAX_ITEMS)]
    encoding_format: Literal["float", "base64"] = "float"

    @field_validator("input")
    @classmethod
    def _texts_to_embed(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if any(not text for text in texts):
            raise PydanticCustomError("string_too_short", "every input must be a non-empty string")
        if (total := sum(map(len, texts))) > MAX_CHARS:
            raise PydanticCustomError(
                "too_long", f"the inputs hold {total:,} characters; at most {MAX_CHARS:,} are accepted"
            )
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


# Every field name of these bodies: what a pydantic error location keeps when it becomes `param` (the rest
# of a location are the union members pydantic tried, such as `str` or `list[TextPart]`, and list indices).
FIELD_NAMES = frozenset().union(
    *(model.model_fields for model in (ChatRequest, ChatMessage, TextPart, StreamOptions, EmbeddingRequest))
)
