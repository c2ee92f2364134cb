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

import contextlib
import dataclasses
import functools
import random
import threading
import time
import typing
from collections.abc import Generator as Generator_
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from museforge import memory
from museforge.config import GenerationConfig
from museforge.errors import UserError
from museforge.models import load_model, pick_device
from museforge.sampling import sampler_for
from museforge.tasks import Task, get_task

SAMPLING = tuple(f.name for f in dataclasses.fields(GenerationConfig))
MAX_NEW_TOKENS = 4096
MAX_TEMPERATURE = 10.0  # 2 is already near-random text; beyond 10 is a typo, not a setting
MAX_SEED = 2**62  # torch seeds are 64-bit; room for the per-sample offsets added to a seed


def check_prompt(task: Task, prompt: Any, image: Any = None) -> None:
    """Text tasks write about a topic or a picture: with neither, the request is a mistake (melody has none)."""
    if task.kind == "text" and image is None and (not isinstance(prompt, str) or not prompt.strip()):
        raise UserError(f"give a prompt: a topic for the {task.name}, e.g. "
                        f"museforge generate {task.name} \"{task.sample_prompts[0]}\"")


def validate(task: Task, kwargs: dict[str, Any], preset: dict[str, Any] | None = None) -> tuple[GenerationConfig, dict[str, Any]]:
    """Sampling settings and task options from keywords, every value checked before any model work."""
    from museforge.config import _coerce

    unknown = [k for k in kwargs if k not in SAMPLING and k not in task.options]
    if unknown:
        raise UserError(f"unknown argument '{unknown[0]}' for {task.name}; sampling: "
                        f"{', '.join(SAMPLING)}; {task.name} options: {', '.join(task.options) or 'none'}")
    hints = typing.get_type_hints(GenerationConfig)
    given = {k: _coerce(v, hints[k], k) for k, v in kwargs.items() if k in SAMPLING and v is not None}
    s = GenerationConfig(**{**task.defaults, **given})
    if not 1 <= s.max_new_tokens <= MAX_NEW_TOKENS:
        raise UserError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {s.max_new_tokens}")
    if not 0 <= s.temperature <= MAX_TEMPERATURE:  # also refuses nan
        raise UserError(f"temperature must be >= 0 (0 = greedy) and at most {MAX_TEMPERATURE:g}, got {s.temperature}")
    if not 0 < s.top_p <= 1:
        raise UserError(f"top_p must be in (0, 1], got {s.top_p}")
    if s.top_k < 0 or s.no_repeat_ngram_size < 0:
        raise UserError("top_k and no_repeat_ngram_size must be >= 0")
    if not 0 < s.repetition_penalty <= MAX_TEMPERATURE:
        raise UserError(f"repetition_penalty must be > 0 (1 = off) and at most {MAX_TEMPERATURE:g}, "
                        f"got {s.repetition_penalty}")
    if not 1 <= s.num_return_sequences <= 64:
        raise UserError(f"num_return_sequences must be between 1 and 64, got {s.num_return_sequences}")
    if s.seed is not None and not 0 <= s.seed < MAX_SEED:
        raise UserError(f"seed must be between 0 and 2**62, got {s.seed}")
    if s.seed is None:
        s.seed = random.randrange(2**31)
    options = {**(preset or {}), **{k: v for k, v in kwargs.items() if k in task.options and v not in (None, "")}}
    task.check(**options)
    return s, options


def check_request(task: str | Task, prompt: Any = "", **kwargs: Any) -> tuple[GenerationConfig, dict[str, Any]]:
    """Validate a whole generate() call without a model: the CLI and API call it before loading one."""
    t = get_task(task) if isinstance(task, str) else task
    check_prompt(t, prompt, kwargs.get("image"))
    return validate(t, kwargs)


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
    """A sampled line that also carries its mean token log-probability (`.logprob`) and the
    log-probability of its last word (`.end_logprob`, summed over that word's tokens: a rhyme
    word forced where it makes no sense scores -8 to -15 there)."""

    logprob: float
    end_logprob: float

    def __new__(cls, text: str, logprob: float, end_logprob: float = 0.0) -> Line:
        line = super().__new__(cls, text)
        line.logprob, line.end_logprob = logprob, end_logprob
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
        self.lookup = self.task.lookup
        """Prompt lookup for greedy decoding at batch 1 (see exact_lookup); on for lyrics and poems."""
        self.exact_sampler = True
        """Sampling on a CPU through museforge.sampling (the same tokens as transformers' own, faster)."""
        self.static_cache = False
        """Opt-in, on a GPU: transformers' static key/value cache, with which it compiles the
        decoding step (torch.compile, CUDA graphs): x5.3-6.4 at batch 1 and 8 on an H100 for a
        fixed prompt (docs/performance.md), other tokens than eager decoding. Off by default:
        each new cache size and batch size compiles again (tens of seconds; sizes are rounded
        up to powers of two, `cache_bucket`, where transformers allows it), and each new thread
        (an app request) records its CUDA graphs again. See static_cache_for."""
        self.model = model
        self.tokenizer = tokenizer
        self.source = source or {"model": getattr(model.config, "_name_or_path", "") or "in-memory", "adapter": None}
        self._lock = _GENERATE_LOCK

    @classmethod
    def load(cls, task: str = "lyrics", model: str = "default", style: str = "", dtype: str = "auto",
             device: str | None = None, quantize: str = "", trust_remote_code: bool = False,
             pack: bool = True) -> Generator:
        """Load a model by name (Hub id, local dir, museforge run dir or "default") for `task`.

        `style` picks a shipped LoRA style adapter (e.g. "hymn") on the default model;
        `quantize="int8"` stores Linear weights as int8 for faster CPU decoding (opt-in: outputs
        change slightly, see museforge.kernels). On CPU in bf16, Linear weights are packed once
        into oneDNN's layout (`pack=True`): identical outputs, faster decoding. `trust_remote_code=True` lets a Hub model run its
        own Python code: only for models you trust (off by default; weights load from safetensors only).
        """
        t = get_task(task)
        if style:
            from museforge.styles import style_path

            if model not in ("", "default"):
                raise UserError("style= selects a shipped adapter on the default model: drop --model, or drop --style")
            model = str(style_path(t.name, style))
        if quantize and quantize != "int8":
            raise UserError(f"quantize='{quantize}': the only option is int8")
        lm, source = load_model(model, t.name, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        source["kernels"] = _speed_up(lm, quantize, pack)
        if quantize:
            source["quantized"] = "int8"
        own = source["adapter"] and any((Path(source["adapter"]) / f).is_file()
                                        for f in ("tokenizer_config.json", "tokenizer.json"))
        tokenizer = t.load_tokenizer(source["adapter"] if own else source["path"], trust_remote_code=trust_remote_code)
        if style:
            source["style"] = style
        return cls(t, lm, tokenizer, source, {"style": style} if style and "style" in t.options else None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_window(self) -> int:
        """Tokens the model can attend to (prompt + generated)."""
        c = self.model.config
        return int(getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None) or 1024)

    # ---- public API -------------------------------------------------------------------------
    def settings(self, **kwargs: Any) -> tuple[GenerationConfig, dict[str, Any]]:
        """Split keywords into validated sampling settings and task options."""
        return validate(self.task, kwargs, self.options)

    def generate(self, prompt: str = "", **kwargs: Any):
        """Generate from `prompt`. Returns one output, or a list when num_return_sequences > 1."""
        check_prompt(self.task, prompt, kwargs.get("image"))
        settings, options = self.settings(**kwargs)
        outputs = self.task.generate(self, prompt, settings, **options)
        return outputs[0] if len(outputs) == 1 else outputs

    def stream(self, prompt: str = "", **kwargs: Any) -> Generator_[str, None, Output]:
        """Yield the text piece by piece as it is generated (one sample).

        The finished Output (text, provenance, metadata) is the generator's return value:
        `out = yield from gen.stream(...)`, or StopIteration.value when iterating by hand.
        """
        check_prompt(self.task, prompt, kwargs.get("image"))
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

    def exact_lookup(self, hf: dict[str, Any]) -> bool:
        """Whether to use prompt-lookup decoding for this greedy call (`gen.lookup`: on by default
        for tasks whose texts repeat lines, lyrics and poems; stories lost 5-14% with it:
        benchmarks/results/lookup.json).

        Prompt lookup proposes the tokens that followed the last two tokens' earlier occurrence (a
        repeated line, a chorus) and checks them all in one forward. The lean forward scores
        them exactly as one by one (products whose rows depend on how many are computed at once take
        them one at a time: museforge.decode), so greedy tokens are unchanged; transformers applies a
        repetition penalty and n-gram blocking differently to proposed tokens, so with those, and
        with logits processors of the caller's own, it stays off; and it checks its own stopping criteria only after a whole chunk
        (a stop at a newline would let the rest of the chunk through), so those keep it off too,
        except a user's Stop (marked `lookup_safe`)."""
        stops = hf.get("stopping_criteria") or []
        return (self.lookup and getattr(self.model.forward, "lean", None) is not None and not hf.get("do_sample")
                and hf.get("repetition_penalty", 1.0) in (None, 1.0) and not hf.get("no_repeat_ngram_size")
                and not hf.get("logits_processor") and not hf.get("num_beams", 1) > 1
                and all(getattr(stop, "lookup_safe", False) for stop in stops))

    def static_cache_for(self, hf: dict[str, Any]) -> bool:
        """Whether to decode this call with a static cache (`gen.static_cache`, opt-in): on a GPU with
        Triton (where transformers then compiles the step), for models transformers can compile (not a
        quantization it cannot), unless the call or the model's generation config chose a cache, beams
        reorder it, assisted decoding needs one it can crop, or weights are sharded (ZeRO-3)."""
        quantizer = getattr(self.model, "hf_quantizer", None)
        return (self.static_cache and self.device.type == "cuda" and _has_triton()
                and getattr(self.model, "_can_compile_fullgraph", False)
                and (quantizer is None or getattr(quantizer, "is_compileable", False))
                and self._own_cache(hf) and not self._setting(hf, "disable_compile"))

    def _setting(self, hf: dict[str, Any], name: str) -> Any:
        """A generate setting as this call resolves it: the call's keyword, else the model's generation config."""
        return hf[name] if name in hf else getattr(getattr(self.model, "generation_config", None), name, None)

    def _own_cache(self, hf: dict[str, Any]) -> bool:
        """Whether generate builds its own key/value cache for this call and keeps its rows in order:
        no cache given or chosen (by the call or the model's generation config), caching on, one
        beam (beams reorder it), no prompt lookup or assistant (they crop it), no ZeRO-3 (whose
        forward passes every rank makes together)."""
        chosen = ("cache_implementation", "prompt_lookup_num_tokens", "assistant_model", "synced_gpus", "cache",
                  "past_key_values")
        return (not any(self._setting(hf, k) for k in chosen) and self._setting(hf, "use_cache") is not False
                and (self._setting(hf, "num_beams") or 1) == 1)

    def complete_ids(self, input_ids: list[int], settings: GenerationConfig, n: int | None = None,
                     seed_offset: int = 0, logprobs: list[float] | None = None,
                     token_logprobs: list[list[float]] | None = None, shared_prefix: bool = False,
                     **hf: Any) -> list[list[int]]:
        """Sample `n` continuations of one token sequence; returns the new token ids of each.

        Extra keywords go to transformers' generate (logits_processor, stopping_criteria, streamer).
        Sampling draws from a generator seeded with settings.seed + seed_offset, so the same seed
        gives the same output and the caller's global RNG is left as it was: museforge's draw (CPU)
        from one of its own; transformers' (a GPU, other warpers) from the global ones of the
        model's device, seeded and put back after the call (another thread drawing from them
        meanwhile, a fine-tune's dropout, would see its numbers reseeded and rewound). A logits
        processor of the caller's that draws random numbers is not seeded on museforge's path. With a `logprobs` list,
        each continuation's mean log-probability under the model (before any steering or
        penalties) is appended to it: a fluency score for reranking; with a `token_logprobs` list
        (and `logprobs`), each continuation's per-token log-probabilities too.

        With `shared_prefix`, the n rows' common prompt is computed once, at batch 1, and its
        key/value cache repeated for every row (`shared_prefix_applies`), instead of n times:
        for candidates drawn from one prefix (line-by-line composition), where the prompt is most
        of the work. The rows are then not token for token those of transformers' own batch of n
        (a product over other row counts may round differently, and the lean forward groups query
        heads in attention, see museforge.decode), but as reproducible.
        """
        n = n or settings.num_return_sequences
        # A prompt is a topic, not a document: one that fills the context is refused, not cut (cutting
        # from the left would drop the instruction and the model would write something else). The
        # output is capped to the room the prompt leaves: the model cannot see further anyway.
        window = self.context_window
        if len(input_ids) >= window:
            raise UserError(f"the prompt is {len(input_ids)} tokens, as long as the model's whole context of "
                            f"{window} tokens: shorten the prompt")
        ids = torch.tensor([input_ids] * n, device=self.device)  # n rows: sampled or greedy alike
        kwargs = {**self.hf_kwargs(settings), **self.hf_extra, **hf}
        kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], window - len(input_ids))
        if logprobs is not None:
            kwargs.update(output_logits=True, return_dict_in_generate=True)
        elif n == 1 and "prompt_lookup_num_tokens" not in hf and self.exact_lookup(kwargs):
            kwargs["prompt_lookup_num_tokens"] = LOOKUP_TOKENS
        if self.static_cache_for(kwargs):
            kwargs["cache_implementation"] = "static"
            if _sizes_static_cache():  # few sizes, few compiles: a song's prompt grows every line
                kwargs.setdefault("max_cache_len", cache_bucket(len(input_ids) + kwargs["max_new_tokens"], window))
        if self.device.type == "cpu":
            memory.settle_malloc()  # each token's few-MB tensors reused, not faulted in afresh
        seed = settings.seed + seed_offset
        sampler = sampler_for(kwargs, self.model) if self.exact_sampler else None
        if sampler is not None:  # generate runs greedily over the sampler's choice
            from transformers import LogitsProcessorList

            # a generator of its own, seeded as torch.manual_seed would seed the global one: the same
            # numbers, and a fine-tune in another thread keeps drawing its dropout undisturbed
            sampler.generator = torch.Generator().manual_seed(seed)
            kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None,
                          logits_processor=LogitsProcessorList([*(kwargs.get("logits_processor") or []), sampler]))
        # transformers' own sampling draws from the global generator: seeded, and put back after
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        global_rng = torch.random.fork_rng(devices=devices) if kwargs.get("do_sample") else contextlib.nullcontext()
        with self._lock, global_rng, torch.inference_mode():
            was_training = self.model.training
            self.model.eval()  # no dropout while generating (a model may arrive in train mode)
            try:
                if kwargs.get("do_sample"):  # only the generators this call draws from (forked above)
                    torch.default_generator.manual_seed(seed)
                    if devices:
                        torch.cuda.default_generators[devices[0]].manual_seed(seed)
                if shared_prefix and self.shared_prefix_applies(input_ids, n, kwargs):
                    kwargs.update(self._prefix_cache(input_ids[:-1], n))
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
                if token_logprobs is not None:
                    token_logprobs.append(chosen[r, :k].tolist())
        return results

    def shared_prefix_applies(self, input_ids: list[int], n: int, hf: dict[str, Any]) -> bool:
        """Whether `complete_ids` can compute a prompt once for its n rows: several rows, a prompt
        of 2+ tokens, a decoder-only model that generate gives a dynamic cache, and a call in which
        generate builds its own (`_own_cache`) and keeps one sequence per prompt row."""
        model = self.model
        if n < 2 or len(input_ids) < 2 or getattr(model.config, "is_encoder_decoder", False):
            return False
        supports = getattr(model, "_supports_default_dynamic_cache", None)
        if supports is not None and not supports():
            return False
        return self._own_cache(hf) and (self._setting(hf, "num_return_sequences") or 1) == 1

    def _prefix_cache(self, ids: list[int], n: int) -> dict[str, Any]:
        """The key/value cache of `ids` computed once and repeated for n rows (see complete_ids),
        as generate's keyword for it in this transformers."""
        from transformers import DynamicCache

        from museforge.decode import CACHE_ARG, GROUPED

        cache = DynamicCache(config=self.model.config)
        only_cache = {"logits_to_keep": 1} if self.model._supports_logits_to_keep() else {}  # the cache is what counts
        self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True, **only_cache, **{CACHE_ARG: cache})
        cache.batch_repeat_interleave(n)
        setattr(cache, GROUPED, True)  # its rows are not transformers' own anyway: the faster attention
        return {CACHE_ARG: cache}

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
        per_token: list[list[float]] = []
        rows = self.complete_ids(ids, settings, n, logprobs=scores, token_logprobs=per_token, shared_prefix=True,
                                 stopping_criteria=stop, logits_processor=processors)
        return [Line(self.tokenizer.decode(r, skip_special_tokens=True).split("\n", 1)[0], lp, self._end_logprob(r, tl))
                for r, lp, tl in zip(rows, scores, per_token, strict=True)]

    def _end_logprob(self, row: list[int], logprobs: list[float]) -> float:
        """The summed log-probability of the tokens that spell the last word of a sampled line
        (before its first newline and any trailing punctuation); NO_WORD for a line without one.
        Found on the decoded text, so any tokenizer works (byte-level BPE, SentencePiece)."""
        from museforge.text.prosody import last_word_span  # (only composition samples lines)

        def decode(ids: list[int]) -> str:
            return self.tokenizer.decode(ids, skip_special_tokens=True)

        start, end = last_word_span(decode(row).split("\n", 1)[0])
        if end <= start:
            return NO_WORD
        total, before = 0.0, 0
        for i in range(len(row)):  # token i spells characters [before, after) of the decoded text
            after = len(decode(row[: i + 1]))
            if after > start and before < end:
                total += logprobs[i]
            if after >= end:
                break
            before = after
        return total

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

        stopped.lookup_safe = True  # type: ignore[attr-defined]  # a Stop may come a few tokens late: fine

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
                "quantized": self.source.get("quantized"), "kernels": self.source.get("kernels"),
                "checkpoint": self.source.get("adapter") or self.source.get("path"),
                "task": self.task.name, "settings": dataclasses.asdict(settings), "options": dict(options or {}),
                "seed": settings.seed, "device": str(self.device), "dtype": str(next(self.model.parameters()).dtype),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "museforge": __version__}

    def output(self, text: str, prompt: str, settings: GenerationConfig, task: str,
               options: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> Output:
        return Output(text, task, prompt, self.provenance(settings, options), metadata or {})


def _has_triton() -> bool:
    """Whether torch.compile can build kernels for this GPU (Triton installed and the device
    supported; without it, generate would fail)."""
    try:
        from torch.utils._triton import has_triton
    except ImportError:
        return False
    return has_triton()


@functools.cache
def _sizes_static_cache() -> bool:
    """Whether this transformers lets generate size a static cache (`max_cache_len`, 5.x)."""
    import transformers

    return hasattr(transformers.GenerationConfig(), "max_cache_len")


def cache_bucket(tokens: int, window: int) -> int:
    """The static cache size for `tokens` (prompt + new): the next power of two from 256, at most
    the model's context window. transformers compiles the decoding step once per size."""
    return min(window, max(256, 1 << (tokens - 1).bit_length()))


# One generate at a time in the process (app requests run in threads): transformers' sampling seeds
# and draws from torch's global generators, so two at once would take each other's numbers and a seed
# would no longer give its text; several Generators also share one model (the app wraps a lyrics model
# for poems). Re-entrant: a caller's logits processor may itself generate.
_GENERATE_LOCK = threading.RLock()

NO_WORD = -30.0  # the "last word" log-probability of a line that has none: ranked below any real ending

LOOKUP_TOKENS = 3  # prompt-lookup tokens proposed per step (greedy, batch 1; see Generator.exact_lookup)


def _speed_up(lm: Any, quantize: str, pack: bool) -> str | None:
    """Faster CPU decoding, in place: which kernels now compute the model (None: its own).

    Packed bf16 weights and the lean Llama forward give bit-identical logits (checked on the
    model); int8 weights change them slightly and are opt-in. See museforge.kernels and
    museforge.decode."""
    from museforge.decode import lean_decoding
    from museforge.kernels import (
        Int8Linear,
        PackedLinear,
        can_pack,
        mark_int8,
        pack_linears,
        quantize_int8,
    )

    if quantize:
        if next(lm.parameters()).device.type == "cpu" and lean_decoding(lm.to(torch.bfloat16), Int8Linear,
                                                                         exact=False):
            mark_int8(lm)
            return "int8+lean-llama"
        quantize_int8(lm)
        return None
    if pack and can_pack(lm) and lean_decoding(lm, PackedLinear):
        return "onednn-packed-bf16+lean-llama"
    if pack and pack_linears(lm):  # same outputs, ~2x faster matrix-vector products on CPU
        return "onednn-packed-bf16"
    return None


def load_generator(task: str = "lyrics", model: str = "default", style: str = "", dtype: str = "auto",
                   device: str | None = None, quantize: str = "", trust_remote_code: bool = False,
                   pack: bool = True) -> Generator:
    """Load once, generate many times: `load_generator("poem").generate("the sea", form="haiku")`."""
    return Generator.load(task, model, style, dtype, device or str(pick_device()), quantize, trust_remote_code, pack)
