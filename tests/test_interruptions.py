"""Nothing is lost: SIGKILL at any point (even mid-checkpoint), Ctrl-C, a full or unwritable disk.

The killed runs are real processes (spawned, not forked: a forked child deadlocked in OpenMP when
the test process had used 2 threads) killed with SIGKILL at chosen points: in the middle of a
checkpoint write and between checkpoints. The random-kill version through the CLI is the slow
test here and benchmarks/kill_resume.py.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import accelerate.checkpointing
import pytest
from kill_support import (
    CHECKPOINT_FILES,
    ENV,
    inspect_checkpoints,
    kill_and_resume,
    max_abs_difference,
)
from tinymodels import DATA, tiny_model, tiny_tokenizer
from typer.testing import CliRunner

from museforge import training
from museforge.cli import app
from museforge.config import load_config
from museforge.training import RunDirError, train

BASE = [
    "task=lyrics",
    f"data.path={DATA / 'lyrics.txt'}",
    "data.block_size=64",
    "data.val_fraction=0.2",
    "train.batch_size=4",
    "train.lr=3e-3",
    "train.warmup_steps=2",
    "train.samples=1",
    "train.sample_max_new_tokens=8",
    "model.lora=false",
    "train.max_steps=12",
    "train.save_every=2",
    "train.eval_every=4",
]


def run(out: Path, *extra: str, tok=None, callback=None) -> Path:
    tok = tok or tiny_tokenizer()
    return train(
        load_config(None, [*BASE, f"train.out_dir={out}", *extra]),
        model=tiny_model(tok),
        tokenizer=tok,
        callback=callback,
    )


def steps(out: Path) -> list[tuple]:
    return [
        (r["step"], r.get("loss"), r.get("val_loss"))
        for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    ]


def wait_for_steps(proc: subprocess.Popen, log: Path, n: int) -> None:
    """Wait until a training subprocess has logged `n` steps (it must not end first)."""
    deadline = time.time() + 300
    while not (log.exists() and len(log.read_text().splitlines()) >= n):
        assert proc.poll() is None and time.time() < deadline, (proc.stderr or proc.stdout).read()[-3000:]
        time.sleep(0.005)


def _child(out: Path, extra: tuple, tok, where: tuple, marker: Path) -> None:
    """A training process that stops dead at `where` (marks it, then waits for its SIGKILL)."""

    def hang() -> None:
        marker.touch()
        time.sleep(600)

    callback = None
    if (
        where[0] == "write"
    ):  # ("write", step, n): after the n-th file of step's checkpoint is written
        save, written = accelerate.checkpointing.save, []

        def save_then_hang(obj, path, **kw):
            save(obj, path, **kw)
            if Path(path).parent.name == f"step-{where[1]:06d}.tmp":
                written.append(path)
                if len(written) == where[2]:
                    hang()

        accelerate.checkpointing.save = save_then_hang
    else:  # ("after step", n): between checkpoints

        def callback(event):
            if event["event"] == "step" and event["step"] == where[1]:
                hang()

    run(out, *extra, tok=tok, callback=callback)
    os._exit(0)


def kill_at(out: Path, where: tuple, *extra: str, tok) -> None:
    marker = out.parent / "marker"
    marker.unlink(missing_ok=True)
    proc = multiprocessing.get_context("spawn").Process(
        target=_child, args=(out, extra, tok, where, marker)
    )
    proc.start()
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.is_alive() and time.time() < deadline, f"the run ended before reaching {where}"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert proc.exitcode == -signal.SIGKILL


def test_sigkilled_three_times_resumes_to_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    tok = tiny_tokenizer()
    straight = run(tmp_path / "straight", tok=tok)
    out = tmp_path / "killed"

    kill_at(out, ("write", 4, 1), tok=tok)  # mid-checkpoint: the model file written, the rest not
    seen = inspect_checkpoints(out)
    assert seen["complete"] == ["step-000002"] and seen["writing"] == ["step-000004.tmp"]
    assert {f.name for f in (out / "checkpoints" / "step-000004.tmp").iterdir()} == {
        "model.safetensors"
    }

    kill_at(out, ("after step", 7), "train.resume=true", tok=tok)  # between checkpoints
    seen = inspect_checkpoints(out)
    assert (
        seen["complete"] == ["step-000004", "step-000006"] and not seen["writing"]
    )  # the stray .tmp is gone

    kill_at(out, ("write", 10, 2), "train.resume=true", tok=tok)  # model and optimizer written
    seen = inspect_checkpoints(out)
    assert seen["complete"] == ["step-000006", "step-000008"] and seen["writing"] == [
        "step-000010.tmp"
    ]
    assert not seen["problems"]

    resumed = run(out, "train.resume=true", tok=tok)
    assert max_abs_difference(straight / "model.safetensors", resumed / "model.safetensors") == 0.0
    assert steps(resumed) == steps(
        straight
    )  # the log holds each step once, as in the uninterrupted run
    assert inspect_checkpoints(out)["complete"] == ["step-000010", "step-000012"]
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".old"))]


@pytest.mark.slow
def test_sigkilled_cli_at_random_moments(tmp_path):
    """The CLI in a subprocess, killed at random moments (checkpoint writes slowed to land in them)."""
    result = kill_and_resume(
        tmp_path, kills=5, max_steps=50, save_delay=0.02, seed=1, log=lambda _: None
    )
    assert result["kills"] == 5 and result["max_abs_weight_difference"] == 0.0
    assert result["resumed_from_newest_complete"] and result["metrics_log_identical"]
    assert result["incomplete_checkpoints_seen"] == [] and result["leftovers"] == []


def test_leftovers_of_a_killed_run_are_tidied(tmp_path):
    ckpts = tmp_path / "checkpoints"
    for d in (
        "checkpoints/step-000004",
        "checkpoints/step-000006.tmp",
        "best.old",
        "final.tmp",
        "x.old",
        "x",
    ):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "best.old" / "model.safetensors").write_text("the only copy")
    training._tidy(tmp_path)  # killed between _atomic_dir's two renames: best.old is the only best
    assert (tmp_path / "best" / "model.safetensors").read_text() == "the only copy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "checkpoints", "x"]
    assert [p.name for p in ckpts.iterdir()] == ["step-000004"]


# ---- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path, tiny_model_dir):
    config = tmp_path / "tiny.yaml"
    config.write_text("task: lyrics\n")
    args = [
        *BASE[1:],
        f"model.name={tiny_model_dir}",
        "train.max_steps=80",
        "train.save_every=50",
        "train.eval_every=20",
    ]
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "museforge", "train", str(config), *args, f"train.out_dir={out}"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_steps(proc, out / "metrics.jsonl", 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    said = re.search(
        r"museforge: interrupted at step (\d+); checkpoint saved to (\S+); resume with: (.+)", err
    )
    assert said, err[-3000:]
    step = int(said.group(1))
    assert 2 <= step < 80
    ckpt = Path(said.group(2))
    assert (
        ckpt == out / "checkpoints" / f"step-{step:06d}"
    )  # saved at the interrupt, not at a save_every step
    assert CHECKPOINT_FILES <= {f.name for f in ckpt.iterdir()}
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == step
    assert not (out / "model.safetensors").exists()  # stopped, not finished

    command = shlex.split(said.group(3))
    assert command[:3] == ["museforge", "train", str(config)] and command[-1] == "--resume"
    runner = CliRunner()
    resumed = runner.invoke(app, command[1:])  # the printed command, as printed
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming from {ckpt} (step {step})" in resumed.output
    straight = runner.invoke(
        app, ["train", str(config), *args, f"train.out_dir={tmp_path / 'straight'}"]
    )
    assert straight.exit_code == 0, straight.output
    assert (
        max_abs_difference(tmp_path / "straight" / "model.safetensors", out / "model.safetensors")
        == 0.0
    )
    assert steps(out) == steps(tmp_path / "straight")


def test_ctrl_c_stops_every_process_at_the_same_step(tmp_path, tiny_model_dir):
    """Two processes under torchrun, Ctrl-C as a terminal sends it (to the whole process group; the
    launcher forwards it once more): both ranks stop at one step and save one checkpoint together."""
    config = tmp_path / "tiny.yaml"
    config.write_text("task: lyrics\n")
    out = tmp_path / "run"
    args = [
        *BASE[1:],
        f"model.name={tiny_model_dir}",
        "train.precision=no",
        "train.batch_size=2",
        "train.max_steps=400",
        "train.save_every=100",
        "train.eval_every=100",
        "train.samples=0",
        f"train.out_dir={out}",
    ]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(29700 + os.getpid() % 1000),
        "-m",
        "museforge",
        "train",
        str(config),
        *args,
    ]
    proc = subprocess.Popen(
        command,
        env=ENV,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for_steps(proc, out / "metrics.jsonl", 3)
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=120)  # well inside torchrun's 30 s grace: no rank hung
    said = re.findall(r"museforge: interrupted at step (\d+); checkpoint saved to (\S+);", output)
    assert len(said) == 1, output[-3000:]  # one report, from the main process
    step, ckpt = int(said[0][0]), Path(said[0][1])
    assert ckpt == out / "checkpoints" / f"step-{step:06d}" and step < 400
    assert CHECKPOINT_FILES | {"random_states_1.pkl"} <= {
        f.name for f in ckpt.iterdir()
    }  # both ranks saved
    assert [p.name for p in ckpt.parent.iterdir()] == [ckpt.name]


def test_ctrl_c_outside_the_loop_exits_130(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # while loading the model, say, or a second Ctrl-C

    monkeypatch.setattr(training, "train", interrupted)
    config = tmp_path / "tiny.yaml"
    config.write_text("task: lyrics\n")
    r = CliRunner().invoke(app, ["train", str(config)])
    assert r.exit_code == 130 and "museforge: interrupted; no checkpoint was saved now" in r.output


def test_a_second_ctrl_c_quits_at_once():
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started in the background (nohup, CI)
    with training._CtrlC() as ctrl_c:
        with pytest.raises(KeyboardInterrupt):  # outside the loop (loading, exporting): at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        ctrl_c.armed = True
        os.kill(os.getpid(), signal.SIGINT)  # in the loop: noted, the step goes on
        time.sleep(0.05)
        assert ctrl_c.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before  # put back


# ---- disk full, unwritable ------------------------------------------------------------------

Usage = namedtuple("Usage", "total used free")


def cli_train(tmp_path, out, *extra):
    config = tmp_path / "tiny.yaml"
    config.write_text("task: lyrics\n")
    tok_dir = tmp_path / "model"
    if not tok_dir.exists():
        tok = tiny_tokenizer()
        tiny_model(tok).save_pretrained(tok_dir)
        tok.save_pretrained(tok_dir)
    return CliRunner().invoke(
        app,
        ["train", str(config), *BASE[1:], f"model.name={tok_dir}", f"train.out_dir={out}", *extra],
    )


def test_full_disk_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(
        training.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 10**5, 10**5)
    )
    out = tmp_path / "runs" / "new"
    r = cli_train(tmp_path, out)
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("museforge: error: ")  # one line
    assert (
        f"train.out_dir={out}: 0.1 MB free on that disk, but a checkpoint plus the exported model need about"
        in r.output
    )
    assert not (tmp_path / "runs").exists()  # no run dir left behind


def test_out_dir_under_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("")
    r = cli_train(tmp_path, tmp_path / "afile" / "run")
    assert r.exit_code == 2 and "afile is not a directory" in r.output, r.output


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes through chmod")
def test_unwritable_out_dir_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        r = cli_train(tmp_path, locked / "run")
    finally:
        locked.chmod(0o755)
    assert r.exit_code == 2 and f"cannot write to {locked} (Permission denied)" in r.output, (
        r.output
    )
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("failure", ["OSError", "RuntimeError"])
def test_disk_full_during_a_checkpoint_keeps_the_previous_ones(tmp_path, monkeypatch, failure):
    """The disk fills while step 4's checkpoint is written: partial files, then an error (OSError,
    or as torch.save reports it, a RuntimeError while the disk is full)."""
    tok = tiny_tokenizer()
    straight = run(tmp_path / "straight", tok=tok)
    save, full = accelerate.checkpointing.save, []
    real_usage = training.shutil.disk_usage

    def fill_up(obj, path, **kw):
        if Path(path).parent.name == "step-000004.tmp":
            Path(path).write_bytes(b"\0" * 100)  # half a file
            full.append(path)
            if failure == "OSError":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"
            )
        save(obj, path, **kw)

    monkeypatch.setattr(accelerate.checkpointing, "save", fill_up)
    monkeypatch.setattr(
        training.shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 0) if full else real_usage(p)
    )
    out = tmp_path / "full"
    with pytest.raises(RunDirError) as e:
        run(out, tok=tok)
    assert str(e.value).startswith(f"could not write {out / 'checkpoints' / 'step-000004'}: ")
    assert ("No space left on device" if failure == "OSError" else "unexpected pos") in str(e.value)
    assert "(0.0 MB free on that disk" in str(e.value) and str(e.value).endswith(
        "; step-000002 is kept"
    )
    assert inspect_checkpoints(out)["complete"] == ["step-000002"]
    assert [p.name for p in (out / "checkpoints").iterdir()] == [
        "step-000002"
    ]  # the partial dir is gone

    monkeypatch.undo()  # space freed
    resumed = run(out, "train.resume=true", tok=tok)
    assert max_abs_difference(straight / "model.safetensors", resumed / "model.safetensors") == 0.0


def test_a_failed_write_that_is_not_the_disk_is_not_disguised(tmp_path, monkeypatch):
    def broken(obj, path, **kw):
        raise RuntimeError("a bug, not the disk")

    monkeypatch.setattr(accelerate.checkpointing, "save", broken)
    with pytest.raises(RuntimeError, match="a bug, not the disk"):
        run(tmp_path / "run")
    assert not list((tmp_path / "run" / "checkpoints").iterdir())  # no half-written dir either
