"""One config system for every task: typed dataclasses hold the defaults, YAML holds differences.

    museforge train configs/lyrics.yaml train.lr=1e-4 data.path=my_songs.txt

`load_config(path, overrides)` reads a YAML file (only the keys that differ from the defaults),
applies dotted `key=value` overrides, rejects unknown keys (naming the valid ones) and coerces
values to each field's type (PyYAML reads `3e-4` as a string; we make it a float).
The resolved config is saved beside every checkpoint as `config.yaml`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from museforge.errors import UserError


class ConfigError(UserError):
    """A config file or override the user has to fix."""


MAX_CONFIG_BYTES = 1 << 20  # a recipe is a few hundred bytes; a megabyte is a wrong file


@dataclass
class ModelConfig:
    name: str = "default"
    """Hugging Face model id, local directory, a museforge run dir, or "default" (the task's default)."""
    dtype: str = "auto"
    """Weights dtype for generation: auto (bf16 where the CPU/GPU supports it), bfloat16, float16, float32."""
    lora: bool = True
    """Fine-tune a LoRA adapter (peft) instead of all weights."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (effective scale alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch."""
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Module names that get LoRA adapters (GPT-2 style models use c_attn)."""
    trust_remote_code: bool = False
    """Let a Hub model run its own Python code (modeling files in its repo). Only for models you trust."""
    scratch: dict[str, Any] = field(default_factory=dict)
    """Train a new model from scratch with these transformers config fields (e.g. the melody model:
    {model_type: gpt2, n_layer: 4, n_embd: 256}). Empty = fine-tune `name`."""


@dataclass
class DataConfig:
    path: str = ""
    """Training data: a .txt (documents separated by blank lines), .jsonl/.csv, a folder, or for
    melody a MIDI file/folder or a built-in corpus name (bach, folk)."""
    text_field: str = "text"
    """Field holding the document text in .jsonl/.csv (a list of strings is joined by blank lines)."""
    title_field: str = "title"
    """Optional field used as the document's topic in the prompt format."""
    style_field: str = "style"
    """Optional field with a style tag (e.g. rap, ballad) that becomes part of the prompt."""
    style: str = ""
    """A style tag applied to every document that has none (e.g. "hymn")."""
    val_fraction: float = 0.1
    """Fraction of documents held out for validation (at least one document when possible)."""
    val_path: str = ""
    """Explicit validation data instead of a random split."""
    block_size: int = 256
    """Tokens per training sequence; documents are packed into blocks of this length."""
    max_documents: int = 0
    """Use at most this many documents (0 = all)."""
    where: str = ""
    """Keep only rows whose field has one of the values, e.g. "form=sonnet|ballad" (.jsonl/.csv)."""
    seed: int = 0
    """Seed of the train/validation split."""


@dataclass
class TrainConfig:
    out_dir: str = "runs/{task}-{time}"
    """Run directory ({task} and {time} are filled in)."""
    lr: float = 2e-4
    """Peak learning rate (after warm-up; cosine decay to lr * min_lr_ratio)."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of lr."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    batch_size: int = 8
    """Sequences per device per micro-step."""
    grad_accum: int = 1
    """Micro-steps per optimizer step: global batch = batch_size * grad_accum * processes."""
    max_steps: int = 0
    """Optimizer steps; 0 = run `epochs` epochs."""
    epochs: float = 1.0
    """Epochs over the training blocks when max_steps is 0."""
    warmup_steps: int = 10
    """Linear warm-up steps."""
    grad_clip: float = 1.0
    """Clip gradient norm (0 = off)."""
    precision: str = "auto"
    """auto (bf16 where supported), bf16, fp16 (GPU only) or no."""
    attention: str = "auto"
    """Attention precision under bf16/fp16 on a CPU: auto (measured once at the start: fp32 where
    this CPU computes it faster), fp32, or native (the autocast dtype). Recorded in museforge.json."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass instead of keeping them: about
    2 GB less for LoRA on the default model at 8 x 256 tokens, about a third slower."""
    eval_every: int = 50
    """Evaluate validation loss every N optimizer steps (and at the end)."""
    eval_at_start: bool = True
    """Evaluate before training too: the base model's validation loss, for comparison."""
    eval_batches: int = 0
    """Limit validation to N batches (0 = the whole split)."""
    save_every: int = 50
    """Write a resumable checkpoint every N optimizer steps (and at the end)."""
    keep_best: bool = True
    """Export the weights with the best validation loss (otherwise the last)."""
    early_stop_patience: int = 0
    """Stop after N evaluations without improvement (0 = never)."""
    sample_every: int = 0
    """Write sample generations every N steps (0 = only at the end)."""
    samples: int = 2
    """Sample generations written each time."""
    sample_max_new_tokens: int = 64
    """Length of each training sample."""
    resume: bool = False
    """Continue from the latest checkpoint in out_dir."""
    seed: int = 1234
    """Seed for initialisation, data order and dropout."""
    log_every: int = 1
    """Update the progress bar postfix every N steps."""
    num_workers: int = 0
    """DataLoader workers."""


@dataclass
class GenerationConfig:
    max_new_tokens: int = 200
    """Tokens to generate."""
    temperature: float = 0.8
    """Sampling temperature (0 = greedy)."""
    top_p: float = 0.95
    """Nucleus sampling mass."""
    top_k: int = 50
    """Sample among the k most likely tokens (0 = off)."""
    repetition_penalty: float = 1.15
    """>1 discourages repeating tokens; greedy small models loop without it."""
    no_repeat_ngram_size: int = 0
    """Forbid repeating any n-gram of this size (0 = off)."""
    num_return_sequences: int = 1
    """Samples per prompt."""
    seed: int | None = None
    """Same seed -> same output. None draws one and records it in the provenance."""


@dataclass
class Config:
    task: str = "lyrics"
    """lyrics, poem, story or melody."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerationConfig = field(default_factory=GenerationConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated type of `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], key)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.startswith("[") else value.split(",")
        if not isinstance(value, list):
            value = [value]
        return [_coerce(v, item, key) for v in value]
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    try:
        if tp is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if tp is float:
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return number
        if tp is str:
            if isinstance(value, bool):  # YAML 1.1 reads a bare no/yes as a boolean
                return "yes" if value else "no"
            return "" if value is None else str(value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}") from None
    return value


def _apply(obj: Any, values: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for k, v in values.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise ConfigError(f"unknown config key '{key}'; valid keys: {', '.join(prefix + n for n in names)}")
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current):
            if not isinstance(v, dict):
                raise ConfigError(f"'{key}' is a section: give its fields, e.g. {key}.{dataclasses.fields(current)[0].name}=...")
            _apply(current, v, key + ".")
        else:
            setattr(obj, k, _coerce(v, hints[k], key))


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ["train.lr=1e-4", "task=poem"] into a nested dict."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value (e.g. train.lr=1e-4)")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        # Keep the text: each field's type decides how to read it ("no" stays a string for
        # train.precision, while YAML would read it as False).
        node[parts[-1]] = raw.strip()
    return nested


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and k in out and not isinstance(out[k], dict):
            raise ConfigError(f"'{k}' is a section, not {out[k]!r}: give its fields, e.g. {k}:\n  key: value")
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, **sections: Any) -> Config:
    """Defaults <- YAML file <- keyword sections <- dotted overrides."""
    values: dict[str, Any] = {}
    if path:
        p = Path(path).expanduser()
        if p.is_dir():
            raise ConfigError(f"{p} is a folder, not a config file: give a YAML file, e.g. configs/tiny.yaml")
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}: check the path (the recipes are in configs/)")
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p} is {p.stat().st_size // 1024} KB: a config holds a few settings "
                              f"(at most {MAX_CONFIG_BYTES // 1024} KB); give the YAML file, not data")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as e:
            raise ConfigError(f"{p}: not UTF-8 text (bad byte at offset {e.start}): give a YAML file saved as UTF-8") from None
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            at = f" at line {where.line + 1}" if where is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"{p}: invalid YAML{at} ({problem}): fix that line") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of sections (task, model, data, train, generate)")
        values = loaded
    values = _merge(values, sections)
    values = _merge(values, parse_overrides(overrides or []))
    cfg = Config()
    _apply(cfg, values)
    _check_ranges(cfg)
    return cfg


# (section.key, lowest allowed, highest allowed): values outside are typos, caught before training
RANGES = [("data.block_size", 8, 1 << 17), ("data.val_fraction", 0, 0.99), ("data.max_documents", 0, None),
          ("train.lr", 1e-12, 10), ("train.batch_size", 1, 1 << 16), ("train.grad_accum", 1, 1 << 16),
          ("train.max_steps", 0, None), ("train.epochs", 1e-6, 1e6), ("train.warmup_steps", 0, None),
          ("train.eval_every", 1, None), ("train.save_every", 1, None), ("train.log_every", 1, None),
          ("train.samples", 0, 64), ("train.sample_max_new_tokens", 1, 4096), ("train.num_workers", 0, 256),
          ("model.lora_r", 1, 4096), ("generate.max_new_tokens", 1, 4096), ("generate.temperature", 0, 10)]


def _check_ranges(cfg: Config) -> None:
    from museforge.tasks import TASKS

    if cfg.task not in TASKS:
        raise ConfigError(f"task: unknown task '{cfg.task}': choose one of {', '.join(TASKS)}")
    if cfg.train.attention not in ("auto", "fp32", "native"):
        raise ConfigError(f"train.attention: choose auto, fp32 or native, got '{cfg.train.attention}'")
    for key, low, high in RANGES:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value < low or (high is not None and value > high):
            span = f"from {low:g} to {high:g}" if high is not None else f">= {low:g}"
            raise ConfigError(f"{key}: must be {span}, got {value}")


def config_from_dict(values: dict[str, Any]) -> Config:
    """Rebuild a Config saved with `Config.save` (ignores nothing: unknown keys are errors)."""
    cfg = Config()
    _apply(cfg, values)
    return cfg
