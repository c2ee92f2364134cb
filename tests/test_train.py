"""The one training loop on a tiny GPT-2: learns, writes loadable runs, resumes exactly."""

import json

import pytest
import torch
from tinymodels import DATA, tiny_model, tiny_tokenizer

from museforge.config import load_config
from museforge.data import pack
from museforge.training import collate, train

BASE = ["task=lyrics", f"data.path={DATA / 'lyrics.txt'}", "data.block_size=64", "data.val_fraction=0.2",
        "train.batch_size=4", "train.lr=3e-3", "train.warmup_steps=2", "train.samples=1",
        "train.sample_max_new_tokens=8"]


def run(tmp_path, name, *extra, model=None, tok=None, callback=None):
    tok = tok or tiny_tokenizer()
    cfg = load_config(None, BASE + [f"train.out_dir={tmp_path / name}", *extra])
    return train(cfg, model=model or tiny_model(tok), tokenizer=tok, callback=callback)


def history(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_full_finetune_learns_and_loads_in_plain_transformers(tmp_path):
    out = run(tmp_path, "full", "model.lora=false", "train.max_steps=30", "train.eval_every=10", "train.save_every=10")
    hist = history(out)
    evals = [h["val_loss"] for h in hist if "val_loss" in h]
    assert hist[-1]["loss"] < hist[0]["loss"] - 0.5
    assert evals[-1] < evals[0]
    info = json.loads((out / "museforge.json").read_text())
    assert info["task"] == "lyrics" and info["metrics"]["best_val_loss"] == pytest.approx(min(evals))
    assert info["data"]["documents"] == {"train": 5, "validation": 1}
    assert list(info["data"]["files"].values())[0]  # sha256 of the data file
    assert (out / "config.yaml").is_file() and (out / "samples").is_dir()
    ckpts = sorted((out / "checkpoints").iterdir())
    assert [c.name for c in ckpts] == ["step-000020", "step-000030"]  # last two kept, none half-written
    assert all((c / "config.yaml").is_file() for c in ckpts)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.n_layer == 2 and tok.eos_token == "<|endoftext|>"


def test_lora_run_is_a_peft_adapter(tmp_path):
    out = run(tmp_path, "lora", "model.lora_targets=c_attn", "train.max_steps=4", "train.eval_every=2")
    assert (out / "adapter_config.json").is_file()
    from peft import PeftModel

    base = tiny_model(tiny_tokenizer())
    model = PeftModel.from_pretrained(base, out)
    trained = [n for n, _ in model.named_parameters() if "lora_" in n]
    assert trained


def test_bad_lora_target_is_named(tmp_path):
    with pytest.raises(ValueError, match="no module 'q_proj'; candidates: .*c_attn"):
        run(tmp_path, "bad", "train.max_steps=2")


class Kill(Exception):
    pass


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    extra = ["model.lora=false", "train.max_steps=14", "train.save_every=5", "train.eval_every=5", "model.scratch={}"]
    straight = run(tmp_path, "straight", *extra)

    def killer(event):
        if event["event"] == "step" and event["step"] == 12:
            raise Kill  # dies between checkpoints (last one at step 10)

    with pytest.raises(Kill):
        run(tmp_path, "resumed", *extra, callback=killer)
    with pytest.raises(ValueError, match="already holds checkpoints: pass train.resume=true"):
        run(tmp_path, "resumed", *extra)
    resumed = run(tmp_path, "resumed", *extra, "train.resume=true")

    from safetensors.torch import load_file

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la = [h["loss"] for h in history(straight)]
    lb = [h["loss"] for h in history(resumed)]
    assert lb[-1] == pytest.approx(la[-1], rel=1e-6)


def test_resume_without_checkpoint_is_explained(tmp_path):
    with pytest.raises(ValueError, match="holds no checkpoint"):
        run(tmp_path, "empty", "train.resume=true", "train.max_steps=2")


def test_packed_documents_do_not_attend_to_each_other():
    tok = tiny_tokenizer()
    model = tiny_model(tok).eval()
    a = tok("The oak stands old beside the lane<|endoftext|>")["input_ids"]
    b = tok("Grey gulls wheel above the bay<|endoftext|>")["input_ids"]
    batch = collate(pack([a, b], 64, tok.pad_token_id))
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits[0, len(a):len(a) + len(b)]
        alone = model(torch.tensor([b])).logits[0]
    assert torch.allclose(packed, alone, atol=1e-5)
    assert batch["labels"][0, len(a) + len(b):].eq(-100).all()  # padding is not trained on


@pytest.mark.parametrize("setting", [("model.lora=false",), ("model.lora_targets=c_attn",)], ids=["full", "lora"])
def test_gradient_checkpointing_trains_the_same_model(tmp_path, setting):
    """Recomputing activations in backward saves memory, not accuracy: the same losses."""
    common = (*setting, "train.max_steps=4", "train.eval_every=2", "train.samples=0", "train.lr=1e-2")
    plain = history(run(tmp_path, "plain", *common))
    ckpt = history(run(tmp_path, "ckpt", *common, "train.gradient_checkpointing=true"))
    assert [h["loss"] for h in ckpt] == pytest.approx([h["loss"] for h in plain], rel=1e-4)
    assert [h["val_loss"] for h in ckpt if "val_loss" in h] == pytest.approx(
        [h["val_loss"] for h in plain if "val_loss" in h], rel=1e-4)


def test_bf16_training_computes_the_chunked_loss_in_bf16(tmp_path, monkeypatch):
    """The output head's products run in the autocast dtype, as they would inside the model
    (an fp32 head over a 49k vocabulary costs the speed the chunked loss is there to win)."""
    import museforge.loss as loss

    seen = []
    apply = loss._ChunkedCrossEntropy.apply

    def spy(hidden, weight, labels, dtype, chunk):
        seen.append(dtype)
        return apply(hidden, weight, labels, dtype, chunk)

    monkeypatch.setattr(loss._ChunkedCrossEntropy, "apply", spy)
    run(tmp_path, "bf16", "model.lora=false", "train.max_steps=2", "train.precision=bf16", "train.samples=0")
    assert seen and set(seen) == {torch.bfloat16}


def test_the_optimizer_is_fused_adamw_on_cpu():
    """The unfused (foreach) AdamW made a full fine-tune ~11% slower than Trainer's fused one."""
    import torch

    from museforge.config import TrainConfig
    from museforge.training import adamw

    weights = [torch.nn.Parameter(torch.randn(4, 4)), torch.nn.Parameter(torch.randn(4))]
    opt = adamw(weights, TrainConfig(lr=1e-3, weight_decay=0.1))
    assert opt.defaults["fused"] and opt.defaults["lr"] == 1e-3 and opt.defaults["weight_decay"] == 0.1
    weights[0].grad, weights[1].grad = torch.ones(4, 4), torch.ones(4)
    before = weights[0].detach().clone()
    opt.step()
    assert not torch.equal(before, weights[0])
