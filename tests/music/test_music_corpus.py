"""Corpora: robust loading with reasons, deterministic splits, music21 conversion with resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from museforge.music.corpus import builtin_corpus, cache_root, load_midi_files, split_train_valid


def test_load_folder_skips_bad_files_with_reasons(midi_dir):
    loaded, skipped = load_midi_files(midi_dir)
    assert sorted(p.stem for p, _ in loaded) == [
        "a_minor",
        "jig_6_8",
        "polyphonic",
        "reel_2_2",
        "scale_3_4",
    ]
    reasons = {p.name: r for p, r in skipped}
    assert reasons["empty.mid"] == "empty file"
    assert reasons["drums_only.mid"] == "drum tracks only"
    assert reasons["no_notes.mid"] == "no notes"
    assert reasons["corrupt.mid"].startswith("corrupt or unreadable MIDI")


def test_load_single_file_and_list(midi_dir):
    loaded, skipped = load_midi_files(
        [midi_dir / "scale_3_4.mid", str(midi_dir / "bad" / "empty.mid")]
    )
    assert [p.name for p, _ in loaded] == ["scale_3_4.mid"] and len(skipped) == 1
    assert loaded[0][1].note_num() == 8


def test_nothing_usable_is_a_clear_error(midi_dir, tmp_path):
    with pytest.raises(ValueError, match=r"no usable MIDI files .*4 found, 4 skipped"):
        load_midi_files(midi_dir / "bad")
    with pytest.raises(ValueError, match="0 found"):
        load_midi_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="corpus name"):
        load_midi_files(tmp_path / "missing")


def test_split_is_deterministic_disjoint_and_stable():
    files = [Path(f"tune{i:03d}.mid") for i in range(200)]
    train, valid = split_train_valid(files, valid_fraction=0.1)
    assert (train, valid) == split_train_valid(list(reversed(files))[::-1], valid_fraction=0.1)
    assert set(train).isdisjoint(valid) and len(train) + len(valid) == 200
    assert 10 <= len(valid) <= 30
    _, valid_more = split_train_valid([*files, Path("new.mid")], valid_fraction=0.1)
    assert set(valid) <= set(valid_more)  # adding a piece moves no other piece
    assert split_train_valid(files, seed=1)[1] != valid
    pairs = [(f, None) for f in files[:2]]
    assert len(split_train_valid(pairs, valid_fraction=0.1)[1]) == 1


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSEFORGE_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    with pytest.raises(ValueError, match="unknown corpus 'essen'"):
        builtin_corpus("essen")


def test_bach_conversion_resumes(tmp_path):
    out = builtin_corpus("bach", cache_dir=tmp_path, limit=2)
    assert len(list(out.glob("*.mid"))) == 2
    assert len(json.loads((out / "done.json").read_text())) == 2
    builtin_corpus("bach", cache_dir=tmp_path, limit=3)  # resumes: converts one more
    loaded, skipped = load_midi_files(out)
    assert len(loaded) == 3 and not skipped
    assert not list(out.glob("*.tmp"))
    score = loaded[0][1]
    assert len([t for t in score.tracks if len(t.notes)]) == 4  # SATB


def test_folk_conversion(tmp_path):
    out = builtin_corpus("oneills", cache_dir=tmp_path, limit=3)
    loaded, _ = load_midi_files(out)
    assert len(loaded) == 3
    assert json.loads((out / "skipped.json").read_text()) == {}
    # pickups are shifted so the first full bar starts on a bar line
    pickup = next(score for path, score in loaded if "fare-you-well" in path.name)
    assert pickup.tracks[0].notes[0].time == 1.5 * pickup.ticks_per_quarter
