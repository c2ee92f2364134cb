"""The one training loop, for every task (text and melody alike are causal-LM training).

    museforge train configs/tiny.yaml data.path=data/lyrics.txt
    accelerate launch --num_processes 2 -m museforge train configs/lyrics.yaml   # data parallel

Flow: config -> task.build_datasets (token documents) -> pack into blocks -> accelerate loop
(LoRA or full, bf16 autocast, grad accumulation, warm-up + cosine) -> eval / samples / atomic
checkpoints -> the run directory: a plain Hugging Face model (or peft adapter) directory plus
museforge.json (task, base model, config, data hashes, metrics, versions).

Global batch = batch_size * grad_accum * processes; e.g. 8 * 1 * 1 * 256 tokens = 2,048 tokens/step.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from museforge.config import Config, load_config
from museforge.cpu_training import applies, faster_in_fp32, use_fast_dropout, use_fp32_attention
from museforge.data import file_hashes, pack
from museforge.memory import keep_freed_memory
from museforge.models import resolve
from museforge.tasks import get_task

STATE_FILE = "trainer_state.json"


class RunDirError(OSError):
    """The run directory cannot take the run: not writable, too little space, or a write failed."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training after a complete step; a checkpoint was saved first."""

    def __init__(self, run: Path, checkpoint: Path, step: int, main: bool = True):
        self.run, self.checkpoint, self.step, self.main = run, checkpoint, step, main  # main: the rank that reports
        super().__init__(f"interrupted at step {step}; checkpoint saved to {checkpoint}; "
                         f"resume with train.resume=true train.out_dir={run}")


class _CtrlC:
    """While the loop runs, the first SIGINT asks it to stop after the current step and save;
    a second one (or one outside the loop) interrupts at once. Checkpoints are written atomically,
    so an immediate interrupt leaves the previous ones intact. Signal handlers belong to the main
    thread: elsewhere (the app's Fine-tune tab) this does nothing.

    Several processes: a launcher (torchrun, accelerate launch) forwards Ctrl-C to every rank, which
    then sees it twice; the later ones are ignored (one rank quitting alone would leave the others
    waiting in a collective), and the launcher's own timeout (torchrun: 30 s, then SIGKILL) is the
    hard stop."""

    def __init__(self) -> None:
        self.armed = self.requested = self.distributed = self.quiet = False
        self.previous: Any = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.armed or (self.requested and not self.distributed):
            raise KeyboardInterrupt
        if self.requested:
            return
        self.requested = True
        if not self.quiet:
            again = "" if self.distributed else " (Ctrl-C again to quit at once)"
            print(f"\nmuseforge: stopping after this step to save a checkpoint{again}", file=sys.stderr, flush=True)


def collate(blocks: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Stack packed blocks; labels ignore padding; a block-diagonal causal mask stops attention
    across document boundaries (each position sees only earlier tokens of its own document)."""
    ids = torch.tensor([b["input_ids"] for b in blocks])
    docs = torch.tensor([b["doc_ids"] for b in blocks])
    labels = ids.masked_fill(docs < 0, -100)
    n = ids.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    same_doc = docs[:, :, None] == docs[:, None, :]
    mask = (causal & same_doc) | torch.eye(n, dtype=torch.bool)  # padding attends to itself only
    # position ids restart at each document so a packed block looks like separate documents
    starts = torch.zeros_like(docs, dtype=torch.bool)
    starts[:, 1:] = docs[:, 1:] != docs[:, :-1]
    starts[:, 0] = True
    idx = torch.arange(n).expand_as(docs)
    last_start = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), dim=1).values
    # additive float mask: sdpa and eager attention both honour it (eager ignores a bool one)
    additive = torch.zeros(mask.shape).masked_fill_(~mask, torch.finfo(torch.float32).min)
    return {"input_ids": ids, "labels": labels, "attention_mask": additive[:, None, :, :],
            "position_ids": idx - last_start}


def adamw(params: list[torch.nn.Parameter], t: Any) -> torch.optim.AdamW:
    """AdamW, fused into one kernel where torch has it for these parameters (CPU and CUDA floats,
    torch >= 2.4): one pass over weights, gradients and moments instead of a dozen. For a full
    fine-tune of the 135M model at 8 x 128 that was 231 against 276 tokens/s here."""
    try:
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)


def _precision(requested: str) -> str:
    from museforge.models import cpu_supports_bf16

    if requested != "auto":
        return {"bf16": "bf16", "fp16": "fp16", "no": "no", "fp32": "no"}.get(requested) or _bad_precision(requested)
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "no"


def _bad_precision(value: str) -> str:
    raise ValueError(f"train.precision='{value}': use auto, bf16, fp16 or no")


def _build_model(cfg: Config, task, tokenizer):
    """A pretrained model (optionally wrapped in LoRA), or a fresh one from `model.scratch`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from museforge.models import load_model, run_info

    info: dict[str, Any] = {}
    if cfg.model.scratch:
        fields = dict(cfg.model.scratch)
        model_type = fields.pop("model_type", "gpt2")
        mconf = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **task.special_ids(tokenizer), **fields)
        model = AutoModelForCausalLM.from_config(mconf)
        info["base_model"] = f"scratch:{model_type}"
    else:
        model, source = load_model(cfg.model.name, task.name, trainable=True, trust_remote_code=cfg.model.trust_remote_code)
        info["base_model"] = run_info(source["path"]).get("base_model", cfg.model.name)
        if source["adapter"]:
            info["init_adapter"] = source["adapter"]
    return model, info


def _attention(model, accelerator, batch: int, block: int, precision: str, setting: str,
               earlier: str | None = None) -> str:
    """The attention precision of this run ("fp32" or `precision`) per `train.attention`: with
    auto, fp32 where this CPU computes it faster than the autocast dtype at this batch and block
    (museforge.cpu_training; rank 0 measures for every process); a resumed run keeps the one it
    started with (`earlier`)."""
    from accelerate.utils import broadcast_object_list

    if precision == "no" or accelerator.device.type != "cpu" or not applies(model):  # (the model is not moved yet)
        return precision
    if earlier or setting != "auto":
        fp32 = (earlier or setting) == "fp32"
    else:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        choice = [faster_in_fp32(model, batch, block, dtype) if accelerator.is_main_process else None]
        if accelerator.num_processes > 1:
            broadcast_object_list(choice)
        fp32 = choice[0]
    if not fp32:
        return precision
    use_fp32_attention(model)
    if accelerator.is_main_process:
        why = ("as when the run started" if earlier else "train.attention=fp32" if setting == "fp32"
               else f"faster than {precision} on this CPU at {batch} x {block}")
        print(f"museforge: attention in fp32 ({why})", flush=True)
    return "fp32"


def _wrap_lora(cfg: Config, model):
    from peft import LoraConfig, PeftModel, get_peft_model

    if not cfg.model.lora or cfg.model.scratch or isinstance(model, PeftModel):
        return model
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in cfg.model.lora_targets if t not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)} | {"c_attn", "c_proj"} & names)
        raise ValueError(f"model.lora_targets: this model has no module '{missing[0]}'; candidates: {', '.join(linear)}")
    lora = LoraConfig(r=cfg.model.lora_r, lora_alpha=cfg.model.lora_alpha, lora_dropout=cfg.model.lora_dropout,
                      target_modules=cfg.model.lora_targets, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e7 else f"{n / 1e6:,.0f} MB"


def _write_error(e: Exception, final: Path, tmp: Path, need: int) -> RunDirError | None:
    """After a failed write: remove the half-written dir, and name the cause when it is the disk.
    A full disk surfaces as OSError, or from torch.save / safetensors as RuntimeError or
    SafetensorError: anything raised while the disk holds less than `need` counts as full."""
    free = shutil.disk_usage(tmp.parent).free
    shutil.rmtree(tmp, ignore_errors=True)
    if not isinstance(e, OSError) and free >= need:
        return None  # not the disk: re-raised as it is
    reason = e.strerror if isinstance(e, OSError) and e.strerror else (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    return RunDirError(f"could not write {final}: {reason} ({_mb(free)} free on that disk, about {_mb(need)} "
                       f"needed); free space, then resume with train.resume=true")


def _atomic_dir(final: Path, write, need: int = 0) -> None:
    """Write a directory via a temporary sibling and a rename: readers never see half of it.
    A failed write (disk full) removes the temporary dir and leaves `final` as it was."""
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
    except Exception as e:
        error = _write_error(e, final, tmp, need)
        if error is None:
            raise
        raise error from e
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _tidy(out: Path) -> None:
    """Undo what a killed run left half done: drop half-written dirs (*.tmp), and finish a swap
    of _atomic_dir that stopped between its two renames (*.old is the only copy left)."""
    for parent in (out, out / "checkpoints"):
        for tmp in parent.glob("*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
        for old in parent.glob("*.old"):
            if old.with_suffix("").exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.rename(old.with_suffix(""))


def _check_run_dir(out: Path, need: int) -> None:
    """Fail before training, not at the first checkpoint: the run dir (or the nearest existing
    parent, when it is still to be made) must take a file, and its disk must hold `need` bytes.
    Nothing is left behind: the probe file is removed and no directory is created here."""
    where = out
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise RunDirError(f"train.out_dir={out}: {where} is not a directory")
    probe = where / f".museforge-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"museforge")
    except OSError as e:
        raise RunDirError(f"train.out_dir={out}: cannot write to {where} ({e.strerror or e}); "
                          f"choose a writable train.out_dir or fix its permissions") from None
    finally:
        probe.unlink(missing_ok=True)
    free = shutil.disk_usage(where).free
    if free < need:
        raise RunDirError(f"train.out_dir={out}: {_mb(free)} free on that disk, but a checkpoint plus the exported "
                          f"model need about {_mb(need)}; free space or choose another train.out_dir")


def _versions() -> dict[str, str]:
    import accelerate
    import peft
    import transformers

    from museforge import __version__

    return {"museforge": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "accelerate": accelerate.__version__, "python": platform.python_version()}


def _out_dir(cfg: Config) -> Path:
    return Path(cfg.train.out_dir.format(task=cfg.task, time=time.strftime("%Y%m%d-%H%M%S")))


def train(config: Config | str | Path, overrides: list[str] | None = None, model=None, tokenizer=None,
          callback=None) -> Path:
    """Train (or fine-tune) per `config`; returns the run directory.

    `model` and `tokenizer` may be passed in (tests pass tiny ones); otherwise they come from
    config.model. `callback(event: dict)` receives progress events (the Gradio app draws them).
    Ctrl-C (SIGINT, main thread) finishes the current step, saves a checkpoint and raises
    TrainingInterrupted (a KeyboardInterrupt); train.resume=true continues from there.
    Raises RunDirError when the run dir is not writable or its disk is too full.
    """
    attn = getattr(getattr(model, "config", None), "_attn_implementation", None)
    # on CPU, a step's big freed blocks stay in the process for the next (museforge.memory)
    keep = keep_freed_memory() if not torch.cuda.is_available() else contextlib.nullcontext()
    try:
        with keep, _CtrlC() as ctrl_c:
            return _train(config, overrides, model, tokenizer, callback, ctrl_c)
    finally:  # a model passed in gets its own attention back (training may have switched it to fp32)
        if attn and model.config._attn_implementation != attn:
            model.set_attn_implementation(attn)


def _train(config: Config | str | Path, overrides: list[str] | None, model, tokenizer, callback,
           ctrl_c: _CtrlC) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    task = get_task(cfg.task)
    if task.kind == "text" and cfg.data.path:
        from museforge.data import check_documents

        check_documents(cfg.data.path, cfg.data.text_field)  # a bad data file fails now, not after the model loads
    t = cfg.train
    precision = _precision(t.precision)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps one global state per process; a second run in the same process (the
        # app's Fine-tune tab, a notebook) with another precision would be refused without this.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    # cpu=True on CPU: without it every CPU process trains alone instead of data-parallel.
    # step_scheduler_with_optimizer=False: max_steps counts global optimizer steps, so the
    # schedule advances once per step whatever the process count (accelerate's default would
    # advance it num_processes times and make 2 processes diverge from 1).
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision,
                              gradient_accumulation_steps=t.grad_accum, step_scheduler_with_optimizer=False)
    main = accelerator.is_main_process
    set_seed(t.seed)

    # The run directory: fixed by the main process, shared with the others through the env.
    out = Path(os.environ.get("MUSEFORGE_RUN_DIR") or _out_dir(cfg))
    if t.resume and "{time}" in t.out_dir:
        raise ValueError("train.resume=true needs the run directory: set train.out_dir=<the run dir to resume>")
    if accelerator.num_processes > 1 and "{time}" in t.out_dir and "MUSEFORGE_RUN_DIR" not in os.environ:
        raise ValueError("with several processes set train.out_dir to a fixed path (no {time}) so every rank agrees")
    ckpt_root = out / "checkpoints"
    if main:
        # step-NNNNNN dirs are complete: they are written as step-NNNNNN.tmp and renamed last
        if t.resume and not sorted(ckpt_root.glob("step-*[0-9]")):
            raise ValueError(f"train.resume=true but {ckpt_root} holds no checkpoint")
        if not t.resume and sorted(ckpt_root.glob("step-*[0-9]")):
            raise ValueError(f"{out} already holds checkpoints: pass train.resume=true to continue, or another train.out_dir")
        _check_run_dir(out, need=0)  # writable? (before loading the model; free space is checked once it is known)
    accelerator.wait_for_everyone()

    # Model and data
    if tokenizer is None:
        tokenizer = (task.new_tokenizer(cfg.model.name) if cfg.model.scratch else task.load_tokenizer(
            resolve(cfg.model.name, task.name), trust_remote_code=cfg.model.trust_remote_code))
    if model is None:
        model, model_info = _build_model(cfg, task, tokenizer)
    else:
        model_info = {"base_model": getattr(model.config, "_name_or_path", "") or "in-memory"}
    if t.gradient_checkpointing:
        if not model.supports_gradient_checkpointing:
            raise ValueError(f"train.gradient_checkpointing: {type(model).__name__} does not support it; set it to false")
        # non-reentrant: works with frozen inputs (LoRA) and needs no enable_input_require_grads
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    # the checkpoint a resumed run continues from; the run keeps the attention precision it started
    # with, so it ends with the same weights (checkpoints from before museforge chose it ran the
    # autocast dtype's kernel)
    found = sorted(ckpt_root.glob("step-*[0-9]")) if t.resume else []
    resume_from = found[-1] if found else None
    resumed = json.loads((resume_from / STATE_FILE).read_text()) if resume_from else None
    earlier = resumed.get("attention", precision) if resumed else None
    attention = _attention(model, accelerator, t.batch_size, cfg.data.block_size, precision, t.attention, earlier)
    model = _wrap_lora(cfg, model)
    if accelerator.device.type == "cpu":
        use_fast_dropout(model)  # torch's CPU dropout draws its masks element by element (museforge.cpu_training)
    if precision == "bf16" and any(not p.requires_grad for p in model.parameters()):
        # LoRA: the frozen base weights never change, so keep them in bf16. Autocast would
        # otherwise re-cast every fp32 weight to bf16 on every forward pass (and hold both).
        for p in model.parameters():
            if not p.requires_grad and p.dtype == torch.float32:
                p.data = p.data.to(torch.bfloat16)
    with accelerator.main_process_first():
        train_docs, val_docs, data_info = task.build_datasets(cfg.data, tokenizer)
    special = task.special_ids(tokenizer)
    train_blocks = pack(train_docs, cfg.data.block_size, special["pad_token_id"])
    val_blocks = pack(val_docs, cfg.data.block_size, special["pad_token_id"])
    if not train_blocks:
        raise ValueError(f"{cfg.data.path}: no training tokens after tokenization")

    global_batch = t.batch_size * accelerator.num_processes
    steps_per_epoch = max(1, len(train_blocks) // global_batch // t.grad_accum)
    max_steps = t.max_steps or max(1, math.ceil(steps_per_epoch * t.epochs))
    trainable = [p for p in model.parameters() if p.requires_grad]
    # one checkpoint = every weight + AdamW's two moments per trainable weight; plus the export
    need = sum(p.numel() * p.element_size() for p in model.parameters()) + 3 * sum(
        p.numel() * p.element_size() for p in trainable)
    if main:
        _check_run_dir(out, need)
        out.mkdir(parents=True, exist_ok=True)
        _tidy(out)
    accelerator.wait_for_everyone()
    optimizer = adamw(trainable, t)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(optimizer, min(t.warmup_steps, max_steps // 2),
                                                            max_steps, min_lr_rate=t.min_lr_ratio)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    # The loss chunk by chunk through the output head, never all logits at once (museforge.loss):
    # ~1 GB less at the peak of a step. Sharded setups (FSDP, ZeRO-3) keep the model's own loss,
    # since the head's weight exists whole only inside the wrapped forward pass.
    from accelerate.utils import DistributedType

    from museforge.loss import fused_head, lm_loss, lm_token_nll

    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    head = None if sharded else fused_head(accelerator.unwrap_model(model))
    val_loader = accelerator.prepare(DataLoader(val_blocks, batch_size=t.batch_size, collate_fn=collate)) if val_blocks else None

    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_loss": None, "best_step": None,
                             "bad_evals": 0, "tokens": 0, "history": [], "attention": attention}
    if resume_from:
        accelerator.load_state(str(resume_from))  # model, optimizer, scheduler, RNG states
        state = resumed
        state.setdefault("attention", attention)
        if main:
            print(f"museforge: resuming from {resume_from} (step {state['step']})", flush=True)

    meta = {"task": task.name, **model_info, "lora": bool(cfg.model.lora and not cfg.model.scratch),
            "config": cfg.to_dict(), "data": {**data_info, "blocks": {"train": len(train_blocks), "validation": len(val_blocks)}},
            "processes": accelerator.num_processes, "precision": precision, "attention": attention, "versions": _versions()}
    if cfg.data.path and Path(cfg.data.path).exists():
        meta["data"]["files"] = file_hashes(cfg.data.path)

    def evaluate() -> float | None:
        if val_loader is None:
            return None
        model.eval()
        total, count = torch.zeros((), device=accelerator.device), torch.zeros((), device=accelerator.device)
        with torch.no_grad():
            for i, batch in enumerate(val_loader):
                if t.eval_batches and i >= t.eval_batches:
                    break
                labels = batch["labels"][:, 1:]
                with accelerator.autocast():  # chunked as in training when the head allows it
                    nll = lm_token_nll(model, batch, head).sum(1)
                # per-sequence sums, gathered without the padding samples accelerate adds to
                # even out the last batch across processes
                nll, n = accelerator.gather_for_metrics((nll, (labels != -100).sum(1)))
                total += nll.sum()
                count += n.sum()
        model.train()
        return (total / count).item() if count > 0 else None

    def export(target: Path) -> None:
        """The loadable artefact: HF model or peft adapter dir + tokenizer + museforge.json.

        Every rank calls this: under FSDP / DeepSpeed ZeRO-3 gathering the full state dict is a
        collective; only the main process writes."""
        state_dict = accelerator.get_state_dict(model)
        if not main:
            return
        unwrapped = accelerator.unwrap_model(model)

        def write(tmp: Path) -> None:
            unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(tmp) if hasattr(tokenizer, "save_pretrained") else task.save_tokenizer(tokenizer, tmp)
            cfg.save(tmp / "config.yaml")
            (tmp / "museforge.json").write_text(json.dumps({**meta, "metrics": metrics_summary()}, indent=2))

        _atomic_dir(target, write, need)

    def metrics_summary() -> dict[str, Any]:
        evals = [h for h in state["history"] if "val_loss" in h]
        last = evals[-1] if evals else {}
        summary = {"step": state["step"], "tokens": state["tokens"], "best_val_loss": state["best_loss"],
                   "best_step": state["best_step"], "last_val_loss": last.get("val_loss")}
        if state["best_loss"] is not None:
            summary["best_val_perplexity"] = math.exp(min(state["best_loss"], 50))
        if state.get("base_val_loss") is not None:
            summary["start_val_loss"] = state["base_val_loss"]
            summary["start_val_perplexity"] = math.exp(min(state["base_val_loss"], 50))
        if state.get("samples"):
            summary["sample_metrics"] = state["samples"]
        return summary

    def save_checkpoint() -> Path:
        final = ckpt_root / f"step-{state['step']:06d}"
        tmp = final.with_name(final.name + ".tmp")
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        try:
            accelerator.save_state(str(tmp))  # every rank: RNG states are per process
            accelerator.wait_for_everyone()
            if main:
                (tmp / STATE_FILE).write_text(json.dumps(state))
                cfg.save(tmp / "config.yaml")  # the resolved config beside every checkpoint
        except Exception as e:  # disk full: the half-written dir goes, the earlier checkpoints stay
            error = _write_error(e, final, tmp, need)
            if error is None:
                raise
            kept = sorted(ckpt_root.glob("step-*[0-9]"))
            raise RunDirError(f"{error}; {f'{kept[-1].name} is kept' if kept else 'no checkpoint was saved yet'}") from e
        if main:
            tmp.rename(final)  # the commit point: a step-NNNNNN dir is always complete
            for old in sorted(ckpt_root.glob("step-*[0-9]"))[:-2]:  # keep the last two
                doomed = old.with_name(old.name + ".tmp")  # renamed first: never a half-deleted step dir
                old.rename(doomed)
                shutil.rmtree(doomed, ignore_errors=True)
        accelerator.wait_for_everyone()
        return final

    ds = accelerator.state.deepspeed_plugin
    zero3 = bool(ds and ds.zero_stage == 3)

    def write_samples() -> None:
        # Under ZeRO-3 the weights are sharded: every rank must take part in generate()
        # (synced_gpus); otherwise only the main process samples.
        if not task.sample_prompts or not t.samples or not (main or zero3):
            return
        from museforge.generation import Generator

        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        gen = Generator(task, unwrapped, tokenizer, {"model": meta["base_model"], "adapter": str(out)})
        if zero3:
            gen.hf_extra["synced_gpus"] = True
        outputs = []
        with accelerator.autocast():
            for i, prompt in enumerate((task.sample_prompts * t.samples)[: t.samples]):
                outputs += gen.task.generate(gen, prompt, gen.settings(max_new_tokens=t.sample_max_new_tokens, seed=i)[0])
        unwrapped.train()
        if not main:
            return
        (out / "samples").mkdir(exist_ok=True)
        with (out / "samples" / f"step-{state['step']:06d}.txt").open("w") as f:
            for o in outputs:
                f.write(f"### {o.prompt}\n{o}\n\n")
        state["samples"] = {"step": state["step"], **task.sample_metrics(outputs)}
        if callback:
            callback({"event": "samples", "step": state["step"], "samples": [str(o) for o in outputs], "metrics": state["samples"]})

    if t.eval_at_start and state["step"] == 0 and val_loader is not None:
        base = evaluate()  # the starting point: a fine-tune must beat this on held-out data
        state["base_val_loss"] = base
        if main and base is not None:
            print(f"museforge: validation loss before training {base:.4f} (perplexity {math.exp(min(base, 50)):.2f})", flush=True)

    # The loop
    model.train()
    ctrl_c.armed, ctrl_c.distributed, ctrl_c.quiet = True, accelerator.num_processes > 1, not main  # see _CtrlC
    bar = tqdm(total=max_steps, initial=state["step"], desc=f"train {task.name}", disable=not main, dynamic_ncols=True)
    if main:  # the log holds exactly the steps up to the checkpoint resumed from, not a killed run's later ones
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in state["history"]))
    log = (out / "metrics.jsonl").open("a") if main else None
    t0, tokens_at_t0 = time.perf_counter(), state["tokens"]
    stop = state["step"] >= max_steps
    running = torch.zeros((), device=accelerator.device)  # summed on device: no per-step host sync
    micro = 0
    while not stop:
        # A fixed permutation per epoch (seed + epoch) makes resumption exact.
        # The loader gets its own generator too: creating an iterator draws a seed, which would
        # otherwise come from the global RNG and shift dropout after a resume.
        epoch_rng = torch.Generator().manual_seed(t.seed + state["epoch"])
        order = torch.randperm(len(train_blocks), generator=epoch_rng).tolist()
        loader = accelerator.prepare(DataLoader([train_blocks[i] for i in order], batch_size=t.batch_size,
                                                collate_fn=collate, drop_last=len(train_blocks) >= global_batch,
                                                num_workers=t.num_workers, generator=epoch_rng))
        skip = state["batch_in_epoch"]
        for batch in accelerator.skip_first_batches(loader, skip) if skip else loader:
            with accelerator.accumulate(model):
                with accelerator.autocast():  # the head's products in bf16, as inside the model
                    loss = lm_loss(model, batch, head)
                accelerator.backward(loss)
                if accelerator.sync_gradients and t.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), t.grad_clip)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            state["batch_in_epoch"] += 1
            state["tokens"] += int(batch["input_ids"].numel()) * accelerator.num_processes
            running += loss.detach().float()
            micro += 1
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            bar.update(1)
            record: dict[str, Any] = {"step": state["step"], "lr": scheduler.get_last_lr()[0], "tokens": state["tokens"],
                                      "elapsed": round(time.perf_counter() - t0, 4)}
            if state["step"] % t.log_every == 0 or state["step"] == max_steps:
                train_loss = accelerator.reduce(running, "mean").item() / micro
                running.zero_()
                micro = 0
                speed = (state["tokens"] - tokens_at_t0) / max(time.perf_counter() - t0, 1e-9)
                record.update(loss=train_loss, tokens_per_s=speed)
                bar.set_postfix(loss=f"{train_loss:.3f}", ppl=f"{math.exp(min(train_loss, 50)):.1f}", tok_s=f"{speed:.0f}")
            if state["step"] % t.eval_every == 0 or state["step"] == max_steps:
                val = evaluate()
                if val is not None:
                    record.update(val_loss=val, val_perplexity=math.exp(min(val, 50)))
                    bar.write(f"step {state['step']}: val loss {val:.4f}, perplexity {math.exp(min(val, 50)):.2f}") if main else None
                    if state["best_loss"] is None or val < state["best_loss"]:
                        state.update(best_loss=val, best_step=state["step"], bad_evals=0)
                        if t.keep_best:
                            export(out / "best")
                    else:
                        state["bad_evals"] += 1
                        stop = bool(t.early_stop_patience and state["bad_evals"] >= t.early_stop_patience)
            if t.sample_every and state["step"] % t.sample_every == 0:
                write_samples()
            state["history"].append(record)
            if main:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if callback:
                callback({"event": "step", "max_steps": max_steps, **record})
            stop = stop or state["step"] >= max_steps
            if not stop and ctrl_c.requested:
                accelerator.set_trigger()
            # every rank must stop at the same step (saving is collective): one scalar all-reduce
            interrupted = not stop and (accelerator.check_trigger() if accelerator.num_processes > 1
                                        else ctrl_c.requested)
            if state["step"] % t.save_every == 0 or stop or interrupted:
                saved = save_checkpoint()
            if interrupted:
                bar.close()
                log.close() if main else None
                raise TrainingInterrupted(out, saved, state["step"], main)
            if stop:
                break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    bar.close()
    ctrl_c.armed = False
    write_samples()

    # The run directory itself is the loadable model: the best weights when kept, else the last.
    source = out / "best"
    if not (t.keep_best and source.exists()):
        source = out / "final"
        export(source)  # every rank: gathering sharded weights is collective
    if main:
        for f in source.iterdir():
            if f.is_file():
                shutil.copy2(f, out / f.name)
        info = json.loads((out / "museforge.json").read_text())
        info["metrics"] = metrics_summary()
        info["exported"] = f"best (step {state['best_step']})" if source.name == "best" else f"last (step {state['step']})"
        (out / "museforge.json").write_text(json.dumps(info, indent=2))
        if source.name == "final":
            shutil.rmtree(source)
        log.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out
