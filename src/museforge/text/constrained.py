"""Compose a song or poem line by line under rhyme, meter and structure constraints.

    PYTHONPATH=src python -m pytest tests/text/test_text_constrained.py -q

The language model stays behind one callable, `sample_lines(prefix, n, **sampling)`, which
returns n sampled continuations of `prefix`, each cut at its first newline. `compose` walks a
`FormSpec`: for each line it samples rounds of candidates, scores them (syllable fit, rhyme
with the line whose scheme letter it shares, novelty, plain-text sanity), keeps the best, and
records what it could not meet. Two things make rhyme reachable for a small model:

- With a `tokenizer`, each round passes a `LineEndProcessor` as `logits_processor`: it plans
  the rhyme words (dictionary rhymes of the anchor that the tokenizer spells as one token)
  and, once the line is long enough, boosts them; after one is written it boosts the newline,
  and before then it holds the newline back.
- Rounds alternate with repairs: the best near-miss is cut before its last word and only the
  ending is re-sampled, so a good line is not thrown away for its last word.

Without a tokenizer the same loop runs as pure sampling and reranking.

A line that opens a rhyme (the first "A" of AABB) is written freely and should end on a word
with rhymes to offer; only the lines that answer it are steered. Among candidates that meet
the same constraints, the model's own log-probabilities rank them: the mean over the line, and
that of its last word, so a rhyme that sits where the model would put it beats one forced in
("I'll be there for you collect"); a last word below e^-10 sends the line to another round,
though a forced rhyme still beats no rhyme. Lines that break off on "the", "my", "and"... fail
the plain-text check. On the default model (benchmarks/lyrics_quality.py, 20 AABB songs) these
took the mean last-word log-probability from -10.5 to -4.6 nats (free writing: -4.2) and the
whole song's from -3.37 to -2.93 nats a token, with rhyme and syllables still met, at 11.7
instead of 8.9 s a song; sonnets' last words from -11.1 to -4.8 nats (6 poems, 15.6 -> 24.6 s
each), limericks' from -12.9 to -5.6.
"""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from museforge.errors import UserError

from .forms import FormSpec, render_song, syllable_target
from .prosody import (
    DANGLING,
    RHYME_LEVELS,
    dangling_end,
    end_word,
    line_syllables,
    rhyme_candidates,
    rhymes,
    words,
)

__all__ = ["LineEndProcessor", "SampleLines", "Tokenizer", "compose", "score_line"]

SampleLines = Callable[..., list[str]]
"""`sample_lines(prefix, n, **sampling) -> list[str]`: n continuations of `prefix`, each up to
(not including) its first newline. Accepts `logits_processor=[...]`."""

NEAR_DUPLICATE = 0.8  # word-sequence similarity above which a line counts as a repeat
END_WEIGHT = 0.3  # per nat of the last word's log-probability (sensible ends ~2-6 nats, forced ones 8-15)
FLUENCY_WEIGHT = 1.0  # per nat of mean token log-probability (candidates differ by ~0.5-2 nats)
_JUNK = re.compile(r"[\[\]{}<>|@#*_=~^\\]|https?:|www\.")


class Tokenizer(Protocol):
    """The two tokenizer methods used here; any Hugging Face tokenizer has them."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


# --------------------------------------------------------------------------- token-level steering


@lru_cache(maxsize=8)
def _newline_ids(tokenizer: Tokenizer) -> tuple[int, tuple[int, ...]]:
    """The plain newline token, and every token whose text contains a newline."""
    plain = tokenizer.encode("\n", add_special_tokens=False)[-1]
    size = len(tokenizer)  # type: ignore[arg-type]
    every = tuple(i for i in range(size) if "\n" in tokenizer.decode([i]))
    return plain, every or (plain,)


def _common_cutoff(tokenizer: Tokenizer) -> int:
    """Token ids below this count as common words. BPE vocabularies are built by merging the
    most frequent pairs first, so a low id is a frequent word (SmolLM2: " love" 2606, " night"
    3163, " trustee" 42391): planning only low-id words keeps rhymes to words people sing."""
    size = len(tokenizer)  # type: ignore[arg-type]
    return size if size < 8000 else max(4000, size // 5)


def _single_token_words(tokenizer: Tokenizer, candidates: Iterable[str], common: bool = False) -> dict[int, str]:
    """token id -> word, for words the tokenizer writes as one token after a space
    (only common ones, by `_common_cutoff`, when `common`)."""
    out: dict[int, str] = {}
    limit = _common_cutoff(tokenizer) if common else None
    for word in candidates:
        ids = tokenizer.encode(" " + word, add_special_tokens=False)
        if len(ids) == 1 and ids[0] not in out and (limit is None or (ids[0] < limit and len(word) >= 3)):
            out[ids[0]] = word
    return out


class LineEndProcessor:
    """A transformers logits processor that steers where and how a line ends.

    - Before the line reaches `syllables[0]`, tokens containing a newline are pushed down.
    - With `rhyme_words`, once the next word could complete the line's length, the tokens
      that spell those words are pushed up (more the longer the line runs), and every
      newline is held back until the line ends on one of them; then the newline is pushed up.
    - Without rhyme words, past `syllables[1]` the newline is pushed up.

    With rhyme words but no `syllables`, the line is taken to want 6-12 syllables.

    Tokens already filtered out (-inf) by top-k/top-p are brought back for boosting, so the
    processor works wherever it sits in the processor list. It needs no import of
    transformers: `generate` calls any object as `processor(input_ids, scores)`.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        rhyme_words: Iterable[str] = (),
        syllables: tuple[int, int] | None = None,
        boost: float = 4.0,
        window: int = 64,
    ):
        self.tokenizer = tokenizer
        self.newline, self.newlines = _newline_ids(tokenizer)
        self.rhyme_ids = _single_token_words(tokenizer, rhyme_words)
        self.rhyme_set = set(self.rhyme_ids.values())
        self.syllables = syllables
        self.boost = boost
        self.window = window

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        rhyme_ids = list(self.rhyme_ids)
        newlines = list(self.newlines)
        for row in range(scores.shape[0]):
            line = self.tokenizer.decode(input_ids[row, -self.window :].tolist()).split("\n")[-1]
            count = line_syllables(line)
            low, high = self.syllables or ((6, 12) if rhyme_ids else (0, 10**6))
            top = scores[row].max()
            if rhyme_ids:
                if line[-1:].isalpha() and end_word(line) in self.rhyme_set and count >= low - 1:
                    scores[row, self.newline] = top + self.boost
                    continue
                scores[row, newlines] -= self.boost
                if count + 1 >= max(low, 1):
                    over = max(0, count + 1 - high)
                    lift = scores[row, rhyme_ids].clamp(min=top - 3.0)
                    scores[row, rhyme_ids] = lift + self.boost * (1 + over)
            elif self.syllables:
                if count < low:
                    scores[row, newlines] -= self.boost
                elif count >= high:
                    scores[row, self.newline] = top + self.boost * (1 + count - high)
        return scores


# --------------------------------------------------------------------------- scoring


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, words(a), words(b)).ratio()


def _quality(line: str) -> float:
    """Plain-text sanity in [0, 1]: words, mostly letters, no markup, no stutter, not broken off
    on a word that needs what follows ("painting the")."""
    toks = words(line)
    if len(toks) < 2 or _JUNK.search(line) or dangling_end(line):
        return 0.0
    letters = sum(ch.isalpha() or ch in " ',.!?;:-\"" for ch in line) / len(line)
    variety = len(set(toks)) / len(toks)
    return max(0.0, min(1.0, (letters - 0.8) * 5)) * min(1.0, variety * 1.5)


def score_line(
    line: str,
    syllables: tuple[int, int] | None = None,
    rhyme_with: str | None = None,
    avoid_ends: Iterable[str] = (),
    earlier: Sequence[str] = (),
    level: str = "perfect",
) -> tuple[float, list[str]]:
    """Score one candidate line; returns (soft score, unmet constraints).

    unmet may hold "syllables" (outside the target range), "rhyme" (end word does not rhyme
    with `rhyme_with` at `level`, or repeats an end word in `avoid_ends`), "repetition"
    (near-duplicate of an earlier line) and "quality" (empty or junk). The soft score ranks
    candidates with equally many unmet constraints.
    """
    unmet = []
    soft = 0.0
    if syllables:
        count = line_syllables(line)
        off = max(0, syllables[0] - count, count - syllables[1])
        soft += 1.0 / (1 + off)
        if off:
            unmet.append("syllables")
    if rhyme_with:
        end = end_word(line)
        if end and end not in set(avoid_ends) and rhymes(end, rhyme_with, level):
            soft += 2.0
        else:
            loose = (lv for lv in RHYME_LEVELS[RHYME_LEVELS.index(level) + 1 :])
            soft += next(
                (1.0 / (2 + k) for k, lv in enumerate(loose) if rhymes(end, rhyme_with, lv)), 0.0
            )
            unmet.append("rhyme")
    closest = max((_similarity(line, e) for e in earlier), default=0.0)
    soft += 1.0 - closest
    if closest > NEAR_DUPLICATE:
        unmet.append("repetition")
    quality = _quality(line)
    soft += quality
    if quality == 0.0:
        unmet.append("quality")
    return soft, unmet


MIN_RHYMES = 3  # a line that opens a rhyme should end on a word with at least this many rhymes to offer
FEW_RHYMES = "few_rhymes"  # its unmet mark otherwise: more rounds are tried, it is no failure of the form
FORCED_NATS = 10.0  # a last word the model gave less than e^-10 reads as forced in ("till you collect") ...
FORCED = "forced_end"  # ... marked so: more rounds are tried, ranked below every asked constraint, no failure
_MARKS = (FEW_RHYMES, FORCED)  # marks that are not failures of the asked form


def _rhyme_supply(end: str, level: str, vocab: set[str] | None, tokenizer: Tokenizer | None) -> int:
    """How many rhymes `end` offers the lines that must answer it, up to 10 (only words in
    `vocab`, or common words the tokenizer writes as one token, when given)."""
    if not end:
        return 0
    found = [w for w in rhyme_candidates(end, level, vocab=vocab, limit=None if tokenizer else 20) if w not in DANGLING]
    if tokenizer is not None:
        found = list(_single_token_words(tokenizer, found[:400], common=True).values())
    return min(len(found), 10)


def _rhymability(end: str, pool: Sequence[str], level: str, supply: int) -> float:
    """How easy a rhyme on `end` will be, in [0, 2].

    Half from the dictionary: 10+ rhymes (`supply`) is easy. Half from the model itself: the
    share of the other candidates in `pool` (end words sampled for the same line) that rhyme
    with it.
    """
    if not end:
        return 0.0
    others = [w for w in pool if w and w != end]
    echo = sum(rhymes(end, w, level) for w in others) / len(others) if others else 0.0
    return supply / 10 + echo


# --------------------------------------------------------------------------- composing


def compose(
    sample_lines: SampleLines,
    spec: FormSpec,
    prompt_prefix: str = "",
    budget: int = 4,
    k: int = 8,
    rng: random.Random | int | None = None,
    tokenizer: Tokenizer | None = None,
    level: str = "perfect",
    vocab: Iterable[str] | None = None,
    sampling: Mapping[str, Any] | None = None,
    on_line: Callable[[str, str], None] | None = None,
) -> tuple[list[tuple[str, list[str]]], dict[str, Any]]:
    """Write `spec` line by line with `sample_lines`; returns (sections, metadata).

    sections is a list of (tag, lines), ready for `render_song`. Each line gets up to
    `budget` rounds of `k` candidates and stops early once one meets every constraint. A
    chorus (pre-chorus, hook) is written once and repeated verbatim. The model sees
    `prompt_prefix` followed by the text so far in `render_song` format.

    tokenizer: enables token-level steering with `LineEndProcessor`. vocab: words the model
    is likely to write; lines that open a rhyme prefer end words with rhymes in it. sampling:
    keyword arguments for every `sample_lines` call; an integer "seed" in it is offset by the
    call number so rounds differ and the whole run repeats exactly. rng (a Random or a seed)
    picks among planned rhyme words when there are too many.

    metadata: {"lines": [per-line record], "failures": [{"line", "section", "unmet"}],
    "samples": candidates drawn, "calls": sample_lines calls}.

    on_line(tag, line) is called as each line is settled (repeated choruses included), so a
    caller can stream the song while it is being written.
    """
    if budget < 1 or k < 1:
        raise ValueError(f"budget and k must be >= 1, got budget={budget}, k={k}")
    if level not in RHYME_LEVELS:
        raise UserError(f"unknown rhyme level {level!r}; use one of {', '.join(RHYME_LEVELS)}")
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    vocab_set = {w.lower() for w in vocab} if vocab is not None else None
    base = dict(sampling or {})
    calls = 0
    supplies: dict[str, int] = {}  # end word -> its rhyme supply: candidates often share end words

    def draw(prefix: str, end_rule: dict[str, Any] | None) -> list[str]:
        nonlocal calls
        kwargs = dict(base)
        if isinstance(kwargs.get("seed"), int):
            kwargs["seed"] += calls
        if tokenizer is not None and end_rule is not None:
            kwargs["logits_processor"] = [LineEndProcessor(tokenizer, **end_rule)]
        calls += 1
        return list(sample_lines(prefix, k, **kwargs))

    done: list[tuple[str, list[str]]] = []
    written: dict[str, list[str]] = {}  # repeating section name -> its lines
    records: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    samples = 0
    for section in spec.sections:
        if section.repeats and section.name in written:
            done.append((section.tag, list(written[section.name])))
            for line in written[section.name]:
                if on_line:
                    on_line(section.tag, line)
            continue
        lines: list[str] = []
        for i in range(section.lines):
            goal = _goal(section.rhyme, i, lines, syllable_target(section.syllables, i))
            goal.earlier = [line for _, ls in done for line in ls] + lines
            context = _context(prompt_prefix, done, section.tag, lines)
            end_rule = _end_rule(goal, level, tokenizer, rng)
            best, best_key, best_unmet = "", (-99, -99, 0.0), ["quality"]
            rounds = 0
            repaired = False
            for rounds in range(1, budget + 1):
                stem = _stem(best) if rounds % 2 == 0 and best_unmet == ["rhyme"] else ""
                texts = draw(context + stem, end_rule)
                # mean token log-probability, when the sampler provides it: prefer fluent lines,
                # and then those whose last word (the rhyme) sits naturally where it was written
                ends = [getattr(text, "end_logprob", 0.0) for text in texts]
                fluency = [getattr(text, "logprob", 0.0) + END_WEIGHT * end for text, end in zip(texts, ends, strict=True)]
                drawn = [" ".join((stem + text).split()) for text in texts]
                samples += len(drawn)
                pool = [end_word(line) for line in drawn]
                for line, lp, end in zip(drawn, fluency, ends, strict=True):
                    soft, unmet = score_line(
                        line, goal.target, goal.anchor, goal.avoid, goal.earlier, level
                    )
                    soft += FLUENCY_WEIGHT * lp
                    if goal.opens:  # others must rhyme with this line: prefer an easy rhyme
                        word = end_word(line)
                        if word not in supplies:
                            supplies[word] = _rhyme_supply(word, level, vocab_set, tokenizer)
                        supply = supplies[word]
                        soft += _rhymability(word, pool, level, supply)
                        if supply < MIN_RHYMES:  # the answering lines would have nothing to land on:
                            unmet.append(FEW_RHYMES)  # try more rounds (not a failure of the asked form)
                    if end < -FORCED_NATS:
                        unmet.append(FORCED)
                    key = (-sum(u != FORCED for u in unmet), -unmet.count(FORCED), soft)
                    if key > best_key:
                        best, best_key, best_unmet = line, key, unmet
                        repaired = bool(stem)
                if not best_unmet:
                    break
            lines.append(best)
            if on_line:
                on_line(section.tag, best)
            record = {
                "section": section.tag,
                "line": sum(len(ls) for _, ls in done) + i,
                "text": best,
                "syllables": line_syllables(best),
                "target": list(goal.target) if goal.target else None,
                "rhyme_letter": goal.letter,
                "rhymes_with": goal.anchor,
                "score": round(best_key[2], 4),
                "unmet": best_unmet,
                "rounds": rounds,
                "repaired": repaired,
            }
            records.append(record)
            asked = [u for u in best_unmet if u not in _MARKS]
            if asked:
                failures.append({"line": record["line"], "section": section.tag, "unmet": asked})
        if section.repeats:
            written[section.name] = lines
        done.append((section.tag, lines))
    metadata = {"lines": records, "failures": failures, "samples": samples, "calls": calls}
    return done, metadata


@dataclass
class _Goal:
    """What one line must do."""

    target: tuple[int, int] | None  # syllable range
    letter: str | None  # rhyme-scheme letter
    anchor: str | None = None  # end word of the first line with this letter
    anchor_syllables: int | None = None
    opens: bool = False  # first line of a letter that later lines reuse
    avoid: list[str] = field(default_factory=list)  # end words already used by the letter
    earlier: list[str] = field(default_factory=list)  # every line written so far


def _goal(scheme: str | None, i: int, lines: list[str], target: tuple[int, int] | None) -> _Goal:
    """The goal of line `i` of a section whose earlier lines are `lines`."""
    if not scheme:
        return _Goal(target, None)
    letter = scheme[i]
    group = [j for j in range(i) if scheme[j] == letter]
    if not group:
        return _Goal(target, letter, opens=scheme.count(letter) > 1)
    first = lines[group[0]]
    avoid = [end_word(lines[j]) for j in group]
    return _Goal(target, letter, end_word(first), line_syllables(first), avoid=avoid)


def _context(
    prompt_prefix: str, done: list[tuple[str, list[str]]], tag: str, lines: list[str]
) -> str:
    """What the model sees: the prompt, the song so far, and the open section."""
    head = render_song(done)
    block = ([f"[{tag}]"] if tag else []) + lines
    text = head + ("\n\n" if head else "") + "\n".join(block)
    return prompt_prefix + text + ("\n" if block else "")


def _stem(line: str) -> str:
    """The line without its last word, for re-sampling just the ending ("" if too short)."""
    parts = line.split(" ")
    return " ".join(parts[:-1]) if len(parts) >= 3 else ""


def _end_rule(
    goal: _Goal,
    level: str,
    tokenizer: Tokenizer | None,
    rng: random.Random,
    most: int = 64,
) -> dict[str, Any] | None:
    """LineEndProcessor settings for one line: the planned end words and a syllable range
    (the anchor line's length +-2 when the spec sets none). A line that must rhyme plans the
    anchor's rhymes; only common words the tokenizer writes as one token count. A line that
    opens a rhyme plans none: pushed towards arbitrary rhymable words it ended on whichever
    was least absurd ("the sun's rays dance through external"); written freely, it ends where
    the model would, and candidates whose end word offers too few rhymes are passed over
    (compose). None when there is nothing to steer."""
    if tokenizer is None:
        return None
    planned: list[str] = []
    target = goal.target
    if goal.anchor:
        found = rhyme_candidates(goal.anchor, level, limit=400)
        planned = list(
            _single_token_words(tokenizer, (w for w in found if w not in goal.avoid and w not in DANGLING),
                                common=True).values()
        )
        if len(planned) > most:
            planned = rng.sample(planned, most)
    if target is None and planned and goal.anchor_syllables:
        target = (max(1, goal.anchor_syllables - 2), goal.anchor_syllables + 2)
    if not planned and target is None:
        return None
    return {"rhyme_words": planned, "syllables": target}
