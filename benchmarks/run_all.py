"""Every speed benchmark in one command: JSON + a markdown table in benchmarks/results/.

    python benchmarks/run_all.py              # or: make bench
    python benchmarks/run_all.py --quick      # fewer repeats/steps, for a smoke run

1. generation: museforge Generator vs plain `model.generate` (benchmarks/gen_speed.py)
2. fine-tuning: museforge loop vs transformers Trainer, LoRA and full (benchmarks/train_speed.py)
3. melody: seconds per 16-bar melody with the shipped model; training tokens/s of its recipe
4. start-up: cold process -> first output, for text and for melody
Shared machines are noisy: read the ratios measured side by side, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import save_json, spread

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PY = sys.executable


def cold_start(code: str, repeats: int) -> dict:
    """Seconds from process start to first output (import + model load + one short generation)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([PY, "-c", code], check=True, capture_output=True,
                       env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
        times.append(time.perf_counter() - t0)
    median, lo, hi = spread(times, 2)
    return {"median_s": median, "min_s": lo, "max_s": hi}


def melody_speed(repeats: int) -> dict:
    """Seconds per 16-bar melody, museforge's generator against the same model left untouched
    (pack=False: transformers' own forward), interleaved; the tokens must be the same."""
    from museforge.generation import load_generator

    gens = {"museforge": load_generator("melody"), "plain": load_generator("melody", pack=False)}
    times: dict[str, list[float]] = {name: [] for name in gens}
    same = True
    for gen in gens.values():
        gen.generate(bars=4, seed=0)  # warm-up
    for seed in range(repeats):
        tokens = []
        for name, gen in gens.items():
            t0 = time.perf_counter()
            tokens.append(gen.generate(bars=16, seed=seed, key="D minor", tempo=96).tokens)
            times[name].append(time.perf_counter() - t0)
        same = same and tokens[0] == tokens[1]
    median, lo, hi = spread(times["museforge"], 2)
    plain = spread(times["plain"], 2)[0]
    return {"seconds_per_16_bars": median, "min_s": lo, "max_s": hi, "plain_seconds_per_16_bars": plain,
            "ratio_vs_plain": round(plain / median, 3), "identical_tokens": same,
            "kernels": gens["museforge"].source.get("kernels")}


def melody_train_speed(steps: int) -> dict:
    """Tokens/s of `museforge train configs/melody.yaml` (from scratch, full), steps 2..N."""
    import tempfile

    from museforge.config import load_config
    from museforge.training import train

    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(HERE.parent / "configs" / "melody.yaml",
                          [f"train.max_steps={steps}", "train.eval_every=100000", "train.save_every=100000",
                           "train.samples=0", "train.eval_at_start=false", f"train.out_dir={out}"])
        train(cfg)
        hist = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    first, last = hist[1], hist[-1]
    return {"tok_s": round((last["tokens"] - first["tokens"]) / (last["elapsed"] - first["elapsed"]), 1),
            "steps": steps, "tokens_per_step": cfg.train.batch_size * cfg.data.block_size}


def generation_lines(g: dict, where: str = "") -> list[str]:
    """Table rows for a gen_speed.py result: each row against plain generate at the same settings."""
    from gen_speed import check_key

    lines = []
    for row in g["rows"]:
        if row["impl"] == "plain":
            continue
        base = next(r for r in g["rows"] if r["impl"] == "plain" and r["batch"] == row["batch"] and r["mode"] == row["mode"])
        same = g["identical_outputs"].get(check_key(row["batch"], row["mode"], row["impl"]))
        lines.append(f"| generation tok/s ({row['impl']}){where} | batch {row['batch']} {row['mode']} "
                     f"| {row['tok_s']} [{row['tok_s_min']}-{row['tok_s_max']}] "
                     f"| {base['tok_s']} [{base['tok_s_min']}-{base['tok_s_max']}] (plain generate) "
                     f"| x{row['ratio_vs_plain']}{', different tokens' if same is False else ''} |")
    return lines


def fine_tuning_line(ft: dict, memory: str, where: str = "") -> str:
    """The table row for a train_speed.py result: museforge against Trainer as written by hand."""
    ours, trainer = ft["rows"][:2]
    unit = {"peak_rss_mb": "RSS", "peak_gpu_mb": "GPU"}[memory]
    return (f"| fine-tuning tok/s{where} | {ours['setting']} bf16 {ft['batch']}x{ft['block']} "
            f"| {ours['tok_s']} [{ours['tok_s_min']}-{ours['tok_s_max']}], {unit} {ours[memory]} MB "
            f"| {trainer['tok_s']} [{trainer['tok_s_min']}-{trainer['tok_s_max']}], {unit} {trainer[memory]} MB (Trainer) "
            f"| x{ours['ratio_vs_trainer']} |")


def gpu_lines() -> list[str]:
    """Rows for the figures of the last GPU run (scripts/gpu-bench.sh), kept in results/gpu/."""
    lines = []
    for name in ("train_full", "train_lora", "train_full_32x512", "train_lora_32x512"):
        path = RESULTS / "gpu" / f"{name}.json"
        if path.exists():
            ft = json.loads(path.read_text())
            lines.append(fine_tuning_line(ft, "peak_gpu_mb", f", {ft['device_name']}"))
    path = RESULTS / "gpu" / "gen.json"
    if path.exists():
        g = json.loads(path.read_text())
        lines += generation_lines(g, f", {g['device_name']}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip", default="", help="comma list of: gen,train,melody,startup (their results "
                                                "from the last all.json are kept, and marked as such)")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": os.uname().nodename}
    last = json.loads((RESULTS / "all.json").read_text()) if (RESULTS / "all.json").exists() else {}
    parts = {"gen": "generation", "train": "fine_tuning", "melody": "melody", "startup": "startup"}
    for part in skip & parts.keys():
        if parts[part] in last:
            report[parts[part]] = last[parts[part]]
            report.setdefault("kept_from_earlier_runs", {})[parts[part]] = \
                last.get("kept_from_earlier_runs", {}).get(parts[part], last.get("time"))
    reps = 1 if a.quick else 3
    if "gen" not in skip:
        from gen_speed import main as gen_main

        report["generation"] = gen_main(["--repeats", str(reps), "--quantize", "int8", "--out", str(RESULTS / "gen_speed.json")])
    if "train" not in skip:
        from train_speed import main as train_main

        steps = "6" if a.quick else "12"
        blocks = ("128",) if a.quick else ("128", "256")  # the reference figures are 8 x 128
        report["fine_tuning"] = [train_main(["--setting", s, "--block", b, "--steps", steps,
                                             "--repeats", str(reps),
                                             "--out", str(RESULTS / f"train_speed_{s}_{b}.json")])
                                 for b in blocks for s in ("lora", "full")]
    if "melody" not in skip:
        report["melody"] = {**melody_speed(3 if a.quick else 10), "training": melody_train_speed(4 if a.quick else 12)}
    if "startup" not in skip:
        report["startup"] = {
            "text": cold_start("import museforge; museforge.generate_lyrics('rain', seed=1, max_new_tokens=1)", reps),
            "melody": cold_start("import museforge; museforge.generate('melody', bars=1, seed=1)", reps)}
    save_json(report, RESULTS / "all.json", show=False)
    lines = ["| benchmark | setting | museforge | baseline | ratio |", "|---|---|---|---|---|"]
    if "generation" in report:
        lines += generation_lines(report["generation"])
    lines += [fine_tuning_line(ft, "peak_rss_mb") for ft in report.get("fine_tuning", [])]
    if "melody" in report:
        m = report["melody"]
        lines.append(f"| melody | s per 16 bars | {m['seconds_per_16_bars']} [{m['min_s']}-{m['max_s']}] "
                     f"| {m['plain_seconds_per_16_bars']} (untouched model) | x{m['ratio_vs_plain']} |")
        lines.append(f"| melody training tok/s | 4x256 Llama, 4x1024 tokens/step | {report['melody']['training']['tok_s']} | | |")
    for k, v in report.get("startup", {}).items():
        lines.append(f"| start-up to first output | {k} | {v['median_s']} s | | |")
    lines += gpu_lines()
    for part, when in report.get("kept_from_earlier_runs", {}).items():
        lines.append(f"\n({part}: measured on {when}, kept by --skip)")
    (RESULTS / "all.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
