"""Symbolic music for museforge: MIDI tokenization, constrained decoding, corpora, rendering, metrics.

    python -c "import museforge.music as m; tok = m.make_tokenizer(); \
print(m.decode(m.encode('tune.mid', tok), tok))"

Modules: ``tokenizer`` (MidiTok REMI + conditioning prefix), ``grammar`` (REMI
LogitsProcessor, bar limits), ``corpus`` (built-in music21 corpora, robust MIDI
loading, train/validation split), ``render`` (audio, WAV, piano roll), ``metrics``
(MusPy statistics, set comparison, Markov baseline).
"""

from museforge.music.corpus import CORPORA, builtin_corpus, load_midi_files, split_train_valid
from museforge.music.grammar import RemiGrammarProcessor, StopAfterBars
from museforge.music.metrics import MarkovModel, compare_sets, compute_metrics
from museforge.music.render import piano_roll_png, synthesize, to_pretty_midi, write_wav
from museforge.music.tokenizer import (
    DENSITY_BUCKETS,
    KEYS,
    conditioning_prefix,
    decode,
    encode,
    estimate_key,
    extract_melody,
    load_tokenizer,
    make_tokenizer,
    parse_key,
    save_tokenizer,
)

__all__ = [
    "CORPORA",
    "DENSITY_BUCKETS",
    "KEYS",
    "MarkovModel",
    "RemiGrammarProcessor",
    "StopAfterBars",
    "builtin_corpus",
    "compare_sets",
    "compute_metrics",
    "conditioning_prefix",
    "decode",
    "encode",
    "estimate_key",
    "extract_melody",
    "load_midi_files",
    "load_tokenizer",
    "make_tokenizer",
    "parse_key",
    "piano_roll_png",
    "save_tokenizer",
    "split_train_valid",
    "synthesize",
    "to_pretty_midi",
    "write_wav",
]
