"""Real multi-process data parallelism on CPU: 2 processes == 1 process with the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from tinymodels import DATA, tiny_tokenizer


@pytest.fixture(scope="module")
def no_dropout_model(tmp_path_factory):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    path = tmp_path_factory.mktemp("nodrop")
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def command(nproc, out, model, *extra):
    args = ["task=story", f"model.name={model}", "model.lora=false", f"data.path={DATA / 'stories.txt'}",
            "data.block_size=32", "data.val_fraction=0.2", "train.precision=no", "train.max_steps=8",
            f"train.batch_size={4 // nproc}", "train.eval_every=4", "train.save_every=4", "train.samples=0",
            f"train.out_dir={out}", "train.lr=2e-3", *extra]
    cfg = out.parent / f"{out.name}.yaml"
    cfg.write_text("task: story\n")
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
            str(29500 + nproc + os.getpid() % 1000), "-m", "museforge", "train", str(cfg), *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def launch(nproc, out, model, *extra):
    r = subprocess.run(command(nproc, out, model, *extra), capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one(tmp_path, no_dropout_model):
    one = launch(1, tmp_path / "one", no_dropout_model)
    two = launch(2, tmp_path / "two", no_dropout_model)
    assert [h["step"] for h in one] == [h["step"] for h in two] == list(range(1, 9))
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-4)
        if "val_loss" in a:
            assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4, abs=1e-4)
    info = json.loads((tmp_path / "two" / "museforge.json").read_text())
    assert info["processes"] == 2


def test_two_processes_killed_then_resumed(tmp_path, no_dropout_model):
    extra = ("train.max_steps=40",)
    straight = launch(2, tmp_path / "straight", no_dropout_model, *extra)
    out = tmp_path / "resumed"
    proc = subprocess.Popen(command(2, out, no_dropout_model, *extra), env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "step-000004").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # both ranks die mid-run, as on a lost node
    proc.wait()
    assert not (out / "museforge.json").exists(), "the run finished before it could be killed"
    resumed = launch(2, out, no_dropout_model, *extra, "train.resume=true")
    assert resumed[-1]["step"] == 40
    assert resumed[-1]["loss"] == pytest.approx(straight[-1]["loss"], rel=1e-4)
    assert resumed[-1]["val_loss"] == pytest.approx(straight[-1]["val_loss"], rel=1e-4)
