"""Text metrics on hand-written texts with known answers: PYTHONPATH=src pytest tests/text/test_text_metrics.py"""

import json
import random

import pytest

from museforge.text import (
    CopyChecker,
    distinct_n,
    format_table,
    poem_form,
    render_song,
    repetition,
    rhyme_adherence,
    rhyme_density,
    section_adherence,
    syllable_deviation,
    text_metrics,
    tokens,
)

QUATRAIN = [
    "I walk alone beneath the night",
    "The city burns with neon light",
    "My heart is heavy, full of rain",
    "I sing to wash away the pain",
]
SONG = render_song(
    [
        ("Verse 1", QUATRAIN),
        ("Chorus", ["Oh we run, we run tonight", "Hold me close and hold me tight"]),
        ("Verse 2", ["The morning comes, the shadows fade", "I count the promises we made",
                     "The river rolls, the river goes", "And where it ends nobody knows"]),
        ("Chorus", ["Oh we run, we run tonight", "Hold me close and hold me tight"]),
    ]
)  # fmt: skip


def test_rhyme_adherence():
    assert rhyme_adherence("\n".join(QUATRAIN), "AABB") == 1.0
    shuffled = [QUATRAIN[0], QUATRAIN[2], QUATRAIN[1], QUATRAIN[3]]
    assert rhyme_adherence("\n".join(shuffled), "AABB") == 0.0
    assert rhyme_adherence("\n".join(shuffled), "ABAB") == 1.0
    half = QUATRAIN[:3] + ["I sing to wash away the blues"]
    assert rhyme_adherence("\n".join(half), "AABB") == 0.5
    assert rhyme_adherence(SONG, "AABB") == 1.0
    assert rhyme_adherence("\n".join(QUATRAIN), None) is None
    assert rhyme_adherence("\n".join(QUATRAIN), "ABCD") is None


def test_rhyme_adherence_levels_and_repeats():
    slant = "I look up at the sky tonight\nI wait for you until the time"
    assert rhyme_adherence(slant, "AA") == 0.0
    assert rhyme_adherence(slant, "AA", level="slant") == 1.0
    assert rhyme_adherence("I see the cat\nyou see the cat", "AA") == 0.0


def test_rhyme_density():
    assert rhyme_density("one line only") == 0.0
    assert rhyme_density("the night\nthe light") == 2.0  # AH AY matches AH AY
    assert rhyme_density("I feel it tonight\nthe sky is so bright") == 1.0
    assert rhyme_density("the night\nthe night") == 0.0  # same end word: repetition
    assert rhyme_density("cat\ndog") == 0.0


def test_syllable_deviation():
    text = "\n".join(QUATRAIN)  # 8, 8, 8, 8 syllables
    assert syllable_deviation(text, 8) == {"mean": 0.0, "max": 0.0}
    assert syllable_deviation(text, "6-7") == {"mean": 1.0, "max": 1.0}
    assert syllable_deviation(text, "8/10") == {"mean": 1.0, "max": 2.0}
    assert syllable_deviation(text, None) is None


def test_section_adherence():
    assert section_adherence(SONG, "V C V C") == 1.0
    assert section_adherence(SONG, "V C V C B C") == pytest.approx(4 / 6)
    assert section_adherence("\n".join(QUATRAIN), "V C") == 0.0


def test_distinct_n():
    toks = tokens("the cat saw the cat")
    assert toks == ["the", "cat", "saw", "the", "cat"]
    assert distinct_n(toks, 1) == 3 / 5
    assert distinct_n(toks, 2) == 3 / 4
    assert distinct_n(toks, 3) == 1.0
    assert distinct_n([], 2) == 0.0
    assert tokens("[Verse 1]\nDon't stop") == ["don't", "stop"]


def test_repetition_allows_repeated_chorus():
    rep = repetition(SONG)
    assert rep["repeated_line_rate"] == 0.0 and not rep["degenerate"]


def test_looping_text_is_degenerate():
    loop = "\n".join(QUATRAIN[:1] + ["I love you baby, yes I do"] * 4)
    rep = repetition(loop)
    assert rep["degenerate"] and rep["max_consecutive_repeats"] == 4
    assert rep["repeated_line_rate"] == pytest.approx(3 / 5)
    cycle = "\n".join(["we go up and we come down", "round and round the town"] * 4)
    assert repetition(cycle)["degenerate"]


def test_copy_checker_finds_inserted_passage():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    corpus = [" ".join(rng.choice(vocab) for _ in range(500)) for _ in range(200)]
    checker = CopyChecker(corpus)
    assert checker.words == 100_000
    passage = corpus[77].split()[40:52]
    text = "the moon is bright tonight and " + " ".join(passage) + " and we go home"
    found = checker.check(text)
    assert found["copy_longest"] == 12
    assert found["copy_passage"] == " ".join(passage)
    assert found["copy_8gram_rate"] == pytest.approx(5 / 15)  # 22 tokens, 15 8-grams
    assert checker.check("nothing here matches")["copy_longest"] == 0
    assert checker.check("")["copy_8gram_rate"] == 0.0


def test_copy_checker_keeps_documents_apart():
    checker = CopyChecker(["a b c d", "e f g h"])
    assert checker.check("c d e f")["copy_longest"] == 2


def test_text_metrics_is_flat_and_json_able():
    row = text_metrics(SONG, rhyme="AABB", syllables="7-9", sections="V C V C", training=[SONG])
    json.dumps(row)
    assert row["rhyme_adherence"] == 1.0 and row["section_adherence"] == 1.0
    assert row["syllable_dev_max"] <= 1 and row["copy_longest"] == row["words"]
    assert not row["degenerate"] and "distinct_3" in row


def test_text_metrics_with_form():
    limerick = "\n".join([
        "There once was a fellow named Lee",
        "Who was stung on the arm by a bee",
        "When asked if it hurt",
        "He said no, not a squirt",
        "It was lucky it wasn't a flea",
    ])  # fmt: skip
    row = text_metrics(limerick, form=poem_form("limerick"))
    assert row["rhyme_adherence"] == 1.0
    assert row["syllable_dev_max"] <= 1


def test_format_table():
    table = format_table([{"model": "a", "score": 0.5}, {"model": "b|c", "extra": None}])
    assert table.splitlines() == [
        "| model | score | extra |",
        "|---|---|---|",
        "| a | 0.500 |  |",
        "| b\\|c |  |  |",
    ]
    assert format_table([]) == ""
