"""MIDI pieces built in code, with known tempo, metre, key and notes (shared by the music tests)."""

from __future__ import annotations

from symusic import KeySignature, Note, Score, Tempo, TimeSignature, Track

TPQ = 480


def make_score(
    notes: list[tuple[float, float, int]],
    bpm: float = 120,
    time_signature: tuple[int, int] = (4, 4),
    program: int = 0,
    extra_tracks: list[Track] | None = None,
    key_signature: tuple[int, int] | None = None,
) -> Score:
    """A one-track score from (onset, duration, pitch) in quarter notes."""
    score = Score(TPQ)
    score.tempos.append(Tempo(0, float(bpm)))
    score.time_signatures.append(TimeSignature(0, *time_signature))
    if key_signature is not None:
        score.key_signatures.append(KeySignature(0, *key_signature))
    track = Track(name="melody", program=program)
    for onset, duration, pitch in notes:
        track.notes.append(Note(round(onset * TPQ), round(duration * TPQ), pitch, 90))
    score.tracks.append(track)
    for extra in extra_tracks or []:
        score.tracks.append(extra)
    return score


def scale_notes(pitches: list[int], step: float = 1.0) -> list[tuple[float, float, int]]:
    return [(i * step, step, p) for i, p in enumerate(pitches)]


C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]
# A harmonic minor melody that leans on the tonic triad.
A_MINOR = [69, 72, 76, 74, 72, 71, 68, 69, 64, 69, 72, 71, 69, 68, 69, 57]


def chords_track() -> Track:
    chords = Track(name="chords", program=48)
    for bar, root in enumerate([48, 53, 55, 48]):
        for pitch in (root, root + 4, root + 7):
            chords.notes.append(Note(bar * 4 * TPQ, 4 * TPQ, pitch, 70))
    return chords


def drums_track() -> Track:
    drums = Track(name="drums", program=0, is_drum=True)
    for beat in range(16):
        drums.notes.append(Note(beat * TPQ, TPQ // 4, 36 if beat % 2 == 0 else 38, 100))
    return drums


PIECES = {
    # C major scale, 96 bpm, 3/4, violin
    "scale_3_4": lambda: make_score(
        scale_notes(C_MAJOR), bpm=96, time_signature=(3, 4), program=40
    ),
    # melody over a chord track and a drum track, 120 bpm 4/4, with a pickup rest
    "polyphonic": lambda: make_score(
        [
            (0.5, 0.5, 67),
            *[(1 + i * 0.5, 0.5, p) for i, p in enumerate([72, 71, 72, 74, 76, 74, 72, 71] * 3)],
        ],
        extra_tracks=[chords_track(), drums_track()],
    ),
    # a jig: 6/8 at 132 bpm, eighth notes and an eighth-note triplet
    "jig_6_8": lambda: make_score(
        [
            *scale_notes([67, 69, 71, 72, 74, 76, 74, 72, 71], 0.5),
            *[(4.5 + i / 3, 1 / 3, p) for i, p in enumerate([69, 71, 69])],
            (5.5, 0.5, 67),
        ],
        bpm=132,
        time_signature=(6, 8),
        program=73,
    ),
    # a reel in 2/2 at 60 bpm with sixteenth notes
    "reel_2_2": lambda: make_score(
        [
            *scale_notes([62, 64, 66, 67, 69, 71, 73, 74], 0.25),
            (2, 2, 74),
            (4, 1, 69),
            (5, 1, 66),
            (6, 2, 62),
        ],
        bpm=60,
        time_signature=(2, 2),
    ),
    # A minor melody in 4/4 at 100 bpm, no key signature
    "a_minor": lambda: make_score(scale_notes(A_MINOR, 0.5), bpm=100),
}
