"""Grammar-constrained sampling: every sampled sequence decodes to notes in the requested form."""

from __future__ import annotations

import pytest
import torch
from miditok import TokSequence
from transformers import LogitsProcessorList, StoppingCriteriaList

from museforge.music import tokenizer as T
from museforge.music.grammar import RemiGrammarProcessor, StopAfterBars


@pytest.fixture(scope="module")
def tok():
    return T.make_tokenizer()


def sample(tok, processor, prefixes, steps=200, seed=0, width=None):
    """Sample from uniform logits through ``processor``, batched, like generate() would."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.tensor([[tok.vocab[t] for t in p] for p in prefixes])
    for _ in range(steps):
        scores = processor(ids, torch.zeros(len(ids), width or len(tok)))
        nxt = torch.multinomial(torch.softmax(scores, -1), 1, generator=gen)
        ids = torch.cat([ids, nxt], 1)
        if (ids == tok.vocab["EOS_None"]).any(1).all():
            break
    return ids.tolist()


def body(tok, ids):
    tokens = [tok[i] for i in ids]
    end = tokens.index("EOS_None") if "EOS_None" in tokens else len(tokens)
    return tokens[tokens.index("Bar_None") : end]


def test_200_uniform_samples_all_decode_to_notes(tok):
    prefixes = [
        T.conditioning_prefix(key, tempo, ts, program)
        for key, tempo, ts, program in [
            ("D minor", 96, "3/4", 40),
            ("C", 120, "6/8", 0),
            ("Bb", 60, "2/2", 73),
            ("e", 200, "4/4", 24),
        ]
    ] * 50
    seqs = sample(tok, RemiGrammarProcessor(tok, max_bars=6), prefixes)
    for prefix, ids in zip(prefixes, seqs, strict=True):
        score = T.decode(ids, tok)
        assert score.note_num() >= 1
        assert round(score.tempos[0].qpm) == int(float(prefix[2].split("_")[1]))
        tokens = body(tok, ids)
        # MidiTok's own validity check: token type order, increasing positions
        assert tok.tokens_errors([TokSequence(tokens=tokens)]) == [0.0]
        assert {t for t in tokens if t.startswith("TimeSig")} == {prefix[3]}
        assert tokens.count("Bar_None") <= 6
        num = int(prefix[3].split("_")[1].split("/")[0])
        assert all(int(t.split("_")[1]) < num * 24 for t in tokens if t.startswith("Position"))


def test_grammar_accepts_real_melodies(tok, midi_dir):
    processor = RemiGrammarProcessor(tok)
    for name in ("scale_3_4", "polyphonic", "jig_6_8", "reel_2_2"):
        ids = torch.tensor(T.encode(midi_dir / f"{name}.mid", tok))
        for t in range(1, len(ids)):
            assert processor.allowed(ids[None, :t])[0, ids[t]], (name, t, tok[int(ids[t])])


def test_prefix_is_completed_in_order(tok):
    # without Program: the model picks it
    prefix = T.conditioning_prefix("A minor", 110, "4/4")[:-1]
    ids = sample(tok, RemiGrammarProcessor(tok, max_bars=2), [prefix] * 8)
    for row in ids:
        tokens = [tok[i] for i in row]
        assert (
            tokens[4].startswith("Program_")
            and tokens[5].startswith("Density_")
            and tokens[6] == "Bar_None"
        )
        assert not any(t.split("_")[0] in ("Key", "Program", "Density", "BOS") for t in tokens[6:])


def test_exact_bar_count(tok):
    ids = sample(
        tok,
        RemiGrammarProcessor(tok, min_bars=3, max_bars=3),
        [T.conditioning_prefix("G", 90, "4/4")] * 20,
        steps=400,
    )
    for row in ids:
        tokens = [tok[i] for i in row]
        assert "EOS_None" in tokens
        assert tokens.count("Bar_None") == 3


def test_scale_bias_keeps_pitches_in_key(tok):
    ids = sample(
        tok,
        RemiGrammarProcessor(tok, max_bars=2, scale_bias=1e4),
        [T.conditioning_prefix("Eb major", 90, "4/4")] * 20,
    )
    eb_major = {3, 5, 7, 8, 10, 0, 2}
    pitches = [int(t.split("_")[1]) for row in ids for t in body(tok, row) if t.startswith("Pitch")]
    assert pitches and all(p % 12 in eb_major for p in pitches)


def test_model_vocab_larger_than_tokenizer(tok):
    processor = RemiGrammarProcessor(tok)
    ids = torch.tensor([[tok.vocab[t] for t in T.conditioning_prefix("C", 120, "4/4", 0, "low")]])
    scores = processor(ids, torch.zeros(1, len(tok) + 8))
    assert scores.shape == (1, len(tok) + 8)
    assert torch.isfinite(scores[0]).nonzero().flatten().tolist() == [tok.vocab["Bar_None"]]
    with pytest.raises(ValueError, match="resize"):
        processor(ids, torch.zeros(1, len(tok) - 1))


def test_stop_after_bars_and_processor_list(tok):
    stop = StoppingCriteriaList([StopAfterBars(tok, 2)])
    bar = tok.vocab["Bar_None"]
    ids = torch.tensor([[bar, 5, bar, 5], [bar, 5, bar, bar]])
    assert stop(ids, None).tolist() == [False, True]
    processors = LogitsProcessorList([RemiGrammarProcessor(tok)])
    assert processors(ids, torch.zeros(2, len(tok))).shape == (2, len(tok))
    with pytest.raises(ValueError, match="at least 1"):
        StopAfterBars(tok, 0)
