"""Music statistics (MusPy definitions), set comparison, and an n-gram baseline.

    python -c "from museforge.music.metrics import compute_metrics; print(compute_metrics('tune.mid'))"

Per-score metrics follow MusPy (Dong et al., 2020) and ignore drum tracks; a "beat" is
a quarter note. :func:`compare_sets` summarises each metric over two sets of pieces and
measures how much their distributions overlap (Yang & Lerch, 2020: the area under the
minimum of the two Gaussian kernel density estimates). :class:`MarkovModel` is the
n-gram baseline every trained melody model should beat in perplexity.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy.stats import gaussian_kde
from symusic import Score

from museforge.music.tokenizer import estimate_key, load_score, parse_key

_SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10]}


def _notes(score: Score | str | Path) -> tuple[dict[str, np.ndarray], int]:
    """Non-drum note arrays in ticks, and ticks per quarter; ValueError when there are none."""
    score = load_score(score)
    arrays = [t.notes.numpy() for t in score.tracks if not t.is_drum and len(t.notes)]
    if not arrays:
        raise ValueError("the score has no pitched notes to measure")
    notes = {
        f: np.concatenate([a[f] for a in arrays]).astype(np.int64)
        for f in ("time", "duration", "pitch")
    }
    return notes, score.ticks_per_quarter


def pitch_range(score: Score | str | Path) -> int:
    """Highest minus lowest pitch, in semitones."""
    pitch = _notes(score)[0]["pitch"]
    return int(pitch.max() - pitch.min())


def n_pitch_classes(score: Score | str | Path) -> int:
    """Number of distinct pitch classes used (0-12)."""
    return int(len(np.unique(_notes(score)[0]["pitch"] % 12)))


def pitch_class_entropy(score: Score | str | Path) -> float:
    """Shannon entropy (bits) of the note-count pitch-class histogram (0 to log2 12)."""
    counts = np.bincount(_notes(score)[0]["pitch"] % 12, minlength=12)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _in_scale_rates(pitch: np.ndarray) -> dict[tuple[int, str], float]:
    counts = np.bincount(pitch % 12, minlength=12)
    return {
        (tonic, mode): counts[[(tonic + s) % 12 for s in steps]].sum() / counts.sum()
        for mode, steps in _SCALES.items()
        for tonic in range(12)
    }


def in_key_rate(score: Score | str | Path, key: str) -> float:
    """Fraction of notes in the scale of ``key`` (natural minor for minor keys)."""
    return float(_in_scale_rates(_notes(score)[0]["pitch"])[parse_key(key)])


def scale_consistency(score: Score | str | Path) -> float:
    """Largest in-scale rate over the 24 major and minor scales."""
    return float(max(_in_scale_rates(_notes(score)[0]["pitch"]).values()))


def note_density(score: Score | str | Path) -> float:
    """Notes per beat, from the start of the piece to the end of its last note."""
    notes, tpq = _notes(score)
    return float(len(notes["pitch"]) / max((notes["time"] + notes["duration"]).max() / tpq, 1e-9))


def empty_beat_rate(score: Score | str | Path) -> float:
    """Fraction of beats in which no note sounds."""
    notes, tpq = _notes(score)
    n_beats = max(int(math.ceil((notes["time"] + notes["duration"]).max() / tpq)), 1)
    covered = np.zeros(n_beats + 1, dtype=np.int64)  # +1 at a note's first beat, -1 after its last
    first = notes["time"] // tpq
    last = np.maximum(notes["time"] + notes["duration"] - 1, notes["time"]) // tpq
    np.add.at(covered, first, 1)
    np.add.at(covered, last + 1, -1)
    return float((np.cumsum(covered)[:n_beats] == 0).mean())


def polyphony(score: Score | str | Path) -> float:
    """Mean number of sounding pitches over the time steps where at least one sounds."""
    notes, _ = _notes(score)
    events = np.concatenate([notes["time"], notes["time"] + notes["duration"]])
    change = np.concatenate([np.ones(len(notes["time"])), -np.ones(len(notes["time"]))])
    order = np.lexsort((change, events))  # ends before starts at the same tick
    times, active = events[order], np.cumsum(change[order])
    spans = np.diff(times)
    sounding = active[:-1] > 0
    if spans[sounding].sum() == 0:
        return 1.0
    return float((active[:-1] * spans)[sounding].sum() / spans[sounding].sum())


def groove_consistency(score: Score | str | Path, steps_per_beat: int = 12) -> float:
    """1 - mean Hamming distance between the onset patterns of neighbouring bars.

    Onsets are placed on a grid of ``steps_per_beat`` per quarter note (12 holds 16ths
    and triplets), so the value does not depend on the file's resolution; the distance
    is divided by the steps in a bar. Bars follow the first time signature (MusPy's
    definition assumes one metre).
    """
    score = load_score(score)
    notes, tpq = _notes(score)
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    bar = steps_per_beat * 4 * ts.numerator // ts.denominator if ts else steps_per_beat * 4
    onsets = np.round(notes["time"] * steps_per_beat / tpq).astype(np.int64)
    n_bars = int(onsets.max() // bar) + 1
    if n_bars < 2:
        return 1.0
    pattern = np.zeros((n_bars, bar), dtype=bool)
    pattern[onsets // bar, onsets % bar] = True
    return float(1 - (pattern[1:] != pattern[:-1]).sum(1).mean() / bar)


METRICS = {
    "pitch_range": pitch_range,
    "n_pitch_classes": n_pitch_classes,
    "pitch_class_entropy": pitch_class_entropy,
    "scale_consistency": scale_consistency,
    "note_density": note_density,
    "empty_beat_rate": empty_beat_rate,
    "polyphony": polyphony,
    "groove_consistency": groove_consistency,
}


def compute_metrics(score: Score | str | Path, key: str | None = None) -> dict[str, float]:
    """Every metric of :data:`METRICS`, plus ``in_key_rate`` for ``key`` (estimated if None)."""
    score = load_score(score)
    result = {name: float(fn(score)) for name, fn in METRICS.items()}
    result["in_key_rate"] = in_key_rate(score, key if key is not None else estimate_key(score))
    return result


def overlap_area(a: Sequence[float], b: Sequence[float]) -> float:
    """Area under min(KDE(a), KDE(b)): 1 for identical distributions, 0 for disjoint ones.

    Falls back to the overlap of 20-bin histograms on a shared range when a KDE cannot
    be fitted (fewer than two distinct values on a side).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("overlap_area needs at least one value in each set")
    low, high = min(a.min(), b.min()), max(a.max(), b.max())
    if len(np.unique(a)) > 1 and len(np.unique(b)) > 1:
        try:
            kde_a, kde_b = gaussian_kde(a), gaussian_kde(b)
            pad = 6 * np.sqrt(max(kde_a.covariance.item(), kde_b.covariance.item()))  # kernel sd
            grid = np.linspace(low - pad, high + pad, 4000)
            return float(min(np.trapezoid(np.minimum(kde_a(grid), kde_b(grid)), grid), 1.0))
        except np.linalg.LinAlgError:
            pass
    if high == low:
        return 1.0
    bins = np.linspace(low, high, 21)
    hist_a = np.histogram(a, bins)[0] / len(a)
    hist_b = np.histogram(b, bins)[0] / len(b)
    return float(np.minimum(hist_a, hist_b).sum())


def compare_sets(
    generated: Iterable[Score | str | Path | dict[str, float]],
    reference: Iterable[Score | str | Path | dict[str, float]],
) -> dict[str, dict[str, float]]:
    """Per metric: mean and std over each set, and the overlap area of their distributions.

    Items are scores, MIDI paths, or metric dicts from :func:`compute_metrics`. Returns
    ``{metric: {"generated_mean", "generated_std", "reference_mean", "reference_std",
    "overlap"}}``.
    """
    sets = {}
    for side, items in (("generated", generated), ("reference", reference)):
        rows = [item if isinstance(item, dict) else compute_metrics(item) for item in items]
        if not rows:
            raise ValueError(f"the {side} set is empty; pass at least one score")
        sets[side] = rows
    result = {}
    for metric in sets["generated"][0]:
        values = {side: np.array([row[metric] for row in rows]) for side, rows in sets.items()}
        result[metric] = {
            **{
                f"{side}_{stat}": float(getattr(v, stat)())
                for side, v in values.items()
                for stat in ("mean", "std")
            },
            "overlap": overlap_area(values["generated"], values["reference"]),
        }
    return result


class MarkovModel:
    """n-gram model over token ids with add-k smoothing and backoff.

    A token is predicted from the longest context (up to ``n - 1`` tokens) seen in
    training, with add-k smoothing over the vocabulary; shorter contexts are used when
    longer ones were never seen, down to the unigram distribution.
    """

    def __init__(self, n: int = 3, k: float = 0.01, vocab_size: int | None = None) -> None:
        if n < 1 or k <= 0:
            raise ValueError(f"need n >= 1 and k > 0, got n={n}, k={k}")
        self.n, self.k, self.vocab_size = n, k, vocab_size
        self.counts: dict[tuple[int, ...], Counter[int]] = defaultdict(Counter)

    def fit(self, seqs: Iterable[Sequence[int]]) -> MarkovModel:
        """Count n-grams of every order up to ``n``; returns self."""
        largest = -1
        for seq in seqs:
            seq = list(map(int, seq))
            largest = max([largest, *seq])
            for i, token in enumerate(seq):
                for order in range(min(i, self.n - 1) + 1):
                    self.counts[tuple(seq[i - order : i])][token] += 1
        if largest < 0:
            raise ValueError("MarkovModel.fit got no tokens")
        self.vocab_size = max(self.vocab_size or 0, largest + 1)
        return self

    def _context(self, history: Sequence[int]) -> Counter[int]:
        if self.vocab_size is None:
            raise ValueError("MarkovModel is not fitted; call fit(seqs) first")
        for order in range(min(len(history), self.n - 1), 0, -1):
            context = tuple(history[len(history) - order :])
            if context in self.counts:
                return self.counts[context]
        return self.counts[()]

    def log_prob(self, history: Sequence[int], token: int) -> float:
        """Natural log of P(token | history)."""
        counts = self._context(history)
        return math.log((counts[token] + self.k) / (counts.total() + self.k * self.vocab_size))

    def perplexity(self, seqs: Iterable[Sequence[int]]) -> float:
        """exp of the mean negative log-likelihood per token over all sequences."""
        total, n_tokens = 0.0, 0
        for seq in seqs:
            seq = list(map(int, seq))
            for i, token in enumerate(seq):
                total -= self.log_prob(seq[max(0, i - self.n + 1) : i], token)
                n_tokens += 1
        if n_tokens == 0:
            raise ValueError("perplexity needs at least one token")
        return math.exp(total / n_tokens)

    def sample(
        self, prefix: Sequence[int], length: int, rng: np.random.Generator | int | None = None
    ) -> list[int]:
        """``prefix`` followed by ``length`` sampled tokens."""
        rng = np.random.default_rng(rng)
        out = list(map(int, prefix))
        for _ in range(length):
            counts = self._context(out[max(0, len(out) - self.n + 1) :])
            probs = np.full(self.vocab_size, self.k)
            probs[list(counts)] += list(counts.values())
            out.append(int(rng.choice(self.vocab_size, p=probs / probs.sum())))
        return out
