"""Honest numbers: held-out perplexity of a model, and quality metrics of generated text.

    museforge eval runs/lyrics-... --task lyrics --data held_out.txt     # JSON to stdout
    museforge eval --task lyrics --text my_song.txt --rhyme AABB         # metrics of a given text

One report format for everything: a flat dict (printed as JSON, or as a markdown table).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from museforge.config import DataConfig

MAX_TEXT_BYTES = 5 * 2**20  # --text is one song, poem or story; a corpus goes to --data


@torch.no_grad()
def token_loss(gen, docs: list[list[int]], block_size: int, batch_size: int = 4) -> tuple[float, int]:
    """Mean next-token loss of gen.model over token documents, packed and masked as in training."""
    from museforge.data import pack
    from museforge.training import collate

    blocks = pack(docs, block_size, gen.task.special_ids(gen.tokenizer)["pad_token_id"])
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        batch = {k: v.to(gen.device) for k, v in collate(blocks[i:i + batch_size]).items()}
        n = int((batch["labels"][:, 1:] != -100).sum())
        total += gen.model(**batch).loss.float().item() * n
        count += n
    return total / max(count, 1), count


@torch.no_grad()
def perplexity(model: str = "default", task: str = "lyrics", data: str = "", block_size: int = 512,
               batch_size: int = 4, text_field: str = "text", dtype: str = "float32", generator=None) -> dict[str, Any]:
    """Token-level loss and perplexity of `model` on every document of `data` (no split).

    Documents are packed into `block_size` windows with cross-document attention masked, exactly
    as in training, so numbers are comparable between a base model and its fine-tunes.
    """
    from museforge.generation import Generator

    if generator is None:
        from museforge.data import check_documents
        from museforge.tasks import get_task

        if get_task(task).kind == "text":
            check_documents(data, text_field)  # a bad file fails before the model loads
    gen = generator or Generator.load(task, model, dtype=dtype)
    cfg = DataConfig(path=data, text_field=text_field, val_fraction=0.0, block_size=block_size)
    docs, _, info = gen.task.build_datasets(cfg, gen.tokenizer)
    loss, count = token_loss(gen, docs, block_size, batch_size)
    return {"model": gen.source.get("model"), "adapter": gen.source.get("adapter"), "task": gen.task.name,
            "data": data, "documents": info["documents"]["train"], "tokens": count, "loss": round(loss, 4),
            "perplexity": round(math.exp(min(loss, 50)), 3)}


def text_quality(texts: list[str], **targets: Any) -> dict[str, float]:
    """Mean text metrics (distinct-n, repetition, rhyme/syllable adherence when targets are given)."""
    from museforge.text.metrics import text_metrics

    rows = [text_metrics(t, **targets) for t in texts if t.strip()]
    if not rows:
        return {}
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float, bool)) and v is not None]
    return {k: round(sum(float(r[k]) for r in rows if r.get(k) is not None) / len(rows), 4) for k in keys}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows of flat dicts -> a markdown table (union of keys, in first-seen order)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def text_report(path, rhyme: str | None = None, syllables: str | None = None, sections: str | None = None,
                training=None) -> dict[str, Any]:
    """Metrics of a text file (one text; see museforge.text.metrics.text_metrics)."""
    from pathlib import Path

    from museforge.errors import MissingFileError, UserError
    from museforge.text.metrics import CopyChecker, text_metrics

    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"--text {p} is a folder: give one text file (a song, poem or story)")
    if not p.is_file():
        raise MissingFileError(f"text file not found: {p}: check the --text path")
    if p.stat().st_size > MAX_TEXT_BYTES:
        raise UserError(f"--text {p} is {p.stat().st_size // 2**20} MB: give one song, poem or story "
                        f"(at most {MAX_TEXT_BYTES // 2**20} MB); use --data for a corpus")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--text {p}: not UTF-8 text (bad byte at line {raw[:e.start].count(10) + 1}): "
                        "re-save it as UTF-8") from None
    if "\x00" in text:
        raise UserError(f"--text {p}: a binary file, not text: give a .txt file")
    from museforge.text.forms import parse_rhyme, parse_sections, parse_syllables

    parse_rhyme(rhyme), parse_syllables(syllables)  # the generation parsers: one clear error each
    if sections:
        parse_sections(sections)
    checker = None
    if training:
        from museforge.data import load_documents

        checker = CopyChecker(load_documents(training)["text"])
    return {"text": str(p), **text_metrics(text, rhyme=rhyme, syllables=syllables,
                                           sections=sections, training=checker)}
