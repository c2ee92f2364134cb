"""Lyric craft, measured: the base model asked in words vs museforge's constrained composition.

    python benchmarks/lyrics_quality.py                       # 50 songs per row, default model
    python benchmarks/lyrics_quality.py -n 10 --sections "verse chorus" --rhyme AABB --syllables 8-10

Row (a): the model gets the request in words ("... Rhyme scheme AABB. 8-10 syllables per line.
Structure: verse chorus.") and writes freely. Row (b): the same request through museforge's
line-by-line constrained decoding. Both are scored against the requested form with the same
metrics (museforge.text.metrics). Fixed seeds 0..n-1 over a fixed list of topics.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import save_json

TOPICS = ["rain on a city night", "leaving home", "a summer by the sea", "the last train", "my grandmother's kitchen",
          "dancing alone", "a broken phone", "the first snow", "running late", "a letter never sent"]
METRICS = ["rhyme_adherence", "rhyme_adherence_slant", "syllable_dev_mean", "repeated_4gram_rate",
           "repeated_line_rate", "distinct_2", "section_adherence"]


def summarize(name: str, rows: list[dict]) -> dict:
    out = {"row": name, "songs": len(rows)}
    for m in METRICS:
        vals = [r[m] for r in rows if r.get(m) is not None]
        out[m] = round(statistics.mean(vals), 3) if vals else None
    out["degenerate"] = sum(bool(r.get("degenerate")) for r in rows)
    out["constraints_unmet_songs"] = sum(bool(r.get("unmet")) for r in rows)
    out["seconds_per_song"] = round(statistics.median(r["seconds"] for r in rows), 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50, help="songs per row")
    ap.add_argument("--model", default="default")
    ap.add_argument("--sections", default="verse chorus")
    ap.add_argument("--rhyme", default="AABB")
    ap.add_argument("--syllables", default="8-10")
    ap.add_argument("--rows", default="words,constrained")
    ap.add_argument("--out", default="benchmarks/results/lyrics_quality.json")
    a = ap.parse_args(argv)

    from museforge.evaluate import markdown_table
    from museforge.generation import load_generator
    from museforge.text.metrics import text_metrics

    gen = load_generator("lyrics", a.model)
    per_row: dict[str, list[dict]] = {}
    samples: dict[str, str] = {}
    for row in a.rows.split(","):
        per_row[row] = []
        for i in range(a.n):
            topic = TOPICS[i % len(TOPICS)]
            t0 = time.perf_counter()
            if row == "words":
                # the request in words, free decoding (the craft options only shape the prompt)
                prefix = gen.task.render(gen.tokenizer, topic, rhyme=a.rhyme, syllables=a.syllables, sections=a.sections)
                text = gen.complete(prefix, gen.settings(seed=i, max_new_tokens=160)[0])[0].strip()
                unmet = None
            else:
                out = gen.generate(topic, seed=i, sections=a.sections, rhyme=a.rhyme, syllables=a.syllables)
                text, unmet = out.text, out.metadata["failures"]
            m = text_metrics(text, rhyme=a.rhyme, syllables=a.syllables, sections=a.sections)
            m.update(seconds=time.perf_counter() - t0, unmet=unmet)
            per_row[row].append(m)
            samples.setdefault(row, text)
            partial = {"benchmark": "lyric craft (partial)", "table": [summarize(r, rs) for r, rs in per_row.items()]}
            save_json(partial, a.out, show=False)  # survives an interrupted run
            print(f"{row} {i + 1}/{a.n}: rhyme {m.get('rhyme_adherence')}, syl dev {m.get('syllable_dev_mean')}, "
                  f"{m['seconds']:.1f}s", file=sys.stderr, flush=True)
    table = [summarize(r, rows) for r, rows in per_row.items()]
    result = {"benchmark": "lyric craft", "model": a.model, "sections": a.sections, "rhyme": a.rhyme,
              "syllables": a.syllables, "table": table, "sample": samples}
    save_json(result, a.out, show=False)
    print(markdown_table(table))
    return result


if __name__ == "__main__":
    main()
