from pathlib import Path

import pytest

from museforge.config import Config, ConfigError, config_from_dict, load_config

ROOT = Path(__file__).parents[1] / "configs"
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if p.parent.name != "accelerate")
ACCELERATE = sorted((ROOT / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_configs_are_valid(path):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(path)  # rejects unknown keys
    assert cfg.mixed_precision == "bf16"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.task in ("lyrics", "poem", "story", "melody")
    # a config holds only differences: no key repeats its default value
    import yaml

    defaults = Config().to_dict()
    for section, values in (yaml.safe_load(path.read_text()) or {}).items():
        if isinstance(values, dict):
            for k, v in values.items():
                assert defaults[section][k] != v, f"{path.name}: {section}.{k} repeats the default"


def test_yaml_and_dotted_overrides_are_typed(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("task: poem\ntrain:\n  lr: 3e-4\n  max_steps: '12'\n")
    cfg = load_config(f, ["train.lr=1e-4", "model.lora=false", "model.lora_targets=c_attn,c_proj", "generate.seed=7"])
    assert cfg.task == "poem"
    assert cfg.train.lr == pytest.approx(1e-4) and isinstance(cfg.train.lr, float)
    assert cfg.train.max_steps == 12
    assert cfg.model.lora is False
    assert cfg.model.lora_targets == ["c_attn", "c_proj"]
    assert cfg.generate.seed == 7


def test_yaml_scientific_notation_becomes_float(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 3e-4\n")  # PyYAML reads this as the string '3e-4'
    assert load_config(f).train.lr == pytest.approx(3e-4)


@pytest.mark.parametrize("override,needle", [
    (["train.learning_rate=1"], "unknown config key 'train.learning_rate'; valid keys: train.out_dir"),
    (["trian.lr=1"], "unknown config key 'trian'"),
    (["train.max_steps=ten"], "train.max_steps: expected int"),
    (["train.lr"], "must look like section.key=value"),
    (["train=3"], "'train' is a section"),
])
def test_bad_keys_and_values_are_named(override, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        load_config(None, override)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["task=story", "data.block_size=64"])
    cfg.save(tmp_path / "config.yaml")
    import yaml

    again = config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert again == cfg


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope.yaml")
