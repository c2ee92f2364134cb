"""Text documents in, packed token blocks out.

    docs = load_documents("my_songs.txt")        # datasets.Dataset with text, title, style
    train, val = split_documents(docs, 0.1)

One song, poem or story is one document. Accepted inputs:
- `.txt`: documents separated by blank lines; if the file has lines holding only `---`, those
  separate documents instead (so a song keeps its blank-line stanzas); a folder of .txt files
  is one document per file;
- `.jsonl` / `.json` / `.csv` with a text field (a list of strings, e.g. hymn verses, is joined
  with blank lines), optional title and style fields;
- a folder of any of these (recursive).
Loading goes through `datasets` (cached by content fingerprint). Every problem names the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import datasets

TEXT_SUFFIXES = {".txt", ".md"}
TABLE_SUFFIXES = {".jsonl", ".json", ".csv"}


class DataError(ValueError):
    """Training data the user has to fix."""


def _files(path: str | Path) -> list[Path]:
    p = Path(path).expanduser()
    if not str(path):
        raise DataError("no training data given: set data.path=FILE_OR_FOLDER")
    if not p.exists():
        raise DataError(f"data path not found: {p}")
    if p.is_file():
        files = [p]
    else:
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES | TABLE_SUFFIXES)
        if not files:
            raise DataError(f"{p}: folder holds no .txt, .jsonl, .json or .csv files")
    for f in files:
        if f.suffix.lower() not in TEXT_SUFFIXES | TABLE_SUFFIXES:
            raise DataError(f"{f}: unsupported file type '{f.suffix}': use .txt, .jsonl, .json or .csv")
        if f.stat().st_size == 0:
            raise DataError(f"{f}: file is empty")
        raw = f.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise DataError(f"{f}: not UTF-8 text (bad byte at line {line}): re-save it as UTF-8") from None
    return files


def file_hashes(path: str | Path) -> dict[str, str]:
    """sha256 of the data file, or of every file under a data folder (text or MIDI), for museforge.json."""
    p = Path(path).expanduser()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _join(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n\n".join(_join(v) for v in value if v)
    return str(value)


def _split_txt(batch: dict) -> dict:
    out = []
    for text in batch["text"]:
        sep = r"^---\s*$" if re.search(r"^---\s*$", text, re.M) else r"\n\s*\n"
        out.extend(d.strip() for d in re.split(sep, text, flags=re.M) if d.strip())
    return {"text": out}


def _table_columns(f: Path) -> list[str]:
    if f.suffix.lower() == ".csv":
        with f.open(encoding="utf-8", newline="") as fh:
            return next(csv.reader(fh), [])
    text = f.read_text(encoding="utf-8").lstrip()
    try:
        first = json.loads(text) if f.suffix.lower() == ".json" else json.loads(text.splitlines()[0])
    except (json.JSONDecodeError, IndexError) as e:
        raise DataError(f"{f}: not valid JSON{' lines' if f.suffix == '.jsonl' else ''} ({e})") from None
    if isinstance(first, list):
        first = first[0] if first else {}
    if not isinstance(first, dict):
        raise DataError(f"{f}: each record must be a JSON object with a text field")
    return list(first)


def load_documents(path: str | Path, text_field: str = "text", title_field: str = "title",
                   style_field: str = "style", style: str = "", where: str = "") -> datasets.Dataset:
    """Load documents from a file or folder as a Dataset with columns text, title, style.

    `where="form=sonnet|ballad"` keeps only table rows whose field holds one of the values.
    """
    field, _, wanted = where.partition("=")
    if where and not wanted:
        raise DataError(f"data.where='{where}': write FIELD=VALUE or FIELD=V1|V2")
    keep = {v.strip().lower() for v in wanted.split("|")}
    files = _files(path)
    parts = []
    txt = [f for f in files if f.suffix.lower() in TEXT_SUFFIXES]
    tables = [f for f in files if f.suffix.lower() in TABLE_SUFFIXES]
    if txt:
        ds = datasets.load_dataset("text", data_files=[str(f) for f in txt], sample_by="document", split="train")
        if len(txt) == 1:
            ds = ds.map(_split_txt, batched=True)
        parts.append(ds.map(lambda r: {"text": r["text"].strip(), "title": "", "style": style}))
    for f in tables:
        columns = _table_columns(f)
        if text_field not in columns:
            raise DataError(f"{f}: no field '{text_field}' (fields: {', '.join(columns)}); set data.text_field=<one of them>")
        builder = "csv" if f.suffix.lower() == ".csv" else "json"
        ds = datasets.load_dataset(builder, data_files=str(f), split="train")
        if where:
            if field not in columns:
                raise DataError(f"{f}: data.where names no field '{field}' (fields: {', '.join(columns)})")
            ds = ds.filter(lambda r: str(r[field]).strip().lower() in keep)

        def norm(r: dict) -> dict:
            return {"text": _join(r.get(text_field)).strip(), "title": _join(r.get(title_field)).strip(),
                    "style": _join(r.get(style_field)).strip() or style}

        parts.append(ds.map(norm, remove_columns=ds.column_names))
    docs = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    docs = docs.filter(lambda r: len(r["text"].split()) >= 3)  # drop blank/one-word fragments
    if len(docs) == 0:
        raise DataError(f"{path}: no usable text (every document is empty or shorter than 3 words"
                        f"{' or filtered out by data.where' if where else ''})")
    return docs


def split_documents(docs: datasets.Dataset, val_fraction: float, seed: int = 0) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Random document-level split; keeps at least one training and (when possible) one validation doc."""
    if len(docs) < 2 or val_fraction <= 0:
        return docs, docs.select([])
    n_val = min(len(docs) - 1, max(1, round(len(docs) * val_fraction)))
    split = docs.train_test_split(test_size=n_val, seed=seed, shuffle=True)
    return split["train"], split["test"]


def pack(docs: list[list[int]], block_size: int, pad_id: int) -> list[dict[str, list[int]]]:
    """Concatenate token documents (each already ending in an end-of-document token) into blocks.

    Each block carries `doc_ids` (which document each position belongs to, -1 for padding) so the
    collator can build a block-diagonal causal mask: packing without cross-document attention.
    The last partial block is padded and its padding is excluded from the loss.
    """
    ids: list[int] = []
    owner: list[int] = []
    for i, d in enumerate(docs):
        ids.extend(d)
        owner.extend([i] * len(d))
    blocks = []
    for start in range(0, len(ids), block_size):
        chunk, who = ids[start:start + block_size], owner[start:start + block_size]
        pad = block_size - len(chunk)
        blocks.append({"input_ids": chunk + [pad_id] * pad, "doc_ids": who + [-1] * pad})
    return blocks
