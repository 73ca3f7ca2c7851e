"""Where the model comes from, and the messages a failed load gives (pure logic: no network)."""

import errno

import pytest

from core.settings import Settings, Shapes, shaped_by, shared_key
from llm.config import EngineConfig, ServerConfig
from llm.interface import ModelLoadError
from llm.loading import (
    LLAMA_31_8B,
    ModelSource,
    _explain_download_error,
    _os_error,
    fetch,
    load_model,
    pick_device,
    resolve_source,
    stop_ids_of,
)


@pytest.mark.parametrize(
    "spec, cuda, expected",
    [
        ("auto", True, ModelSource("modelscope", LLAMA_31_8B)),
        ("auto", False, ModelSource("demo", "SmolLM2-135M-Instruct.Q4_1.gguf")),
        ("demo", True, ModelSource("demo", "SmolLM2-135M-Instruct.Q4_1.gguf")),
        ("meta-llama/Llama-3.1-8B-Instruct", True, ModelSource("modelscope", "meta-llama/Llama-3.1-8B-Instruct")),
        ("hf:meta-llama/Llama-3.1-8B-Instruct", True, ModelSource("huggingface", "meta-llama/Llama-3.1-8B-Instruct")),
        ("ms:LLM-Research/Meta-Llama-3.1-8B-Instruct", False, ModelSource("modelscope", LLAMA_31_8B)),
    ],
)
def test_model_spec_resolution(spec, cuda, expected):
    assert resolve_source(EngineConfig(llm_model=spec), cuda) == expected


def test_model_hub_setting_picks_the_hub_for_bare_ids():
    assert resolve_source(EngineConfig(llm_model="a/b", model_hub="huggingface"), True).kind == "huggingface"


def test_modelscope_folder_spelling_is_found(tmp_path):
    real = tmp_path / "LLM-Research" / "Meta-Llama-3___1-8B-Instruct"
    real.mkdir(parents=True)
    (real / "config.json").write_text("{}")
    (real / "model.safetensors").write_bytes(b"x")
    source = resolve_source(EngineConfig(llm_model=str(tmp_path / "LLM-Research" / "Meta-Llama-3.1-8B-Instruct")), True)
    assert source == ModelSource("local", str(real))
    # A model already in the cache is used without any network.
    assert fetch(ModelSource("modelscope", LLAMA_31_8B), tmp_path) == real


@pytest.mark.parametrize(
    "exc, words",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "No disk space"),
        (ConnectionError("Failed to resolve 'modelscope.cn'"), "no network"),
        (type("GatedRepoError", (Exception,), {})("Access to model is restricted"), "gated"),
        (type("RepositoryNotFoundError", (Exception,), {})("404 Client Error"), "does not exist"),
    ],
)
def test_download_failures_name_the_cause_and_the_fix(tmp_path, exc, words):
    message = str(_explain_download_error(exc, "org/model", tmp_path))
    assert words in message and "Traceback" not in message


def test_no_cuda_and_bad_cache_dir_messages(tmp_path):
    with pytest.raises(ModelLoadError, match="sees no CUDA GPU"):
        pick_device(EngineConfig(llm_device="cuda"), False)
    assert "Set MODEL_CACHE_DIR" in str(_os_error(OSError(errno.EACCES, "denied"), tmp_path))


def test_every_end_of_turn_id_is_a_stop_id():
    class Config:
        eos_token_id = [128001, 128008, 128009]  # Llama-3.1's generation config

    class Model:
        generation_config = Config()

    class Tokenizer:
        eos_token_id = 128009
        unk_token_id = None

        def convert_tokens_to_ids(self, token):
            return {"<|eot_id|>": 128009, "<|eom_id|>": 128008, "<|end_of_text|>": 128001}.get(token)

    assert stop_ids_of(Model(), Tokenizer()) == {128001, 128008, 128009}


def test_every_setting_says_which_shared_objects_are_built_from_it():
    """A new setting must be marked (ENGINE, SERVER, ... or PER_USE), so it cannot be left out of a cache key."""
    parts = {"engine", "server", "personas", "search", "reranker"}
    for name, info in Settings.model_fields.items():
        marks = [m for m in info.metadata if isinstance(m, Shapes)]
        assert len(marks) == 1, f"mark {name} in core/settings.py with what it shapes (or PER_USE)"
        assert set(marks[0].parts) <= parts, name
    assert {"llm_model", "llm_dtype", "kv_cache_budget_mb", "prefill_chunk_tokens"} <= set(shaped_by("engine"))
    assert "data_dir" not in shaped_by("engine")  # the model's folder is in the key itself


def test_a_shared_objects_key_changes_with_its_own_settings_only():
    """The engine's and the server client's configs are their cache keys; the others are digests of settings."""
    engine_config, server_config = EngineConfig.from_settings, ServerConfig.from_settings
    engine = engine_config(Settings(llm_model="demo"))
    assert engine_config(Settings(llm_model="demo", llm_dtype="float32")) != engine
    assert engine_config(Settings(llm_model="auto")) != engine  # the demo note differs
    assert engine_config(Settings(llm_model="demo", data_dir="/elsewhere")) == engine  # every test's own
    assert engine_config(Settings(llm_model="demo", search_provider="searxng")) == engine
    assert hash(engine_config(Settings(llm_model="demo", app_password="pw"))) == hash(engine)
    # Secrets change their object's key, and never appear in how it is printed.
    one, two = Settings(openai_api_key="sk-one-secret"), Settings(openai_api_key="sk-two-secret")
    assert server_config(one) != server_config(two)
    assert "secret" not in repr(server_config(one)) and "secret" not in str(server_config(one))
    assert server_config(Settings(openai_api_key="sk-one-secret", llm_dtype="float32")) == server_config(one)
    personas = shared_key(Settings(), "personas")
    assert shared_key(Settings(adapters_dir="/elsewhere"), "personas") != personas
    assert shared_key(Settings(llm_dtype="float32"), "personas") == personas


def test_the_engine_configs_hold_exactly_the_settings_marked_as_shaping_them():
    """A setting marked ENGINE or SERVER in core/settings.py is a field of the engine's own config, and the
    engine's configs take nothing else from the app (the models folder aside: not part of the key)."""
    from dataclasses import fields

    engine = {f.name for f in fields(EngineConfig)} - {"models_dir"}
    assert engine == set(shaped_by("engine"))
    assert {f.name for f in fields(ServerConfig)} == set(shaped_by("server"))
    for config, part in ((EngineConfig(), "engine"), (ServerConfig(), "server")):
        for name in shaped_by(part):  # the same defaults as the settings
            default = Settings.model_fields[name].default
            default = default.get_secret_value() if hasattr(default, "get_secret_value") else default
            assert getattr(config, name) == default, name


@pytest.mark.model
def test_the_weights_load_in_a_thread_that_ends_with_the_load(monkeypatch):
    """Converting weights in the caller's thread (a server's main thread) gave it a torch pool of its own beside the
    engine worker's, and every decode step got slower (bf16 demo model: 14.5 against 18.2 tokens/s)."""
    import threading

    import transformers

    from tests.conftest import MODELS_DIR

    real = transformers.AutoModelForCausalLM.from_pretrained
    loaded_in = []

    def recording(*args, **kwargs):
        loaded_in.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", recording)
    lm = load_model(EngineConfig(llm_model="demo", llm_dtype="bfloat16", models_dir=MODELS_DIR))
    assert str(lm.model.dtype) == "torch.bfloat16"
    assert len(loaded_in) == 1 and loaded_in[0] is not threading.current_thread()
    assert not loaded_in[0].is_alive()
