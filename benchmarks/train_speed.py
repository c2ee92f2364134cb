"""Fine-tuning speed: museforge's training loop vs transformers' Trainer at equal settings.

    python benchmarks/train_speed.py --setting lora --steps 12
    python benchmarks/train_speed.py --setting full --data ../shared/data/lyrics/openhymnal.jsonl --text-field verses

Same model, same data, same LoRA or full setting, bf16, batch, sequence length, fused AdamW,
warm-up + cosine. Two baselines:
- trainer: what one writes by hand with transformers: one example per document (cut at the
  sequence length), padded per batch by DataCollatorForLanguageModeling, the model loaded in fp32
  with bf16 autocast (TrainingArguments(bf16=True)), the same peft LoRA config;
- trainer-packed: Trainer fed museforge's own packed blocks, collator and model preparation
  (isolates the loop itself from packing and the loss).
Tokens/s counts real tokens (padding left out) so the rows compare useful work. Each run is its
own process (an honest peak RSS); runs alternate, in reversed order every other repeat. Tokens/s is measured from the end of step 2 to
the last step, so start-up and the first (slow) step are left out of all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import save_json, spread

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lyrics" / "openhymnal.jsonl"


def overrides(a) -> list[str]:
    return [f"task={a.task}", f"model.name={a.model}", f"model.lora={'true' if a.setting == 'lora' else 'false'}",
            f"data.path={a.data}", f"data.text_field={a.text_field}", f"data.block_size={a.block}",
            f"train.batch_size={a.batch}", f"train.max_steps={a.steps}", f"train.precision={a.precision}",
            "train.eval_every=100000", "train.save_every=100000", "train.samples=0", "train.eval_at_start=false",
            "train.warmup_steps=2", "data.val_fraction=0.05"]


def run_museforge(a) -> dict:
    from museforge.config import load_config
    from museforge.training import train

    out = Path(a.workdir) / f"museforge-{time.time_ns()}"
    cfg = load_config(None, overrides(a) + [f"train.out_dir={out}"])
    train(cfg)
    hist = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    attention = json.loads((out / "museforge.json").read_text()).get("attention")
    shutil.rmtree(out, ignore_errors=True)  # a checkpoint and an export per run: 1-2 GB each
    first, last = hist[1], hist[-1]
    return {"tok_s": (last["tokens"] - first["tokens"]) / (last["elapsed"] - first["elapsed"]), "attention": attention,
            "final_loss": last.get("loss")}


def run_trainer(a, packed: bool) -> dict:
    import torch
    from transformers import (
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from museforge.config import load_config
    from museforge.data import pack
    from museforge.models import load_model, resolve
    from museforge.tasks import get_task
    from museforge.training import _wrap_lora, collate

    cfg = load_config(None, overrides(a))
    task = get_task(cfg.task)
    tok = task.load_tokenizer(resolve(cfg.model.name, task.name))
    model, _ = load_model(cfg.model.name, task.name, trainable=True)
    model = _wrap_lora(cfg, model)  # peft get_peft_model with the config's LoRA settings
    train_docs, _, _ = task.build_datasets(cfg.data, tok)
    seen = [0]  # real (non-padding) tokens handed to the model so far
    if packed:
        if a.setting == "lora" and a.precision == "bf16":  # as museforge's loop prepares the model
            for p in model.parameters():
                if not p.requires_grad:
                    p.data = p.data.to(torch.bfloat16)
        dataset = pack(train_docs, cfg.data.block_size, task.special_ids(tok)["pad_token_id"])
        inner = collate
    else:
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        dataset = [{"input_ids": d[: cfg.data.block_size]} for d in train_docs]
        inner = DataCollatorForLanguageModeling(tok, mlm=False)

    def counting(features):
        batch = inner(features)
        real = batch["labels"] != -100 if packed else batch["attention_mask"].bool()  # packed: labels skip only padding
        seen[0] += int(real.sum())
        return batch

    marks: list[tuple[int, float, int]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            marks.append((state.global_step, time.perf_counter(), seen[0]))

    args = TrainingArguments(
        output_dir=str(Path(a.workdir) / f"trainer-{time.time_ns()}"), per_device_train_batch_size=a.batch,
        max_steps=a.steps, learning_rate=cfg.train.lr, lr_scheduler_type="cosine", warmup_steps=2,
        bf16=a.precision == "bf16", optim="adamw_torch_fused", logging_steps=1, save_strategy="no",
        report_to=[], dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), max_grad_norm=1.0,
        remove_unused_columns=False, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=counting, callbacks=[Clock()])
    trainer.train()
    shutil.rmtree(args.output_dir, ignore_errors=True)
    (_, t1, n1), (_, tn, nn) = marks[1], marks[-1]
    return {"tok_s": (nn - n1) / (tn - t1),
            "final_loss": trainer.state.log_history[-2].get("loss") if len(trainer.state.log_history) > 1 else None}


def child(a) -> None:
    result = run_museforge(a) if a.impl == "museforge" else run_trainer(a, packed=a.impl == "trainer-packed")
    import torch

    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["device_name"] = torch.cuda.get_device_name()
    print("RESULT " + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--task", default="lyrics")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--text-field", default="verses")
    ap.add_argument("--setting", default="lora", choices=["lora", "full"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/museforge-bench")
    ap.add_argument("--impl", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    if a.impl:
        return child(a)
    if not Path(a.data).exists():
        print(f"train_speed: data not found: {a.data} (pass --data)", file=sys.stderr)
        sys.exit(2)
    runs: dict[str, list[dict]] = {"museforge": [], "trainer": [], "trainer-packed": []}
    given = list(argv if argv is not None else sys.argv[1:])
    if "--out" in given:  # the children print their result; only the parent writes --out
        i = given.index("--out")
        del given[i:i + 2]
    base = [sys.executable, __file__, *[x for x in given if not x.startswith("--out=")]]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    for r in range(a.repeats):
        for impl in list(runs)[:: -1 if r % 2 else 1]:  # alternate the order: no run always goes first
            p = subprocess.run([*base, "--impl", impl], capture_output=True, text=True, env=env)
            line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
            if p.returncode or not line:
                print(p.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{impl} run failed")
            runs[impl].append(json.loads(line[-1][7:]))
            print(f"{a.setting} {impl}: {runs[impl][-1]['tok_s']:.0f} tok/s, peak RSS {runs[impl][-1]['peak_rss_mb']:.0f} MB",
                  file=sys.stderr, flush=True)
    rows = []
    for impl, rs in runs.items():
        speed, lo, hi = spread((r["tok_s"] for r in rs), 1)
        rows.append({"setting": a.setting, "impl": impl, "tok_s": speed, "tok_s_min": lo, "tok_s_max": hi,
                     "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rs)),
                     "peak_gpu_mb": round(max(r.get("peak_gpu_mb", 0) for r in rs)) or None,
                     **({"attention": sorted({r["attention"] for r in rs})} if "attention" in rs[0] else {})})
    rows[0]["ratio_vs_trainer"] = round(rows[0]["tok_s"] / rows[1]["tok_s"], 3)
    rows[0]["ratio_vs_trainer_packed"] = round(rows[0]["tok_s"] / rows[2]["tok_s"], 3)
    result = {"benchmark": "fine-tuning", "model": a.model, "data": a.data, "batch": a.batch, "block": a.block,
              "steps": a.steps, "precision": a.precision, "device_name": runs["museforge"][0].get("device_name", "cpu"),
              "rows": rows}
    save_json(result, a.out)
    return result


if __name__ == "__main__":
    main()
