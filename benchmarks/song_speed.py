"""Seconds per constrained song (AABB, verse + chorus, line by line), with and without the static cache.

    python benchmarks/song_speed.py --model /tmp/smol --songs 2 --static   # on a GPU (scripts/gpu-bench.sh song)

A song is many short generate calls (8 candidate lines a round, the prompt growing every line): the
case where a static cache must be compiled again for each new size unless sizes are rounded up
(`museforge.generation.cache_bucket`). Rows: eager decoding, then with `gen.static_cache = True`
(CUDA only; the first song pays the compiles). Each song's time is saved as it ends.
"""

from __future__ import annotations

import argparse
import sys
import time

from common import save_json


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--songs", type=int, default=2)
    ap.add_argument("--static", action="store_true", help="CUDA only: also with gen.static_cache = True")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)

    import torch

    from museforge import generation
    from museforge.generation import load_generator

    gen = load_generator("lyrics", a.model)
    result: dict = {"benchmark": "constrained song speed", "model": a.model, "device": str(gen.device),
                    "device_name": torch.cuda.get_device_name() if gen.device.type == "cuda" else "cpu",
                    "sized_static_cache": generation._sizes_static_cache(), "rows": []}
    modes = [False] + ([True] if a.static and gen.device.type == "cuda" else [])
    for static in modes:
        gen.static_cache = static
        for i in range(a.songs):
            t0 = time.perf_counter()
            out = gen.generate("rain on a city night", seed=i, rhyme="AABB", sections="verse chorus")
            row = {"static_cache": static, "song": i, "seconds": round(time.perf_counter() - t0, 2),
                   "calls": out.metadata.get("calls"), "lines": len(out.metadata.get("lines", []))}
            result["rows"].append(row)
            print(f"song {i}, static cache {static}: {row['seconds']} s, {row['calls']} generate calls", file=sys.stderr,
                  flush=True)
            if a.out:
                save_json(result, a.out, show=False)
    return result


if __name__ == "__main__":
    main()
