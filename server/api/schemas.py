"""Request bodies of the API, in OpenAI's shapes. Unknown fields are ignored (clients send many);
known fields we do not implement are refused by `unsupported` with the field's name."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BODY_BYTES = 4 * 2**20  # a request body past this is refused before it is parsed
DEFAULT_MAX_TOKENS = 1024  # when a request sets no max_tokens (OpenAI's default is "until the context ends")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    tool_calls: list[Any] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    # vLLM's extra sampling fields
    top_k: int | None = None
    repetition_penalty: float | None = None
    # Known OpenAI fields this server does not implement; refused when set to something that matters.
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict | None = None

    def unsupported(self) -> tuple[str, str] | None:
        """(field, why) for the first field set to something this server does not do."""
        checks = [
            ("n", self.n not in (None, 1), "only n=1 is supported; send separate requests for more answers"),
            ("tools", bool(self.tools), "tool calling is not supported"),
            ("functions", bool(self.functions), "function calling is not supported"),
            ("tool_choice", self.tool_choice not in (None, "none"), "tool calling is not supported"),
            ("logprobs", bool(self.logprobs), "logprobs are not supported"),
            ("top_logprobs", bool(self.top_logprobs), "logprobs are not supported"),
            (
                "response_format",
                (self.response_format or {}).get("type", "text") != "text",
                "only response_format type 'text' is supported",
            ),
            (
                "presence_penalty",
                bool(self.presence_penalty),
                "presence_penalty is not supported; use repetition_penalty",
            ),
            (
                "frequency_penalty",
                bool(self.frequency_penalty),
                "frequency_penalty is not supported; use repetition_penalty",
            ),
            ("logit_bias", bool(self.logit_bias), "logit_bias is not supported"),
        ]
        return next(((name, why) for name, bad, why in checks if bad), None)

    def stop_strings(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[str] = Field(...)
    encoding_format: Literal["float", "base64"] = "float"

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)
