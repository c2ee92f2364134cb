"""Rendering: audible audio of the right length, WAV files, piano-roll PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile
from symusic import Score

from museforge.music import render
from museforge.music.render import piano_roll_png, synthesize, to_pretty_midi, write_wav

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def numpy_engine(monkeypatch):
    monkeypatch.setattr(render, "_fluidsynth_available", lambda: False)


def test_numpy_synth_is_audible_and_timed(numpy_engine, midi_dir):
    # 8 quarter notes at 96 bpm = 5 s, plus the release tail
    audio, engine = synthesize(Score(midi_dir / "scale_3_4.mid"), sample_rate=16000)
    assert engine == "numpy"
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 16000 - (5 + render.RELEASE)) < 0.01
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio**2)) > 0.05
    # each quarter note is audible: no silent half-second window inside the piece
    windows = audio[: 5 * 16000].reshape(10, -1)
    assert (np.abs(windows).max(axis=1) > 0.1).all()


def test_synth_accepts_pretty_midi_paths_and_drums(numpy_engine, midi_dir):
    pm = to_pretty_midi(midi_dir / "polyphonic.mid")
    assert sum(len(i.notes) for i in pm.instruments) == 25 + 12 + 16
    audio, _ = synthesize(pm)
    assert abs(len(audio) / 22050 - pm.get_end_time()) < 0.2
    assert np.abs(audio).max() > 0.5


def test_synthesize_default_engine(midi_dir):
    audio, engine = synthesize(midi_dir / "jig_6_8.mid")
    assert engine in ("fluidsynth", "numpy") and np.abs(audio).max() > 0


def test_write_wav(tmp_path):
    tone = np.sin(np.linspace(0, 2 * np.pi * 440, 22050)).astype(np.float32)
    path = write_wav(tone * 1.5, 22050, tmp_path / "out" / "tone.wav")
    rate, data = wavfile.read(path)
    assert rate == 22050 and data.dtype == np.int16 and len(data) == 22050
    assert data.max() == 32767  # clipped, not wrapped


def test_piano_roll_png(tmp_path, midi_dir):
    data = piano_roll_png(midi_dir / "polyphonic.mid", title="test")
    assert data.startswith(PNG_MAGIC)
    path = piano_roll_png(Score(midi_dir / "jig_6_8.mid"), tmp_path / "roll.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert render._bar_lines(Score(midi_dir / "jig_6_8.mid"), 7.0).tolist() == [0.0, 3.0, 6.0]
