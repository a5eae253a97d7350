#!/usr/bin/env bash
# GPU proof in one go (≤ 8 minutes on an H100/H200): pytest -m gpu, the default scenario, a 3D
# 128³ run, a 1000-patient cohort at 128², the explicit step's bandwidth and float32/float64
# agreement; writes results/gpu.md (+ .json). Extra arguments go to scripts/gpu_check.py,
# e.g. `bash scripts/gpu_check.sh --dry-run --out /tmp/gpu.md` on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import tmepde" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null; then python -m pip install -q -e '.[test,cuda]'
    else python -m pip install -q -e '.[test]'; fi
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
exec python scripts/gpu_check.py "$@"
