"""The line-by-line composer against fake generators: PYTHONPATH=src pytest tests/text/test_text_constrained.py"""

import random

import pytest
import torch

from museforge.text import parse_song, poem_form, render_song, rhyme_adherence, song_form
from museforge.text.constrained import LineEndProcessor, compose, score_line

FILLER = "i we you walk run see hold the a my your in on with under over love dream".split()
RHYMING = "night light bright sight rain pain again day way stay fire desire higher".split()
UNRHYMABLE = "orange silver month purple window table river".split()


def fake_sampler(ends, seed=0):
    """sample_lines over a fixed word list: lines of filler words and one end word.

    Deterministic: every call draws from Random(seed kwarg or the fake's own seed). A prefix
    that does not end a line (a repair stem) gets only a new ending.
    """
    calls = []

    def sample_lines(prefix, n, seed=seed, logits_processor=None, **sampling):
        calls.append(prefix)
        rng = random.Random(seed * 7919 + len(calls))
        out = []
        for _ in range(n):
            ending = rng.choice(ends)
            if prefix.endswith("\n"):
                body = [rng.choice(FILLER) for _ in range(rng.randint(3, 6))]
                out.append(" ".join(body + [ending]).capitalize())
            else:
                out.append(" " + ending)
        return out

    sample_lines.calls = calls
    return sample_lines


def test_composer_reaches_aabb_when_rhymes_are_possible():
    spec = song_form("V V V V", rhyme="AABB")
    sections, meta = compose(fake_sampler(RHYMING + UNRHYMABLE), spec, "A song\n", rng=1)
    text = render_song(sections)
    assert rhyme_adherence(text, "AABB") >= 0.95
    assert [len(lines) for _, lines in sections] == [4, 4, 4, 4]
    assert len(meta["lines"]) == 16 and meta["samples"] >= 16 * 8
    assert all(not r["unmet"] for r in meta["lines"])
    assert meta["failures"] == []


def test_composer_reports_unmet_rhymes_when_impossible():
    spec = song_form("V", rhyme="AABB")
    sections, meta = compose(fake_sampler(UNRHYMABLE), spec, budget=2)
    assert len(sections[0][1]) == 4
    assert meta["failures"], "nothing rhymes, so failures must be reported"
    for failure in meta["failures"]:
        assert "rhyme" in failure["unmet"] and failure["section"] == "Verse 1"
        assert failure["line"] in (1, 3)
    assert all(r["rounds"] == 2 for r in meta["lines"] if r["unmet"])


def test_identical_end_word_is_not_accepted_as_rhyme():
    soft, unmet = score_line("we walk in the night", rhyme_with="night")
    assert unmet == ["rhyme"]
    soft, unmet = score_line("we walk in the light", rhyme_with="night", avoid_ends=["light"])
    assert unmet == ["rhyme"]
    assert score_line("we walk in the light", rhyme_with="night")[1] == []


def test_score_line_flags_syllables_repetition_and_junk():
    assert score_line("I walk alone beneath the night", syllables=(8, 8))[1] == []
    assert score_line("I walk alone", syllables=(8, 10))[1] == ["syllables"]
    assert "repetition" in score_line("I walk alone tonight", earlier=["i walk alone tonight!"])[1]
    assert "quality" in score_line("[Verse 2]")[1]
    assert "quality" in score_line("")[1]


def test_chorus_is_written_once_and_repeated_verbatim():
    spec = song_form("V C V C", rhyme="AABB")
    sampler = fake_sampler(RHYMING)
    sections, meta = compose(sampler, spec, budget=2)
    assert [tag for tag, _ in sections] == ["Verse 1", "Chorus", "Verse 2", "Chorus"]
    assert sections[1][1] == sections[3][1]
    assert len(meta["lines"]) == 12  # the repeated chorus is not generated again
    # the model saw the song so far in render_song format, tags included
    assert any(p.endswith("[Verse 2]\n") and "[Chorus]" in p for p in sampler.calls)
    assert parse_song(render_song(sections)) == sections


def test_syllable_targets_steer_selection():
    spec = poem_form("haiku")
    words = "pond frog leaf moon".split()
    _, meta = compose(fake_sampler(words), spec, budget=6)
    offs = [r for r in meta["lines"] if "syllables" in r["unmet"]]
    picked = [r["syllables"] for r in meta["lines"]]
    assert len(offs) <= 1, picked


def test_compose_is_deterministic_and_offsets_seed():
    spec = song_form("V", rhyme="ABAB")
    runs = [compose(fake_sampler(RHYMING), spec, sampling={"seed": 5}) for _ in range(2)]
    assert runs[0] == runs[1]
    other = compose(fake_sampler(RHYMING), spec, sampling={"seed": 6})
    assert other[0] != runs[0][0]


def test_compose_validates_arguments():
    with pytest.raises(ValueError, match="budget"):
        compose(fake_sampler(RHYMING), song_form("V"), budget=0)
    with pytest.raises(ValueError, match="rhyme level"):
        compose(fake_sampler(RHYMING), song_form("V"), level="close")


# --------------------------------------------------------------------------- token level


class WordTokenizer:
    """One token per known word (written with its leading space), newline tokens, and two
    <unk> tokens for any other word (so it never counts as a one-token word)."""

    def __init__(self, words):
        self.pieces = ["\n", "\n\n", " <unk>"] + [" " + w for w in words]
        self.ids = {p: i for i, p in enumerate(self.pieces)}

    def __len__(self):
        return len(self.pieces)

    def encode(self, text, add_special_tokens=False):
        out = []
        for part in text.replace("\n", " \n ").split(" "):
            if part == "\n":
                out.append(0)
            elif part:
                out += [self.ids.get(" " + part.lower(), 2)] * (
                    1 if " " + part.lower() in self.ids else 2
                )
        return out

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids)


def uniform_lm_sampler(tokenizer, seed=0):
    """A 'language model' with flat logits, sampled token by token through the processors."""

    def sample_lines(prefix, n, logits_processor=(), **sampling):
        generator = torch.Generator().manual_seed(seed + len(prefix))
        context = tokenizer.encode(prefix)
        out = []
        for _ in range(n):
            ids = list(context)
            for _ in range(24):
                scores = torch.zeros(1, len(tokenizer))
                scores[0, 1:3] = float("-inf")  # no blank lines or <unk> in this toy model
                for processor in logits_processor:
                    scores = processor(torch.tensor([ids]), scores)
                token = int(torch.multinomial(torch.softmax(scores, -1)[0], 1, generator=generator))
                if token == 0:
                    break
                ids.append(token)
            out.append(tokenizer.decode(ids[len(context) :]))
        return out

    return sample_lines


def test_line_end_processor_boosts_rhymes_then_newline():
    tok = WordTokenizer(FILLER + RHYMING + UNRHYMABLE)
    proc = LineEndProcessor(tok, rhyme_words=["light", "bright", "orange"], syllables=(6, 8))
    light, walk = tok.ids[" light"], tok.ids[" walk"]
    early = tok.encode("\n i walk")
    scores = proc(torch.tensor([early]), torch.zeros(1, len(tok)))
    assert scores[0, light] == 0 and scores[0, 0] < 0  # too early: no boost, no newline
    late = tok.encode("\n i walk with you in my")
    scores = proc(torch.tensor([late]), torch.zeros(1, len(tok)))
    assert scores[0, light] > scores[0, walk] and scores[0, 0] < 0
    done = tok.encode("\n i walk with you in my light")
    scores = proc(torch.tensor([done]), torch.zeros(1, len(tok)))
    assert scores[0, 0] == scores[0].max() > 0


def test_tokenizer_steering_makes_a_flat_model_rhyme():
    tok = WordTokenizer(FILLER + RHYMING + UNRHYMABLE)
    spec = song_form("V V", rhyme="AABB", syllables="5-9")
    plain, _ = compose(uniform_lm_sampler(tok), spec, budget=1, k=2)
    steered, meta = compose(uniform_lm_sampler(tok), spec, budget=1, k=2, tokenizer=tok)
    assert rhyme_adherence(render_song(steered), "AABB") >= 0.95
    assert rhyme_adherence(render_song(plain), "AABB") < 0.95
    assert all("syllables" not in r["unmet"] for r in meta["lines"])
