"""Text generation speed: museforge's Generator vs plain `model.generate`, side by side.

    python benchmarks/gen_speed.py                      # default SmolLM2-135M, CPU bf16
    python benchmarks/gen_speed.py --repeats 5 --out benchmarks/results/gen_speed.json

Same model object, same dtype, same settings, runs interleaved (plain, museforge, plain, ...);
128 new tokens forced (min_new_tokens) for batch 1 and 8, greedy and sampled. Reports median
[min-max] decode tokens/s, time to first token, peak memory, and whether the outputs match.
Greedy at batch 1, museforge uses prompt lookup (its default there): the benchmark also runs it
without ("museforge-no-lookup"), checks the tokens of both, and counts the forward passes
lookup needed for 128 tokens.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch
from common import save_json, spread

PROMPT = ("Write song lyrics about rain on a city night, with a verse and a chorus. "
          "Use vivid images of neon lights, wet streets and a lonely walk home.")


class FirstToken:
    """A streamer that records when the first new token arrives."""

    def __init__(self):
        self.calls, self.first = 0, None

    def put(self, value):
        self.calls += 1
        if self.calls == 2 and self.first is None:  # call 1 is the prompt
            self.first = time.perf_counter()

    def end(self):
        pass


def forwards(gen, run) -> int:
    """Model forward passes one run makes (fewer than tokens when prompt lookup accepts proposals)."""
    lean = gen.model.forward.lean
    count, covers = [0], lean.covers

    def counting(args, kw):
        count[0] += 1
        return covers(args, kw)

    lean.covers = counting
    try:
        run()
    finally:
        lean.covers = covers
    return count[0]


def check_key(batch: int, mode: str, impl: str) -> str:
    """The key of a row's identity check in "identical_outputs" ("museforge" rows have none of their own suffix)."""
    return f"batch{batch}-{mode}" + ("" if impl == "museforge" else "-" + impl.removeprefix("museforge-"))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--quantize", default="", help="also time museforge with quantize=int8 (opt-in, not identical)")
    ap.add_argument("--static", action="store_true",
                    help="CUDA only: museforge with gen.static_cache=True (opt-in), and plain generate with "
                         "transformers' static cache (auto torch.compile) as one more row")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)

    from museforge.generation import Generator, load_generator

    gen: Generator = load_generator("lyrics", args.model, dtype=args.dtype)  # packed weights on CPU bf16
    gen.static_cache = args.static
    qgen = load_generator("lyrics", args.model, quantize=args.quantize) if args.quantize else None
    # the baseline: the same model as transformers loads it, untouched
    model, tok = load_generator("lyrics", args.model, dtype=args.dtype, pack=False).model, gen.tokenizer
    prefix = gen.task.render(tok, PROMPT)
    ids = tok(prefix, add_special_tokens=False)["input_ids"]
    modes = {"greedy": dict(temperature=0.0, repetition_penalty=1.0),
             "sampled": dict(temperature=0.8, top_p=0.95, top_k=50, repetition_penalty=1.0)}
    rows, checks, rows_extra = [], {}, {}
    for batch in [int(b) for b in args.batches.split(",")]:
        for mode, sampling in modes.items():
            settings = gen.settings(max_new_tokens=args.new_tokens, seed=0, **sampling)[0]
            hf = gen.hf_kwargs(settings)

            def plain(streamer, batch=batch, hf=hf):
                x = torch.tensor([ids] * batch, device=gen.device)
                torch.manual_seed(0)
                with torch.inference_mode():
                    out = model.generate(x, attention_mask=torch.ones_like(x), min_new_tokens=args.new_tokens,
                                         streamer=streamer, **hf)
                return out[:, len(ids):].tolist()

            def static(streamer, batch=batch, hf=hf):  # what a user can ask transformers for on a GPU
                return plain(streamer, batch, {**hf, "cache_implementation": "static"})

            def ours(streamer, batch=batch, settings=settings):
                return gen.complete_ids(ids, settings, n=batch, min_new_tokens=args.new_tokens, streamer=streamer)

            def quantized(streamer, batch=batch, settings=settings):
                return qgen.complete_ids(ids, settings, n=batch, min_new_tokens=args.new_tokens, streamer=streamer)

            def no_lookup(streamer, batch=batch, settings=settings):  # the lean forward alone
                return gen.complete_ids(ids, settings, n=batch, min_new_tokens=args.new_tokens, streamer=streamer,
                                        prompt_lookup_num_tokens=None)

            lookup = batch == 1 and gen.exact_lookup({**hf, **gen.hf_extra})
            impls = [("plain", plain), ("museforge-static" if gen.static_cache else "museforge", ours)] + ([("museforge-no-lookup", no_lookup)] if lookup else []) \
                + ([(f"museforge-{args.quantize}", quantized)] if qgen else []) \
                + ([("plain-static-compile", static)] if args.static and gen.device.type == "cuda" else [])
            times: dict[str, list[float]] = {name: [] for name, _ in impls}
            ttft: dict[str, list[float]] = {name: [] for name, _ in impls}
            outputs = {}
            for r in range(args.repeats + 1):  # the first round warms up both
                for name, fn in impls:
                    s = FirstToken()
                    t0 = time.perf_counter()
                    outputs[name] = fn(s if batch == 1 else None)
                    dt = time.perf_counter() - t0
                    if r:
                        times[name].append(batch * args.new_tokens / dt)
                        if s.first:
                            ttft[name].append(s.first - t0)
            # same seed, same settings: the same tokens, greedy or sampled
            for name in ("museforge", "museforge-static", "museforge-no-lookup", "plain-static-compile"):
                if name in outputs:
                    checks[check_key(batch, mode, name)] = all(
                        a[: args.new_tokens] == b[: args.new_tokens]
                        for a, b in zip(outputs["plain"], outputs[name], strict=True))
            if lookup:  # how many forward passes the prompt lookup saved
                calls = forwards(gen, lambda: ours(None))
                rows_extra[f"batch{batch}-{mode}"] = {"forwards_per_128_tokens": round(calls * 128 / args.new_tokens, 1)}
            plain_speed = statistics.median(times["plain"])
            for name, _ in impls:
                speed, lo, hi = spread(times[name], 2)
                rows.append({"batch": batch, "mode": mode, "impl": name, "tok_s": speed, "tok_s_min": lo, "tok_s_max": hi,
                             "ttft_s": spread(ttft[name], 3)[0] if ttft[name] else None,
                             "ratio_vs_plain": round(statistics.median(times[name]) / plain_speed, 3)})
            print(f"batch {batch} {mode}: " + ", ".join(f"{r['impl']} {r['tok_s']} tok/s (x{r['ratio_vs_plain']})"
                                                       for r in rows[-len(impls):]), file=sys.stderr, flush=True)
    result = {"benchmark": "generation", "model": args.model, "device": str(gen.device),
              "device_name": torch.cuda.get_device_name() if gen.device.type == "cuda" else "cpu",
              "dtype": str(next(model.parameters()).dtype), "threads": torch.get_num_threads(),
              "new_tokens": args.new_tokens, "repeats": args.repeats, "rows": rows,
              "identical_outputs": checks, "prompt_lookup": rows_extra, "kernels": gen.source.get("kernels"), "peak_memory_mb": round(peak_memory_mb(gen.device), 1)}
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
