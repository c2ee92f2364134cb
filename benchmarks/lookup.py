"""Prompt lookup on the default model: is it exact, where does it pay, and why.

    python benchmarks/lookup.py --out benchmarks/results/lookup.json

1. Which products round several rows differently from one: for each product shape of the
   lean forward, rows that differ between a 4-row call and 4 single-row calls (30 random
   inputs), next to the probe's verdict (museforge.decode computes those rows one at a time in
   a chunk).
2. What a chunk costs: one forward of 1-4 new tokens after 100 cached ones (median ms).
3. Per task and prompt, greedy, 128 tokens forced: tokens/s with lookup on and off (interleaved,
   median [min-max] after a warm-up), the forward passes lookup needed, and whether its tokens
   equal plain transformers `generate` on the untouched model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from common import save_json, spread
from gen_speed import forwards

PROMPTS = {"lyrics": ("rain on a city night", "leaving home"),
           "poem": ("winter in the mountains", "the sea at dawn"),
           "story": ("a dog who learns to fly", "the last train home")}


def row_differences(lean) -> dict:
    g = torch.Generator().manual_seed(0)
    products = {"qkv": lean.layers[0][1], "o": lean.layers[0][2], "gate_up": lean.layers[0][4],
                "down": lean.layers[0][5], "head": lean.head}
    out = {}
    with torch.inference_mode():
        for name, product in products.items():
            differ = 0
            for _ in range(30):
                x = torch.randn(1, 4, product.in_features, generator=g).to(lean.embed.dtype)
                together = product(x)
                differ += sum(not torch.equal(together[:, i], product(x[:, i:i + 1])[:, 0]) for i in range(4))
            out[name] = {"shape": f"{product.in_features}->{product.out_features}", "rows_differing": differ,
                         "rows": 120, "probe_says_one_at_a_time": lean.by_row[name]}
    return out


def chunk_cost(gen) -> dict:
    from transformers.cache_utils import DynamicCache

    from museforge.decode import _CACHE

    ids = torch.arange(104)[None] * 97 % gen.model.config.vocab_size
    out = {}
    with torch.inference_mode():
        for t in (1, 2, 3, 4):
            cache = DynamicCache(config=gen.model.config)
            gen.model(input_ids=ids[:, :100], use_cache=True, **{_CACHE: cache})
            times = []
            for _ in range(20):
                t0 = time.perf_counter()
                gen.model(input_ids=ids[:, 100:100 + t], use_cache=True, **{_CACHE: cache})
                times.append(time.perf_counter() - t0)
                cache.crop(-t)  # back to the 100 cached tokens
            out[f"{t}_tokens_ms"] = round(statistics.median(times) * 1000, 2)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)

    from museforge.generation import load_generator

    result: dict = {"benchmark": "prompt lookup", "new_tokens": a.new_tokens, "repeats": a.repeats, "texts": []}
    for task, prompts in PROMPTS.items():
        gen, plain = load_generator(task), load_generator(task, pack=False)
        if "products" not in result:
            result["products"] = row_differences(gen.model.forward.lean)
            result["chunk_cost"] = chunk_cost(gen)
        for prompt in prompts:
            ids = gen.tokenizer(gen.task.render(gen.tokenizer, prompt), add_special_tokens=False)["input_ids"]
            settings = gen.settings(max_new_tokens=a.new_tokens, seed=1, temperature=0.0, repetition_penalty=1.0)[0]
            kw = dict(min_new_tokens=a.new_tokens)
            runs = {"on": dict(prompt_lookup_num_tokens=3), "off": dict(prompt_lookup_num_tokens=None)}
            speed: dict[str, list[float]] = {k: [] for k in runs}
            tokens = {}
            for r in range(a.repeats + 1):
                for name, extra in runs.items():
                    t0 = time.perf_counter()
                    tokens[name] = gen.complete_ids(ids, settings, n=1, **kw, **extra)
                    if r:
                        speed[name].append(a.new_tokens / (time.perf_counter() - t0))
            calls = forwards(gen, lambda: gen.complete_ids(ids, settings, n=1, **kw, **runs["on"]))  # noqa: B023
            same = tokens["on"] == tokens["off"] == plain.complete_ids(ids, settings, n=1, **kw)
            on, off = spread(speed["on"], 1), spread(speed["off"], 1)
            row = {"task": task, "prompt": prompt, "lookup_on_tok_s": on, "lookup_off_tok_s": off,
                   "ratio": round(statistics.median(speed["on"]) / statistics.median(speed["off"]), 3),
                   "forwards_with_lookup": calls, "same_tokens_as_plain_generate": same,
                   "default_for_task": gen.task.lookup}
            result["texts"].append(row)
            print(f"{task} {prompt!r}: on {on[0]} off {off[0]} tok/s (x{row['ratio']}), {calls} forwards, "
                  f"same tokens: {same}", file=sys.stderr, flush=True)
    save_json(result, a.out)
    return result


if __name__ == "__main__":
    main()
