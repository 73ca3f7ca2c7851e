"""Sampling options a user sets per session. Validated here so every backend gets sane values."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator


class GenerationOptions(BaseModel):
    """Per-request options. Travels with each request; never stored on the shared model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(512, ge=1, le=8192, description="Longest answer, in tokens.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="0 means greedy decoding (always the likeliest token).")
    top_p: float = Field(
        0.9, gt=0.0, le=1.0, description="Sample from the smallest set of tokens whose probability adds up to this."
    )
    top_k: int = Field(50, ge=0, le=1000, description="Sample from the k likeliest tokens; 0 turns it off.")
    repetition_penalty: float = Field(1.1, ge=1.0, le=2.0, description="Above 1 discourages repeating earlier tokens.")
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Fixed seed for repeatable sampling; empty for random."
    )
    # The answer must be JSON matching this JSON schema. Kept as JSON text so the options stay hashable and
    # serialisable. The in-process model is constrained token by token (llm.constrained); a server is sent
    # OpenAI's `response_format`, and its answer still has to be checked by the caller.
    json_schema: str | None = Field(None, max_length=100_000, description="JSON schema the answer must match.")

    # json_schema compiled for one tokenizer (llm.constrained.bind); set by the backend that decodes.
    _grammar: object = PrivateAttr(None)

    @field_validator("json_schema")
    @classmethod
    def _schema_is_an_object(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            schema = json.loads(value)
        except ValueError:
            raise ValueError("json_schema must be JSON text (a JSON schema)") from None
        if not isinstance(schema, dict):
            raise ValueError("json_schema must be a JSON object (a JSON schema)")
        return value

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def grammar(self):
        return self._grammar
