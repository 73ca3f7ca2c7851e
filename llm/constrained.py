"""JSON-schema-constrained decoding: an answer that must be JSON matching a schema is so by construction.

lm-format-enforcer follows the schema character by character and says which tokens may come next; a
logits processor turns that into a mask. The processor is made per request by `llm.sampling.make_processors`
(each row of the shared batch has its own), and it looks only at the answer: the prompt length is recorded
on its first call, when the ids it is given are exactly the prompt.

lm-format-enforcer's own transformers module does not import with transformers 5, so the tokenizer's
vocabulary is handed over through the library's documented extension point (`TokenEnforcerTokenizerData`).

A string may hold any character, but the library's alphabet is the characters that some token spells whole. A
character a byte-level tokenizer writes as two byte tokens (`ț`, many CJK characters, most emoji) is outside
it: the library then takes the string for finished, decides the JSON is complete and allows only the end. So each
row's alphabet grows by every such character as it is written (`JsonSchemaLogitsProcessor._admit`).
"""

from __future__ import annotations

import functools
import json
import threading
import weakref

import torch

from llm.options import GenerationOptions

# Whitespace the JSON may hold in one run: a little for readability; unbounded runs of newlines are a small
# model's favourite way to waste its token budget.
MAX_WHITESPACE_RUN = 2
MAX_CHAR_TOKENS = 4  # a character is at most 4 UTF-8 bytes, so at most 4 byte tokens

_vocabularies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_vocabulary_lock = threading.Lock()


class JsonGrammar:
    """A JSON schema ready for one tokenizer. Immutable and shared; `processor()` makes a fresh per-row one."""

    def __init__(self, schema: dict, vocabulary):
        self.schema = schema
        self.vocabulary = vocabulary  # lmformatenforcer.TokenEnforcerTokenizerData

    def processor(self) -> JsonSchemaLogitsProcessor:
        from lmformatenforcer import CharacterLevelParserConfig, JsonSchemaParser, TokenEnforcer

        parser = JsonSchemaParser(self.schema)
        enforcer = TokenEnforcer(self.vocabulary, parser)
        # TokenEnforcer sets the parser's config from the vocabulary; ours adds the limits and field order.
        parser.config = CharacterLevelParserConfig(
            alphabet=self.vocabulary.tokenizer_alphabet,
            max_consecutive_whitespaces=MAX_WHITESPACE_RUN,
            force_json_field_order=True,
        )  # one object, read by every parser state this row reaches: growing its alphabet reaches them all
        parser.context.alphabet_without_quotes = parser.config.alphabet.replace('"', "")
        return JsonSchemaLogitsProcessor(enforcer, parser, self.vocabulary.decoder)


class JsonSchemaLogitsProcessor:
    """HF-style logits processor: `(input_ids (1, T), scores (1, vocab)) -> scores` with every token the
    schema does not allow next set to -inf. Stateful (it records the prompt length): one per request."""

    def __init__(self, enforcer, parser, decode):
        self.enforcer = enforcer
        self.parser, self.decode = parser, decode
        self.known = set(parser.config.alphabet)
        self.prompt_length: int | None = None
        self._masks: dict[int, tuple[object, torch.Tensor]] = {}  # allowed-token list -> its additive mask

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        answer = input_ids[0, self.prompt_length :].tolist()
        self._admit(answer[-MAX_CHAR_TOKENS:])
        return scores + self._mask(self.enforcer.get_allowed_tokens(answer).allowed_tokens, scores)

    def _admit(self, tail: list[int]) -> None:
        """Adds to this row's alphabet any character the newest tokens completed that no token spells whole."""
        new = {c for c in self.decode(tail) if c not in self.known and c not in '"\\' and c.isprintable()}
        if new:
            self.known |= new
            extra = "".join(sorted(new))
            self.parser.config.alphabet += extra
            self.parser.context.alphabet_without_quotes += extra

    def _mask(self, allowed: list[int], scores: torch.Tensor) -> torch.Tensor:
        # The enforcer hands back the same list object for repeating states (free text inside a string):
        # build each one's mask once. The list is kept with its mask, so its id cannot be reused meanwhile.
        cached = self._masks.get(id(allowed))
        if cached is not None and cached[0] is allowed and cached[1].shape == scores.shape:
            return cached[1]
        mask = torch.full_like(scores, float("-inf"))
        mask[:, torch.tensor(allowed, dtype=torch.long, device=scores.device)] = 0.0
        self._masks[id(allowed)] = (allowed, mask)
        return mask


def vocabulary(tokenizer, stop_ids: frozenset[int]):
    """The enforcer's view of `tokenizer` (about a second to build for a 50k vocabulary), built once per tokenizer.

    `stop_ids` are what ends an answer here: the enforcer allows them once the JSON is complete."""
    from lmformatenforcer import TokenEnforcerTokenizerData

    with _vocabulary_lock:
        per_tokenizer = _vocabularies.setdefault(tokenizer, {})
        key = tuple(sorted(stop_ids))
        if key not in per_tokenizer:
            size = len(tokenizer)
            per_tokenizer[key] = TokenEnforcerTokenizerData(
                _regular_tokens(tokenizer, size),
                functools.partial(_decode, tokenizer),
                list(key) or tokenizer.eos_token_id,
                False,
                size,
            )
        return per_tokenizer[key]


def _regular_tokens(tokenizer, size: int) -> list[tuple[int, str, bool]]:
    """(id, text, starts a word) for every non-special token, as lm-format-enforcer's integrations compute it:
    a token decoded after "0" shows the leading space that decoding it alone may drop."""
    special = set(tokenizer.all_special_ids)
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    tokens = []
    for token in range(size):
        if token in special:
            continue
        after_zero = tokenizer.decode([zero, token])[1:]
        tokens.append((token, after_zero, len(after_zero) > len(tokenizer.decode([token]))))
    return tokens


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids).rstrip("\ufffd")  # a character split across tokens waits for its next byte


def bind(options: GenerationOptions, tokenizer, stop_ids: frozenset[int]) -> GenerationOptions:
    """The options with their JSON schema compiled for this tokenizer; unchanged when they have none."""
    if options.json_schema is None or options.grammar is not None:
        return options
    bound = options.model_copy()
    bound._grammar = JsonGrammar(json.loads(options.json_schema), vocabulary(tokenizer, stop_ids))
    return bound
