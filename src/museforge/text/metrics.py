"""Measure a lyric, poem or story: rhyme, meter, structure, diversity, loops and copying.

    PYTHONPATH=src python -c "from museforge.text import text_metrics; print(text_metrics(open('song.txt').read(), rhyme='AABB'))"

Every measure is a plain function over text (or parsed sections), and `text_metrics`
gathers them into one flat, JSON-able dict; `format_table` prints a list of such dicts as
a markdown table for reports. Texts are read with `parse_song`: "[Tag]" lines start
sections, and untagged texts are measured as one run of lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from museforge.errors import UserError

from .forms import (
    FormSpec,
    SyllableTargets,
    expand_rhyme,
    parse_sections,
    parse_song,
    parse_syllables,
    section_name,
    syllable_target,
)
from .prosody import RHYME_LEVELS, dangling_end, end_word, line_syllables, rhymes, vowels, words

__all__ = [
    "CopyChecker",
    "distinct_n",
    "format_table",
    "repetition",
    "rhyme_adherence",
    "rhyme_density",
    "section_adherence",
    "syllable_deviation",
    "text_metrics",
    "tokens",
]

Sections = list[tuple[str, list[str]]]
RhymeSpec = str | Mapping[str, str | None] | None
"""One scheme for every section, or a scheme per section name ({"verse": "AABB"})."""

# A text is flagged degenerate (a decoding loop) when any of these holds.
LOOP_CONSECUTIVE_LINES = 3  # the same line this many times in a row
LOOP_NGRAM_RATE = 0.5  # more than half of its 4-grams are repeats
LOOP_SPAN = 12  # a repeated run of at least this many tokens ...
LOOP_SPAN_SHARE = 0.3  # ... that is at least this share of the text

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def tokens(text: str) -> list[str]:
    """Lowercase word tokens of a text, "[Tag]" lines left out (apostrophes kept: "don't")."""
    body = "\n".join(line for _, lines in parse_song(text) for line in lines)
    return _TOKEN.findall(body.lower().replace("\u2019", "'"))


def _sections(text: str | Sections) -> Sections:
    return parse_song(text) if isinstance(text, str) else [(t, list(ls)) for t, ls in text]


def _name(tag: str) -> str:
    """Section name of a tag; unknown tags keep their lowercase text, "" is a stanza."""
    if not tag:
        return "stanza"
    try:
        return section_name(tag)
    except ValueError:
        return tag.strip().lower()


@dataclass
class _Block:
    """Lines measured together, with the rhyme letters and syllable targets that apply."""

    name: str
    lines: list[str]
    rhyme: str | None = None
    syllables: SyllableTargets | None = None


def _blocks(
    sections: Sections,
    rhyme: RhymeSpec = None,
    syllables: object = None,
    form: FormSpec | None = None,
) -> list[_Block]:
    """Group lines into blocks: each tagged section alone, an untagged text as one block.

    With a `form`, sections are paired with its section specs in order (or by name when the
    text has a different number of sections), and its schemes and targets apply.
    """
    if all(tag == "" for tag, _ in sections) and form is None:
        sections = [("", [line for _, lines in sections for line in lines])]
    blocks = []
    for k, (tag, lines) in enumerate(sections):
        name = _name(tag)
        if form is not None:
            spec = (
                form.sections[k]
                if len(form.sections) == len(sections)
                else next((s for s in form.sections if s.name == name), None)
            )
            scheme = spec.rhyme if spec else None
            targets = spec.syllables if spec else None
        else:
            scheme = rhyme.get(name) if isinstance(rhyme, Mapping) else rhyme
            raw = syllables.get(name) if isinstance(syllables, Mapping) else syllables
            targets = parse_syllables(raw)  # type: ignore[arg-type]
        blocks.append(_Block(name, lines, expand_rhyme(scheme, len(lines)), targets))
    return blocks


# --------------------------------------------------------------------------- rhyme


def rhyme_adherence(
    text: str | Sections,
    rhyme: RhymeSpec = None,
    level: str = "perfect",
    form: FormSpec | None = None,
) -> float | None:
    """Share of the line pairs that should rhyme (same scheme letter, same section) that do.

    Pairs are judged on their end words with `prosody.rhymes` (the same end word twice does
    not count). None when the scheme asks for no rhyme at all.
    """
    if level not in RHYME_LEVELS:
        raise UserError(f"unknown rhyme level {level!r}; use one of {', '.join(RHYME_LEVELS)}")
    due = done = 0
    for block in _blocks(_sections(text), rhyme, form=form):
        if not block.rhyme:
            continue
        ends = [end_word(line) for line in block.lines]
        for i in range(len(ends)):
            for j in range(i + 1, len(ends)):
                if block.rhyme[i] == block.rhyme[j]:
                    due += 1
                    done += rhymes(ends[i], ends[j], level)
    return done / due if due else None


def rhyme_density(text: str | Sections, window: int = 3) -> float:
    """Rhyme density after Malmi et al. 2016 ("DopeLearning"), by line ends.

    For each line, the longest run of vowel sounds its end shares with the end of any of the
    `window` lines before it (pairs ending on the same word are skipped), averaged over the
    lines that have a predecessor. 1.0 is one rhyming vowel per line; multisyllabic rap
    rhymes score 2-3.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    lines = [line for _, ls in _sections(text) for line in ls]
    seqs = [vowels(line) for line in lines]
    ends = [end_word(line) for line in lines]
    scores = []
    for i in range(1, len(lines)):
        best = 0
        for j in range(max(0, i - window), i):
            if ends[i] and ends[i] == ends[j]:
                continue
            a, b, k = seqs[i], seqs[j], 0
            while k < min(len(a), len(b)) and a[-1 - k] == b[-1 - k]:
                k += 1
            best = max(best, k)
        scores.append(best)
    return sum(scores) / len(scores) if scores else 0.0


# --------------------------------------------------------------------------- meter and structure


def syllable_deviation(
    text: str | Sections,
    syllables: object = None,
    form: FormSpec | None = None,
) -> dict[str, float] | None:
    """Syllables each line is off its target (0 inside a range): {"mean": .., "max": ..}.

    `syllables` is anything `parse_syllables` reads, or a mapping per section name; a
    template cycles over the lines of each section. None when no line has a target.
    """
    offs = []
    for block in _blocks(_sections(text), syllables=syllables, form=form):
        for i, line in enumerate(block.lines):
            target = syllable_target(block.syllables, i)
            if target:
                count = line_syllables(line)
                offs.append(max(0, target[0] - count, count - target[1]))
    if not offs:
        return None
    return {"mean": sum(offs) / len(offs), "max": float(max(offs))}


def section_adherence(text: str | Sections, sections: str | Sequence[str]) -> float:
    """Share of the requested sections found, in order, among the text's tags.

    Compares section names (numbers ignored) by longest common subsequence, so a missing
    bridge in "V C V C B C" scores 5/6 and untagged text scores 0.
    """
    wanted = [s.name for s in parse_sections(sections)]
    found = [_name(tag) for tag, _ in _sections(text) if tag]
    table = [[0] * (len(found) + 1) for _ in range(len(wanted) + 1)]
    for i, w in enumerate(wanted):
        for j, f in enumerate(found):
            table[i + 1][j + 1] = (
                table[i][j] + 1 if w == f else max(table[i][j + 1], table[i + 1][j])
            )
    return table[-1][-1] / len(wanted)


# --------------------------------------------------------------------------- diversity and loops


def _ngrams(toks: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def distinct_n(toks: Sequence[str], n: int) -> float:
    """Unique n-grams over all n-grams (Li et al. 2016); 0.0 when there are none."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = _ngrams(toks, n)
    return len(set(grams)) / len(grams) if grams else 0.0


def _normal(line: str) -> str:
    return " ".join(words(line))


def _counted_lines(sections: Sections) -> list[str]:
    """Lines that should not repeat: every line, except that a chorus (pre-chorus, hook)
    sung again verbatim is counted once."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    out = []
    for tag, lines in sections:
        name = _name(tag)
        key = (name, tuple(_normal(line) for line in lines))
        if name in ("chorus", "pre-chorus", "hook") and key in seen:
            continue
        seen.add(key)
        out += lines
    return out


def _longest_repeat(toks: Sequence[str]) -> int:
    """Length of the longest token run that occurs twice (possibly overlapping)."""

    def repeats(length: int) -> bool:
        seen = set()
        for gram in _ngrams(toks, length):
            if gram in seen:
                return True
            seen.add(gram)
        return False

    low, high = 0, max(0, len(toks) - 1)
    while low < high:  # repeats() is monotone in length: binary search
        mid = (low + high + 1) // 2
        low, high = (mid, high) if repeats(mid) else (low, mid - 1)
    return low


def repetition(text: str | Sections, n: int = 4) -> dict[str, float | int | bool]:
    """Repetition measures, with repeated choruses left out, and a loop flag.

    - repeated_line_rate: share of lines that repeat an earlier line.
    - repeated_{n}gram_rate: share of n-grams that repeat an earlier one (1 - distinct-n).
    - max_consecutive_repeats: most times one line occurs in a row (choruses included).
    - longest_repeat: tokens in the longest run that occurs twice.
    - degenerate: True for decoding loops: a line 3+ times in a row, over half the n-grams
      repeated, or a repeated run of 12+ tokens making up 30%+ of the text.
    """
    sections = _sections(text)
    counted = [_normal(line) for line in _counted_lines(sections)]
    counted = [line for line in counted if line]
    seen: set[str] = set()
    repeated = 0
    for line in counted:
        repeated += line in seen
        seen.add(line)
    toks = [t for line in counted for t in line.split()]
    ngram_rate = 1.0 - distinct_n(toks, n) if len(toks) >= n else 0.0
    run = best_run = 0
    previous = None
    for line in (_normal(line) for _, ls in sections for line in ls):
        run = run + 1 if line and line == previous else 1
        best_run, previous = max(best_run, run), line
    longest = _longest_repeat(toks)
    degenerate = (
        best_run >= LOOP_CONSECUTIVE_LINES
        or ngram_rate > LOOP_NGRAM_RATE
        or (longest >= LOOP_SPAN and longest >= LOOP_SPAN_SHARE * len(toks))
    )
    return {
        "repeated_line_rate": repeated / len(counted) if counted else 0.0,
        f"repeated_{n}gram_rate": ngram_rate,
        "max_consecutive_repeats": best_run,
        "longest_repeat": longest,
        "degenerate": degenerate,
    }


# --------------------------------------------------------------------------- copying

_BASE = 0x9E3779B97F4A7C15  # odd, so it has an inverse mod 2**64
_MIX = np.uint64(0xBF58476D1CE4E5B9)


class _Hasher:
    """Polynomial hashes of every token window, mod 2**64, in O(1) per window.

    prefix[i] = sum_{j<i} mix(id_j) * B**j, so a window's hash is
    (prefix[i + L] - prefix[i]) * B**-i, the same wherever the window occurs.
    """

    def __init__(self, ids: np.ndarray):
        n = len(ids)
        with np.errstate(over="ignore"):
            powers = np.cumprod(np.full(n, _BASE, dtype=np.uint64)) if n else np.zeros(0, np.uint64)
            powers = np.concatenate([np.ones(1, np.uint64), powers[:-1]]) if n else powers
            inverse = pow(_BASE, -1, 2**64)
            inv = np.cumprod(np.full(n, inverse, dtype=np.uint64)) if n else np.zeros(0, np.uint64)
            self.inv = np.concatenate([np.ones(1, np.uint64), inv[:-1]]) if n else inv
            mixed = (ids.astype(np.uint64) + np.uint64(1)) * _MIX
            self.prefix = np.concatenate(
                [np.zeros(1, np.uint64), np.cumsum(mixed * powers, dtype=np.uint64)]
            )
        self.n = n

    def windows(self, length: int) -> np.ndarray:
        """Hash of each window of `length` tokens, by start position."""
        if length > self.n or length < 1:
            return np.zeros(0, np.uint64)
        starts = self.n - length + 1
        with np.errstate(over="ignore"):
            return (self.prefix[length:] - self.prefix[:starts]) * self.inv[:starts]


def _member(sorted_hashes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For each query hash, whether it is in `sorted_hashes` (sorted, unique)."""
    if not len(sorted_hashes) or not len(query):
        return np.zeros(len(query), bool)
    at = np.searchsorted(sorted_hashes, query).clip(0, len(sorted_hashes) - 1)
    return sorted_hashes[at] == query


class CopyChecker:
    """Find training text reproduced in generated text. Build once, check many.

    Tokens are `tokens(text)` words; documents are kept apart, so no match spans two.
    Building over a 1M-word corpus takes a few seconds and ~50 MB; each check is a binary
    search over match lengths, one vectorised pass over the corpus per step (~0.1-0.3 s).
    """

    def __init__(self, training_texts: str | Iterable[str], n: int = 8):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if isinstance(training_texts, str):
            training_texts = [training_texts]
        self.n = n
        self.vocab: dict[str, int] = {}
        ids: list[int] = []
        for text in training_texts:
            ids += [self.vocab.setdefault(t, len(self.vocab) + 1) for t in tokens(text)]
            ids.append(0)  # document boundary: no query window contains it
        self.words = len(ids) - ids.count(0)
        self._hasher = _Hasher(np.array(ids, dtype=np.int64))
        self._grams = np.unique(self._hasher.windows(n))

    def check(self, text: str) -> dict[str, float | int | str]:
        """{"copy_longest": tokens in the longest run also found in training,
        "copy_passage": that run, "copy_{n}gram_rate": share of the text's n-grams found}."""
        toks = tokens(text)
        unknown = len(self.vocab) + 1  # never in the corpus
        ids = np.array([self.vocab.get(t, unknown) for t in toks], dtype=np.int64)
        query = _Hasher(ids)
        grams = query.windows(self.n)
        rate = float(_member(self._grams, grams).mean()) if len(grams) else 0.0
        low, high, where = 0, len(toks), 0
        while low < high:  # a shared run of L tokens implies one of L - 1: binary search
            mid = (low + high + 1) // 2
            q, corpus = query.windows(mid), self._hasher.windows(mid)
            hits = _member(np.unique(q), corpus)
            if hits.any():
                found = _member(np.unique(corpus[hits]), q)
                low, where = mid, int(np.argmax(found))
            else:
                high = mid - 1
        return {
            "copy_longest": low,
            "copy_passage": " ".join(toks[where : where + low]),
            f"copy_{self.n}gram_rate": rate,
        }


# --------------------------------------------------------------------------- all together


def text_metrics(
    text: str,
    rhyme: RhymeSpec = None,
    syllables: object = None,
    sections: str | Sequence[str] | None = None,
    training: CopyChecker | Iterable[str] | None = None,
    form: FormSpec | None = None,
) -> dict[str, float | int | bool | str | None]:
    """All measures of one text as a flat dict (keys only for what was asked for).

    rhyme: a scheme ("AABB") or {section: scheme}; syllables: a target ("8-10", "8/6/8/6")
    or {section: target}; sections: the requested structure ("V C V C B C"); training: a
    `CopyChecker` (build it once for many texts) or training texts; form: a `FormSpec`,
    which supplies rhyme, syllables and sections when those are not given.
    """
    parsed = parse_song(text)
    toks = tokens(text)
    out: dict[str, float | int | bool | str | None] = {
        "lines": sum(len(lines) for _, lines in parsed),
        "words": len(toks),
    }
    use_form = form if form is not None and rhyme is None and syllables is None else None
    if rhyme is not None or (use_form and use_form.rhyme):
        out["rhyme_adherence"] = rhyme_adherence(parsed, rhyme, "perfect", form=use_form)
        out["rhyme_adherence_slant"] = rhyme_adherence(parsed, rhyme, "slant", form=use_form)
    out["rhyme_density"] = rhyme_density(parsed)
    lines = [line for _, block in parsed for line in block if line.strip()]
    out["dangling_end_rate"] = sum(dangling_end(line) for line in lines) / len(lines) if lines else 0.0
    if syllables is not None or (use_form and any(s.syllables for s in use_form.sections)):
        dev = syllable_deviation(parsed, syllables, form=use_form)
        out["syllable_dev_mean"] = dev["mean"] if dev else None
        out["syllable_dev_max"] = dev["max"] if dev else None
    if sections is None and form is not None and form.name == "song":
        sections = form.structure
    if sections is not None:
        out["section_adherence"] = section_adherence(parsed, sections)
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = distinct_n(toks, n)
    out.update(repetition(parsed))
    if training is not None:
        checker = training if isinstance(training, CopyChecker) else CopyChecker(training)
        out.update(checker.check(text))
    return out


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> str:
    """A markdown table of metric dicts: one row each, columns in first-seen key order.

    Floats show 3 decimals, None and missing values are blank, "|" in text is escaped.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    if not columns:
        return ""

    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
