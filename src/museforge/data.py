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
from typing import TYPE_CHECKING, Any

from museforge.errors import UserError

if TYPE_CHECKING:  # imported where documents are loaded: generating needs no `datasets` (0.5 s with pandas)
    import datasets

TEXT_SUFFIXES = {".txt", ".md"}
TABLE_SUFFIXES = {".jsonl", ".json", ".csv"}


class DataError(UserError):
    """Training data the user has to fix."""


def _files(path: str | Path) -> list[Path]:
    p = Path(path).expanduser()
    if not str(path):
        raise DataError("no training data given: set data.path=FILE_OR_FOLDER")
    if not p.exists():
        raise DataError(f"data path not found: {p}: check data.path")
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
        if b"\x00" in raw:  # valid UTF-8 but not text: an image, a binary renamed .txt
            line = raw[: raw.index(b"\x00")].count(b"\n") + 1
            raise DataError(f"{f}: a binary file, not text (NUL byte at line {line}): give a .txt, .jsonl or .csv file")
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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python reads NaN/Infinity, pyarrow does not (found by fuzzing)


def _records(f: Path) -> list[tuple[int, Any]]:
    """(line number, record) of a .jsonl/.json file; a broken line is a DataError naming it."""
    text = f.read_text(encoding="utf-8")
    if f.suffix.lower() == ".json":
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:
            where = f"line {e.lineno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e) or "nested too deeply"
            raise DataError(f"{f}: not valid JSON ({where}): fix that line, or write one "
                            "object per line in a .jsonl file") from None
        return [(1, r) for r in (data if isinstance(data, list) else [data])]
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append((n, json.loads(line, parse_constant=_no_constant)))
            except (ValueError, RecursionError) as e:
                reason = e.msg if isinstance(e, json.JSONDecodeError) else str(e) or "nested too deeply"
                raise DataError(f"{f}: line {n} is not valid JSON ({reason}): each line must be one object, "
                                'e.g. {"text": "..."}') from None
    return records


def _is_text(value: Any) -> bool:
    return value is None or isinstance(value, str) or (isinstance(value, list) and all(_is_text(v) for v in value))


def _table_columns(f: Path, text_field: str = "text") -> list[str]:
    """Read every row of a .jsonl/.json/.csv before datasets does: a missing field, a broken line or
    a wrong type is named here (file and line), instead of deep inside pyarrow."""
    fix = "set data.text_field=<one of them>"
    if f.suffix.lower() == ".csv":
        with f.open(encoding="utf-8", newline="") as fh:
            rows = csv.reader(fh, strict=True)  # strict: an unclosed quote is an error here, not in pandas
            try:
                columns = next(rows, [])
                if text_field not in columns:
                    raise DataError(f"{f}: no field '{text_field}' (fields: {', '.join(columns) or 'none'}); {fix}")
                for row in rows:
                    if len(row) > len(columns):
                        raise DataError(f"{f}: line {rows.line_num} has {len(row)} fields but the header has "
                                        f"{len(columns)}: quote fields that contain commas")
            except csv.Error as e:
                raise DataError(f"{f}: line {rows.line_num} is not valid CSV ({e}): fix or remove that line") from None
        if len(set(columns)) < len(columns) or not all(c.strip() for c in columns):
            raise DataError(f"{f}: the header needs distinct, non-empty names, got {', '.join(columns)}")
        return columns
    records = _records(f)
    columns: list[str] = []
    for n, r in records:
        where = f"{f}: line {n}" if f.suffix.lower() == ".jsonl" else f"{f}"
        if not isinstance(r, dict):
            raise DataError(f"{where}: each record must be a JSON object with a '{text_field}' field")
        if text_field not in r:
            raise DataError(f"{where}: no field '{text_field}' (fields: {', '.join(r) or 'none'}); {fix}")
        for k, v in r.items():
            if k not in columns:
                columns.append(k)
            if not _is_text(v) and not isinstance(v, (int, float, bool)):
                raise DataError(f"{where}: field '{k}' must be text or a list of texts, got {type(v).__name__}")
        if not _is_text(r[text_field]):
            raise DataError(f"{where}: field '{text_field}' must be text or a list of texts, got {r[text_field]!r}"[:300])
    if not records:
        raise DataError(f"{f}: holds no records: write one JSON object per line, e.g. {{\"text\": \"...\"}}")
    return columns


def check_documents(path: str | Path, text_field: str = "text") -> None:
    """The checks of load_documents (files exist, are UTF-8 text, tables parse) without loading:
    run before a model loads or a run dir is made, so a bad file fails in a second."""
    for f in _files(path):
        if f.suffix.lower() in TABLE_SUFFIXES:
            _table_columns(f, text_field)


def load_documents(path: str | Path, text_field: str = "text", title_field: str = "title",
                   style_field: str = "style", style: str = "", where: str = "") -> datasets.Dataset:
    """Load documents from a file or folder as a Dataset with columns text, title, style.

    `where="form=sonnet|ballad"` keeps only table rows whose field holds one of the values.
    """
    import datasets

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
        columns = _table_columns(f, text_field)
        builder = "csv" if f.suffix.lower() == ".csv" else "json"
        try:
            ds = datasets.load_dataset(builder, data_files=str(f), split="train")
        except Exception as e:  # noqa: BLE001 - pyarrow/pandas raise many types; the checks above catch most
            reason = " ".join(str(e.__cause__ or e).split())[:160]
            raise DataError(f"{f}: could not be read as {builder.upper()} ({reason}): make every row the same "
                            "shape, with text in each field") from None
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
