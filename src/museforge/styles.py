"""Shipped styles: LoRA adapters trained by `museforge train` on public-domain corpora.

    museforge generate lyrics "morning light" --style hymn

Each style lives in `assets/styles/<name>/` as a peft adapter directory with its museforge.json
(task, base model, training config, held-out perplexity against the base model).
"""

from __future__ import annotations

import json
from pathlib import Path

from museforge.errors import UserError

STYLES_DIR = Path(__file__).parent / "assets" / "styles"


def available_styles(task: str | None = None) -> dict[str, Path]:
    """Style name -> adapter directory, for one task or all."""
    found = {}
    for meta in sorted(STYLES_DIR.glob("*/museforge.json")):
        if task is None or json.loads(meta.read_text()).get("task") == task:
            found[meta.parent.name] = meta.parent
    return found


def style_path(task: str, style: str) -> Path:
    styles = available_styles(task)
    if style not in styles:
        raise UserError(f"no shipped {task} style '{style}'; available: {', '.join(styles) or 'none'}"
                         " (a free-form style tag needs a model fine-tuned with style tags)")
    return styles[style]
