"""Melodies as MIDI: `museforge generate melody --key "D minor" --tempo 96 --bars 16 --seed 3 --out tune.mid`.

Data is a MIDI file, a folder (recursive), a built-in music21 corpus (bach, oneills, ryans, airds,
folk) or a comma-separated list of these. Each piece becomes one document: its monophonic top
line in MidiTok REMI tokens after a conditioning prefix (key, tempo, time signature, program,
density; see museforge.music.tokenizer). The train/validation split is by piece; every training
piece is also seen once transposed (a seeded shift of -5..+6 semitones) so that every key token
is trained, not only the keys the corpus happens to use.

Generation writes the prefix the user asked for (or encodes a primer) and samples under the REMI
grammar (museforge.music.grammar) with the bar count fixed, so every sample decodes to a file
with the requested bars, tempo and time signature.
"""

from __future__ import annotations

import math
import random
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from museforge.config import DataConfig, GenerationConfig
from museforge.data import DataError
from museforge.errors import UserError
from museforge.tasks.base import Task

if TYPE_CHECKING:
    from museforge.generation import Generator
    from museforge.music.melody import Melody

DEFAULT_KEY, DEFAULT_TEMPO, DEFAULT_TIME_SIGNATURE = "C major", 120, "4/4"
MAX_BARS = 128
TRANSPOSE = range(-5, 7)  # semitone shifts for the transposed copy of each training piece


def parse_instrument(instrument: str | int | None) -> int | None:
    """A General MIDI program from a program number or a GM name ("flute", "Violin",
    "acoustic grand piano"; a partial name takes the first GM instrument containing it)."""
    import pretty_midi

    if instrument is None or instrument == "":
        return None
    text = str(instrument).strip().lower()
    if text.isdigit():
        program = int(text)
        if not 0 <= program <= 127:
            raise UserError(f"instrument program must be 0..127, got {program}")
        return program
    names = [n.lower() for n in pretty_midi.constants.INSTRUMENT_MAP]
    if text in names:
        return names.index(text)
    partial = [i for i, n in enumerate(names) if text in n]
    if partial:
        return partial[0]
    raise UserError(f"unknown instrument {instrument!r}: use a General MIDI name (e.g. piano, flute, violin, "
                     "acoustic guitar (nylon), trumpet, clarinet, string ensemble 1) or a program number 0-127")


def _with_ids(tokenizer):
    """MidiTok tokenizers have pad_token_id only; the generator also wants eos/bos ids."""
    tokenizer.eos_token_id = tokenizer.vocab["EOS_None"]
    tokenizer.bos_token_id = tokenizer.vocab["BOS_None"]
    return tokenizer


def _paths(spec: str) -> list[str]:
    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not items:
        raise DataError("no training data given: set data.path to a MIDI file/folder or a corpus (bach, oneills, folk)")
    return items


def _load(spec: str):
    from museforge.music.corpus import load_midi_files

    try:
        return load_midi_files(_paths(spec))
    except (ValueError, FileNotFoundError) as e:
        raise DataError(str(e)) from None


def encode_pieces(pieces, tokenizer, augment: bool = False, seed: int = 0) -> tuple[list[list[int]], list[tuple[Path, str]], Counter]:
    """Token documents of (path, Score) pieces; pieces that cannot be tokenized are returned as
    (path, reason). `augment` adds one transposed copy per piece (seeded by file name)."""
    from museforge.music.tokenizer import encode

    docs, skipped, programs = [], [], Counter()
    for path, score in pieces:
        try:
            ids = encode(score, tokenizer)
        except Exception as e:  # noqa: BLE001 - a piece MidiTok cannot read must not stop training
            skipped.append((path, f"cannot tokenize: {type(e).__name__}: {e}"[:200]))
            continue
        docs.append(ids)
        programs[tokenizer[ids[4]].split("_")[1]] += 1
        if augment:
            pitches = [n.pitch for t in score.tracks if not t.is_drum for n in t.notes]
            shifts = [s for s in TRANSPOSE if s and 21 <= min(pitches) + s and max(pitches) + s <= 108]
            if shifts:
                shifted = score.shift_pitch(random.Random(f"{seed}/{path.name}").choice(shifts))
                try:
                    docs.append(encode(shifted, tokenizer))
                except Exception:  # noqa: BLE001 - the original is kept either way
                    pass
    return docs, skipped, programs


class MelodyTask(Task):
    name = "melody"
    kind = "midi"
    options = ("key", "tempo", "time_signature", "bars", "instrument", "primer", "density")
    # Music tokens repeat by nature (Position, Velocity, Duration): no repetition penalty.
    # max_new_tokens is only a cap: the grammar ends each sample after the requested bars.
    defaults = {"max_new_tokens": 2048, "temperature": 1.0, "top_p": 0.95, "top_k": 0, "repetition_penalty": 1.0}
    sample_prompts = ("",)
    scale_bias = 2.0
    """Logit penalty for out-of-key pitches. Measured on the shipped model (100 melodies over the
    24 keys): in-key rate 0.59 at 0 and 0.93 at 2.0, with pitch-class statistics much closer to
    held-out tunes and no other statistic worse (benchmarks/melody_quality.py --scale-bias)."""

    # ---- tokenizer ---------------------------------------------------------------------------
    def load_tokenizer(self, path: str, trust_remote_code: bool = False):  # MidiTok json: never code
        from museforge.music.tokenizer import load_tokenizer

        return _with_ids(load_tokenizer(path))

    def new_tokenizer(self, name: str = "default"):
        from museforge.music.tokenizer import make_tokenizer

        return _with_ids(make_tokenizer())

    def save_tokenizer(self, tokenizer, directory) -> Path:
        from museforge.music.tokenizer import save_tokenizer

        return save_tokenizer(tokenizer, directory)

    def special_ids(self, tokenizer) -> dict[str, int]:
        v = tokenizer.vocab
        return {"eos_token_id": v["EOS_None"], "pad_token_id": v["PAD_None"], "bos_token_id": v["BOS_None"]}

    # ---- data --------------------------------------------------------------------------------
    def build_datasets(self, data: DataConfig, tokenizer):
        from museforge.music.corpus import split_train_valid

        pieces, skipped = _load(data.path)
        if data.max_documents:
            pieces = pieces[: data.max_documents]
        if data.val_path:
            train, (val, val_skipped) = pieces, _load(data.val_path)
            skipped += val_skipped
        else:
            train, val = split_train_valid(pieces, data.val_fraction, data.seed)  # by piece
        train_docs, bad, programs = encode_pieces(train, tokenizer, augment=True, seed=data.seed)
        val_docs, bad_val, _ = encode_pieces(val, tokenizer)
        skipped += bad + bad_val
        if not train_docs:
            raise DataError(f"{data.path}: no usable MIDI pieces ({len(skipped)} skipped; first: "
                            f"{skipped[0][0].name}: {skipped[0][1]})" if skipped else f"{data.path}: no usable MIDI pieces")
        n_train = len(train) - len(bad)
        print(f"melody data: {n_train + len(val) - len(bad_val)} pieces ({n_train} train + transposed copies, "
              f"{len(val) - len(bad_val)} validation), {len(skipped)} skipped"
              + (f" (e.g. {skipped[0][0].name}: {skipped[0][1]})" if skipped else ""), file=sys.stderr)
        info = {"pieces": {"train": n_train, "validation": len(val) - len(bad_val)},
                "documents": {"train": len(train_docs), "validation": len(val_docs)},
                "tokens": {"train": sum(map(len, train_docs)), "validation": sum(map(len, val_docs))},
                "augmentation": "one transposed copy per training piece",
                "programs": dict(programs.most_common()),
                "skipped": {"count": len(skipped), "sample": [f"{p.name}: {r}" for p, r in skipped[:10]]}}
        return train_docs, val_docs, info

    # ---- generation --------------------------------------------------------------------------
    @staticmethod
    def _controls(key=None, tempo=None, time_signature=None, bars: Any = 16, instrument=None,
                  density=None) -> tuple[int | None, int | None]:
        """One clear error for any bad control, before any work; returns (tempo, program)."""
        from museforge.music.tokenizer import conditioning_prefix

        if not isinstance(bars, int) or isinstance(bars, bool) or not 1 <= bars <= MAX_BARS:
            raise UserError(f"bars must be an integer 1..{MAX_BARS}, got {bars!r}")
        if tempo is not None:
            try:
                tempo = int(round(float(tempo)))
            except (TypeError, ValueError, OverflowError):  # OverflowError: tempo=inf
                raise UserError(f"tempo must be a number of bpm, got {tempo!r}") from None
        program = parse_instrument(instrument)
        conditioning_prefix(key or DEFAULT_KEY, DEFAULT_TEMPO if tempo is None else tempo,
                            time_signature or DEFAULT_TIME_SIGNATURE, program, density)
        return tempo, program

    def check(self, key=None, tempo=None, time_signature=None, bars: Any = 16, instrument=None, primer=None,
              density=None, **options: Any) -> None:
        from museforge.music.tokenizer import load_score

        bars = int(bars) if isinstance(bars, str) and bars.isdigit() else bars
        self._controls(key, tempo, time_signature, bars, instrument, density)
        if primer:
            load_score(Path(primer))  # missing, empty, huge or corrupt files fail here, before a model loads

    def prompt_ids(self, gen: Generator, key=None, tempo=None, time_signature=None, bars: int = 16,
                   instrument=None, primer=None, density=None) -> tuple[list[int], list[int], dict[str, Any]]:
        """(context ids the model continues, primer body ids not in the context, resolved request)."""
        from museforge.music.tokenizer import conditioning_prefix, key_name, parse_key

        tok = gen.tokenizer
        tempo, program = self._controls(key, tempo, time_signature, bars, instrument, density)
        if primer:
            context, hidden, request = self._primer(gen, primer, key, tempo, time_signature, program, density)
        else:
            request = {"key": key or DEFAULT_KEY, "tempo": tempo or DEFAULT_TEMPO,
                       "time_signature": time_signature or DEFAULT_TIME_SIGNATURE, "program": program or 0}
            prefix = conditioning_prefix(request["key"], request["tempo"], request["time_signature"],
                                         self._model_program(gen, request["program"]), density)
            context, hidden = [tok.vocab[t] for t in prefix], []
        request["key"] = key_name(*parse_key(request["key"]))
        return context, hidden, {**request, "bars": bars, "density": density}

    @staticmethod
    def _model_program(gen: Generator, program: int) -> int:
        """The program token to condition on: the requested one if the model was trained on it,
        else its most common training program (the instrument is then applied to the output)."""
        from museforge.models import run_info

        seen = run_info(gen.source.get("path") or "").get("data", {}).get("programs")
        if not seen or str(program) in seen:
            return program
        return int(max(seen, key=seen.get))

    def _primer(self, gen: Generator, primer, key, tempo, time_signature, program, density):
        from symusic import Tempo, TimeSignature

        from museforge.music.tokenizer import encode, estimate_key, key_token, load_score, parse_key

        tok = gen.tokenizer
        score = load_score(Path(primer)).copy()
        if tempo is not None:
            score.tempos = [Tempo(0, float(tempo))]
        if time_signature is not None:
            num, _, den = str(time_signature).partition("/")
            if not (num.isdigit() and den.isdigit()):
                raise UserError(f"time signature must look like 6/8, got {time_signature!r}")
            score.time_signatures = [TimeSignature(0, int(num), int(den))]
        if key is not None:  # transpose the primer to the requested key (nearest shift)
            (old, _), (new, _) = parse_key(estimate_key(score)), parse_key(key)
            shift = (new - old) % 12
            score = score.shift_pitch(shift - 12 if shift > 6 else shift)
        program = next((t.program for t in score.tracks if not t.is_drum), 0) if program is None else program
        try:
            ids = encode(score, tok, program=self._model_program(gen, program))[:-1]
        except UserError as e:
            raise UserError(f"primer {primer}: {e}") from None
        except Exception as e:  # noqa: BLE001 - MidiTok on a strange but readable file (found by fuzzing)
            raise UserError(f"primer {primer}: cannot tokenize it ({type(e).__name__}: {e}): re-export it as a "
                            "plain one-track MIDI file") from None
        tokens = [tok[i] for i in ids]
        if "Bar_None" not in tokens:
            raise UserError(f"primer {primer}: no complete bar of notes to continue: give a longer primer")
        start = tokens.index("Bar_None")
        prefix, body = ids[:start], ids[start:]
        if key is not None:
            prefix[1] = tok.vocab[key_token(key)]
        if density is not None:
            prefix[5] = tok.vocab[f"Density_{density}"]
        # Keep the context to half the model's window: the rest is left for the new bars.
        room = self._window(gen) // 2 - len(prefix)
        bar_starts = [i for i, t in enumerate(body) if t == tok.vocab["Bar_None"]]
        cut = next((b for b in bar_starts if len(body) - b <= room), bar_starts[-1])
        prefix_tokens = [tok[i] for i in prefix]
        request = {"key": prefix_tokens[1].split("_", 1)[1].replace("-", " "),
                   "tempo": int(round(float(prefix_tokens[2].split("_", 1)[1]))),
                   "time_signature": prefix_tokens[3].split("_", 1)[1],
                   "program": int(program),
                   "primer": str(primer), "primer_bars": len(bar_starts), "context_bars": len(bar_starts) - bar_starts.index(cut)}
        return prefix + body[cut:], body[:cut], request

    @staticmethod
    def _window(gen: Generator) -> int:
        c = gen.model.config
        return int(getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None) or 1024)

    def generate(self, gen: Generator, prompt: str, settings: GenerationConfig, key=None, tempo=None,
                 time_signature=None, bars: int = 16, instrument=None, primer=None, density=None,
                 **options: Any) -> list[Melody]:
        from transformers import LogitsProcessorList

        from museforge.music.grammar import RemiGrammarProcessor

        _with_ids(gen.tokenizer)
        bars = int(bars) if isinstance(bars, str) and bars.isdigit() else bars
        context, hidden, request = self.prompt_ids(gen, key, tempo, time_signature, bars, instrument, primer, density)
        in_context = sum(t == gen.tokenizer.vocab["Bar_None"] for t in context)
        total = in_context + bars
        grammar = RemiGrammarProcessor(gen.tokenizer, monophonic=True, min_bars=total, max_bars=total,
                                       scale_bias=self.scale_bias)
        budget = min(settings.max_new_tokens, self._window(gen) - len(context))
        if budget < 8:
            raise UserError("the primer leaves no room in the model's context window; use a shorter primer")
        rows = gen.complete_ids(context, settings, logits_processor=LogitsProcessorList([grammar]), max_new_tokens=budget)
        opts = {k: v for k, v in dict(key=key, tempo=tempo, time_signature=time_signature, bars=bars,
                                      instrument=instrument, primer=primer, density=density).items() if v is not None}
        return [self.melody(gen, context, hidden, row, request, settings, opts, i) for i, row in enumerate(rows)]

    def melody(self, gen: Generator, context: list[int], hidden: list[int], row: list[int], request: dict[str, Any],
               settings: GenerationConfig, options: dict[str, Any], index: int = 0) -> Melody:
        """Decode one sampled row into a Melody: the primer (if any) + the new bars, clipped to the bar count."""
        from museforge.music.melody import Melody, finish_melody, instrument_name
        from museforge.music.tokenizer import decode

        tok = gen.tokenizer
        start = context.index(tok.vocab["Bar_None"]) if tok.vocab["Bar_None"] in context else len(context)
        ids = context[:start] + hidden + context[start:] + row
        score = decode(ids, tok)
        primer_bars = request.get("primer_bars", 0)
        finish_melody(score, primer_bars + request["bars"], request["program"])
        prov = gen.provenance(settings, options)
        prov.update(key=request["key"], tempo=request["tempo"], time_signature=request["time_signature"],
                    bars=request["bars"], instrument=instrument_name(request["program"]), program=request["program"],
                    primer=request.get("primer"), density=request.get("density"))
        if index:
            prov["sample"] = index  # the index-th of num_return_sequences drawn with this seed
        meta = {"primer_bars": primer_bars} if primer_bars else {}
        return Melody(score, ids, prov, metadata=meta)

    def sample_metrics(self, outputs: list) -> dict[str, float]:
        rows = [o.metrics() for o in outputs if o.notes]
        if not rows:
            return {}
        return {k: round(sum(float(r[k]) for r in rows) / len(rows), 4)
                for k in ("in_key_rate", "notes", "bars", "pitch_range") if k in rows[0]}


def evaluate_melody(model: Any = "default", data: str = "", markov_n: int = 3, train_data: str | None = None,
                    block_size: int | None = None, batch_size: int = 8, samples: int = 0, bars: int = 16) -> dict[str, Any]:
    """Held-out loss/perplexity of a melody model on MIDI data next to a Markov n-gram baseline.

    `data` is a MIDI file/folder or corpus name. When it is the model's own training data (as
    recorded in its museforge.json) only that run's validation split is scored. The baseline is
    fitted on the model's training documents (or on `train_data`), packed the same way, and
    scored on exactly the tokens the model predicts, with the same context each token can see.
    With `samples`, the model also writes that many `bars`-bar melodies, each conditioned on a
    scored piece's key, tempo and time signature, and their music statistics are compared with
    those pieces' first `bars` bars (`music_statistics`: means and distribution overlap).
    """

    from museforge.config import config_from_dict
    from museforge.data import pack
    from museforge.evaluate import token_loss
    from museforge.generation import Generator
    from museforge.models import run_info
    from museforge.music.metrics import MarkovModel

    gen = model if not isinstance(model, str) else Generator.load("melody", model, dtype="float32")
    task: MelodyTask = gen.task
    info = run_info(gen.source.get("path") or "")
    cfg = config_from_dict(info["config"]) if info.get("config") else None
    block_size = block_size or (cfg.data.block_size if cfg else 1024)
    pad = task.special_ids(gen.tokenizer)["pad_token_id"]

    train_docs = None
    if cfg and data == cfg.data.path:
        train_docs, docs, _ = task.build_datasets(cfg.data, gen.tokenizer)
        scored = f"validation split of the training data ({cfg.data.val_fraction:.0%} of pieces, seed {cfg.data.seed})"
    else:
        pieces, skipped = _load(data)
        docs, bad, _ = encode_pieces(pieces, gen.tokenizer)
        scored = f"all {len(docs)} pieces ({len(skipped) + len(bad)} skipped)"
    if not docs:
        raise DataError(f"{data}: no pieces to score")
    blocks = pack(docs, block_size, pad)
    loss, count = token_loss(gen, docs, block_size, batch_size)
    report: dict[str, Any] = {"model": gen.source.get("model"), "task": "melody", "data": data, "scored": scored,
                              "pieces": len(docs), "tokens": count, "block_size": block_size,
                              "loss": round(loss, 4), "perplexity": round(math.exp(min(loss, 50)), 3)}

    if samples:
        report["music_statistics"] = _compare_samples(gen, docs, samples, bars)
    train_spec = train_data or (cfg.data.path if cfg else None)
    if not train_spec:
        report["markov"] = "no training data recorded: pass train_data to fit the baseline"
        return report
    if train_data:
        train_docs, _, _ = task.build_datasets(DataConfig(path=train_data, val_fraction=0.0), gen.tokenizer)
    elif train_docs is None:
        train_docs, _, _ = task.build_datasets(cfg.data, gen.tokenizer)
    markov = MarkovModel(n=markov_n, vocab_size=len(gen.tokenizer)).fit(
        b["input_ids"][: b["doc_ids"].index(-1) if -1 in b["doc_ids"] else None] for b in pack(train_docs, block_size, pad))
    m_loss = markov_loss(markov, blocks)
    report.update({f"markov{markov_n}_loss": round(m_loss, 4), f"markov{markov_n}_perplexity": round(math.exp(m_loss), 3),
                   "markov_fitted_on": train_spec})
    return report


def markov_loss(markov, blocks: list[dict[str, list[int]]]) -> float:
    """Mean NLL of a MarkovModel on packed blocks: the targets the transformer's loss counts, each
    from the history the transformer can see there (the block, from the previous token's document)."""
    total, count = 0.0, 0
    for b in blocks:
        ids, docs = b["input_ids"], b["doc_ids"]
        start = 0  # where the document of position t - 1 begins
        for t in range(1, len(ids)):
            if docs[t] < 0:  # padding
                break
            if docs[t - 1] != docs[start]:
                start = t - 1
            hist = ids[max(start, t - markov.n + 1): t]
            total -= markov.log_prob(hist, ids[t])
            count += 1
    return total / max(count, 1)


def _compare_samples(gen: Generator, docs: list[list[int]], n: int, bars: int) -> dict[str, Any]:
    from museforge.music.melody import finish_melody
    from museforge.music.metrics import compare_sets
    from museforge.music.tokenizer import decode

    tok, generated, reference = gen.tokenizer, [], []
    for doc in docs:
        score = finish_melody(decode(doc, tok), bars)
        if score.note_num():
            reference.append(score)
    for i in range(n):
        prefix = [tok[t].split("_", 1)[1] for t in docs[i % len(docs)][1:4]]
        m = gen.generate(key=prefix[0].replace("-", " "), tempo=round(float(prefix[1])), time_signature=prefix[2],
                         bars=bars, seed=i)
        generated.append(m.score)
    return compare_sets(generated, reference)
