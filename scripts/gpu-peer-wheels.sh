#!/usr/bin/env bash
# Wheels that let benchmarks/gpu_check.py compare with DeepDataProfiler and WeightWatcher on a GPU machine
# (Python 3.12, x86-64, no registry there). Downloads into DIR (default .whl, kept out of git):
#   bash scripts/gpu-peer-wheels.sh [DIR]
# then, in the device run:  python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl
#                           && export PYTHONPATH=src:/tmp/site
# torchvision and torch-lucent are not needed: the benchmark stubs the two module names.
set -euo pipefail
dir=${1:-.whl}
mkdir -p "$dir"
grep -qxF "/$dir/" .git/info/exclude 2>/dev/null || echo "/$dir/" >> .git/info/exclude
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform manylinux1_x86_64 --platform any)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
    -d "$dir" deep_data_profiler==2.0.1 ripser==0.6.15 persim==0.4.1 deprecated==1.2.18 powerlaw==2.0.0 \
    weightwatcher==0.7.7 matplotlib-inline==0.2.2 traitlets==5.14.3
ls -l "$dir"
