"""Shipped styles: adapters with honest held-out numbers, loadable on the default model."""

import json

import pytest

from museforge.styles import available_styles, style_path


def test_shipped_styles_are_listed_per_task():
    lyrics = available_styles("lyrics")
    assert "hymn" in lyrics
    assert set(available_styles()) >= set(lyrics)
    with pytest.raises(ValueError, match="no shipped lyrics style 'opera'; available: .*hymn"):
        style_path("lyrics", "opera")


@pytest.mark.parametrize("name,path", sorted(available_styles().items()))
def test_each_style_beats_the_base_model_on_held_out_text(name, path):
    info = json.loads((path / "museforge.json").read_text())
    m = info["metrics"]
    assert info["base_model"] == "default" and info["lora"] is True
    assert m["best_val_perplexity"] < m["start_val_perplexity"]  # measured on documents held out from training
    assert info["data"]["documents"]["validation"] > 0
    from peft import LoraConfig

    cfg = LoraConfig.from_pretrained(path)
    assert cfg.r == info["config"]["model"]["lora_r"]
    assert (path / "adapter_model.safetensors").stat().st_size < 8 * 2**20  # a few MB


@pytest.mark.slow
def test_hymn_style_generates_on_the_default_model():
    import museforge

    out = museforge.generate_lyrics("morning light", style="hymn", seed=1, max_new_tokens=30)
    assert out.provenance["style"] == "hymn" and out.provenance["adapter"].endswith("hymn")
