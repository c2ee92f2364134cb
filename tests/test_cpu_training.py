"""The training loop's CPU fast paths: fp32 attention where faster, and cheaper dropout masks."""

import json

import pytest
import torch
import torch.nn.functional as F
from test_train import run
from tinymodels import tiny_llama, tiny_model, tiny_tokenizer

import museforge.cpu_training as cpu
from museforge.cpu_training import FastDropout, faster_in_fp32, use_fast_dropout, use_fp32_attention


# ---- attention ----------------------------------------------------------------------------------
def test_fp32_attention_computes_in_fp32_and_returns_the_autocast_dtype():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 10, 16).bfloat16() for _ in range(3))
    module = torch.nn.Module()
    module.is_causal = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = cpu._sdpa_fp32(module, q, k, v, None, scaling=0.25)
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True, scale=0.25)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, expected.transpose(1, 2).bfloat16())  # fp32 result, rounded once
    bf16 = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.25).transpose(1, 2)
    assert not torch.equal(out, bf16)  # so the test tells the two kernels apart


def test_fp32_attention_reads_grouped_key_value_heads_without_copies(monkeypatch):
    """With a training mask and grouped key/value heads it calls the kernel with enable_gqa: the
    same output as transformers' repeated heads, the same gradients to float tolerance."""
    import transformers.integrations.sdpa_attention as hf_sdpa

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups = True, 2
    q = torch.randn(2, 4, 10, 16).bfloat16().requires_grad_()
    k, v = (torch.randn(2, 2, 10, 16).bfloat16().requires_grad_() for _ in range(2))
    docs = torch.tensor([[0] * 4 + [1] * 6, [0] * 10])
    allowed = torch.ones(10, 10, dtype=torch.bool).tril() & (docs[:, :, None] == docs[:, None, :])
    mask = torch.zeros(2, 1, 10, 10).masked_fill_(~allowed[:, None], torch.finfo(torch.float32).min)
    expected, _ = hf_sdpa.sdpa_attention_forward(module, q.float(), k.float(), v.float(), mask, scaling=0.25)
    want = torch.autograd.grad(expected.sum(), (q, k, v))

    def repeated_heads(*a, **kw):
        raise AssertionError("went through repeat_kv")

    monkeypatch.setattr(hf_sdpa, "sdpa_attention_forward", repeated_heads)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = cpu._sdpa_fp32(module, q, k, v, mask, dropout=0.0, scaling=0.25)
    assert torch.equal(out, expected.bfloat16())
    for got, ref in zip(torch.autograd.grad(out.float().sum(), (q, k, v)), want, strict=True):
        torch.testing.assert_close(got, ref)
    with pytest.raises(AssertionError, match="repeat_kv"):  # what it leaves to transformers
        cpu._sdpa_fp32(module, q, k, v, mask, position_bias=torch.zeros(1, 4, 10, 10))


def test_a_model_with_fp32_attention_calls_it_in_every_layer_and_trains_to_the_same_loss(monkeypatch):
    tok = tiny_tokenizer()
    ids = torch.randint(0, len(tok), (2, 24), generator=torch.Generator().manual_seed(0))
    calls = []
    fp32_sdpa = cpu._sdpa_fp32
    monkeypatch.setattr(cpu, "_sdpa_fp32", lambda *a, **kw: calls.append(1) or fp32_sdpa(*a, **kw))
    losses = []
    for fp32 in (False, True):
        model = tiny_llama(tok)
        if fp32:
            use_fp32_attention(model)
            assert model.config._attn_implementation == cpu.FP32_SDPA
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
        losses.append(loss.item())
    assert len(calls) == 2  # one call per layer, in the fp32 model only
    assert losses[0] == pytest.approx(losses[1], rel=1e-2)


def test_fp32_attention_honours_padding_masks():
    """Outside training (samples, a passed-in model), 2D padding masks must still be applied."""
    tok = tiny_tokenizer()
    ids = torch.randint(0, len(tok), (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    plain, fp32 = tiny_llama(tok).eval(), tiny_llama(tok).eval()
    use_fp32_attention(fp32)
    with torch.no_grad():  # fp32 weights: the fp32 path computes exactly what sdpa does
        assert torch.equal(plain(input_ids=ids, attention_mask=mask).logits, fp32(input_ids=ids, attention_mask=mask).logits)


def test_the_faster_precision_is_chosen_and_only_for_sdpa_on_cpu(monkeypatch):
    model = tiny_llama(tiny_tokenizer())
    timings = {torch.bfloat16: 2.0, torch.float32: 1.0}
    monkeypatch.setattr(cpu, "_seconds", lambda dtype, shape, kv_heads: timings[dtype])
    assert faster_in_fp32(model, 8, 128, torch.bfloat16)
    timings[torch.float32] = 3.0
    assert not faster_in_fp32(model, 8, 128, torch.bfloat16)
    timings[torch.float32] = 1.0
    model.set_attn_implementation("eager")
    assert not faster_in_fp32(model, 8, 128, torch.bfloat16)  # only transformers' sdpa is switched


def test_the_timing_uses_the_runs_shape(monkeypatch):
    model = tiny_llama(tiny_tokenizer())
    shapes = []
    original = cpu._seconds
    cpu._seconds = lambda dtype, shape, kv_heads: shapes.append((dtype, shape, kv_heads)) or 1.0
    try:
        faster_in_fp32(model, 8, 96, torch.bfloat16)
    finally:
        cpu._seconds = original
    # batch capped at 4; the model's heads, key/value heads and head size
    assert {(shape, kv) for _, shape, kv in shapes} == {((4, 4, 96, 16), 2)}
    assert {dtype for dtype, _, _ in shapes} == {torch.bfloat16, torch.float32}
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: calls.append((k.shape[1], kw.get("enable_gqa", False))) or sdpa(q, k, v, **kw))
    assert original(torch.bfloat16, (1, 4, 16, 8), 2, repeats=1) > 0
    assert original(torch.float32, (1, 4, 16, 8), 2, repeats=1) > 0
    assert set(calls) == {(4, False), (2, True)}  # each path as training calls it: repeated, shared


def test_train_attention_setting_forces_a_precision_without_measuring(tmp_path, monkeypatch):
    from museforge.config import ConfigError, load_config

    def no_measuring(*a):
        raise AssertionError("measured although train.attention was set")

    monkeypatch.setattr("museforge.training.faster_in_fp32", no_measuring)
    for setting, expected in (("fp32", "fp32"), ("native", "bf16")):
        out = run(tmp_path, setting, "model.lora=false", "train.max_steps=1", "train.precision=bf16",
                  f"train.attention={setting}")
        assert json.loads((out / "museforge.json").read_text())["attention"] == expected
    with pytest.raises(ConfigError, match="train.attention: choose auto, fp32 or native"):
        load_config(None, ["train.attention=fast"])


def test_training_records_the_attention_precision_and_gives_the_model_its_own_back(tmp_path, monkeypatch):
    tok = tiny_tokenizer()
    model = tiny_model(tok)
    monkeypatch.setattr("museforge.training.faster_in_fp32", lambda *a: True)
    out = run(tmp_path, "fp32", "model.lora=false", "train.max_steps=2", "train.precision=bf16", model=model, tok=tok)
    info = json.loads((out / "museforge.json").read_text())
    assert info["attention"] == "fp32"
    assert model.config._attn_implementation == "sdpa"
    monkeypatch.setattr("museforge.training.faster_in_fp32", lambda *a: False)
    out = run(tmp_path, "bf16", "model.lora=false", "train.max_steps=2", "train.precision=bf16", tok=tok)
    assert json.loads((out / "museforge.json").read_text())["attention"] == "bf16"


def test_runs_on_a_gpu_keep_their_attention_although_the_model_is_still_on_the_cpu(monkeypatch):
    from types import SimpleNamespace

    from museforge.training import _attention

    def no_measuring(*a):
        raise AssertionError("measured for a GPU run")

    monkeypatch.setattr("museforge.training.faster_in_fp32", no_measuring)
    model = tiny_llama(tiny_tokenizer())
    gpu = SimpleNamespace(device=torch.device("cuda"), is_main_process=True, num_processes=1)
    assert _attention(model, gpu, 8, 128, "bf16", "auto") == "bf16"
    assert _attention(model, gpu, 8, 128, "bf16", "fp32") == "bf16"
    assert model.config._attn_implementation == "sdpa"


def test_a_resumed_run_keeps_the_attention_it_started_with(tmp_path, monkeypatch):
    """Re-measuring on resume could pick the other precision and change the weights: it must not."""
    from test_train import Kill

    tok = tiny_tokenizer()
    extra = ["model.lora=false", "train.max_steps=6", "train.save_every=3", "train.precision=bf16"]
    monkeypatch.setattr("museforge.training.faster_in_fp32", lambda *a: True)
    straight = run(tmp_path, "straight", *extra, tok=tok)

    def killer(event):
        if event["event"] == "step" and event["step"] == 4:
            raise Kill

    with pytest.raises(Kill):
        run(tmp_path, "resumed", *extra, tok=tok, callback=killer)
    monkeypatch.setattr("museforge.training.faster_in_fp32", lambda *a: False)  # this time bf16 would "win"
    resumed = run(tmp_path, "resumed", *extra, "train.resume=true", tok=tok)
    assert json.loads((resumed / "museforge.json").read_text())["attention"] == "fp32"
    from safetensors.torch import load_file

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---- dropout ------------------------------------------------------------------------------------
def test_fast_dropout_drops_at_rate_p_and_keeps_the_expectation():
    torch.manual_seed(0)
    drop = FastDropout(0.05).train()
    x = torch.ones(1_000_000)
    y = drop(x)
    dropped = y == 0
    assert dropped.float().mean().item() == pytest.approx(1638 / 32768, abs=1e-3)  # p rounded to 1/32768
    assert y.mean().item() == pytest.approx(1.0, abs=3e-3)
    values = y.unique().tolist()
    assert values[0] == 0.0 and values[1:] == [pytest.approx(32768 / (32768 - 1638))]
    # neighbours come from different bits: both dropped about p^2 of the time, not p
    assert (dropped[:-1] & dropped[1:]).float().mean().item() < 0.01


def test_fast_dropout_gradient_follows_the_mask_and_seeds_repeat():
    drop = FastDropout(0.3).train()
    x = torch.randn(4, 64, dtype=torch.bfloat16, requires_grad=True)
    torch.manual_seed(5)
    y = drop(x)
    y.sum().backward()
    kept = y != 0
    assert torch.equal(x.grad == 0, ~kept) and 0.5 < kept.float().mean() < 0.9
    torch.manual_seed(5)
    assert torch.equal(drop(x), y)
    assert torch.equal(drop.eval()(x), x)


def test_fast_dropout_leaves_rates_it_cannot_express_to_torch():
    x = torch.ones(1000)
    torch.manual_seed(0)
    assert FastDropout(0.99999).train()(x).count_nonzero() < 5  # no division by zero: torch's dropout
    assert FastDropout(1e-6).train()(x).max().item() > 1  # torch's scale 1 / (1 - p), not a 15-bit rate of 0


def test_use_fast_dropout_converts_the_models_dropout_layers():
    model = tiny_model(tiny_tokenizer())
    before = sum(type(m) is torch.nn.Dropout for m in model.modules())
    assert before and use_fast_dropout(model) == before
    assert all(type(m) is not torch.nn.Dropout for m in model.modules())
    assert any(isinstance(m, FastDropout) and m.p == 0.1 for m in model.modules())
