"""Session fixture: a folder of MIDI files written from music_fixtures, plus unusable files."""

from __future__ import annotations

from pathlib import Path

import pytest
from music_fixtures import PIECES, TPQ, drums_track
from symusic import Score, Track


@pytest.fixture(scope="session")
def midi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every piece of PIECES as a .mid file, plus unusable files in bad/."""
    root = tmp_path_factory.mktemp("midi")
    for name, build in PIECES.items():
        build().dump_midi(root / f"{name}.mid")
    bad = root / "bad"
    bad.mkdir()
    drums_only = Score(TPQ)
    drums_only.tracks.append(drums_track())
    drums_only.dump_midi(bad / "drums_only.mid")
    (bad / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06 this is not a midi file" * 3)
    (bad / "empty.mid").write_bytes(b"")
    no_notes = Score(TPQ)
    no_notes.tracks.append(Track(name="silent"))
    no_notes.dump_midi(bad / "no_notes.mid")
    return root
