"""Syllables, rhyme keys and rhyme judgements: PYTHONPATH=src pytest tests/text/test_text_prosody.py"""

import pytest

from museforge.text import (
    end_word,
    line_syllables,
    number_words,
    phones,
    rhyme_candidates,
    rhyme_key,
    rhymes,
    syllables,
    vowels,
    words,
)


@pytest.mark.parametrize(
    "word, count",
    [
        ("cat", 1), ("night", 1), ("fire", 2), ("beautiful", 3), ("city", 2),
        ("don't", 1), ("city's", 2), ("rock'n'roll", 3), ("runnin'", 2), ("'cause", 1),
        ("Hello!", 2), ("everything", 3), ("poem", 2), ("rhythm", 2),
        # not in CMUdict: sounded out
        ("blorptastic", 3), ("skibbity", 3), ("bling", 1), ("vibes", 1), ("hater", 2),
        ("bibble", 2), ("yeeted", 2), ("sooooo", 1), ("moonwalker", 3), ("zoomer", 2),
        ("flexin", 2), ("NFT", 3), ("skrrt", 1), ("drippy", 2), ("glizzy", 2),
        ("1999", 5), ("21st", 3), ("90s", 2), ("7", 2),
    ],
)  # fmt: skip
def test_syllables(word, count):
    assert syllables(word) == count


def test_line_syllables_and_words():
    assert line_syllables("I walk alone beneath the night") == 8
    assert line_syllables("") == 0
    assert words("Rock-n-roll, baby: it's 2024!") == [
        "rock", "n", "roll", "baby", "it's", "twenty", "twenty", "four"
    ]  # fmt: skip
    assert number_words(105) == ["one", "hundred", "five"]
    assert number_words(3, ordinal=True) == ["third"]
    assert end_word("the night, the LIGHT!!") == "light"
    assert end_word("...") == ""


def test_rhyme_keys():
    assert phones("night") == ["N", "AY1", "T"]
    assert rhyme_key("night") == "AY T"
    assert rhyme_key("night", "slant") == "AY"
    assert rhyme_key("fantastic") == rhyme_key("blorptastic") == "AE S T IH K"
    with pytest.raises(ValueError, match="perfect, family, slant, vowel"):
        rhyme_key("night", "loose")


def test_rhymes_by_level():
    assert rhymes("night", "light")
    assert rhymes("Night,", "delight!")
    assert not rhymes("night", "time")
    assert rhymes("night", "time", "slant")
    assert rhymes("night", "bike", "family") and not rhymes("night", "time", "family")
    assert rhymes("river", "kick", "vowel") and not rhymes("river", "kick", "slant")
    assert rhymes("river", "bitter", "slant")
    assert not rhymes("cat", "dog", "vowel")


def test_identical_words_are_not_rhymes():
    assert not rhymes("cat", "cat")
    assert not rhymes("Cat!", "cat")
    assert rhymes("cat", "cat", allow_identical=True)
    assert not rhymes("", "cat")


def test_out_of_dictionary_rhymes():
    assert rhymes("skibbity", "bibbity")
    assert rhymes("blorptastic", "fantastic")
    assert rhymes("yeet", "street")
    assert rhymes("bling", "ring")


def test_rhyme_candidates():
    found = rhyme_candidates("night", limit=200)
    assert {"light", "bright", "fight"} <= set(found)
    assert "night" not in found
    assert all(rhymes("night", w) for w in found[:50])
    assert rhyme_candidates("night", vocab=["zebra", "kite", "bite", "night"]) == ["kite", "bite"]
    assert rhyme_candidates("night", vocab={"kite", "bite"}) == ["bite", "kite"]
    slant = rhyme_candidates("night", "slant", limit=None)
    assert "time" in slant and len(slant) > len(found)
    assert rhyme_candidates("night", limit=3) == found[:3]


def test_vowels():
    assert vowels("bright night") == ["AY", "AY"]
    assert vowels("skibbity") == ["IH", "IH", "IY"]
    assert vowels("") == []
