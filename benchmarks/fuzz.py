"""Fuzz the loaders of user files with random and mutated bytes; print how many inputs were tried.

    python benchmarks/fuzz.py                          # 20,000 inputs per loader (about 10 minutes)
    python benchmarks/fuzz.py --n 2000 --seed 1        # a quicker run

The only outcomes allowed are a successful load or museforge's own UserError (one line). Anything
else (a traceback from symusic, pyarrow, csv, json, a crash) is reported with the input that
caused it, saved under benchmarks/results/fuzz-failures/. Loaders:

- midi: museforge.music.corpus.load_midi_files (eval --midi, melody training data)
- primer: MelodyTask.prompt_ids(primer=...) (generate melody --primer: read, check, tokenize)
- text-check: museforge.data.check_documents (.txt/.jsonl/.csv, the checks run before a model loads)
- text-load: museforge.data.load_documents, end to end through `datasets` (~0.1 s per input, so
  it gets --n-slow inputs)

Inputs: a third random bytes, two thirds mutations (byte flips, insertions, deletions, cuts,
duplicated chunks) of small valid files made in-process. tests/test_fuzz.py runs the same targets
under hypothesis in the default suite.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def valid_midi() -> bytes:
    from symusic import Note, Score, Tempo, TimeSignature, Track

    score = Score(480)
    score.tempos.append(Tempo(0, 100.0))
    score.time_signatures.append(TimeSignature(0, 3, 4))
    track = Track(name="melody", program=40)
    for i, p in enumerate([62, 64, 65, 67, 69, 67, 65, 64, 62, 69, 74, 72]):
        track.notes.append(Note(i * 480, 480, p, 80 + i))
    score.tracks.append(track)
    return score.dumps_midi()


SEEDS = {
    ".txt": b"rain on the window pane\nand the city hums along\n\n---\nanother song about the sea\nwaves\n",
    ".jsonl": b'{"text": "one two three four", "title": "t", "style": "folk"}\n{"text": ["a b c", "d e f"]}\n',
    ".csv": b'text,title,style\n"one two three four",t,folk\n"five, six seven eight",u,\n',
}


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 10)):
        op = rng.random()
        byte = (
            rng.randrange(128) if rng.random() < 0.7 else rng.randrange(256)
        )  # mostly ASCII: deeper parsing
        if op < 0.4 and b:
            b[rng.randrange(len(b))] = byte
        elif op < 0.55:
            b.insert(rng.randrange(len(b) + 1), byte)
        elif op < 0.7 and b:
            i = rng.randrange(len(b))
            del b[i : i + rng.randint(1, 8)]
        elif op < 0.8:
            b = b[: rng.randrange(len(b) + 1)]
        elif op < 0.9 and b:
            i = rng.randrange(len(b))
            b[i:i] = b[i : i + rng.randint(1, 32)] * rng.randint(1, 4)
        else:
            b.insert(rng.randrange(len(b) + 1), rng.choice(b'{}[]",:\n\r\x00\\'))
    return bytes(b)


def _primer_gen():
    """What MelodyTask.prompt_ids reads from a Generator: the tokenizer, the source, the window."""
    from museforge.tasks import get_task

    task = get_task("melody")
    config = types.SimpleNamespace(n_positions=1024)
    return task, types.SimpleNamespace(
        tokenizer=task.new_tokenizer(), source={}, model=types.SimpleNamespace(config=config)
    )


def targets(folder: Path) -> dict:
    """name -> (file suffixes, function(path)) for every loader under test."""
    from museforge.data import check_documents, load_documents
    from museforge.music.corpus import load_midi_files

    task, gen = _primer_gen()
    return {
        "midi": ((".mid",), load_midi_files),
        "primer": ((".mid",), lambda p: task.prompt_ids(gen, primer=str(p), bars=4)),
        "text-check": ((".txt", ".jsonl", ".csv"), check_documents),
        "text-load": ((".txt", ".jsonl", ".csv"), load_documents),
    }


def run_one(fn, path: Path, data: bytes) -> str:
    """'ok', 'user-error', or raises what escaped."""
    from museforge.errors import UserError

    path.write_bytes(data)
    try:
        fn(path)
        return "ok"
    except UserError as e:
        if "\n" in str(e):
            raise AssertionError(f"multi-line message: {e!r}") from None
        return "user-error"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="inputs per fast loader")
    parser.add_argument(
        "--n-slow", type=int, default=2_000, help="inputs for text-load (datasets, ~0.1 s each)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated loaders")
    args = parser.parse_args()

    import datasets

    datasets.disable_progress_bars()
    folder = Path(tempfile.mkdtemp(prefix="museforge-fuzz-"))
    datasets.config.HF_DATASETS_CACHE = folder / "hf-datasets"
    seeds = {".mid": valid_midi(), **SEEDS}
    rng = random.Random(args.seed)
    rows, failures = [], []
    for name, (suffixes, fn) in targets(folder).items():
        if args.only and name not in args.only.split(","):
            continue
        n = args.n_slow if name == "text-load" else args.n
        outcomes: Counter = Counter()
        t0 = time.perf_counter()
        for i in range(n):
            suffix = suffixes[i % len(suffixes)]
            data = (
                bytes(rng.randrange(256) for _ in range(rng.randrange(600)))
                if i % 3 == 0
                else mutate(seeds[suffix], rng)
            )
            path = folder / f"input{suffix}"
            try:
                outcomes[run_one(fn, path, data)] += 1
            except Exception as e:  # noqa: BLE001 - the finding: save the input
                outcomes["escaped"] += 1
                saved = HERE / "results" / "fuzz-failures" / f"{name}-{i}{suffix}"
                saved.parent.mkdir(parents=True, exist_ok=True)
                saved.write_bytes(data)
                failures.append(
                    {"loader": name, "input": str(saved), "error": f"{type(e).__name__}: {e}"[:300]}
                )
        rows.append(
            {
                "loader": name,
                "inputs": n,
                **{k: outcomes[k] for k in ("ok", "user-error", "escaped")},
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(
        "\n| loader | inputs | loaded | museforge UserError | anything else | seconds |\n|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['loader']} | {r['inputs']} | {r['ok']} | {r['user-error']} | {r['escaped']} | {r['seconds']} |"
        )
    for f in failures[:20]:
        print(json.dumps(f))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
