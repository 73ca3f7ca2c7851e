"""Where the model comes from, and the messages a failed load gives (pure logic: no network)."""

import errno

import pytest

from core.settings import Settings
from llm.interface import ModelLoadError
from llm.loading import (
    LLAMA_31_8B,
    ModelSource,
    _explain_download_error,
    _os_error,
    fetch,
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
    assert resolve_source(Settings(llm_model=spec), cuda) == expected


def test_model_hub_setting_picks_the_hub_for_bare_ids():
    assert resolve_source(Settings(llm_model="a/b", model_hub="huggingface"), True).kind == "huggingface"


def test_modelscope_folder_spelling_is_found(tmp_path):
    real = tmp_path / "LLM-Research" / "Meta-Llama-3___1-8B-Instruct"
    real.mkdir(parents=True)
    (real / "config.json").write_text("{}")
    (real / "model.safetensors").write_bytes(b"x")
    source = resolve_source(Settings(llm_model=str(tmp_path / "LLM-Research" / "Meta-Llama-3.1-8B-Instruct")), True)
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
        pick_device(Settings(llm_device="cuda"), False)
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
