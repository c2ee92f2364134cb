"""The melody task end to end on a tiny in-process model: data, training, controlled generation,
primer continuation, files with provenance, audio, piano roll, CLI, evaluation, the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from symusic import Note, Score, Tempo, TimeSignature, Track
from typer.testing import CliRunner

from museforge.config import DataConfig, load_config
from museforge.data import DataError
from museforge.generation import Generator
from museforge.music.melody import Melody, count_bars, read_provenance
from museforge.tasks import get_task
from museforge.tasks.melody import evaluate_melody, parse_instrument

TPQ = 480


def piece(pitches: list[int], step: float, bpm: float, ts: tuple[int, int], program: int = 0) -> Score:
    score = Score(TPQ)
    score.tempos.append(Tempo(0, float(bpm)))
    score.time_signatures.append(TimeSignature(0, *ts))
    track = Track(name="melody", program=program)
    for i, p in enumerate(pitches):
        track.notes.append(Note(round(i * step * TPQ), round(step * TPQ), p, 90))
    score.tracks.append(track)
    return score


PIECES = {
    "c_major_4_4": piece([60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60, 60], 1, 120, (4, 4)),
    "waltz_3_4": piece([67, 64, 64, 65, 62, 62, 60, 64, 67, 67, 67, 67], 1, 96, (3, 4), program=40),
    "jig_6_8": piece([67, 69, 71, 72, 74, 76, 74, 72, 71, 69, 67, 67], 0.5, 132, (6, 8), program=73),
    "a_minor": piece([69, 72, 76, 74, 72, 71, 69, 64, 69, 72, 71, 69, 68, 69, 57, 69], 0.5, 100, (4, 4)),
    "reel_2_2": piece([62, 64, 66, 67, 69, 71, 73, 74] * 2, 0.25, 60, (2, 2)),
    "hornpipe": piece([62, 66, 69, 74, 73, 71, 69, 67, 66, 64, 62, 62], 0.5, 110, (4, 4)),
}


@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("melodies")
    for name, score in PIECES.items():
        score.dump_midi(root / f"{name}.mid")
    bad = root / "bad"
    bad.mkdir()
    (bad / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06 not a midi file at all" * 2)
    (bad / "empty.mid").write_bytes(b"")
    drums = Score(TPQ)
    drums.tracks.append(Track(name="drums", is_drum=True))
    drums.tracks[0].notes.append(Note(0, TPQ, 36, 100))
    drums.dump_midi(bad / "drums.mid")
    return root


@pytest.fixture(scope="module")
def task():
    return get_task("melody")


@pytest.fixture(scope="module")
def tok(task):
    return task.new_tokenizer()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, midi_dir, task, tok) -> Path:
    """A 2-layer, 32-wide GPT-2 trained for a few steps through the real training loop."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from museforge.training import train

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=32, n_layer=2, n_head=2,
                                       **task.special_ids(tok)))
    out = tmp_path_factory.mktemp("melody-run") / "run"
    cfg = load_config(None, ["task=melody", "model.lora=false", f"data.path={midi_dir}", "data.val_fraction=0.3",
                             "data.block_size=128", "train.max_steps=6", "train.batch_size=2", "train.lr=3e-3",
                             "train.warmup_steps=1", "train.eval_every=3", "train.save_every=6", "train.samples=1",
                             "train.sample_max_new_tokens=24", "train.precision=fp32", f"train.out_dir={out}"])
    return train(cfg, model=model, tokenizer=tok)


@pytest.fixture(scope="module")
def gen(run_dir) -> Generator:
    return Generator.load("melody", str(run_dir), dtype="float32")


# ---- data ---------------------------------------------------------------------------------------
def test_build_datasets_skips_bad_files_and_splits_by_piece(midi_dir, task, tok, capsys):
    train, val, info = task.build_datasets(DataConfig(path=str(midi_dir), val_fraction=0.3), tok)
    assert info["skipped"]["count"] == 3
    reasons = " ".join(info["skipped"]["sample"])
    assert "empty file" in reasons and "corrupt" in reasons and "drum" in reasons
    assert info["pieces"]["train"] + info["pieces"]["validation"] == len(PIECES)
    assert info["pieces"]["validation"] >= 1
    assert len(train) == 2 * info["pieces"]["train"]  # each training piece + one transposed copy
    assert len(val) == info["pieces"]["validation"]
    bos, eos = tok.vocab["BOS_None"], tok.vocab["EOS_None"]
    assert all(d[0] == bos and d[-1] == eos and d.count(eos) == 1 for d in train + val)
    assert "3 skipped" in capsys.readouterr().err
    # by piece: the validation pieces never appear (untransposed) among the training documents
    assert not {tuple(d) for d in val} & {tuple(d) for d in train}


def test_dataset_with_nothing_usable_is_a_clear_error(midi_dir, task, tok):
    with pytest.raises(DataError, match="no usable MIDI"):
        task.build_datasets(DataConfig(path=str(midi_dir / "bad")), tok)
    with pytest.raises(DataError, match="neither a MIDI file"):
        task.build_datasets(DataConfig(path=str(midi_dir / "missing")), tok)


def test_instrument_names():
    assert parse_instrument("flute") == 73
    assert parse_instrument("Acoustic Grand Piano") == 0
    assert parse_instrument("violin") == 40
    assert parse_instrument("piano") == 0
    assert parse_instrument("41") == 41 and parse_instrument(5) == 5
    assert parse_instrument(None) is None
    with pytest.raises(ValueError, match="General MIDI name .*flute"):
        parse_instrument("kazooka")
    with pytest.raises(ValueError, match="0..127"):
        parse_instrument(200)


# ---- training and generation --------------------------------------------------------------------
def test_tiny_model_trains_and_generates_a_decodable_melody(run_dir, gen):
    for name in ("model.safetensors", "config.json", "tokenizer.json", "museforge.json", "config.yaml"):
        assert (run_dir / name).is_file(), name
    info = json.loads((run_dir / "museforge.json").read_text())
    assert info["task"] == "melody" and info["data"]["skipped"]["count"] == 3
    assert info["metrics"]["best_val_loss"] is not None
    samples = next((run_dir / "samples").iterdir()).read_text()
    assert "bars in" in samples
    m = gen.generate(bars=4, seed=1)
    assert isinstance(m, Melody) and m.notes > 0 and m.bars == 4
    again = gen.generate(bars=4, seed=1)
    assert again.tokens == m.tokens  # same seed, same melody


@pytest.mark.parametrize(("key", "tempo", "ts", "bars"), [("D minor", 96, "6/8", 4), ("Bb major", 140, "3/4", 3),
                                                           ("E minor", 60, "2/2", 2)])
def test_generation_honours_bars_tempo_and_time_signature(gen, tmp_path, key, tempo, ts, bars):
    outs = gen.generate(key=key, tempo=tempo, time_signature=ts, bars=bars, seed=7, num_return_sequences=3)
    assert len(outs) == 3
    for i, m in enumerate(outs):
        path = m.save(tmp_path / f"m{i}.mid")
        score = Score(str(path))  # judged from the file, as a player sees it
        assert round(score.tempos[0].qpm) == tempo
        sig = score.time_signatures[0]
        assert f"{sig.numerator}/{sig.denominator}" == ts
        assert count_bars(score) == bars
        assert max(n.end for n in score.tracks[0].notes) <= bars * m.score.ticks_per_quarter * 4 * sig.numerator / sig.denominator
        metrics = m.metrics()
        assert metrics["bars_ok"] and metrics["tempo_ok"] and metrics["time_signature_ok"]
        assert 0 <= metrics["in_key_rate"] <= 1
        assert m.provenance["key"] == key


def test_primer_continuation_keeps_key_tempo_and_metre(gen, midi_dir):
    primer = midi_dir / "jig_6_8.mid"
    m = gen.generate(primer=str(primer), bars=3, seed=2)
    original = Score(str(primer))
    assert m.provenance["tempo"] == 132 and m.provenance["time_signature"] == "6/8"
    assert m.provenance["key"] == "G major" and m.provenance["primer"] == str(primer)
    assert round(m.tempo) == 132 and m.time_signature == "6/8"
    primer_bars = m.metadata["primer_bars"]
    assert primer_bars == count_bars(original) and m.bars == primer_bars + 3
    got = [(n.time, n.pitch) for n in m.score.tracks[0].notes][: len(original.tracks[0].notes)]
    scale = m.score.ticks_per_quarter / original.ticks_per_quarter
    assert got == [(round(n.time * scale), n.pitch) for n in original.tracks[0].notes]  # the primer, unchanged
    # overrides: a new tempo, and a key the primer is transposed to
    moved = gen.generate(primer=str(primer), bars=1, seed=2, tempo=90, key="A major")
    assert round(moved.tempo) == 90 and moved.provenance["key"] == "A major"
    assert moved.score.tracks[0].notes[0].pitch == original.tracks[0].notes[0].pitch + 2


def test_saved_midi_carries_provenance_and_plays(gen, tmp_path):
    m = gen.generate(key="D minor", tempo=96, bars=2, seed=3, instrument="flute", temperature=0.9)
    path = m.save(tmp_path / "tune.mid")
    prov = read_provenance(path)
    assert prov["seed"] == 3 and prov["key"] == "D minor" and prov["tempo"] == 96
    assert prov["instrument"] == "flute" and prov["settings"]["temperature"] == 0.9 and prov["checkpoint"]
    assert b"museforge:" in path.read_bytes()
    assert Score(str(path)).tracks[0].program == 73
    pm = m.to_pretty_midi()
    assert pm.instruments[0].program == 73 and len(pm.instruments[0].notes) == m.notes
    text = str(m)
    assert text.startswith("2 bars in D minor at 96 bpm, 4/4, flute:") and text.endswith("(seed 3)")
    assert json.loads(json.dumps(m.to_dict()))["summary"] == text


def test_audio_and_piano_roll(gen, tmp_path):
    m = gen.generate(bars=2, seed=4, tempo=150)
    audio, engine = m.audio(sample_rate=8000)
    assert engine in ("fluidsynth", "numpy") and audio.ndim == 1 and abs(audio).max() > 0.05
    wav = m.save_audio(tmp_path / "tune.wav", sample_rate=8000)
    assert wav.stat().st_size > 1000 and m.metadata["audio_engine"] == engine
    png = m.piano_roll()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert m.piano_roll(tmp_path / "roll.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_controls_are_clear_errors(gen):
    with pytest.raises(ValueError, match="unknown key"):
        gen.generate(key="H minor")
    with pytest.raises(ValueError, match="tempo"):
        gen.generate(tempo=500)
    with pytest.raises(ValueError, match="time signature"):
        gen.generate(time_signature="11/16")
    with pytest.raises(ValueError, match="bars"):
        gen.generate(bars=0)
    with pytest.raises(ValueError, match="density"):
        gen.generate(density="loud")


def test_evaluate_melody_reports_model_and_markov_baseline(run_dir, midi_dir):
    report = evaluate_melody(str(run_dir), str(midi_dir))
    assert report["scored"].startswith("validation split")
    assert report["tokens"] > 0 and report["perplexity"] > 1 and report["markov3_perplexity"] > 1
    other = evaluate_melody(str(run_dir), str(midi_dir / "jig_6_8.mid"), samples=2, bars=2)
    assert other["pieces"] == 1 and other["scored"].startswith("all 1 pieces")
    stats = other["music_statistics"]
    assert {"pitch_range", "in_key_rate", "groove_consistency"} <= set(stats) and 0 <= stats["in_key_rate"]["overlap"] <= 1


# ---- CLI ----------------------------------------------------------------------------------------
def test_cli_generate_melody_writes_midi_wav_png(run_dir, tmp_path):
    from museforge.cli import app

    out, wav, png = tmp_path / "tune.mid", tmp_path / "tune.wav", tmp_path / "roll.png"
    result = CliRunner().invoke(app, ["generate", "melody", "--model", str(run_dir), "--key", "D minor", "--tempo", "96",
                                      "--bars", "4", "--seed", "3", "--out", str(out), "--wav", str(wav), "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert "4 bars in D minor at 96 bpm" in result.output
    score = Score(str(out))
    assert count_bars(score) == 4 and round(score.tempos[0].qpm) == 96
    assert wav.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_cli_bad_key_is_one_line_and_exit_2(run_dir, tmp_path):
    from museforge.cli import app

    result = CliRunner().invoke(app, ["generate", "melody", "--model", str(run_dir), "--key", "H minor",
                                      "--out", str(tmp_path / "x.mid")])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("museforge: error:")]
    assert errors == [result.output.strip().splitlines()[-1]] and "Traceback" not in result.output
    assert errors[0].startswith("museforge: error: unknown key 'H minor'")


def test_cli_eval_melody(run_dir, midi_dir):
    from museforge.cli import app

    result = CliRunner().invoke(app, ["eval", str(run_dir), "--task", "melody", "--data", str(midi_dir / "jig_6_8.mid")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["perplexity"] > 1 and "markov3_perplexity" in report


# ---- the shipped model --------------------------------------------------------------------------
def test_shipped_model_generates_a_playable_file(tmp_path):
    gen = Generator.load("melody")  # the default: src/museforge/assets/melody
    m = gen.generate(key="D minor", tempo=96, time_signature="3/4", bars=6, seed=3)
    path = m.save(tmp_path / "tune.mid")
    score = Score(str(path))
    assert count_bars(score) == 6 and round(score.tempos[0].qpm) == 96
    assert score.note_num() >= 6
    audio, _ = m.audio(sample_rate=8000)
    assert abs(audio).max() > 0.05


def test_cli_music_statistics_of_a_set_against_a_reference(midi_dir):
    from museforge.cli import app

    r = CliRunner().invoke(app, ["eval", "--task", "melody", "--midi", str(midi_dir), "--reference", str(midi_dir)])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    stats = report["music_statistics"]
    assert {"pitch_range", "pitch_class_entropy", "scale_consistency", "groove_consistency"} <= set(stats)
    assert all(v["overlap"] > 0.99 for v in stats.values())  # a set against itself overlaps fully
    assert report["files"]["midi"] == report["files"]["reference"] > 0
