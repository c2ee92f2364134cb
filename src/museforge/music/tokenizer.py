"""MIDI <-> token ids for melody language models (MidiTok REMI + a conditioning prefix).

    python -c "from museforge.music import make_tokenizer, encode, decode; \
tok = make_tokenizer(); print(decode(encode('tune.mid', tok), tok))"

Why REMI: a melody model needs bars. REMI spells every bar (``Bar`` then ``TimeSig``)
and the metric ``Position`` of each onset inside it, so a generator can count bars
(:class:`~museforge.music.grammar.StopAfterBars`), keep the requested metre, and the
grammar can forbid positions past the end of the bar. TSD/MIDI-Like only spell time
shifts (TSD is 9% shorter on the Nottingham melodies) and lose the bar structure.

Configuration (all MidiTok features, nothing re-implemented):

* time grid: 24 positions per beat for the first 4 beats of a duration, 4 per beat
  up to 12 beats. 24 is the least that holds 16ths *and* triplets when the beat is a
  half note (2/2, 3/2), since MidiTok counts positions per time-signature beat.
* tempo: 201 ``Tempo`` tokens, 40..240 bpm in steps of exactly 1 bpm, so integer bpm
  round-trips (MidiTok's default 32 bins turn 120 into 121.29).
* time signatures: n/8 for n in 3 5 6 7 9 12, n/4 for n in 1..7, n/2 for n in 2 3 4.
* 8 velocity bins, no drum tokens, ``use_programs`` off (one melody track).

Conditioning prefix (MidiTok special tokens take exactly one underscore, hence the dash
in ``Key_D-minor``). Every sequence produced by :func:`encode` is::

    BOS_None Key_<tonic>-<mode> Tempo_<bpm>.0 TimeSig_<n>/<d> Program_<0-127> Density_<b>
    Bar_None TimeSig_<n>/<d> Position_.. [Tempo_..] Pitch_.. Velocity_.. Duration_.. ...
    EOS_None

``Tempo`` and ``TimeSig`` in the prefix are the tokenizer's own tokens; ``Key``,
``Program`` and ``Density`` are extra special tokens. Density buckets are notes per
quarter note of the melody: ``very-low`` < 0.75 <= ``low`` < 1.25 <= ``medium`` < 1.75
<= ``high`` < 2.5 <= ``very-high``. Everything before the first ``Bar_None`` is the
prefix; :func:`decode` reads it and applies its tempo, time signature and program.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import miditok
import numpy as np
from symusic import Note, Score, Tempo, Track
from symusic.core import ScoreTick

from museforge.errors import MissingFileError, UserError

MAJOR_NAMES = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
MINOR_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"]
KEYS = [f"{n} major" for n in MAJOR_NAMES] + [f"{n} minor" for n in MINOR_NAMES]
TEMPO_RANGE = (40, 240)
TIME_SIGNATURES = {8: [3, 5, 6, 7, 9, 12], 4: [1, 2, 3, 4, 5, 6, 7], 2: [2, 3, 4]}
DENSITY_BUCKETS = ["very-low", "low", "medium", "high", "very-high"]
DENSITY_EDGES = [0.75, 1.25, 1.75, 2.5]  # notes per quarter note between buckets
CONDITION_TYPES = ("Key", "Program", "Density")
_PITCH_CLASS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_KEY_RE = re.compile(
    r"^\s*(?:key_)?([a-g])\s*(#|b|♯|♭|-|sharp|flat)?\s*[-_ ]?\s*(major|maj|minor|min|m)?\s*$",
    re.IGNORECASE,
)
# Krumhansl & Kessler (1982) key profiles, tonic first.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def make_tokenizer() -> miditok.REMI:
    """Return the REMI tokenizer museforge melody models use (see the module docstring)."""
    special = ["PAD", "BOS", "EOS", "MASK"]
    special += [key_token(k) for k in KEYS]
    special += [f"Program_{p}" for p in range(128)]
    special += [f"Density_{b}" for b in DENSITY_BUCKETS]
    config = miditok.TokenizerConfig(
        pitch_range=(21, 109),
        beat_res={(0, 4): 24, (4, 12): 4},
        num_velocities=8,
        use_tempos=True,
        tempo_range=TEMPO_RANGE,
        num_tempos=TEMPO_RANGE[1] - TEMPO_RANGE[0] + 1,
        use_time_signatures=True,
        time_signature_range=TIME_SIGNATURES,
        use_pitchdrum_tokens=False,
        special_tokens=special,
    )
    return miditok.REMI(config)


def save_tokenizer(tokenizer: miditok.MusicTokenizer, directory: str | Path) -> Path:
    """Save ``tokenizer`` as ``<directory>/tokenizer.json`` (MidiTok's format); return the file."""
    path = Path(directory) / miditok.constants.DEFAULT_TOKENIZER_FILE_NAME
    tokenizer.save(path)
    return path


def load_tokenizer(directory: str | Path) -> miditok.MusicTokenizer:
    """Load a tokenizer saved by :func:`save_tokenizer` (a folder or the json file itself)."""
    path = Path(directory)
    if path.is_dir():
        path /= miditok.constants.DEFAULT_TOKENIZER_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}; save one with save_tokenizer()")
    kind = json.loads(path.read_text()).get("tokenization", "REMI")
    return getattr(miditok, kind)(params=path)


def parse_key(key: str) -> tuple[int, str]:
    """Parse "D minor", "Dm", "F# major", "Bb major", "C" (any case) into (tonic pitch class, mode)."""
    match = _KEY_RE.match(key) if isinstance(key, str) else None
    if match is None:
        raise UserError(
            f"unknown key {key!r}; use a tonic A-G with optional # or b and optional "
            "major/minor, e.g. 'D minor', 'Dm', 'F# major', 'Bb major' or 'C'"
        )
    letter, accidental, mode = match.groups()
    shift = 0
    if accidental:
        shift = 1 if accidental.lower() in ("#", "♯", "sharp") else -1
    minor = mode is not None and mode.lower() in ("minor", "min", "m")
    return (_PITCH_CLASS[letter.lower()] + shift) % 12, "minor" if minor else "major"


def key_name(tonic: int, mode: str) -> str:
    """Conventionally spelled name of a key, e.g. ``key_name(10, "major") == "Bb major"``."""
    names = MINOR_NAMES if mode == "minor" else MAJOR_NAMES
    return f"{names[tonic % 12]} {mode}"


def key_token(key: str) -> str:
    """Conditioning token of a key, e.g. ``key_token("dm") == "Key_D-minor"``."""
    tonic, mode = parse_key(key)
    return "Key_" + key_name(tonic, mode).replace(" ", "-")


def density_bucket(notes_per_quarter: float) -> str:
    """Density bucket name for a note rate in notes per quarter note."""
    return DENSITY_BUCKETS[int(np.searchsorted(DENSITY_EDGES, notes_per_quarter, side="right"))]


def conditioning_prefix(
    key: str,
    tempo: int,
    time_signature: str,
    program: int | None = None,
    density: str | None = None,
) -> list[str]:
    """Token strings that start a sequence: BOS, key, tempo, time signature, program, density.

    ``program`` None means 0 (GM Acoustic Grand Piano). ``density`` None leaves the
    density token out, so a model samples it.
    """
    if not isinstance(tempo, (int, np.integer)) or not TEMPO_RANGE[0] <= tempo <= TEMPO_RANGE[1]:
        raise UserError(
            f"tempo must be an integer bpm in {TEMPO_RANGE[0]}..{TEMPO_RANGE[1]}, got {tempo!r}"
        )
    num, _, den = str(time_signature).partition("/")
    if not (num.isdigit() and den.isdigit() and int(num) in TIME_SIGNATURES.get(int(den), [])):
        valid = ", ".join(f"{n}/{d}" for d, ns in TIME_SIGNATURES.items() for n in ns)
        raise UserError(f"unsupported time signature {time_signature!r}; use one of {valid}")
    program = 0 if program is None else program
    if not 0 <= program <= 127:
        raise UserError(f"program must be a General MIDI program 0..127, got {program}")
    tokens = ["BOS_None", key_token(key), f"Tempo_{float(tempo)}", f"TimeSig_{int(num)}/{int(den)}"]
    tokens.append(f"Program_{program}")
    if density is not None:
        if density not in DENSITY_BUCKETS:
            raise UserError(
                f"unknown density {density!r}; use one of {', '.join(DENSITY_BUCKETS)}"
            )
        tokens.append(f"Density_{density}")
    return tokens


MAX_MIDI_BYTES = 16 * 2**20  # a long orchestral MIDI file is ~1 MB; more is not a melody


def load_score(score_or_path: Score | str | Path) -> ScoreTick:
    """A ``symusic.Score`` in ticks from a Score or a .mid/.midi/.abc path.

    A path that is missing, a folder, empty, huge, not MIDI or corrupt raises UserError naming it.
    """
    if isinstance(score_or_path, (str, Path)):
        path = Path(score_or_path).expanduser()
        if not path.exists():
            raise MissingFileError(f"MIDI file not found: {path}: check the path")
        if not path.is_file():
            raise UserError(f"{path} is a folder, not a MIDI file: give one .mid file")
        size = path.stat().st_size
        if size == 0:
            raise UserError(f"{path} is empty (0 bytes): give a .mid file with notes")
        if size > MAX_MIDI_BYTES:
            raise UserError(f"{path} is {size / 2**20:.0f} MB, more than a MIDI melody can be "
                            f"({MAX_MIDI_BYTES // 2**20} MB at most): give a smaller .mid file")
        if path.suffix.lower() != ".abc":
            with path.open("rb") as f:
                if f.read(4) != b"MThd":
                    raise UserError(f"{path} is not a MIDI file (no MThd header): give a .mid file")
        try:
            score = Score(path)
        except Exception as e:  # noqa: BLE001 - symusic raises RuntimeError/ValueError/... on bad bytes
            reason = " ".join(str(e).split())[:120] or type(e).__name__
            raise UserError(f"{path} is not a readable MIDI file ({reason}): re-export it as a standard "
                            "MIDI file") from None
        if score.ticks_per_quarter <= 0:  # a 0 or SMPTE time division (found by fuzzing: MidiTok divides by it)
            raise UserError(f"{path} has no musical time division ({score.ticks_per_quarter} ticks per quarter "
                            "note): re-export it as a standard MIDI file")
        return score
    if not isinstance(score_or_path, ScoreTick):
        return score_or_path.to("tick")
    return score_or_path


def _pitched_notes(score: ScoreTick, track: int | None = None) -> dict[str, np.ndarray]:
    """Note arrays (time, duration, pitch, velocity) of one track or all non-drum tracks."""
    if track is not None:
        if not -len(score.tracks) <= track < len(score.tracks):
            raise UserError(
                f"track {track} does not exist; the file has {len(score.tracks)} tracks"
            )
        tracks = [score.tracks[track]]
    else:
        tracks = [t for t in score.tracks if not t.is_drum]
    arrays = [t.notes.numpy() for t in tracks if len(t.notes)]
    fields = ("time", "duration", "pitch", "velocity")
    if not arrays:
        return {f: np.zeros(0, dtype=np.int32) for f in fields}
    return {f: np.concatenate([a[f] for a in arrays]).astype(np.int32) for f in fields}


def estimate_key(score: Score) -> str:
    """Key of a score, e.g. "A minor".

    Krumhansl-Schmuckler: the key profile best correlated with the duration-weighted
    pitch-class histogram. When the file has a key signature, it fixes the accidentals
    and the profiles only choose between that major key and its relative minor (MIDI
    files often store minor keys with a major mode flag).
    """
    notes = _pitched_notes(load_score(score))
    if len(notes["pitch"]) == 0:
        raise ValueError("cannot estimate the key of a score with no pitched notes")
    hist = np.bincount(notes["pitch"] % 12, weights=notes["duration"] + 1, minlength=12)
    candidates = [(tonic, mode) for mode in ("major", "minor") for tonic in range(12)]
    if len(score.key_signatures):
        major = score.key_signatures[0].key * 7 % 12
        candidates = [(major, "major"), ((major + 9) % 12, "minor")]

    def corr(tonic: int, mode: str) -> float:
        profile = np.roll(_KK_MAJOR if mode == "major" else _KK_MINOR, tonic)
        return float(np.corrcoef(hist, profile)[0, 1]) if hist.std() > 0 else 0.0

    return key_name(*max(candidates, key=lambda c: corr(*c)))


def extract_melody(score: Score, track: int | None = None) -> ScoreTick:
    """Monophonic top line (skyline) of all non-drum tracks, or of track index ``track``.

    At each onset the highest note wins; a lower note starting under a sounding higher
    note is dropped, and a note is cut where the next kept note starts. Tempos, time
    and key signatures are kept; the track takes the program of the first source track.
    """
    score = load_score(score)
    notes = _pitched_notes(score, track)
    order = np.lexsort((-notes["pitch"], notes["time"]))
    time, dur, pitch, vel = (notes[f][order] for f in ("time", "duration", "pitch", "velocity"))
    keep: list[int] = []
    for i in range(len(time)):
        if keep:
            last = keep[-1]
            end = time[last] + dur[last]
            if time[i] == time[last] or (time[i] < end and pitch[i] < pitch[last]):
                continue
            dur[last] = min(dur[last], time[i] - time[last])
        keep.append(i)
    sources = (
        [score.tracks[track]] if track is not None else [t for t in score.tracks if not t.is_drum]
    )
    melody = score.copy()
    out = Track(name="melody", program=sources[0].program if sources else 0)
    idx = np.array(keep, dtype=np.int64)
    out.notes = Note.from_numpy(
        time=time[idx],
        duration=dur[idx],
        pitch=pitch[idx].astype(np.int8),
        velocity=vel[idx].astype(np.int8),
    )
    melody.tracks = [out]
    return melody


def _merge_tracks(score: ScoreTick, track: int | None) -> ScoreTick:
    """All non-drum notes (or one track's) in a single track, polyphony kept."""
    notes = _pitched_notes(score, track)
    sources = (
        [score.tracks[track]] if track is not None else [t for t in score.tracks if not t.is_drum]
    )
    merged = score.copy()
    out = Track(name="notes", program=sources[0].program if sources else 0)
    out.notes = Note.from_numpy(
        time=notes["time"],
        duration=notes["duration"],
        pitch=notes["pitch"].astype(np.int8),
        velocity=notes["velocity"].astype(np.int8),
    )
    out.notes.sort()
    merged.tracks = [out]
    return merged


def encode(
    score_or_path: Score | str | Path,
    tokenizer: miditok.MusicTokenizer,
    melody: bool = True,
    track: int | None = None,
    program: int | None = None,
) -> list[int]:
    """Token ids of a score: conditioning prefix, REMI tokens, EOS.

    ``melody`` keeps the skyline top line (else all non-drum notes in one polyphonic
    stream); ``track`` restricts to one track index; ``program`` overrides the GM
    program written in the prefix (default: the source track's).
    """
    score = load_score(score_or_path)
    part = extract_melody(score, track) if melody else _merge_tracks(score, track)
    part = tokenizer.preprocess_score(part)  # quantizes time, tempo; drops unsupported signatures
    if not part.tracks or len(part.tracks[0].notes) == 0:
        raise UserError("the score has no pitched notes in the tokenizer's pitch range 21..108")
    notes = part.tracks[0].notes
    ts = part.time_signatures[0]
    tempo = int(round(part.tempos[0].qpm))
    quarters = max(notes[-1].end, 1) / part.ticks_per_quarter
    prefix = conditioning_prefix(
        estimate_key(score),
        tempo,
        f"{ts.numerator}/{ts.denominator}",
        part.tracks[0].program if program is None else program,
        density_bucket(len(notes) / quarters),
    )
    body = tokenizer.encode(part, no_preprocess_score=True)[0].ids
    return [tokenizer.vocab[t] for t in prefix] + list(body) + [tokenizer.vocab["EOS_None"]]


def decode(ids: list[int] | np.ndarray, tokenizer: miditok.MusicTokenizer) -> ScoreTick:
    """A one-track Score from token ids, with the prefix's tempo, time signature and program.

    Conditioning and special tokens are not decoded as notes; decoding stops at EOS.
    """
    tokens = [tokenizer[int(i)] for i in ids]
    if "EOS_None" in tokens:
        tokens = tokens[: tokens.index("EOS_None")]
    start = tokens.index("Bar_None") if "Bar_None" in tokens else len(tokens)
    prefix = dict(t.split("_", 1) for t in tokens[:start])
    skip = {"PAD", "BOS", "MASK", *CONDITION_TYPES}
    body = [t for t in tokens[start:] if t.split("_", 1)[0] not in skip]
    sigs = [t for t in body if t.startswith("TimeSig_")]
    if "TimeSig" in prefix and sigs:  # the request wins over the first generated metre
        body = [f"TimeSig_{prefix['TimeSig']}" if t == sigs[0] else t for t in body]
    program = int(prefix.get("Program", 0))
    score = tokenizer.decode([[tokenizer.vocab[t] for t in body]], programs=[(program, False)])
    if "Tempo" in prefix:
        tempos = [t for t in score.tempos if t.time > 0]
        score.tempos = [Tempo(0, float(prefix["Tempo"]))] + tempos
    if not score.tracks:
        score.tracks.append(Track(name="melody", program=program))
    return score
