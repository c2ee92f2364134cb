"""See and tell on real photos: what museforge recognizes in each, and a story written from it.

    OMP_NUM_THREADS=2 python benchmarks/image_stories.py        # ../shared/data/images, default models
    python benchmarks/image_stories.py --images DIR --seed 1 --out benchmarks/results/image_stories

For every image: the classifier's top-5 labels, the grouped description ("a cat (91%)" or
"not sure ..."), the mood, a story from the default text model (SmolLM2-135M-Instruct) with a fixed
seed, and the time from image to first word: opening the file, classifying it, composing the
prompt and streaming until the first non-blank text arrives (models already loaded; their one-off
load times are reported apart; medians of --repeats runs). Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "data" / "images"
SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def first_word(gen, image: Path, seed: int, vision_model: str) -> float:
    """Seconds from an image file to the first non-blank text of a story, through the public path
    (generate's image= option: read, classify, compose the prompt, prefill, decode)."""
    t0 = time.perf_counter()
    stream = gen.stream("", image=str(image), vision_model=vision_model, seed=seed)
    for chunk in stream:
        if chunk.strip():
            break
    seconds = time.perf_counter() - t0
    stream.close()  # stops the generation at the next token
    return seconds


def tell(gen, image: Path, seed: int, vision_model: str, repeats: int) -> dict:
    """What is seen in `image` and a story from it, with the median of `repeats` timings."""
    from museforge.vision import identify, mood_phrase

    looks = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        seen = identify(image, vision_model=vision_model)
        looks.append(time.perf_counter() - t0)
    firsts = [first_word(gen, image, seed, vision_model) for _ in range(repeats)]
    stream = gen.stream("", image=seen, seed=seed)
    try:
        while True:
            next(stream)
    except StopIteration as done:
        out = done.value
    tokens = len(gen.tokenizer(out.text, add_special_tokens=False)["input_ids"])
    return {
        "image": image.name,
        "top5": [[n, round(p, 4)] for n, p in seen.labels],
        "description": seen.description,
        "not_sure": seen.not_sure,
        "confidence": round(seen.confidence, 4),
        "mood": mood_phrase(seen.mood),
        "prompt": seen.describe(),
        "notes": seen.notes,
        "identify_ms": round(statistics.median(looks) * 1000, 1),
        "image_to_first_word_s": round(statistics.median(firsts), 3),
        "image_to_first_word_range_s": [round(min(firsts), 3), round(max(firsts), 3)],
        "story_tokens": tokens,
        "story": out.text,
    }


def markdown(report: dict) -> str:
    rows = [
        "| image | top-5 labels | description | mood | identify | image to first word [min-max] |",
        "|---|---|---|---|---:|---:|",
    ]
    for r in report["results"]:
        top = ", ".join(f"{n} {p:.0%}" for n, p in r["top5"])
        rows.append(
            f"| {r['image']} | {top} | {r['description']} | {r['mood']} | {r['identify_ms']:.0f} ms | "
            f"{r['image_to_first_word_s']:.2f} s [{r['image_to_first_word_range_s'][0]:.2f}-"
            f"{r['image_to_first_word_range_s'][1]:.2f}] |"
        )
    env = report["environment"]
    head = [
        f"# Stories from photos ({env['device']}, {env['threads']} threads, seed {report['seed']})",
        "",
        f"Timings: median of {report['repeats']} runs; identify = read + classify + mood; image to first "
        "word = the same plus prompt, prefill and decoding up to the first non-blank text.",
        "",
        f"Vision model: {report['vision_model']} (loaded in {report['load_s']['vision']:.1f} s); text model: "
        f"{report['text_model']} (loaded in {report['load_s']['text']:.1f} s). Command: `{report['command']}`",
        "",
    ]
    stories = []
    for r in report["results"]:
        stories += [
            f"## {r['image']}: {r['description']}",
            "",
            f"Prompt phrase: *{r['prompt']}*",
            "",
            r["story"],
            "",
        ]
    return "\n".join(head + rows + [""] + stories)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", default=str(IMAGES), help="a folder of images")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vision-model", default="default")
    ap.add_argument("--model", default="default", help="the text model")
    ap.add_argument(
        "--repeats", type=int, default=3, help="timings per image (the median is reported)"
    )
    ap.add_argument(
        "--out",
        default=str(ROOT / "benchmarks" / "results" / "image_stories"),
        help="OUT.json, OUT.md",
    )
    args = ap.parse_args(argv)
    import museforge
    from museforge.vision import load_vision_model

    images = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in SUFFIXES)
    if not images:
        sys.exit(f"no images in {args.images}")
    t = time.perf_counter()
    eye = load_vision_model(args.vision_model)
    vision_s = time.perf_counter() - t
    t = time.perf_counter()
    gen = museforge.load_generator("story", args.model)
    text_s = time.perf_counter() - t
    results = []
    for image in images:
        r = tell(gen, image, args.seed, args.vision_model, args.repeats)
        print(
            f"{r['image']:<24} {r['description']:<60} first word {r['image_to_first_word_s']:.2f} s",
            flush=True,
        )
        results.append(r)
    report = {
        "seed": args.seed,
        "repeats": args.repeats,
        "vision_model": eye.name,
        "text_model": gen.source.get("model"),
        "load_s": {"vision": round(vision_s, 2), "text": round(text_s, 2)},
        "command": "python benchmarks/image_stories.py"
        + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
        "environment": {
            "device": str(gen.device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
