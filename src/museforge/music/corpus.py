"""MIDI corpora: built-in ones converted from music21's corpus, and robust file loading.

    python -c "from museforge.music.corpus import builtin_corpus; print(builtin_corpus('bach'))"

Built-in corpora (public domain, read from the installed ``music21`` package, never
copied into the repository; the Essen collection is non-commercial and left out):

* ``bach``: the Bach chorales (``music21.corpus.chorales.Iterator``), four voices;
* ``oneills``: O'Neill's Music of Ireland (1850), ABC;
* ``ryans``: Ryan's Mammoth Collection (1883), ABC;
* ``airds``: Aird's Selection of Scotch, English, Irish and Foreign Airs, ABC;
* ``folk``: the three folk collections together.

:func:`builtin_corpus` converts a corpus once to MIDI files under
``$MUSEFORGE_CACHE/corpora/<name>`` (default ``~/.cache/museforge``). Repeats are
expanded; when music21 cannot expand badly formed repeats, the repeat marks are
stripped and the piece is written as notated. A pickup bar is shifted so bar lines fall
where the time signature says. Files are written atomically and finished source files
are recorded in ``done.json``, so an interrupted conversion resumes; pieces that could
not be converted are listed with the reason in ``skipped.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from symusic import Score
from tqdm.auto import tqdm

from museforge.errors import MissingFileError, UserError

T = TypeVar("T")
FOLK = {"oneills": "oneills1850", "ryans": "ryansMammoth", "airds": "airdsAirs"}
CORPORA = ("bach", *FOLK, "folk")
MIDI_SUFFIXES = {".mid", ".midi"}


def cache_root() -> Path:
    """Root of museforge's cache: ``$MUSEFORGE_CACHE`` or ``~/.cache/museforge``."""
    return Path(
        os.environ.get("MUSEFORGE_CACHE", Path.home() / ".cache" / "museforge")
    ).expanduser()


def _sources(name: str) -> list[tuple[str, Callable[[], list[tuple[str, object]]]]]:
    """(source id, loader) pairs; a loader parses one source into (piece name, music21 score)."""
    from music21 import converter, corpus

    if name == "bach":
        chorales = corpus.chorales.Iterator(returnType="filename")
        return [(c, lambda c=c: [(c.split("/")[-1], corpus.parse(c))]) for c in chorales]
    folders = list(FOLK.values()) if name == "folk" else [FOLK[name]]
    paths = sorted(
        p for p in corpus.getCorePaths(fileExtensions=["abc"]) if p.parent.name in folders
    )

    def load(path: Path) -> list[tuple[str, object]]:
        parsed = converter.parse(path)
        scores = parsed.scores if hasattr(parsed, "scores") else [parsed]
        return [
            (f"{path.parent.name}-{path.stem}-{i:03d}-{_slug(s)}", s) for i, s in enumerate(scores)
        ]

    return [(f"{p.parent.name}/{p.name}", lambda p=p: load(p)) for p in paths]


def _slug(score: object) -> str:
    title = getattr(getattr(score, "metadata", None), "title", None) or "untitled"
    return re.sub(r"[^a-z0-9]+", "-", str(title).lower()).strip("-")[:40] or "untitled"


def _unshare(score: object) -> None:
    """Give every measure its own copy of shared signature objects.

    music21's ABC reader can put one TimeSignature object in two measures, which its
    MIDI writer then refuses ("the object ... is already found in this Stream").
    """
    from music21 import stream

    seen: set[int] = set()
    for measure in score.recurse().getElementsByClass(stream.Measure):
        for el in list(
            measure.getElementsByClass(["TimeSignature", "KeySignature", "MetronomeMark"])
        ):
            if id(el) in seen:
                measure.replace(el, copy.deepcopy(el))
            seen.add(id(el))


def _strip_repeats(score: object) -> None:
    from music21 import bar, spanner, stream

    for measure in score.recurse().getElementsByClass(stream.Measure):
        for side in ("leftBarline", "rightBarline"):
            if isinstance(getattr(measure, side), bar.Repeat):
                setattr(measure, side, None)
    for bracket in list(score.recurse().getElementsByClass(spanner.RepeatBracket)):
        bracket.activeSite.remove(bracket)


def _pickup_quarters(score: object) -> float:
    """Missing length of the first (pickup) bar in quarter notes, 0 when it is full."""
    from music21 import stream

    first = score.recurse().getElementsByClass(stream.Measure).first()
    return float(first.paddingLeft) if first is not None else 0.0


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _convert(m21score: object, dest: Path) -> None:
    """Write a music21 score as MIDI at ``dest`` (repeats expanded, pickup aligned)."""
    _unshare(m21score)
    pickup = _pickup_quarters(m21score)
    try:
        performed = m21score.expandRepeats()
        _unshare(performed)
        midi = _music21_midi_bytes(performed)
    except Exception:  # noqa: BLE001 - music21 raises many types on malformed repeats
        _strip_repeats(m21score)
        midi = _music21_midi_bytes(m21score)
    score = Score.from_midi(midi)
    if score.note_num() == 0:
        raise ValueError("no notes")
    shift = round(pickup * score.ticks_per_quarter)
    if shift:
        score.shift_time(shift, inplace=True)
        for events in (score.tempos, score.time_signatures, score.key_signatures):
            for event in events:
                if event.time == shift:
                    event.time = 0
    _atomic_write(dest, score.dumps_midi())


def _music21_midi_bytes(m21score: object) -> bytes:
    from music21.midi import translate

    return translate.music21ObjectToMidiFile(m21score).writestr()


def _write_json(path: Path, data: object) -> None:
    _atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode())


def builtin_corpus(
    name: str, cache_dir: str | Path | None = None, limit: int | None = None
) -> Path:
    """Folder of MIDI files for a built-in corpus, converting from music21 on first use.

    Args:
        name: one of ``bach``, ``oneills``, ``ryans``, ``airds``, ``folk``.
        cache_dir: folder for the MIDI files (default ``<cache root>/corpora/<name>``).
        limit: stop once the folder holds this many pieces (for quick tests).
    """
    if name not in CORPORA:
        raise UserError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    out = Path(cache_dir) if cache_dir is not None else cache_root() / "corpora" / name
    out.mkdir(parents=True, exist_ok=True)
    done_file, skipped_file = out / "done.json", out / "skipped.json"
    done = set(json.loads(done_file.read_text())) if done_file.exists() else set()
    skipped = json.loads(skipped_file.read_text()) if skipped_file.exists() else {}

    n_files = sum(1 for _ in out.glob("*.mid"))
    todo = [s for s in _sources(name) if s[0] not in done]
    if not todo or (limit is not None and n_files >= limit):
        return out
    converted, newly_skipped = 0, 0
    progress = tqdm(todo, desc=f"converting {name}", unit="source")
    for source, load in progress:
        if limit is not None and n_files >= limit:
            break
        try:
            pieces = load()
        except Exception as err:  # noqa: BLE001 - a malformed source must not stop the corpus
            skipped[source], newly_skipped = f"cannot parse: {err}", newly_skipped + 1
            pieces = []
        complete = True
        for piece, m21score in pieces:
            dest = out / f"{piece}.mid"
            if dest.exists() or piece in skipped:
                continue
            if limit is not None and n_files >= limit:
                complete = False
                break
            try:
                _convert(m21score, dest)
                converted, n_files = converted + 1, n_files + 1
            except Exception as err:  # noqa: BLE001
                skipped[piece], newly_skipped = (
                    f"{type(err).__name__}: {err}"[:300],
                    newly_skipped + 1,
                )
        if complete:
            done.add(source)
        _write_json(done_file, sorted(done))
        _write_json(skipped_file, skipped)
    progress.close()
    print(
        f"{name}: {converted} pieces converted, {newly_skipped} skipped "
        f"({n_files} in {out}; reasons in {skipped_file.name})",
        file=sys.stderr,
    )
    return out


def _check_score(path: Path) -> tuple[Score | None, str | None]:
    """(score, None) for a usable file, else (None, reason)."""
    from museforge.music.tokenizer import load_score

    if path.stat().st_size == 0:
        return None, "empty file"
    try:
        score = load_score(path)
    except UserError as err:  # not MIDI, too large, corrupt
        return None, f"corrupt or unreadable MIDI: {str(err).removeprefix(str(path)).lstrip(' :')}"
    pitched = [t for t in score.tracks if not t.is_drum and len(t.notes)]
    if score.note_num() == 0:
        return None, "no notes"
    if not pitched:
        return None, "drum tracks only"
    if score.end() <= score.start() or all(t.end() <= t.start() for t in pitched):
        return None, "zero length"
    return score, None


def _midi_paths(item: str | Path) -> list[Path]:
    if isinstance(item, str) and item in CORPORA and not Path(item).exists():
        item = builtin_corpus(item)
    path = Path(item).expanduser()
    if path.is_dir():
        return sorted(
            p for p in path.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()
        )
    if path.is_file():
        return [path]
    raise MissingFileError(
        f"{path} is neither a MIDI file, a folder nor a corpus name ({', '.join(CORPORA)}): check the path"
    )


def load_midi_files(
    path_or_paths: str | Path | Iterable[str | Path],
) -> tuple[list[tuple[Path, Score]], list[tuple[Path, str]]]:
    """Load MIDI files from a file, a folder (recursive), a built-in corpus name, or a list.

    Returns ``(loaded, skipped)``: ``(path, Score)`` pairs, and ``(path, reason)`` for
    files that are corrupt, empty, drum-only or zero-length. Raises ValueError when no
    usable file remains.
    """
    items = [path_or_paths] if isinstance(path_or_paths, (str, Path)) else list(path_or_paths)
    paths = [p for item in items for p in _midi_paths(item)]
    loaded, skipped = [], []
    for path in paths:
        score, reason = _check_score(path)
        if score is None:
            skipped.append((path, reason))
        else:
            loaded.append((path, score))
    if not loaded:
        detail = "; ".join(f"{p.name}: {r}" for p, r in skipped[:3])
        raise UserError(
            f"no usable MIDI files in {', '.join(map(str, items))} "
            f"({len(paths)} found, {len(skipped)} skipped{': ' + detail if detail else ''}): "
            "give .mid files with pitched notes"
        )
    return loaded, skipped


def split_train_valid(
    items: Sequence[T], valid_fraction: float = 0.1, seed: int = 0
) -> tuple[list[T], list[T]]:
    """Split pieces into train/validation by a hash of each file name (stable, seeded).

    ``items`` are paths or tuples starting with a path (as from :func:`load_midi_files`).
    A piece stays on its side when files are added or removed. With two or more items
    the validation side is never empty.
    """
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")

    def score(item: T) -> float:
        name = Path(item[0] if isinstance(item, tuple) else item).name
        digest = hashlib.sha1(f"{seed}/{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    scores = [score(item) for item in items]
    is_valid = [s < valid_fraction for s in scores]
    if valid_fraction > 0 and len(items) >= 2 and not any(is_valid):
        is_valid[scores.index(min(scores))] = True
    train = [item for item, v in zip(items, is_valid, strict=True) if not v]
    valid = [item for item, v in zip(items, is_valid, strict=True) if v]
    return train, valid
