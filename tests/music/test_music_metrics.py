"""Metrics on pieces with known answers, set comparison, and the Markov baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
from music_fixtures import make_score
from symusic import Score

from museforge.music import metrics as M


@pytest.fixture
def scale(midi_dir):
    return Score(midi_dir / "scale_3_4.mid")  # C4..C5 in quarter notes, 3/4


def test_c_major_scale(scale):
    assert M.scale_consistency(scale) == 1.0
    assert M.in_key_rate(scale, "C major") == 1.0
    assert M.in_key_rate(scale, "A minor") == 1.0
    assert M.in_key_rate(scale, "F# major") == pytest.approx(2 / 8)  # B and F (= E#)
    assert M.pitch_range(scale) == 12
    assert M.n_pitch_classes(scale) == 7
    p = np.array([2, 1, 1, 1, 1, 1, 1]) / 8
    assert M.pitch_class_entropy(scale) == pytest.approx(-(p * np.log2(p)).sum())
    assert M.note_density(scale) == 1.0
    assert M.empty_beat_rate(scale) == 0.0
    assert M.polyphony(scale) == 1.0


def test_rests_chords_and_grooves(midi_dir):
    gappy = make_score([(0, 1, 60), (2, 1, 62), (4, 1, 64), (6, 1, 65)])  # a rest after every note
    assert M.empty_beat_rate(gappy) == pytest.approx(3 / 7)  # 7 beats to the last note end
    assert M.note_density(gappy) == pytest.approx(4 / 7)
    assert M.groove_consistency(gappy) == 1.0  # bars 1 and 2 share one onset pattern
    poly = Score(midi_dir / "polyphonic.mid")
    assert 1.5 < M.polyphony(poly) < 4.0
    assert M.groove_consistency(poly) < 1.0


def test_compute_metrics_estimates_key(scale):
    values = M.compute_metrics(scale)
    assert set(values) == {*M.METRICS, "in_key_rate"}
    assert values["in_key_rate"] == 1.0
    with pytest.raises(ValueError, match="no pitched notes"):
        M.pitch_range(Score(480))


def test_compare_sets(midi_dir):
    paths = sorted(midi_dir.glob("*.mid"))
    same = M.compare_sets(paths, paths)
    assert all(v["overlap"] == pytest.approx(1.0, abs=1e-3) for v in same.values())
    assert same["pitch_range"]["generated_mean"] == same["pitch_range"]["reference_mean"]
    # constant metrics (polyphony 1.0 in every monophonic piece) use the histogram fallback
    mono = [M.compute_metrics(p) for p in paths if "polyphonic" not in p.name]
    assert M.compare_sets(mono, mono)["polyphony"]["overlap"] == 1.0
    assert M.overlap_area([1.0, 1.0], [5.0, 5.0]) == 0.0
    assert (
        M.overlap_area(
            np.random.default_rng(0).normal(0, 1, 300), np.random.default_rng(1).normal(8, 1, 300)
        )
        < 0.01
    )
    with pytest.raises(ValueError, match="empty"):
        M.compare_sets([], paths)


def test_markov_model():
    rng = np.random.default_rng(0)
    train = [[1, 2, 3, 4] * 20 for _ in range(5)]
    model = M.MarkovModel(n=3).fit(train)
    assert model.perplexity(train) < 1.2
    noise = [rng.integers(0, 5, 80).tolist()]
    assert model.perplexity(noise) > 3
    sample = model.sample([1, 2], 10, rng=0)
    assert sample[:2] == [1, 2] and len(sample) == 12
    assert sample[2:6] == [3, 4, 1, 2]  # deterministic patterns are reproduced
    assert sample == model.sample([1, 2], 10, rng=0)
    assert M.MarkovModel(n=1).fit(train).perplexity(train) == pytest.approx(4, rel=0.01)
    assert math.isfinite(model.perplexity([[99, 1, 2]]))  # unseen token: smoothed, not infinite
    with pytest.raises(ValueError, match="not fitted"):
        M.MarkovModel().perplexity(train)
