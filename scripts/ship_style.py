"""Copy a trained style run into the package as a shipped style, with its model card.

    python scripts/ship_style.py runs/style-hymn hymn "Open Hymnal Project hymn lyrics (public domain)"

Keeps the adapter, its config and museforge.json (held-out perplexity before/after training);
the tokenizer is the base model's, so it is not copied.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(run: str, name: str, source: str) -> None:
    run_dir, target = Path(run), ROOT / "src" / "museforge" / "assets" / "styles" / name
    info = json.loads((run_dir / "museforge.json").read_text())
    target.mkdir(parents=True, exist_ok=True)
    for f in ("adapter_model.safetensors", "config.yaml", "museforge.json"):
        shutil.copy2(run_dir / f, target / f)
    adapter = json.loads((run_dir / "adapter_config.json").read_text())
    adapter["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"  # portable; museforge uses "default"
    (target / "adapter_config.json").write_text(json.dumps(adapter, indent=2))
    m, cfg = info["metrics"], info["config"]
    card = f"""# museforge style: {name}

A LoRA adapter (r={cfg['model']['lora_r']}, alpha={cfg['model']['lora_alpha']}, on {', '.join(cfg['model']['lora_targets'])})
for SmolLM2-135M-Instruct, task `{info['task']}`, trained by museforge's own training loop:

    museforge train configs/styles/{name}.yaml

- Data: {source}. {info['data']['documents']['train']} documents for training,
  {info['data']['documents']['validation']} held out (random split by document, seed {cfg['data']['seed']}).
- Training: {m['step']} steps, {m['tokens']:,} tokens, lr {cfg['train']['lr']}, blocks of {cfg['data']['block_size']} tokens.
- Held-out perplexity: base model {m['start_val_perplexity']:.2f} -> with this adapter {m['best_val_perplexity']:.2f}
  (loss {m['start_val_loss']:.4f} -> {m['best_val_loss']:.4f}).

Use: `museforge generate {info['task']} "a topic" --style {name}` or
`museforge.load_generator("{info['task']}", style="{name}")`.
"""
    (target / "README.md").write_text(card)
    print(card)


if __name__ == "__main__":
    main(*sys.argv[1:4])
