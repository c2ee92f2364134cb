"""A generated melody: the score, its tokens, its provenance, and ways to hear and see it.

    m = museforge.generate_melody(key="D minor", tempo=96, time_signature="6/8", bars=16, seed=3)
    print(m)                      # 16 bars in D minor at 96 bpm, 6/8, flute: 71 notes (seed 3)
    m.save("tune.mid")            # provenance goes into the file as a MIDI marker (JSON)
    m.save_audio("tune.wav"); m.piano_roll("roll.png"); m.metrics()

``Melody`` is what the melody task returns where text tasks return an ``Output``: it has the
same ``task``, ``prompt``, ``provenance`` and ``to_dict()``, and ``str()`` is a one-line summary.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi
from symusic import Score, TextMeta

from museforge.music.metrics import compute_metrics
from museforge.music.render import piano_roll_png, synthesize, to_pretty_midi, write_wav

PROVENANCE_MARKER = "museforge:"
"""Prefix of the MIDI marker that holds the provenance JSON (read it back with `read_provenance`)."""


def instrument_name(program: int) -> str:
    """Lower-case General MIDI name of a program, e.g. 73 -> "flute"."""
    return pretty_midi.program_to_instrument_name(int(program)).lower()


def bar_ticks(score: Score) -> int:
    """Length of one bar in ticks under the score's first time signature (4/4 when none)."""
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    num, den = (ts.numerator, ts.denominator) if ts else (4, 4)
    return round(score.ticks_per_quarter * 4 * num / den)


def count_bars(score: Score) -> int:
    """Bars spanned by the notes, from time 0 to the end of the last note."""
    ends = [n.end for t in score.tracks for n in t.notes]
    return math.ceil(max(ends) / bar_ticks(score)) if ends else 0


def finish_melody(score: Score, bars: int, program: int | None = None) -> Score:
    """Make a decoded melody exactly `bars` long and monophonic: each note ends where the next
    starts, the last one at the final bar line; optionally set the instrument program."""
    limit = bars * bar_ticks(score)
    for track in score.tracks:
        notes = sorted((n for n in track.notes if n.time < limit), key=lambda n: n.time)
        for n, end in zip(notes, [*(m.time for m in notes[1:]), limit], strict=True):
            n.duration = max(1, min(n.duration, end - n.time))
        track.notes = notes
        if program is not None:
            track.program = program
    return score


def read_provenance(path: str | Path) -> dict[str, Any] | None:
    """The provenance a museforge .mid carries (None when the file has none)."""
    for marker in Score(str(path)).markers:
        if marker.text.startswith(PROVENANCE_MARKER):
            return json.loads(marker.text[len(PROVENANCE_MARKER):])
    return None


@dataclass
class Melody:
    """A generated melody. `str(m)` is a one-line summary; `m.score` is a symusic Score in ticks."""

    score: Score
    tokens: list[int]
    provenance: dict[str, Any]
    task: str = "melody"
    prompt: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    # ---- what it is ----------------------------------------------------------------------
    @property
    def notes(self) -> int:
        return int(self.score.note_num())

    @property
    def bars(self) -> int:
        return count_bars(self.score)

    @property
    def tempo(self) -> float:
        return float(self.score.tempos[0].qpm) if len(self.score.tempos) else 120.0

    @property
    def time_signature(self) -> str:
        ts = self.score.time_signatures[0] if len(self.score.time_signatures) else None
        return f"{ts.numerator}/{ts.denominator}" if ts else "4/4"

    @property
    def program(self) -> int:
        return int(self.score.tracks[0].program) if len(self.score.tracks) else 0

    @property
    def key(self) -> str | None:
        return self.provenance.get("key")

    def __str__(self) -> str:
        seed = self.provenance.get("seed")
        key = f" in {self.key}" if self.key else ""
        primer = f" (after a {self.metadata['primer_bars']}-bar primer)" if self.metadata.get("primer_bars") else ""
        return (f"{self.bars} bars{key} at {round(self.tempo)} bpm, {self.time_signature}, "
                f"{instrument_name(self.program)}: {self.notes} notes{primer}"
                + (f" (seed {seed})" if seed is not None else ""))

    # ---- files, sound, pictures --------------------------------------------------------
    def midi_score(self) -> Score:
        """A copy of the score with the provenance as a marker at time 0."""
        score = self.score.copy()
        text = PROVENANCE_MARKER + json.dumps(self.provenance, separators=(",", ":"), default=str)
        score.markers.append(TextMeta(0, text))
        return score

    def save(self, path: str | Path) -> Path:
        """Write a standard MIDI file (provenance in a marker meta event); returns the path."""
        from museforge.music.render import atomic_write

        return atomic_write(path, self.midi_score().dumps_midi())

    def to_pretty_midi(self) -> pretty_midi.PrettyMIDI:
        return to_pretty_midi(self.score)

    def audio(self, sample_rate: int = 22050) -> tuple[np.ndarray, str]:
        """(float32 mono audio in [-1, 1], engine): FluidSynth + GM soundfont when installed, else numpy."""
        return synthesize(self.score, sample_rate)

    def save_audio(self, path: str | Path, sample_rate: int = 22050) -> Path:
        """Render to a 16-bit WAV file; the engine used is recorded in `metadata["audio_engine"]`."""
        audio, engine = self.audio(sample_rate)
        self.metadata["audio_engine"] = engine
        return write_wav(audio, sample_rate, path)

    def piano_roll(self, path: str | Path | None = None) -> bytes | Path:
        """A PNG piano roll: the bytes, or the written path when `path` is given."""
        return piano_roll_png(self.score, path, title=str(self))

    # ---- numbers --------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """Music statistics (MusPy definitions), in-key rate for the requested key, and the
        bars/tempo/time signature the file really has next to those requested."""
        out: dict[str, Any] = compute_metrics(self.score, self.key) if self.notes else {}
        requested = self.provenance
        out.update(bars=self.bars, tempo=round(self.tempo, 2), time_signature=self.time_signature, notes=self.notes)
        if requested.get("bars") is not None:
            want = requested["bars"] + self.metadata.get("primer_bars", 0)
            out["bars_ok"] = self.bars == want
        if requested.get("tempo") is not None:
            out["tempo_ok"] = abs(self.tempo - requested["tempo"]) < 0.5
        if requested.get("time_signature"):
            out["time_signature_ok"] = self.time_signature == requested["time_signature"]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: summary, provenance, metrics."""
        return {"task": self.task, "summary": str(self), "provenance": self.provenance, "metrics": self.metrics(),
                "tokens": len(self.tokens), **({"metadata": self.metadata} if self.metadata else {})}
