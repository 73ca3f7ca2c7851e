"""Request bodies of the API, in OpenAI's shapes. Unknown fields are ignored (clients send many);
known fields we do not implement are refused by `unsupported` with the field's name.

Every list and the total text are bounded here, checked before the model sees anything, so that no request
can make the server work for long before it is refused or answered: what a request may cost is its
prompt (at most the context, trimmed in a fraction of a second) plus its own max_tokens of decoding.
Numbers and switches are strict: `true` is not 1, `"1"` is not a number (an int is still a float)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

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
    n: StrictInt | None = None  # answers wanted: checked against MAX_CHOICES (`translate.choice_count`)
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


# --- /v1/completions and the checks /v1/embeddings adds (server.api.completions, server.api.embeddings) ----------

COMPLETION_MAX_TOKENS = 16  # OpenAI's default for a legacy completion (vLLM's too): clients that want more say so


def _is_token_ids(value: Any) -> bool:
    """A list of token ids, or of lists of them (OpenAI's pre-tokenized inputs)."""
    if not isinstance(value, list) or not value:
        return False
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return True
    return all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in value)


class CompletionRequest(BaseModel):
    """OpenAI's legacy text completion: raw text in, its continuation out (no chat template). Sampling is checked
    by `translate.to_options` through `sampling()`, as a chat's is."""

    model_config = ConfigDict(extra="ignore")
    PARAMS: ClassVar[frozenset[str]] = frozenset({"prompt", "suffix", "echo", "best_of"})

    model: str = Field(min_length=1, max_length=200)
    prompt: str
    suffix: str | None = None  # refused unless empty: `unsupported`
    max_tokens: StrictInt | None = Field(None, ge=1)
    temperature: StrictFloat | None = None
    top_p: StrictFloat | None = None
    seed: StrictInt | None = None
    stop: Annotated[
        Annotated[list[Annotated[str, Field(max_length=MAX_STOP_CHARS)]], Field(max_length=MAX_STOPS)] | None,
        BeforeValidator(_stop_list),
    ] = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    echo: StrictBool = False  # the prompt comes back in front of the completion
    n: StrictInt | None = None  # one completion per request here: `unsupported`
    best_of: StrictInt | None = None
    logprobs: StrictInt | None = None  # refused: /v1/chat/completions gives them
    presence_penalty: StrictFloat | None = None
    frequency_penalty: StrictFloat | None = None
    logit_bias: dict | None = None
    top_k: StrictInt | None = None  # vLLM's extra sampling fields, as on chats
    repetition_penalty: StrictFloat | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_text(cls, value: Any) -> Any:
        """One prompt of text: a string, or a list holding one string (as some clients send it)."""
        if _is_token_ids(value):
            raise PydanticCustomError(
                "token_ids",
                "token-id prompts are not accepted (ids from another tokenizer would be read as other words); send "
                "the prompt as text",
            )
        if isinstance(value, list):
            if len(value) != 1:
                raise PydanticCustomError(
                    "one_prompt",
                    "one prompt per request (a string, or a list of one string), not {count}; send one request "
                    "per prompt",
                    {"count": len(value)},
                )
            value = value[0]
        if isinstance(value, str) and not value:
            raise PydanticCustomError("string_too_short", "the prompt is empty; send the text to continue")
        if isinstance(value, str) and len(value) > MAX_CHARS:
            raise PydanticCustomError(
                "too_long", f"the prompt holds {len(value):,} characters; at most {MAX_CHARS:,} are accepted"
            )
        return value

    def unsupported(self) -> tuple[str, str] | None:
        """(field, why) for the first field set to something this server does not do."""
        checks = [
            ("suffix", bool(self.suffix), "text after the insertion point (fill-in-the-middle) is not supported"),
            ("n", self.n not in (None, 1), "one completion per request here; send n requests"),
            ("best_of", self.best_of not in (None, 1), "one completion per request here; leave best_of out"),
            (
                "logprobs",
                self.logprobs is not None,
                "not given on /v1/completions; /v1/chat/completions gives them (logprobs: true, top_logprobs)",
            ),
        ]
        return next(((name, why) for name, bad, why in checks if bad), None)

    def sampling(self) -> ChatRequest:
        """The sampling fields as a ChatRequest (not validated again) for `translate.to_options`, the one place
        for their defaults and ranges; max_tokens defaults to OpenAI's 16 here."""
        fields = ("temperature", "top_p", "seed", "top_k", "repetition_penalty")
        fields += ("presence_penalty", "frequency_penalty", "logit_bias")
        return ChatRequest.model_construct(
            model=self.model,
            messages=[],
            max_tokens=self.max_tokens or COMPLETION_MAX_TOKENS,
            **{name: getattr(self, name) for name in fields},
        )

    def stop_strings(self) -> list[str]:
        return [s for s in self.stop or [] if s]


class EmbeddingBody(EmbeddingRequest):
    """What /v1/embeddings reads: `EmbeddingRequest`, plus `dimensions` (checked against the model's own size by
    the route) and a refusal of token arrays that says what to send instead."""

    PARAMS: ClassVar[frozenset[str]] = frozenset({"dimensions"})

    dimensions: StrictInt | None = Field(None, ge=1)

    @field_validator("input", mode="before")
    @classmethod
    def _no_token_ids(cls, value: Any) -> Any:
        if _is_token_ids(value):
            raise PydanticCustomError(
                "token_ids",
                "token arrays are not accepted: their ids come from another model's tokenizer (tiktoken's), not "
                "this embedding model's. Send the text; with LangChain use OpenAIEmbeddings(..., "
                "check_embedding_ctx_length=False)",
            )
        return value
