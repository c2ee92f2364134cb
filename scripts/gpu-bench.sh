#!/usr/bin/env bash
# The GPU check (run once on a lent CUDA machine, < 8 min): fine-tuning (full + LoRA, bf16) and
# generation benchmarks of museforge vs the plain Hugging Face path, JSON into $OUT.
# Needs, carried in .gpu/ (git-ignored): wheels missing on that machine (datasets, dill,
# multiprocess), the SmolLM2-135M config + tokenizer (weights are randomly initialised: the
# 94 MB GGUF cannot travel; speed depends on the architecture, not on the weight values), and
# the hymn corpus. Prepare with `scripts/gpu-prepare.sh`; run as
#   device run --carry .gpu -- bash scripts/gpu-bench.sh
# Each part has its own time limit, so one that hangs costs only its own figures.
# `bash scripts/gpu-bench.sh gen` runs only generation (with --static: museforge's opt-in static cache,
# which transformers compiles, and plain generate's; the warm-up round pays the compiles), `train` only
# fine-tuning at 8 x 256,
# `large` only fine-tuning at 32 x 512 (where the GPU has work to do), `song` only constrained songs
# with and without the static cache; no argument runs gen and train.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers, accelerate, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'peft', peft.__version__)"
} 2>&1 | tee "$OUT/gpu.txt"
python3 - <<'PY' || exit 1
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
cfg = AutoConfig.from_pretrained(".gpu/smol")
torch.manual_seed(0)
m = AutoModelForCausalLM.from_config(cfg)
m.save_pretrained("/tmp/smol"); AutoTokenizer.from_pretrained(".gpu/smol").save_pretrained("/tmp/smol")
print("random SmolLM2-135M architecture saved,", sum(p.numel() for p in m.parameters()) / 1e6, "M params")
PY
cd benchmarks
part() { local limit=$1; shift; echo "== $* ($(date +%T))"; timeout "$limit" python3 "$@" 2>&1 | grep -v '^ \|^{\|^}' | tee -a "$OUT/log.txt"; }
if [ "${1:-}" = large ]; then
  for s in full lora; do
    part 110 train_speed.py --model /tmp/smol --setting $s --data ../.gpu/openhymnal.jsonl --batch 32 --block 512 --steps 15 --repeats 1 --out "$OUT/train_${s}_32x512.json"
  done
  ls -la "$OUT"; exit 0
fi
if [ "${1:-gen}" = gen ]; then
  part 330 gen_speed.py --model /tmp/smol --repeats 3 --static --out "$OUT/gen.json"
fi
if [ "${1:-}" = song ]; then  # constrained songs: eager, then the opt-in static cache (compiles)
  part 200 song_speed.py --model /tmp/smol --songs 2 --static --out "$OUT/song.json"
fi
if [ "${1:-train}" = train ]; then
  for s in full lora; do
    part 130 train_speed.py --model /tmp/smol --setting $s --data ../.gpu/openhymnal.jsonl --steps 20 --repeats 2 --out "$OUT/train_$s.json"
  done
fi
echo "== done ($(date +%T))"; ls -la "$OUT"
