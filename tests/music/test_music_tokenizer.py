"""Tokenizer: MIDI -> tokens -> MIDI round trips, conditioning prefix, keys, melody extraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from music_fixtures import PIECES, make_score, scale_notes
from symusic import Score

from museforge.music import tokenizer as T


@pytest.fixture(scope="module")
def tok():
    return T.make_tokenizer()


def quarters(score: Score) -> dict[str, np.ndarray]:
    """Note arrays of the first track with times in quarter notes."""
    notes = score.tracks[0].notes.numpy()
    tpq = score.ticks_per_quarter
    return {
        "onset": notes["time"] / tpq,
        "duration": notes["duration"] / tpq,
        "pitch": notes["pitch"],
    }


@pytest.mark.parametrize("name", sorted(PIECES))
def test_round_trip(name, tok, midi_dir):
    original = Score(midi_dir / f"{name}.mid")
    decoded = T.decode(T.encode(midi_dir / f"{name}.mid", tok), tok)
    expected = quarters(T.extract_melody(original))
    got = quarters(decoded)
    np.testing.assert_array_equal(got["pitch"], expected["pitch"])
    np.testing.assert_allclose(got["onset"], expected["onset"])
    np.testing.assert_allclose(got["duration"], expected["duration"])
    assert decoded.tempos[0].qpm == original.tempos[0].qpm  # exact, e.g. 96 and 132 bpm
    assert decoded.tempos[0].mspq == original.tempos[0].mspq
    ts, ts0 = decoded.time_signatures[0], original.time_signatures[0]
    assert (ts.numerator, ts.denominator) == (ts0.numerator, ts0.denominator)
    assert decoded.tracks[0].program == original.tracks[0].program


def test_every_integer_tempo_round_trips(tok):
    # MIDI stores integer microseconds per quarter: 41 bpm is 1463415 us, i.e. 40.99999 bpm;
    # the round trip gives back the very same MIDI tempo.
    for bpm in range(T.TEMPO_RANGE[0], T.TEMPO_RANGE[1] + 1):
        score = make_score(scale_notes([60, 64, 67]), bpm=bpm)
        tempo = T.decode(T.encode(score, tok), tok).tempos[0]
        assert tempo.mspq == score.tempos[0].mspq
        assert round(tempo.qpm, 3) == bpm


def test_polyphonic_round_trip_without_melody_extraction(tok, midi_dir):
    original = Score(midi_dir / "polyphonic.mid")
    decoded = T.decode(T.encode(original, tok, melody=False), tok)
    pitched = [t for t in original.tracks if not t.is_drum]
    assert decoded.note_num() == sum(len(t.notes) for t in pitched)
    chord_pitches = sorted(n.pitch for n in decoded.tracks[0].notes if n.time == 0)
    assert chord_pitches == [48, 52, 55]


def test_prefix_format(tok, midi_dir):
    tokens = [tok[i] for i in T.encode(midi_dir / "scale_3_4.mid", tok)]
    assert tokens[:7] == [
        "BOS_None",
        "Key_C-major",
        "Tempo_96.0",
        "TimeSig_3/4",
        "Program_40",
        "Density_low",
        "Bar_None",
    ]
    assert tokens[-1] == "EOS_None"
    assert T.conditioning_prefix("dm", 120, "6/8") == [
        "BOS_None",
        "Key_D-minor",
        "Tempo_120.0",
        "TimeSig_6/8",
        "Program_0",
    ]
    assert all(
        t in tok.vocab for t in T.conditioning_prefix("F# minor", 40, "12/8", 127, "very-high")
    )


def test_decode_applies_prefix(tok, midi_dir):
    ids = T.encode(midi_dir / "scale_3_4.mid", tok)
    prefix = T.conditioning_prefix("C major", 77, "3/4", program=19)
    body = ids[ids.index(tok.vocab["Bar_None"]) :]
    decoded = T.decode([tok.vocab[t] for t in prefix] + body, tok)
    assert round(decoded.tempos[0].qpm, 3) == 77
    assert decoded.tracks[0].program == 19
    assert decoded.note_num() == 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("D minor", (2, "minor")),
        ("Dm", (2, "minor")),
        ("F# major", (6, "major")),
        ("Bb major", (10, "major")),
        ("C", (0, "major")),
        ("bb MINOR", (10, "minor")),
        ("eb", (3, "major")),
        ("B", (11, "major")),
        ("c#min", (1, "minor")),
        ("Key_Ab-major", (8, "major")),
    ],
)
def test_parse_key(text, expected):
    assert T.parse_key(text) == expected


@pytest.mark.parametrize("bad", ["H major", "C lydian", "", "Cbb", 5])
def test_parse_key_rejects(bad):
    with pytest.raises(ValueError, match="e.g. 'D minor'"):
        T.parse_key(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tempo": 300}, "tempo"),
        ({"tempo": 96.5}, "tempo"),
        ({"time_signature": "7/16"}, "time signature"),
        ({"program": 128}, "program"),
        ({"density": "dense"}, "density"),
    ],
)
def test_conditioning_prefix_rejects(kwargs, message):
    args = {"key": "C", "tempo": 120, "time_signature": "4/4", **kwargs}
    with pytest.raises(ValueError, match=message):
        T.conditioning_prefix(**args)


def test_every_key_has_a_token(tok):
    assert len(T.KEYS) == 24
    assert all(T.key_token(k) in tok.vocab for k in T.KEYS)


def test_save_load(tok, tmp_path, midi_dir):
    path = T.save_tokenizer(tok, tmp_path / "run")
    assert path.name == "tokenizer.json"
    loaded = T.load_tokenizer(tmp_path / "run")
    assert loaded == tok
    assert loaded.vocab == tok.vocab
    assert T.encode(midi_dir / "jig_6_8.mid", loaded) == T.encode(midi_dir / "jig_6_8.mid", tok)
    with pytest.raises(FileNotFoundError, match="save_tokenizer"):
        T.load_tokenizer(tmp_path / "missing")


def test_estimate_key(midi_dir):
    assert T.estimate_key(Score(midi_dir / "scale_3_4.mid")) == "C major"
    assert T.estimate_key(Score(midi_dir / "a_minor.mid")) == "A minor"


def test_estimate_key_uses_key_signature():
    # D natural minor tune with a one-flat signature flagged major (as many files do)
    d_minor = make_score(
        scale_notes([62, 65, 69, 67, 65, 64, 62, 57, 62], 0.5), key_signature=(-1, 0)
    )
    assert T.estimate_key(d_minor) == "D minor"
    f_major = make_score(scale_notes([65, 69, 72, 70, 69, 67, 65], 0.5), key_signature=(-1, 0))
    assert T.estimate_key(f_major) == "F major"


def test_extract_melody_is_monophonic_top_line(midi_dir):
    original = Score(midi_dir / "polyphonic.mid")
    melody = T.extract_melody(original)
    assert len(melody.tracks) == 1
    notes = melody.tracks[0].notes.numpy()
    assert np.all(np.diff(notes["time"]) > 0)
    assert np.all(notes["time"][:-1] + notes["duration"][:-1] <= notes["time"][1:])
    # the chord's top note sounds alone until the tune's pickup, then the tune is on top
    assert notes["pitch"].tolist() == [55] + [n.pitch for n in original.tracks[0].notes]
    assert notes["duration"][0] == notes["time"][1]  # the chord note is cut at the pickup
    assert melody.tempos[0].qpm == 120 and melody.time_signatures[0].numerator == 4
    chords_only = T.extract_melody(original, track=1)
    assert chords_only.tracks[0].notes.numpy()["pitch"].tolist() == [55, 60, 62, 55]
    with pytest.raises(ValueError, match="track 7"):
        T.extract_melody(original, track=7)


def test_encode_errors(tok, midi_dir):
    with pytest.raises(FileNotFoundError, match="not found"):
        T.encode(Path("nowhere.mid"), tok)
    with pytest.raises(ValueError, match="no pitched notes"):
        T.encode(midi_dir / "bad" / "drums_only.mid", tok)
