"""What every benchmark script shares: a rounded median [min-max], and the results JSON."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path


def spread(values: Iterable[float], digits: int) -> tuple[float, float, float]:
    """(median, min, max), rounded: noisy machines are reported as a range, not one number."""
    v = list(values)
    return round(statistics.median(v), digits), round(min(v), digits), round(max(v), digits)


def save_json(result: dict, out: str | Path | None, show: bool = True) -> None:
    """Write `result` to `out` (if given, folders made), and print it (if `show`)."""
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    if show:
        print(text)
