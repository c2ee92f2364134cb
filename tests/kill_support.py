"""SIGKILL `museforge train` at random points, resume it each time, compare with an uninterrupted run.

Shared by tests/test_kill_resume.py and benchmarks/kill_resume.py. Run as a script it is the CLI
with every checkpoint file write slowed down (a wrapper, not product code), so that random kills
often land in the middle of a checkpoint write:

    python tests/kill_support.py --save-delay 0.05 train CONFIG key=value ...
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}
# what accelerate's save_state writes, plus museforge's own files: a complete checkpoint holds all
CHECKPOINT_FILES = {
    "model.safetensors",
    "optimizer.bin",
    "scheduler.bin",
    "random_states_0.pkl",
    "trainer_state.json",
    "config.yaml",
}


def slow_saves(delay: float) -> None:
    """Sleep after each file accelerate writes into a checkpoint (model, optimizer, scheduler)."""
    import accelerate.checkpointing as ck

    save = ck.save

    def slow_save(*args: Any, **kwargs: Any) -> Any:
        result = save(*args, **kwargs)
        time.sleep(delay)
        return result

    ck.save = slow_save


def write_tiny_model(path: Path) -> Path:
    """The tests' 2-layer, 32-wide GPT-2 and its tokenizer as a model directory."""
    from tinymodels import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    tiny_model(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def train_args(model: Path, out: Path, max_steps: int) -> list[str]:
    """A full fine-tune of the tiny model on the sample lyrics, a checkpoint after every step."""
    return [
        f"model.name={model}",
        "model.lora=false",
        f"data.path={HERE.parent / 'data' / 'lyrics.txt'}",
        "data.block_size=64",
        "data.val_fraction=0.2",
        "train.batch_size=4",
        "train.lr=3e-3",
        "train.warmup_steps=2",
        f"train.max_steps={max_steps}",
        "train.save_every=1",
        "train.eval_every=5",
        "train.samples=1",
        "train.sample_max_new_tokens=8",
        f"train.out_dir={out}",
    ]


def command(config: Path, args: list[str], save_delay: float = 0.0) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--save-delay",
        str(save_delay),
        "train",
        str(config),
        *args,
    ]


def step_of(path: Path) -> int:
    return int(re.match(r"step-(\d+)", path.name).group(1))


def inspect_checkpoints(out: Path) -> dict[str, Any]:
    """Complete checkpoints (step-N dirs), and half-written (.tmp) ones: being written (newer than the
    newest complete one) or being deleted (older). Every complete one must hold every file."""
    root = out / "checkpoints"
    complete = sorted(p for p in root.glob("step-*[0-9]")) if root.exists() else []
    partial = sorted(root.glob("step-*.tmp")) if root.exists() else []
    newest = step_of(complete[-1]) if complete else -1
    problems = []
    for c in complete:
        missing = CHECKPOINT_FILES - {f.name for f in c.iterdir()}
        if missing:
            problems.append(f"{c.name} lacks {sorted(missing)}")
        elif json.loads((c / "trainer_state.json").read_text())["step"] != step_of(c):
            problems.append(f"{c.name}: trainer_state.json names another step")
    return {
        "complete": [c.name for c in complete],
        "writing": [p.name for p in partial if step_of(p) > newest],
        "deleting": [p.name for p in partial if step_of(p) <= newest],
        "problems": problems,
    }


def max_abs_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(a), load_file(b)
    assert x.keys() == y.keys(), "the two runs' weights hold different tensors"
    return max((x[k].float() - y[k].float()).abs().max().item() for k in x)


def kill_and_resume(
    work: Path,
    kills: int,
    max_steps: int = 80,
    save_delay: float = 0.02,
    window: float = 1.0,
    seed: int = 0,
    log=print,
) -> dict[str, Any]:
    """Train once straight through; train again, SIGKILLed `kills` times at a random moment (uniform
    within `window` seconds after the run makes progress) and resumed each time; compare the two."""
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    model = write_tiny_model(work / "model")
    config = work / "tiny.yaml"
    config.write_text("task: lyrics\n")
    (work / "logs").mkdir(exist_ok=True)

    def run(
        out: Path, name: str, delay: float = 0.0, extra: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        with (work / "logs" / f"{name}.txt").open("w") as f:
            return subprocess.Popen(
                command(config, [*train_args(model, out, max_steps), *extra], delay),
                env=ENV,
                stdout=f,
                stderr=subprocess.STDOUT,
            )

    t0 = time.time()
    straight = work / "straight"
    assert run(straight, "straight").wait(timeout=900) == 0, (
        work / "logs" / "straight.txt"
    ).read_text()[-3000:]

    out = work / "killed"
    attempts: list[dict[str, Any]] = []
    finished = False
    while len([a for a in attempts if a["killed"]]) < kills:
        before = inspect_checkpoints(out)
        start = step_of(Path(before["complete"][-1])) if before["complete"] else 0
        resume = ("--resume",) if before["complete"] else ()
        proc = run(out, f"attempt-{len(attempts)}", save_delay, resume)
        # wait for progress past the checkpoint it starts from (a newer complete checkpoint: a .tmp
        # may be the last run's leftover), then kill at a random moment
        while proc.poll() is None and not any(
            step_of(p) > start for p in (out / "checkpoints").glob("step-*[0-9]")
        ):
            time.sleep(0.01)
        time.sleep(rng.uniform(0, window))
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        rc = proc.wait()
        after = inspect_checkpoints(out)
        attempts.append(
            {"resumed_from": start if resume else None, "killed": killed, "rc": rc, **after}
        )
        log(
            f"attempt {len(attempts)}: from step {start}, {'killed' if killed else f'exited {rc}'}; "
            f"complete {after['complete']}, writing {after['writing']}, deleting {after['deleting']}"
        )
        if not killed:
            finished = rc == 0
            break
    if not finished:
        resume = ("--resume",) if inspect_checkpoints(out)["complete"] else ()
        name = f"attempt-{len(attempts)}"
        proc = run(out, name, 0.0, resume)
        rc = proc.wait(timeout=900)
        assert rc == 0, (work / "logs" / f"{name}.txt").read_text()[-3000:]
        attempts.append(
            {
                "resumed_from": step_of(Path(attempts[-1]["complete"][-1])) if resume else None,
                "killed": False,
                "rc": rc,
                **inspect_checkpoints(out),
            }
        )

    # each resume started from the newest complete checkpoint the kill before it left behind
    resumed_from = []
    for i in range(1, len(attempts)):
        text = (work / "logs" / f"attempt-{i}.txt").read_text()
        said = re.search(r"resuming from \S*/(step-\d+)", text)
        expected = attempts[i - 1]["complete"][-1] if attempts[i - 1]["complete"] else None
        resumed_from.append(
            {"attempt": i, "expected": expected, "used": said.group(1) if said else None}
        )
    straight_log = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    killed_log = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    keys = ("step", "loss", "val_loss", "lr", "tokens")
    leftovers = sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.name.endswith((".tmp", ".old"))
    )
    return {
        "kills": sum(a["killed"] for a in attempts),
        "runs": len(attempts),
        "kills_during_checkpoint_write": sum(bool(a["killed"] and a["writing"]) for a in attempts),
        "kills_during_checkpoint_deletion": sum(
            bool(a["killed"] and a["deleting"]) for a in attempts
        ),
        "max_steps": max_steps,
        "save_delay_s": save_delay,
        "max_abs_weight_difference": max_abs_difference(
            straight / "model.safetensors", out / "model.safetensors"
        ),
        "metrics_log_identical": [{k: r.get(k) for k in keys} for r in straight_log]
        == [{k: r.get(k) for k in keys} for r in killed_log],
        "resumed_from_newest_complete": all(r["expected"] == r["used"] for r in resumed_from),
        "incomplete_checkpoints_seen": [p for a in attempts for p in a["problems"]],
        "leftovers": leftovers,
        "attempts": attempts,
        "resumes": resumed_from,
        "seconds": round(time.time() - t0, 1),
    }


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--save-delay"]:
        delay, argv = float(argv[1]), argv[2:]
        if delay:
            slow_saves(delay)
    from museforge.cli import main

    sys.exit(main(argv))
