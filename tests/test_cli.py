"""The CLI through typer's runner: thin wiring, one-line errors with exit code 2."""

import json

import pytest
from tinymodels import DATA
from typer.testing import CliRunner

from museforge.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_generate_with_a_local_model_and_json(tiny_model_dir):
    r = invoke("generate", "lyrics", "rain", "--model", tiny_model_dir, "--seed", 3, "--max-new-tokens", 12, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out[0]["provenance"]["seed"] == 3 and out[0]["provenance"]["model"] == str(tiny_model_dir)
    again = invoke("generate", "lyrics", "rain", "--model", tiny_model_dir, "--seed", 3, "--max-new-tokens", 12, "--json")
    assert json.loads(again.stdout)[0]["text"] == out[0]["text"]


def test_generate_num_samples(tiny_model_dir):
    r = invoke("generate", "story", "a fox", "--model", tiny_model_dir, "--num", 2, "--max-new-tokens", 8, "--json")
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 2


@pytest.mark.parametrize("args,needle", [
    (["generate", "lyrics", ""], "give a prompt"),
    (["generate", "lyrics", "x", "--model", "/no/such/dir"], "model directory '/no/such/dir' does not exist"),
    (["generate", "lyrics", "x", "--model", "someone/not-cached-model"], "Hub is unreachable"),
    (["generate", "songs", "x"], "unknown task 'songs'"),
    (["train", "missing.yaml"], "config file not found"),
    (["eval", "default"], "give --data FILE"),
])
def test_bad_input_is_one_line_exit_2(args, needle, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert needle in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.output


def test_bad_sampling_value_exit_2(tiny_model_dir):
    r = invoke("generate", "poem", "x", "--model", tiny_model_dir, "--temperature", -1)
    assert r.exit_code == 2 and "temperature must be >= 0" in r.stderr


def test_train_then_generate_and_eval_the_run(tmp_path, tiny_model_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task: poem\nmodel:\n  name: {tiny_model_dir}\n  lora: false\ndata:\n  path: {DATA / 'poems.txt'}\n"
                   "  block_size: 64\ntrain:\n  max_steps: 3\n  batch_size: 2\n  samples: 1\n  sample_max_new_tokens: 4\n")
    r = invoke("train", cfg, f"train.out_dir={tmp_path / 'run'}", "train.lr=1e-3")
    assert r.exit_code == 0, r.output
    run = r.stdout.strip().splitlines()[-1]
    assert run == str(tmp_path / "run")
    g = invoke("generate", "poem", "the sea", "--model", run, "--seed", 1, "--max-new-tokens", 6, "--json")
    assert g.exit_code == 0 and json.loads(g.stdout)[0]["provenance"]["checkpoint"] == str(tmp_path / "run")
    e = invoke("eval", run, "--task", "poem", "--data", DATA / "poems.txt", "--block-size", 64)
    assert e.exit_code == 0, e.output
    report = json.loads(e.stdout)
    assert report["perplexity"] > 1 and report["documents"] == 6
    bad = invoke("train", cfg, "train.lr=fast")
    assert bad.exit_code == 2 and "train.lr: expected float" in bad.stderr


def test_eval_text_metrics(tmp_path):
    song = tmp_path / "song.txt"
    song.write_text("[Verse 1]\nI walk along the night\nUnder the city light\nThe rain is on the street\nIt keeps a steady beat\n")
    r = invoke("eval", "--task", "lyrics", "--text", song, "--rhyme", "AABB")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["rhyme_adherence"] == 1.0 and report["degenerate"] is False


def test_models_lists_defaults():
    r = invoke("models")
    assert r.exit_code == 0 and "SmolLM2-135M-Instruct" in r.stdout
