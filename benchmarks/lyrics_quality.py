"""Lyric craft, measured: the base model asked in words vs museforge's constrained composition.

    python benchmarks/lyrics_quality.py                       # 50 songs per row, default model
    python benchmarks/lyrics_quality.py -n 10 --sections "verse chorus" --rhyme AABB --syllables 8-10

Row (a): the model gets the request in words ("... Rhyme scheme AABB. 8-10 syllables per line.
Structure: verse chorus.") and writes freely. Row (b): the same request through museforge's
line-by-line constrained decoding. Both are scored against the requested form with the same
metrics (museforge.text.metrics). Fixed seeds 0..n-1 over a fixed list of topics.

Sense, measured by the model itself: `song_nll` is the mean negative log-likelihood (nats a token)
of the song's lines after the plain request (the topic alone, no form asked), and `end_nll` that of
each line's last word (its tokens summed): a rhyme forced where it makes no sense ("I'll be there
for you collect") costs 8-15 nats there. Lower is more natural; both rows are scored the same way,
by the model that wrote them (museforge ranks candidate lines by these log-probabilities too, so
the drop is partly by construction; `dangling_end_rate` counts lines that break off on "the",
"my", "and"..., the cheap way to a likely last word).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from common import save_json

TOPICS = ["rain on a city night", "leaving home", "a summer by the sea", "the last train", "my grandmother's kitchen",
          "dancing alone", "a broken phone", "the first snow", "running late", "a letter never sent"]
METRICS = ["rhyme_adherence", "rhyme_adherence_slant", "syllable_dev_mean", "repeated_4gram_rate",
           "repeated_line_rate", "distinct_2", "section_adherence", "dangling_end_rate", "song_nll", "end_nll"]


def sense(gen, topic: str, text: str) -> dict:
    """song_nll and end_nll (see above) of a song's lines, section tags left out."""
    import torch

    from museforge.text.prosody import last_word_span

    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("[")]
    if not lines:
        return {}
    prefix = gen.task.render(gen.tokenizer, topic)
    enc = gen.tokenizer(prefix + "\n".join(lines), add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    with torch.inference_mode():
        logits = gen.model(input_ids=torch.tensor([ids], device=gen.device)).logits[0].float().cpu()
    nll = [0.0] + (-logits.log_softmax(-1)[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]).tolist()  # nll[i]: token i
    start = next(i for i, (a, b) in enumerate(offsets) if b > len(prefix))
    ends, pos = [], len(prefix)
    for line in lines:
        first, end = (pos + offset for offset in last_word_span(line))
        word = [nll[i] for i, (a, b) in enumerate(offsets) if b > first and a < end]
        if word:
            ends.append(sum(word))
        pos += len(line) + 1
    return {"song_nll": sum(nll[start:]) / (len(ids) - start), "end_nll": sum(ends) / len(ends) if ends else None}


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
            m.update(sense(gen, topic, text))
            per_row[row].append(m)
            samples.setdefault(row, text)
            partial = {"benchmark": "lyric craft (partial)", "table": [summarize(r, rs) for r, rs in per_row.items()]}
            save_json(partial, a.out, show=False)  # survives an interrupted run
            print(f"{row} {i + 1}/{a.n}: rhyme {m.get('rhyme_adherence')}, syl dev {m.get('syllable_dev_mean')}, "
                  f"song nll {m.get('song_nll', 0):.2f}, end nll {m.get('end_nll') or 0:.2f}, "
                  f"{m['seconds']:.1f}s", file=sys.stderr, flush=True)
    table = [summarize(r, rows) for r, rows in per_row.items()]
    result = {"benchmark": "lyric craft", "model": a.model, "sections": a.sections, "rhyme": a.rhyme,
              "syllables": a.syllables, "command": "python benchmarks/lyrics_quality.py " + " ".join(argv or sys.argv[1:]),
              "table": table, "sample": samples}
    save_json(result, a.out, show=False)
    print(markdown(result))
    if a.out:
        Path(a.out).with_suffix(".md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    """The result as markdown: the table, how it was made, and the first song of each row."""
    from museforge.evaluate import markdown_table

    lines = [markdown_table(result["table"]), "",
             f"`{result.get('command', '')}`: {result['rhyme']}, {result['sections']}, {result['syllables']} syllables, "
             f"model {result['model']}; song_nll / end_nll: see the script's docstring.", ""]
    for row, text in result["sample"].items():
        lines += [f"First song, row {row}:", "", "```", text, "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
