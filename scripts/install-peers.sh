#!/usr/bin/env bash
# Creates a separate virtual environment with the peer tools that convsvd's benchmarks
# compare against. They are never dependencies of convsvd itself.
#   usage: bash scripts/install-peers.sh [DIR]      (default: .peers-venv)
#   then:  DIR/bin/python benchmarks/spectrum.py --peers DIR ...
# Installs: torch 2.13.0 (the CPU wheel on this machine's disk; first, so nothing pulls
# a CUDA build), WeightWatcher 0.7.7, powerlaw 2.0.0 (what WeightWatcher/DeepDataProfiler
# use), DeepDataProfiler 2.0.1 without its pinned deps, ripser (imported by it), and
# powerlaw 1.5 — the last release with the unbounded analytic fit — in DIR/pl15, to be
# put first on sys.path only where the 1.5 fit is the reference.
# DeepDataProfiler imports torchvision and torch-lucent at import time although
# SpectralAnalysis/SVDProfiler use neither, and PyPI's torchvision cannot run with this
# torch: a benchmark must register placeholder modules for 'torchvision*' and 'lucent*'
# in sys.modules before importing deep_data_profiler (only inside the benchmark).
set -euo pipefail
V=${1:-.peers-venv}
python3 -m venv "$V"
"$V/bin/pip" install -q torch==2.13.0
"$V/bin/pip" install -q weightwatcher==0.7.7 powerlaw==2.0.0
"$V/bin/pip" install -q --no-deps deep-data-profiler==2.0.1
"$V/bin/pip" install -q ripser==0.6.15
"$V/bin/pip" install -q --no-deps --target "$V/pl15" powerlaw==1.5
echo "peers installed in $V (powerlaw 1.5 in $V/pl15)"
