"""Hear and see a score: audio synthesis, WAV files, piano-roll pictures.

    python -c "from museforge.music.render import *; s = 'tune.mid'; \
write_wav(*synthesize(s)[:1], 22050, 'tune.wav'); piano_roll_png(s, 'tune.png')"

:func:`synthesize` uses FluidSynth with the General MIDI soundfont that pretty_midi
ships (TimGM6mb.sf2) when ``pyfluidsynth`` and ``libfluidsynth`` are installed, and
otherwise a small numpy synthesizer: four harmonics whose upper partials fade faster,
under an attack-decay-sustain-release envelope, plus a noise burst for drum hits.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pretty_midi
from matplotlib.figure import Figure
from scipy.io import wavfile
from symusic import Score

from museforge.music.tokenizer import load_score

HARMONICS = np.array([1.0, 0.5, 0.3, 0.15])  # relative amplitude of partials 1..4
ATTACK, DECAY, SUSTAIN, RELEASE = 0.01, 0.15, 0.6, 0.12  # seconds, seconds, level, seconds


def to_pretty_midi(score: Score | str | Path) -> pretty_midi.PrettyMIDI:
    """A ``pretty_midi.PrettyMIDI`` of a symusic Score or MIDI path."""
    return pretty_midi.PrettyMIDI(io.BytesIO(load_score(score).dumps_midi()))


def _fluidsynth_available() -> bool:
    try:
        import fluidsynth  # noqa: F401
    except (ImportError, OSError):  # OSError: the Python binding without libfluidsynth
        return False
    return True


def _notes_in_seconds(pm: pretty_midi.PrettyMIDI) -> np.ndarray:
    """Structured array of all notes: start, end (s), pitch, velocity, drum flag."""
    rows = [
        (n.start, n.end, n.pitch, n.velocity, inst.is_drum)
        for inst in pm.instruments
        for n in inst.notes
        if n.end > n.start
    ]
    dtype = [("start", "f8"), ("end", "f8"), ("pitch", "i4"), ("velocity", "i4"), ("drum", "?")]
    return np.array(rows, dtype=dtype)


def _adsr(duration: float, n: int, sample_rate: int) -> np.ndarray:
    """Envelope of ``n`` samples for a note held ``duration`` seconds then released."""
    t = np.arange(n) / sample_rate
    held = np.interp(t, [0, ATTACK, ATTACK + DECAY], [0, 1, SUSTAIN], right=SUSTAIN)
    level_at_release = np.interp(
        duration, [0, ATTACK, ATTACK + DECAY], [0, 1, SUSTAIN], right=SUSTAIN
    )
    released = level_at_release * np.clip(1 - (t - duration) / RELEASE, 0, 1)
    return np.where(t < duration, held, released)


def _numpy_synth(pm: pretty_midi.PrettyMIDI, sample_rate: int) -> np.ndarray:
    notes = _notes_in_seconds(pm)
    if len(notes) == 0:
        return np.zeros(int(sample_rate * 0.5), dtype=np.float32)
    audio = np.zeros(int((notes["end"].max() + RELEASE) * sample_rate) + 1)
    rng = np.random.default_rng(0)
    partials = np.arange(1, len(HARMONICS) + 1)
    for start, end, pitch, velocity, drum in notes:
        gain = velocity / 127
        if drum:  # 80 ms decaying noise burst
            n = int(0.08 * sample_rate)
            wave = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.015 * sample_rate)) * 0.5
        else:
            n = int((end - start + RELEASE) * sample_rate)
            t = np.arange(n) / sample_rate
            freq = 440.0 * 2 ** ((pitch - 69) / 12)
            amps = HARMONICS * (partials * freq < sample_rate / 2)  # drop partials above Nyquist
            # [partials, samples]: sin(2 pi k f t), upper partials decaying faster
            tones = np.sin(2 * np.pi * freq * partials[:, None] * t) * np.exp(
                -partials[:, None] * t * 1.5
            )
            wave = (amps @ tones) * _adsr(end - start, n, sample_rate)
        i = int(start * sample_rate)
        audio[i : i + n] += gain * wave[: len(audio) - i]
    peak = np.abs(audio).max()
    return (audio / peak * 0.9 if peak > 0 else audio).astype(np.float32)


def synthesize(
    score_or_pm: Score | pretty_midi.PrettyMIDI | str | Path, sample_rate: int = 22050
) -> tuple[np.ndarray, str]:
    """Render to mono float32 audio in [-1, 1]; returns ``(audio, engine name)``."""
    pm = (
        score_or_pm
        if isinstance(score_or_pm, pretty_midi.PrettyMIDI)
        else to_pretty_midi(score_or_pm)
    )
    if _fluidsynth_available():
        audio = pm.fluidsynth(fs=sample_rate)  # pretty_midi's bundled TimGM6mb.sf2
        peak = np.abs(audio).max() if audio.size else 0
        return (audio / peak * 0.9 if peak > 0 else audio).astype(np.float32), "fluidsynth"
    return _numpy_synth(pm, sample_rate), "numpy"


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it: a crash, a full disk or a
    Ctrl-C leaves either the old file or the new one, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_wav(audio: np.ndarray, sample_rate: int, path: str | Path) -> Path:
    """Write float audio in [-1, 1] as a 16-bit PCM WAV file (atomically); return its path."""
    pcm = (np.clip(np.asarray(audio, dtype=np.float64), -1, 1) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    wavfile.write(buffer, sample_rate, pcm)
    return atomic_write(path, buffer.getvalue())


def _bar_lines(score: Score, end: float) -> np.ndarray:
    """Bar start times in quarter notes up to ``end``, following time signature changes."""
    tpq = score.ticks_per_quarter
    sigs = [(ts.time / tpq, ts.numerator * 4 / ts.denominator) for ts in score.time_signatures] or [
        (0.0, 4.0)
    ]
    if sigs[0][0] > 0:
        sigs.insert(0, (0.0, 4.0))
    bars: list[np.ndarray] = []
    for (start, length), (stop, _) in zip(sigs, [*sigs[1:], (end, 0.0)], strict=True):
        bars.append(np.arange(start, min(stop, end), length))
    return np.concatenate(bars)


def piano_roll_png(
    score: Score | str | Path, path: str | Path | None = None, title: str | None = None
) -> bytes | Path:
    """Piano roll (time in quarter notes, bar lines, pitch names); PNG bytes, or the written path."""
    score = load_score(score)
    tpq = score.ticks_per_quarter
    end = max(score.end() / tpq, 1.0)
    fig = Figure(figsize=(min(24.0, max(6.0, end * 0.2)), 4), dpi=100)
    ax = fig.add_subplot()
    pitches: list[int] = []
    for i, track in enumerate(t for t in score.tracks if len(t.notes) and not t.is_drum):
        notes = track.notes.numpy()
        ax.barh(
            notes["pitch"],
            notes["duration"] / tpq,
            left=notes["time"] / tpq,
            height=0.8,
            color=f"C{i}",
            edgecolor="black",
            linewidth=0.3,
            label=track.name or f"track {i}",
        )
        pitches += notes["pitch"].tolist()
    low, high = (min(pitches) - 2, max(pitches) + 2) if pitches else (58, 74)
    ax.vlines(_bar_lines(score, end), low, high, colors="grey", linewidth=0.6)
    ax.set_xlim(0, end)
    ax.set_ylim(low, high)
    step = 1 if high - low <= 16 else 2 if high - low <= 32 else 12
    ticks = [p for p in range(low, high + 1) if (p % step == 0 if step < 12 else p % 12 == 0)]
    ax.set_yticks(ticks, [pretty_midi.note_number_to_name(p) for p in ticks])
    ax.set_xlabel("quarter notes")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    if path is None:
        return buffer.getvalue()
    return atomic_write(path, buffer.getvalue())
