"""What the engine is told: its own small frozen configs, which the app builds from its settings
(`EngineConfig.from_settings(settings)`). The engine never imports the app's settings (passwords, search keys,
folders of the app's data) and keeps nothing of them but these fields.

Frozen and hashable, so each is also the cache key of what is built from it: two equal configs share one
loaded model (or one server client), and changing any field builds a new one. The field names are the settings'
own (`LLM_MODEL` is `llm_model`), so the errors that name a variable still point at the right setting."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class EngineConfig:
    """Loading the in-process model and batching its answers."""

    # `auto`, `demo`, a modelscope or Hugging Face id, or a local folder (`llm.loading.resolve_source`).
    llm_model: str = "auto"
    model_hub: Literal["modelscope", "huggingface"] = "modelscope"
    llm_device: Literal["auto", "cuda", "cpu"] = "auto"
    llm_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    context_length: int = 8192
    kv_cache_budget_mb: int = 2048
    kv_cache_max_sessions: int = 16
    max_batch_size: int = 8
    prefill_chunk_tokens: int = 512
    llm_compile: Literal["auto", "on", "off"] = "auto"  # the compiled fixed-shape decode step (`llm.static_step`)
    # Where fetched weights are kept. Not part of the key: the fetched folder itself is (`runtime`), so the same
    # weights reached through another data folder are still one model.
    models_dir: Path = field(default=Path("models"), compare=False)

    @classmethod
    def from_settings(cls, settings: Any) -> EngineConfig:
        """From the app's settings (`core.settings.Settings`, or anything with these attribute names)."""
        return cls(**_values(cls, settings))


@dataclass(frozen=True)
class ServerConfig:
    """The client of an OpenAI-compatible server (vLLM, Ollama, `transformers serve`)."""

    openai_base_url: str = "http://127.0.0.1:8000/v1"  # may carry credentials: only requests see it
    openai_api_key: str = field(default="not-needed", repr=False)  # never printed, logged or shown
    openai_model: str = ""
    request_timeout_s: float = 60.0
    openai_extra_sampling: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> ServerConfig:
        """From the app's settings (`core.settings.Settings`, or anything with these attribute names)."""
        return cls(**_values(cls, settings))


def _values(config: type, settings: Any) -> dict[str, Any]:
    values = {f.name: getattr(settings, f.name) for f in fields(config)}
    # A secret kept as pydantic's SecretStr by the settings is a plain string here, never printed (repr=False).
    return {name: v.get_secret_value() if hasattr(v, "get_secret_value") else v for name, v in values.items()}
