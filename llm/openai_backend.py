"""Any OpenAI-compatible server (vLLM, Ollama, Cloudflare Workers AI, `transformers serve`) as a backend."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from core.errors import N_
from core.urls import display_url
from llm.config import ServerConfig
from llm.interface import AnswerStream, BackendError, GenerationStats
from llm.options import GenerationOptions
from llm.prompts import Message, without_control_tokens
from llm.stream_stats import StreamTally
from llm.tools import call_text


class OpenAIBackend:
    """Streams chats from a server through the official `openai` client. Thread-safe (httpx pool)."""

    can_logprobs = False  # not forwarded: the API refuses logprobs for a server's answers
    is_server = True

    def __init__(self, config: ServerConfig):
        from openai import OpenAI

        self.base_url = config.openai_base_url.rstrip("/")  # may carry credentials: only requests see it
        self.where = display_url(self.base_url)  # what names, notes and errors show
        self.client = OpenAI(
            base_url=self.base_url,
            api_key=config.openai_api_key,
            timeout=config.request_timeout_s,
            max_retries=2,  # bounded: connection errors, 429 and 5xx before the stream starts
        )
        self._secrets = _secrets_in(self.base_url, config.openai_api_key)
        self.timeout_s = config.request_timeout_s
        self.model = config.openai_model
        self.extra_sampling = config.openai_extra_sampling
        self.name = f"{self.model or 'server default'} @ {urlsplit(self.where).netloc}"
        self.notes: list[str] = []
        self.base_name = None  # the server decides which adapters it can serve

    def attach_adapter(self, name: str, folder, card) -> str:
        """A LoRA persona is a model name of its own on the server (vLLM: --lora-modules name=folder)."""
        served_name = card.served_model or name
        if served_name not in self.list_models():
            raise BackendError(
                N_(
                    "the server does not serve a model named {served_name!r}. Start vLLM with `--enable-lora "
                    "--lora-modules {served_name}=adapters/{name}`, or set served_model in its persona.json."
                ),
                served_name=served_name,
                name=name,
            )
        return served_name

    def detach_adapter(self, name: str) -> None:
        """Nothing to do here: the server decides what it serves."""

    def list_models(self) -> list[str]:
        """Model names from the server's `/v1/models`."""
        try:
            return [m.id for m in self.client.models.list()]
        except Exception as exc:  # openai's and httpx's errors, turned into a message below
            raise self._explain(exc) from None

    def default_model(self) -> str | None:
        return self.model  # OPENAI_MODEL, when set

    def figures(self) -> dict[str, int]:
        return {}  # the server keeps its own

    def resolve_model(self, model: str | None) -> str:
        chosen = model or self.model
        if chosen:
            return chosen
        served = self.list_models()
        if not served:
            raise BackendError(
                N_("The server at {where} lists no models. Set OPENAI_MODEL to the model it serves."), where=self.where
            )
        return served[0]

    def stream(
        self,
        messages: list[Message],
        options: GenerationOptions,
        *,
        model: str | None = None,
        session: str | None = None,  # servers keep their own prefix caches (vLLM: --enable-prefix-caching)
        cancel: threading.Event | None = None,
        tools: list[dict] | None = None,
    ) -> AnswerStream:
        model = self.resolve_model(model)
        try:
            response = self._create(model, messages, options, tools)
        except Exception as exc:
            raise self._explain(exc, model) from None
        stats = GenerationStats()
        return AnswerStream(self._read(response, stats, cancel), stats)

    def stream_choices(self, messages, choices, *, model=None, tools=None, cancel=None) -> list[AnswerStream]:
        """One request per answer: the server shares their prompt through its own prefix cache (vLLM's
        --enable-prefix-caching)."""
        return [self.stream(messages, options, model=model, tools=tools, cancel=cancel) for options in choices]

    def _create(self, model: str, messages: list[Message], options: GenerationOptions, tools=None):
        import openai

        try:
            return self.client.chat.completions.create(**self._request(model, messages, options, tools))
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            rejected = any(word in f"{exc} {exc.body}" for word in ("top_k", "repetition_penalty"))
            if not (self.extra_sampling and rejected):
                raise
        # This server is strict about unknown fields (e.g. `transformers serve`): stop sending them.
        self.extra_sampling = False
        self.notes.append("This server does not accept top-k or repetition penalty; those two settings are not sent.")
        return self.client.chat.completions.create(**self._request(model, messages, options, tools))

    def _request(self, model: str, messages: list[Message], options: GenerationOptions, tools=None) -> dict:
        request = dict(
            model=model,
            messages=without_control_tokens(messages),  # only the server's template may add control tokens
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=options.max_new_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
        )
        if options.seed is not None:
            request["seed"] = options.seed
        if options.presence_penalty:
            request["presence_penalty"] = options.presence_penalty
        if options.frequency_penalty:
            request["frequency_penalty"] = options.frequency_penalty
        if options.logit_bias:  # the server checks the ids against its own vocabulary
            request["logit_bias"] = {str(token): bias for token, bias in options.logit_bias}
        if options.json_schema is not None:  # vLLM holds its answer to the schema; others may ignore it: check it
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json.loads(options.json_schema), "strict": True},
            }
        if tools:  # the server renders them with its own template; its calls come back as text (`_read`)
            request["tools"] = tools
        if self.extra_sampling:  # vLLM and transformers serve accept these; strict servers may not
            request["extra_body"] = {"top_k": options.top_k or -1, "repetition_penalty": options.repetition_penalty}
        if options.continue_final_message:  # vLLM's way to go on writing the last (assistant) message
            request.setdefault("extra_body", {}).update(continue_final_message=True, add_generation_prompt=False)
        return request

    def _read(self, response, stats: GenerationStats, cancel=None, text_of=None) -> Iterator[str]:
        """A streamed answer's pieces (`text_of(choice)`: a chat delta's content by default, a completion's text);
        its usage and how it ended go into `stats`. A chat's tool calls are gathered and given at the end as the
        model writes them."""
        text_of = text_of or (lambda choice: choice.delta.content if choice.delta else None)
        finish, calls = None, {}
        with StreamTally(stats) as tally:
            try:
                for chunk in response:
                    for choice in chunk.choices:
                        delta = getattr(choice, "delta", None)
                        for call in (delta.tool_calls if delta else None) or []:
                            name, arguments = calls.get(call.index, ("", ""))
                            function = call.function
                            calls[call.index] = (
                                name + ((function.name or "") if function else ""),
                                arguments + ((function.arguments or "") if function else ""),
                            )
                    if chunk.usage:
                        stats.prompt_tokens = chunk.usage.prompt_tokens or stats.prompt_tokens
                        stats.completion_tokens = chunk.usage.completion_tokens or stats.completion_tokens
                    for choice in chunk.choices:
                        finish = choice.finish_reason or finish
                        if piece := text_of(choice):
                            tally.arrived()  # one piece counted as a token until the server's usage says
                            yield piece
                    if cancel is not None and cancel.is_set():
                        return
            except Exception as exc:
                raise BackendError(
                    N_("The server's answer stopped in the middle ({reason}). What arrived is kept, marked as cut."),
                    reason=self._explain(exc),
                ) from None
            finally:
                response.close()  # on stop this drops the connection, and vLLM aborts the request
            if calls:  # the server's calls as the model writes them, read back like any in-process answer
                yield "; ".join(call_text(name, arguments) for name, arguments in calls.values())
            if finish is None:
                raise BackendError(
                    N_("The server closed the stream before finishing the answer. What arrived is kept, marked as cut.")
                )
            tally.ended("length" if finish == "length" else "stop")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _explain(self, exc: Exception, model: str | None = None) -> BackendError:
        """One message per failure, saying what to change. Never includes the API key."""
        import openai

        where = self.where
        if isinstance(exc, BackendError):
            return exc
        # The client's transport (httpx or httpx2) raises its own types mid-stream; match by name.
        if isinstance(exc, openai.APITimeoutError) or "Timeout" in type(exc).__name__:
            return BackendError(
                N_(
                    "The server at {where} did not answer within {timeout_s:g} s (REQUEST_TIMEOUT_S). It may "
                    "be overloaded; try again."
                ),
                where=where,
                timeout_s=self.timeout_s,
            )
        if isinstance(exc, openai.APIConnectionError):
            return BackendError(
                N_("Cannot reach the server at {where}. Is it running? Check OPENAI_BASE_URL."), where=where
            )
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return BackendError(
                N_("The server at {where} refused the API key ({status_code}). Set OPENAI_API_KEY to a valid key."),
                where=where,
                status_code=exc.status_code,
            )
        if isinstance(exc, openai.NotFoundError):
            return BackendError(
                N_(
                    "The server at {where} answered 404: no model named {model!r}, or the URL is wrong. "
                    "Check OPENAI_MODEL (the sidebar lists the served models) and that OPENAI_BASE_URL ends "
                    "in /v1."
                ),
                where=where,
                model=model,
            )
        if isinstance(exc, openai.RateLimitError):
            return BackendError(
                N_("The server at {where} is rate limiting requests (429). Wait a moment and try again."), where=where
            )
        if isinstance(exc, openai.APIStatusError):
            detail = self._scrub(str(exc.body or exc.message))[:200]  # a server may echo what it was sent
            if exc.status_code >= 500:
                return BackendError(
                    N_("The server at {where} failed ({status_code}). Check its logs; try again."),
                    where=where,
                    status_code=exc.status_code,
                )
            return BackendError(
                N_(
                    "The server at {where} rejected the request ({status_code}: {detail}). A new chat may "
                    "help if the history is too long."
                ),
                where=where,
                status_code=exc.status_code,
                detail=detail,
            )
        if (
            isinstance(exc, (openai.APIError, OSError))
            or "Protocol" in type(exc).__name__
            or "Stream" in type(exc).__name__
        ):
            return BackendError(N_("the connection to {where} broke: {kind}"), where=where, kind=type(exc).__name__)
        return BackendError(N_("Talking to {where} failed ({kind})."), where=where, kind=type(exc).__name__)

    def complete(
        self,
        prompt: str,
        options: GenerationOptions,
        *,
        model: str | None = None,
        cancel: threading.Event | None = None,
    ) -> AnswerStream:
        """Raw text to the server's own /v1/completions (vLLM's, llama.cpp's), which tokenizes and continues it
        with no chat template; the sampling options are sent as a chat's are."""
        model = self.resolve_model(model)
        request = {**self._request(model, [], options), "prompt": prompt}
        del request["messages"]
        try:
            response = self.client.completions.create(**request)
        except Exception as exc:
            raise self._explain(exc, model) from None
        stats = GenerationStats()
        return AnswerStream(self._read(response, stats, cancel, text_of=lambda choice: choice.text), stats)


def _secrets_in(url: str, api_key: str) -> list[str]:
    """Text that must never be shown: the key, and the URL's user name, password and query (raw and decoded)."""
    try:
        parts = urlsplit(url)
        found = [parts.username, parts.password, parts.query]
    except ValueError:
        found = [url]
    found = [api_key, *found, *(unquote(f) for f in found if f)]
    return sorted({f for f in found if f and len(f) >= 4}, key=len, reverse=True)  # longest first
