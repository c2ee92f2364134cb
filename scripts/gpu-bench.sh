#!/usr/bin/env bash
# The GPU check (run once on a lent CUDA machine, < 8 min): fine-tuning (full + LoRA, bf16) and
# generation benchmarks of museforge vs the plain Hugging Face path, JSON into $OUT.
# Needs, carried in .gpu/ (git-ignored): wheels missing on that machine (datasets, dill,
# multiprocess), the SmolLM2-135M config + tokenizer (weights are randomly initialised: the
# 94 MB GGUF cannot travel; speed depends on the architecture, not on the weight values), and
# the hymn corpus. Prepare with `scripts/gpu-prepare.sh`.
set -euo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 - <<'PY'
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
cfg = AutoConfig.from_pretrained(".gpu/smol")
torch.manual_seed(0)
m = AutoModelForCausalLM.from_config(cfg)
m.save_pretrained("/tmp/smol"); AutoTokenizer.from_pretrained(".gpu/smol").save_pretrained("/tmp/smol")
print("random SmolLM2-135M architecture saved,", sum(p.numel() for p in m.parameters()) / 1e6, "M params")
PY
for s in full lora; do
  python3 benchmarks/train_speed.py --model /tmp/smol --setting $s --data .gpu/openhymnal.jsonl --steps 20 --repeats 2 \
    --out "$OUT/train_$s.json" 2>&1 | grep -v '^ ' || true
done
python3 benchmarks/gen_speed.py --model /tmp/smol --repeats 2 --out "$OUT/gen.json" 2>&1 | grep -v '^ ' || true
ls -la "$OUT"
