"""The one generation path: load once, generate many times, stream, seed, record provenance.

    gen = museforge.load_generator("lyrics")              # the default SmolLM2-135M
    print(gen.generate("rain on a city night", seed=1))
    for chunk in gen.stream("a quiet harbour", max_new_tokens=80):
        print(chunk, end="", flush=True)

Sampling keywords follow transformers' names (max_new_tokens, temperature, top_p, top_k,
repetition_penalty, no_repeat_ngram_size, num_return_sequences) plus `seed`; tasks add their
own (style, rhyme, form, key, tempo, ...). Every output records model, adapter, settings and seed.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Generator as Generator_
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from museforge.config import GenerationConfig
from museforge.models import load_model, pick_device
from museforge.tasks import Task, get_task

SAMPLING = tuple(f.name for f in dataclasses.fields(GenerationConfig))
MAX_NEW_TOKENS = 4096


@dataclass
class Output:
    """A generated text with its provenance. `str(output)` is the text."""

    text: str
    task: str
    prompt: str
    provenance: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Line(str):
    """A sampled line that also carries its mean token log-probability (`.logprob`)."""

    logprob: float

    def __new__(cls, text: str, logprob: float) -> Line:
        line = super().__new__(cls, text)
        line.logprob = logprob
        return line


class NewlineStop:
    """Stop each sequence once it has written a newline (a per-row StoppingCriteria)."""

    def __init__(self, tokenizer):
        from museforge.text.constrained import _newline_ids

        self.ids = torch.tensor(_newline_ids(tokenizer)[1])

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.isin(input_ids[:, -1], self.ids.to(input_ids.device))


class Generator:
    """A loaded model + tokenizer for one task. Build with `Generator.load` or pass objects in."""

    def __init__(self, task: str | Task, model, tokenizer, source: dict[str, Any] | None = None,
                 options: dict[str, Any] | None = None):
        self.task = get_task(task) if isinstance(task, str) else task
        self.options = dict(options or {})
        """Task options applied to every call unless overridden (a shipped style sets style=)."""
        self.hf_extra: dict[str, Any] = {}
        """Extra transformers.generate keywords for every call (e.g. synced_gpus under ZeRO-3)."""
        self.model = model
        self.tokenizer = tokenizer
        self.source = source or {"model": getattr(model.config, "_name_or_path", "") or "in-memory", "adapter": None}
        self._lock = threading.Lock()  # one generate at a time per loaded model (Gradio threads)

    @classmethod
    def load(cls, task: str = "lyrics", model: str = "default", style: str = "", dtype: str = "auto",
             device: str | None = None, quantize: str = "") -> Generator:
        """Load a model by name (Hub id, local dir, museforge run dir or "default") for `task`.

        `style` picks a shipped LoRA style adapter (e.g. "hymn") on the default model;
        `quantize="int8"` stores Linear weights as int8 for faster CPU decoding (opt-in: outputs
        change slightly, see museforge.quantize).
        """
        t = get_task(task)
        if style:
            from museforge.styles import style_path

            if model not in ("", "default"):
                raise ValueError("style= selects a shipped adapter on the default model: drop --model, or drop --style")
            model = str(style_path(t.name, style))
        lm, source = load_model(model, t.name, dtype=dtype, device=device)
        if quantize:
            if quantize != "int8":
                raise ValueError(f"quantize='{quantize}': the only option is int8")
            from museforge.quantize import quantize_int8

            lm = quantize_int8(lm)
            source["quantized"] = "int8"
        own = source["adapter"] and any((Path(source["adapter"]) / f).is_file()
                                        for f in ("tokenizer_config.json", "tokenizer.json"))
        tokenizer = t.load_tokenizer(source["adapter"] if own else source["path"])
        if style:
            source["style"] = style
        return cls(t, lm, tokenizer, source, {"style": style} if style and "style" in t.options else None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- public API -------------------------------------------------------------------------
    def settings(self, **kwargs: Any) -> tuple[GenerationConfig, dict[str, Any]]:
        """Split keywords into validated sampling settings and task options."""
        unknown = [k for k in kwargs if k not in SAMPLING and k not in self.task.options]
        if unknown:
            raise TypeError(f"unknown argument '{unknown[0]}' for {self.task.name}; sampling: "
                            f"{', '.join(SAMPLING)}; {self.task.name} options: {', '.join(self.task.options) or 'none'}")
        given = {k: v for k, v in kwargs.items() if k in SAMPLING and v is not None}
        s = GenerationConfig(**{**self.task.defaults, **given})
        if not 1 <= s.max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {s.max_new_tokens}")
        if s.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {s.temperature}")
        if not 0 < s.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {s.top_p}")
        if s.top_k < 0 or s.no_repeat_ngram_size < 0:
            raise ValueError("top_k and no_repeat_ngram_size must be >= 0")
        if s.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0 (1 = off), got {s.repetition_penalty}")
        if not 1 <= s.num_return_sequences <= 64:
            raise ValueError(f"num_return_sequences must be between 1 and 64, got {s.num_return_sequences}")
        if s.seed is None:
            s.seed = random.randrange(2**31)
        options = {**self.options, **{k: v for k, v in kwargs.items() if k in self.task.options and v not in (None, "")}}
        return s, options

    def generate(self, prompt: str = "", **kwargs: Any):
        """Generate from `prompt`. Returns one output, or a list when num_return_sequences > 1."""
        settings, options = self.settings(**kwargs)
        outputs = self.task.generate(self, prompt, settings, **options)
        return outputs[0] if len(outputs) == 1 else outputs

    def stream(self, prompt: str = "", **kwargs: Any) -> Generator_[str, None, Output]:
        """Yield the text piece by piece as it is generated (one sample).

        The finished Output (text, provenance, metadata) is the generator's return value:
        `out = yield from gen.stream(...)`, or StopIteration.value when iterating by hand.
        """
        settings, options = self.settings(**kwargs)
        settings.num_return_sequences = 1
        return (yield from self.task.stream(self, prompt, settings, **options))

    # ---- building blocks for tasks ----------------------------------------------------------
    def eos_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gc_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gc_eos if isinstance(gc_eos, list) else [gc_eos])
        return sorted(i for i in ids if i is not None)

    def hf_kwargs(self, s: GenerationConfig) -> dict[str, Any]:
        """transformers.generate keywords for these settings."""
        kw: dict[str, Any] = {"max_new_tokens": s.max_new_tokens, "do_sample": s.temperature > 0,
                              "repetition_penalty": s.repetition_penalty, "eos_token_id": self.eos_ids(),
                              "pad_token_id": self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids()[0]}
        if s.temperature > 0:
            kw.update(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k or None)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        if s.no_repeat_ngram_size:
            kw["no_repeat_ngram_size"] = s.no_repeat_ngram_size
        return kw

    def complete_ids(self, input_ids: list[int], settings: GenerationConfig, n: int | None = None,
                     seed_offset: int = 0, logprobs: list[float] | None = None, **hf: Any) -> list[list[int]]:
        """Sample `n` continuations of one token sequence; returns the new token ids of each.

        Extra keywords go to transformers' generate (logits_processor, stopping_criteria, streamer).
        Sampling runs under a forked RNG seeded with settings.seed + seed_offset, so the same seed
        gives the same output and the caller's global RNG is untouched. With a `logprobs` list,
        each continuation's mean log-probability under the model (before any steering or
        penalties) is appended to it: a fluency score for reranking.
        """
        n = n or settings.num_return_sequences
        ids = torch.tensor([input_ids] * n, device=self.device)  # n rows: sampled or greedy alike
        kwargs = {**self.hf_kwargs(settings), **self.hf_extra, **hf}
        if logprobs is not None:
            kwargs.update(output_logits=True, return_dict_in_generate=True)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with self._lock, torch.random.fork_rng(devices=devices), torch.inference_mode():
            was_training = self.model.training
            self.model.eval()  # no dropout while generating (a model may arrive in train mode)
            try:
                torch.manual_seed(settings.seed + seed_offset)
                out = self.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
            finally:
                self.model.train(was_training)
        sequences = out.sequences if logprobs is not None else out
        new = sequences[:, ids.shape[1]:]
        eos = set(self.eos_ids())
        results = []
        for row in new.tolist():
            cut = next((i for i, t in enumerate(row) if t in eos), len(row))  # stop at end of document
            results.append(row[:cut])
        if logprobs is not None:
            steps = torch.stack(out.logits, 1).float().log_softmax(-1)  # [n, new, vocab], raw model logits
            chosen = steps.gather(-1, new[:, : steps.shape[1], None]).squeeze(-1)
            for r, row in enumerate(results):
                k = max(1, len(row))
                logprobs.append(chosen[r, :k].mean().item())
        return results

    def complete(self, prefix: str, settings: GenerationConfig, n: int | None = None, **hf: Any) -> list[str]:
        """Sample continuations of a text prefix; returns the decoded new text of each."""
        ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        return [self.tokenizer.decode(r, skip_special_tokens=True) for r in self.complete_ids(ids, settings, n, **hf)]

    def sample_lines(self, prefix: str, n: int, seed: int = 0, max_new_tokens: int = 40, **sampling: Any) -> list[str]:
        """`n` sampled continuations of `prefix`, each cut at its first newline (for line-by-line
        composition). Sampling keywords as in GenerationConfig; logits_processor passes through."""
        processors = sampling.pop("logits_processor", None)
        stop = sampling.pop("stopping_criteria", None) or [NewlineStop(self.tokenizer)]
        settings = GenerationConfig(**{**sampling, "max_new_tokens": max_new_tokens, "seed": seed,
                                       "num_return_sequences": n})
        if settings.temperature <= 0:
            settings.temperature = 0.8  # candidates must differ
        ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        scores: list[float] = []
        rows = self.complete_ids(ids, settings, n, logprobs=scores, stopping_criteria=stop, logits_processor=processors)
        return [Line(self.tokenizer.decode(r, skip_special_tokens=True).split("\n", 1)[0], lp)
                for r, lp in zip(rows, scores, strict=True)]

    def stream_text(self, prefix: str, settings: GenerationConfig, **hf: Any) -> Iterator[str]:
        """Stream one continuation of `prefix` as decoded text chunks.

        Closing the iterator early (a Stop button, a `break`) stops the generation too.
        """
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        error: list[BaseException] = []
        stop = threading.Event()

        def stopped(input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        def work() -> None:
            try:
                self.complete_ids(ids, settings, 1, streamer=streamer, stopping_criteria=[stopped], **hf)
            except BaseException as e:  # surface errors in the caller's thread
                error.append(e)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            yield from (chunk for chunk in streamer if chunk)
        finally:
            stop.set()  # a consumer that stops early ends the generation at the next token
            thread.join()
        if error:
            raise error[0]

    def provenance(self, settings: GenerationConfig, options: dict[str, Any] | None = None) -> dict[str, Any]:
        from museforge import __version__

        return {"model": self.source.get("model"), "adapter": self.source.get("adapter"), "style": self.source.get("style"),
                "quantized": self.source.get("quantized"),
                "checkpoint": self.source.get("adapter") or self.source.get("path"),
                "task": self.task.name, "settings": dataclasses.asdict(settings), "options": dict(options or {}),
                "seed": settings.seed, "device": str(self.device), "dtype": str(next(self.model.parameters()).dtype),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "museforge": __version__}

    def output(self, text: str, prompt: str, settings: GenerationConfig, task: str,
               options: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> Output:
        return Output(text, task, prompt, self.provenance(settings, options), metadata or {})


def load_generator(task: str = "lyrics", model: str = "default", style: str = "", dtype: str = "auto",
                   device: str | None = None, quantize: str = "") -> Generator:
    """Load once, generate many times: `load_generator("poem").generate("the sea", form="haiku")`."""
    return Generator.load(task, model, style, dtype, device or str(pick_device()), quantize)
