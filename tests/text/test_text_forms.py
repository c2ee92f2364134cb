"""Section structures, schemes, meters and forms: PYTHONPATH=src pytest tests/text/test_text_forms.py"""

import pytest

from museforge.text import (
    FORMS,
    expand_rhyme,
    parse_rhyme,
    parse_sections,
    parse_song,
    parse_syllables,
    poem_form,
    render_song,
    song_form,
    syllables,
)


def tags(structure):
    return [s.tag for s in parse_sections(structure)]


def test_parse_sections_abbreviations_and_numbering():
    assert tags("V C V C B C") == ["Verse 1", "Chorus", "Verse 2", "Chorus", "Bridge", "Chorus"]
    assert tags("vcvcbc") == tags("V C V C B C")
    assert tags(["verse", "Chorus", "VERSE"]) == ["Verse 1", "Chorus", "Verse 2"]
    assert tags("I, V, pre chorus, C, H, O") == [
        "Intro", "Verse 1", "Pre-Chorus", "Chorus", "Hook", "Outro"
    ]  # fmt: skip
    assert tags("B B") == ["Bridge 1", "Bridge 2"]
    assert [s.name for s in parse_sections("P")] == ["pre-chorus"]


@pytest.mark.parametrize("bad", ["V X C", "", "verse, solo", []])
def test_parse_sections_errors_list_valid_names(bad):
    with pytest.raises(ValueError, match=r"verse \(V\).*chorus \(C\)"):
        parse_sections(bad)


def test_parse_rhyme():
    assert parse_rhyme("aabb") == "AABB"
    assert parse_rhyme("ABAB CDCD") == "ABABCDCD"
    assert parse_rhyme("couplets") == "AABB"
    assert parse_rhyme("monorhyme") == "AAAA"
    assert parse_rhyme("free") is None and parse_rhyme(None) is None
    with pytest.raises(ValueError, match="letters A-Z"):
        parse_rhyme("AB1B")
    assert expand_rhyme("AABB", 8) == "AABBCCDD"
    assert expand_rhyme("ABCB", 8) == "ABCBDEFE"
    assert expand_rhyme("monorhyme", 6) == "AAAAAA"
    assert expand_rhyme("AABB", 2) == "AA"


def test_parse_syllables():
    assert parse_syllables(8) == ((8, 8),)
    assert parse_syllables("8-10") == ((8, 10),)
    assert parse_syllables((8, 10)) == ((8, 10),)
    assert parse_syllables("8/6/8/6") == ((8, 8), (6, 6), (8, 8), (6, 6))
    assert parse_syllables([8, 6]) == ((8, 8), (6, 6))
    assert parse_syllables("8-9/5-6") == ((8, 9), (5, 6))
    assert parse_syllables("free") is None and parse_syllables(None) is None
    for bad in ("ten", "10-8", 0, "8/x"):
        with pytest.raises(ValueError, match="syllable"):
            parse_syllables(bad)


@pytest.mark.parametrize("name", FORMS)
def test_every_form_parses(name):
    form = poem_form(name)
    assert form.name == name and form.lines == sum(s.lines for s in form.sections) > 0
    for section in form.sections:
        assert section.rhyme is None or len(section.rhyme) == section.lines


def test_form_details():
    sonnet = poem_form("sonnet")
    assert (sonnet.lines, sonnet.rhyme) == (14, "ABAB CDCD EFEF GG")
    assert sonnet.sections[0].syllables == ((9, 11),)
    haiku = poem_form("haiku")
    assert haiku.rhyme is None and haiku.sections[0].syllables == ((5, 5), (7, 7), (5, 5))
    assert poem_form("limerick").rhyme == "AABBA"
    ballad = poem_form("Ballad", stanzas=2)
    assert ballad.rhyme == "ABCB ABCB" and ballad.lines == 8
    with pytest.raises(ValueError, match="sonnet, haiku"):
        poem_form("villanelle")


def test_song_form():
    song = song_form("V C V C B C", lines={"verse": 8}, rhyme={"verse": "AABB", "chorus": "ABAB"})
    assert [s.lines for s in song.sections] == [8, 4, 8, 4, 4, 4]
    assert song.sections[0].rhyme == "AABBCCDD" and song.sections[1].rhyme == "ABAB"
    assert song.sections[4].rhyme is None and song.sections[1].repeats
    assert song_form("V", syllables="6-8").sections[0].syllables == ((6, 8),)
    with pytest.raises(ValueError, match="unknown section keys"):
        song_form("V C", lines={"verses": 8})


@pytest.mark.parametrize(
    "sections",
    [
        [("Verse 1", ["a line", "another line"]), ("Chorus", ["sing it"]), ("Verse 2", ["x"])],
        [("", ["one", "two"]), ("", ["three"])],
        [("", ["just one stanza", "of two lines"])],
    ],
)
def test_render_parse_round_trip(sections):
    text = render_song(sections)
    assert parse_song(text) == sections
    assert parse_song(text + "\n\n") == sections


def test_render_and_parse_details():
    text = render_song([("[Verse 1]", ["a", "b"]), ("Chorus", ["c"])])
    assert text == "[Verse 1]\na\nb\n\n[Chorus]\nc"
    assert parse_song("no tags\nat all") == [("", ["no tags", "at all"])]
    assert parse_song("[Hook]\n\nyeah\n\nyeah") == [("Hook", ["yeah", "yeah"])]


def test_haiku_example_meets_its_meter():
    lines = ["An old silent pond", "A frog jumps into the pond", "Splash! Silence again"]
    assert [syllables(line) for line in lines] == [5, 7, 5]
