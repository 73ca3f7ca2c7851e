"""Sampling options a user sets per session. Validated here so every backend gets sane values."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from core.errors import N_, Text

MAX_LOGIT_BIAS = 300  # entries, as OpenAI allows
MAX_TOP_LOGPROBS = 20  # alternatives per token, as OpenAI allows


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
    # OpenAI's penalties, counted over the answer so far (not the prompt): each token's logit is lowered by
    # count * frequency_penalty, plus presence_penalty once it has appeared at all. Below 0 they encourage repeats.
    presence_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="Above 0 discourages any token already in the answer, once."
    )
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="Above 0 discourages tokens by how often the answer has used them."
    )
    # (token id, bias) pairs added to the logits before sampling; a tuple sorted by id so the options stay hashable.
    # Whether each id is in the model's vocabulary is checked by the engine that decodes (llm.sampling).
    logit_bias: tuple[tuple[int, float], ...] = Field(
        (), description="Token id -> bias from -100 (never) to 100 (nearly always), added to the logits."
    )
    # Return each answer token's log probability and this many likeliest alternatives; None: none (no cost).
    logprobs: int | None = Field(
        None, ge=0, le=MAX_TOP_LOGPROBS, description="Log probabilities of each token and its top alternatives."
    )
    # The answer must be JSON matching this JSON schema. Kept as JSON text so the options stay hashable and
    # serialisable. The in-process model is constrained token by token (llm.constrained); a server is sent
    # OpenAI's `response_format`, and its answer still has to be checked by the caller.
    json_schema: str | None = Field(None, max_length=100_000, description="JSON schema the answer must match.")
    # The last message is an assistant's answer cut short: the model goes on writing it (vLLM's name for this)
    # instead of starting a new turn.
    continue_final_message: bool = Field(False, description="Go on writing the last (assistant) message.")

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
            raise ValueError(Text(N_("json_schema must be JSON text (a JSON schema)"))) from None
        if not isinstance(schema, dict):
            raise ValueError(Text(N_("json_schema must be a JSON object (a JSON schema)")))
        return value

    @field_validator("logit_bias", mode="before")
    @classmethod
    def _bias_pairs(cls, value) -> tuple[tuple[int, float], ...]:
        """OpenAI's map of token id (a decimal string) to a bias in -100..100, as sorted (id, bias) pairs."""
        if value is None:
            return ()
        pairs = list(value.items()) if isinstance(value, dict) else value
        if not isinstance(pairs, (list, tuple)):
            raise ValueError(Text(N_("logit_bias must map token ids to numbers")))
        if len(pairs) > MAX_LOGIT_BIAS:
            raise ValueError(
                Text(
                    N_("logit_bias holds {count:,} entries; at most {limit} are accepted"),
                    count=len(pairs),
                    limit=MAX_LOGIT_BIAS,
                )
            )
        biases: dict[int, float] = {}
        for pair in pairs:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(Text(N_("logit_bias must map token ids to numbers")))
            token, bias = _token_id(pair[0]), pair[1]
            if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -100 <= bias <= 100:
                raise ValueError(
                    Text(N_("logit_bias for token {token} must be a number from -100 to 100"), token=token)
                )
            if token in biases:
                raise ValueError(Text(N_("logit_bias names token {token} twice"), token=token))
            biases[token] = float(bias)
        return tuple(sorted(biases.items()))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def grammar(self):
        return self._grammar


def _token_id(key) -> int:
    """A token id as OpenAI spells it in logit_bias: a string of decimal digits (an int is taken too)."""
    if isinstance(key, int) and not isinstance(key, bool):
        token = key
    elif isinstance(key, str) and key.isascii() and key.isdecimal() and len(key) <= 12:
        token = int(key)
    else:
        raise ValueError(Text(N_("logit_bias keys must be token ids, written as whole numbers from 0")))
    if token < 0:
        raise ValueError(Text(N_("logit_bias keys must be token ids, written as whole numbers from 0")))
    return token
