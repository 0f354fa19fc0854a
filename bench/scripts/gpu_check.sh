#!/usr/bin/env bash
# The GPU check: the one command to run on a GPU machine. Installs nothing: it runs this checkout's code with the
# machine's own Python and torch (PYTHONPATH set to the checkout, as bench/results/README.md describes for the H200
# run). In under five minutes: the default `bench run --device cuda`, the fast path (batch-1 latency and large-batch
# throughput of the fused, compiled and TensorRT forms), a merge with the committed CPU results (Table 3 with its GPU
# columns) and summary.md (the issue's table re-measured, the goals), every JSON, markdown and log in OUT.
#
#   bash bench/scripts/gpu_check.sh OUT                 # on the GPU machine
#   bash bench/scripts/gpu_check.sh OUT --device cpu --tiny   # a dry run of the same steps on a CPU (seconds)
#
# PYTHON picks the interpreter (default python3). Exit 0 when every step exited 0.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}"
[ "$#" -gt 0 ] && shift
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" "$ROOT/bench/scripts/gpu_check.py" "$OUT" "$@"
