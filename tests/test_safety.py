"""Untrusted files and the network: safetensors only, no remote code unless asked, a local app.

Audit (every torch.load / pickle / from_pretrained in museforge and what it reaches):
- models.load_model: AutoModelForCausalLM.from_pretrained(use_safetensors=True,
  trust_remote_code=False unless asked); a folder with only pickled weights is refused first.
- peft adapters: loaded only when adapter_model.safetensors is there (peft then never unpickles).
- tokenizers: AutoTokenizer(trust_remote_code=False unless asked); MidiTok tokenizers are JSON.
- training resume: accelerate.load_state reads optimizer/scheduler/RNG state with torch.load
  weights_only=True (accelerate >= 1.0's default); the model itself is safetensors; museforge
  registers no custom pickled objects. A tampered checkpoint is refused, not executed (tested).
- no other torch.load or pickle in museforge.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner


class Payload:
    """A pickle that touches a file when loaded: proof of code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_weights_are_never_loaded(tiny_model_dir, tmp_path):
    from museforge.generation import Generator
    from museforge.models import ModelNotFoundError

    marker = tmp_path / "pwned"
    both = tmp_path / "both"
    shutil.copytree(tiny_model_dir, both)
    (both / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    gen = Generator.load("lyrics", str(both))  # safetensors beside a pickle: the safetensors load
    assert gen.generate("rain", max_new_tokens=2, seed=1) is not None
    only = tmp_path / "only-pickle"
    only.mkdir()
    shutil.copy(tiny_model_dir / "config.json", only / "config.json")
    shutil.copy(both / "pytorch_model.bin", only / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError, match="has only pickled weights .*safetensors only"):
        Generator.load("lyrics", str(only))
    assert not marker.exists()


def test_adapter_without_safetensors_is_refused(tmp_path):
    from museforge.models import ModelNotFoundError, check_weights

    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(ModelNotFoundError, match="adapter_model.bin"):
        check_weights(tmp_path, "my-adapter")


def test_remote_code_is_off_unless_asked(tiny_model_dir, monkeypatch):
    import transformers

    from museforge.config import ModelConfig
    from museforge.generation import Generator

    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    Generator.load("poem", str(tiny_model_dir))
    Generator.load("poem", str(tiny_model_dir), trust_remote_code=True)
    assert [(k["trust_remote_code"], k["use_safetensors"]) for k in seen] == [
        (False, True),
        (True, True),
    ]
    assert ModelConfig().trust_remote_code is False


def test_cli_passes_trust_remote_code_only_when_given(monkeypatch, tiny_model_dir):
    import museforge.generation
    from museforge.cli import app

    calls = []

    def fake(task, model, style, quantize="", trust_remote_code=False):
        calls.append(trust_remote_code)
        raise museforge.UserError("stop here")

    monkeypatch.setattr(museforge.generation, "load_generator", fake)
    CliRunner().invoke(app, ["generate", "lyrics", "x", "--model", str(tiny_model_dir)])
    CliRunner().invoke(
        app, ["generate", "lyrics", "x", "--model", str(tiny_model_dir), "--trust-remote-code"]
    )
    assert calls == [False, True]


def test_a_tampered_checkpoint_is_refused_not_run(tmp_path, tiny_model_dir):
    from tinymodels import DATA

    from museforge.training import train

    overrides = [
        f"model.name={tiny_model_dir}",
        "model.lora=false",
        f"data.path={DATA / 'poems.txt'}",
        "data.block_size=64",
        "train.max_steps=1",
        "train.batch_size=2",
        "train.samples=0",
        "train.eval_at_start=false",
        f"train.out_dir={tmp_path / 'run'}",
        "task=poem",
    ]
    train(None, overrides)
    ckpt = sorted((tmp_path / "run" / "checkpoints").glob("step-*"))[-1]
    marker = tmp_path / "pwned"
    pickled = [f for f in ckpt.iterdir() if f.suffix in (".bin", ".pkl")]
    assert pickled and any(
        f.suffix == ".safetensors" for f in ckpt.iterdir()
    )  # weights: safetensors
    for f in pickled:  # optimizer.bin, scheduler.bin, random_states_0.pkl: all read weights_only
        f.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(Exception, match="[Ww]eights.only|Unsupported global|pickle"):
        train(None, [*overrides, "train.max_steps=2", "train.resume=true"])
    assert not marker.exists()


# ---- the app on the network -------------------------------------------------------------------
@pytest.fixture()
def launches(monkeypatch):
    from museforge import ui

    calls = []
    monkeypatch.setattr(ui.gr.Blocks, "launch", lambda self, **kw: calls.append(kw))
    return calls


def test_app_binds_loopback_without_share_by_default(launches, capsys, tiny_model_dir):
    from museforge.ui import MAX_UPLOAD, serve

    serve(model=str(tiny_model_dir), tabs=["poem"], preload=False, block=False)
    (kw,) = launches
    assert (
        kw["server_name"] == "127.0.0.1"
        and kw["share"] is False
        and kw["max_file_size"] == MAX_UPLOAD
    )
    assert "warning" not in capsys.readouterr().err


def test_binding_elsewhere_or_sharing_warns_once_each(launches, capsys, tiny_model_dir):
    from museforge.ui import serve

    serve(model=str(tiny_model_dir), tabs=["poem"], host="0.0.0.0", preload=False, block=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "binding 0.0.0.0" in err[0] and "no login" in err[0]
    serve(model=str(tiny_model_dir), tabs=["poem"], share=True, preload=False, block=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--share opens a public gradio.live link" in err[0]
    assert launches[-1]["share"] is True


def test_demo_defaults(monkeypatch):
    import museforge.ui
    from museforge.cli import app

    calls = []
    monkeypatch.setattr(museforge.ui, "serve", lambda **kw: calls.append(kw))
    r = CliRunner().invoke(app, ["demo"])
    assert r.exit_code == 0, r.output
    assert calls[0]["host"] == "127.0.0.1" and calls[0]["share"] is False


def test_typed_model_paths_stay_in_the_app_roots(tmp_path, tiny_model_dir):
    from ui_support import make_app

    from museforge.ui import gr

    runs = tmp_path / "runs"
    app = make_app(tiny_model_dir, runs).museforge
    outside = tmp_path / "elsewhere"
    shutil.copytree(tiny_model_dir, outside)
    (runs / "mine").mkdir(parents=True)
    (runs / "link").symlink_to(outside)
    assert app.allowed_model(str(runs / "mine")) == str(runs / "mine")
    assert (
        app.allowed_model("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    )  # a Hub id
    assert app.allowed_model(str(tiny_model_dir)) == str(
        tiny_model_dir
    )  # the model the app was started with
    for bad in (
        str(outside),
        str(runs / "link"),
        str(runs / ".." / "elsewhere"),
        "../../etc",
        "/etc",
    ):
        with pytest.raises(gr.Error, match="outside the folders"):
            app.allowed_model(bad)
    roots = make_app(tiny_model_dir, runs, model_roots=[tmp_path]).museforge
    assert roots.allowed_model(str(outside)) == str(
        outside
    )  # --model-root opens a folder on purpose


def test_upload_names_cannot_escape_the_session_folder(tmp_path, tiny_model_dir):
    from ui_support import make_app

    from museforge.ui import new_session

    app = make_app(tiny_model_dir, tmp_path / "runs").museforge
    upload = Path(app.upload_dirs[0]) / "x" / "..evil name;rm.txt"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_text("la la la la la")
    session = new_session()
    copied = app.training_data(session, str(upload), "lyrics")
    assert copied.parent.parent == app.session_dir(session) and copied.name == "..evil_name_rm.txt"
