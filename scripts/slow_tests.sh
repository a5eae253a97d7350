#!/usr/bin/env bash
# The long checks the default suite leaves out (pytest -m slow): sbdf2 reverse passes of the
# full model, the GPU-check dry run, long convergence studies. Writes results/slow_tests.md with
# the machine, its load, the command and per-test durations. Extra arguments go to pytest.
# Usage: bash scripts/slow_tests.sh [-k EXPR]
set -uo pipefail
cd "$(dirname "$0")/.."
out=results/slow_tests.md
log=$(mktemp)
start=$(date -u +%FT%TZ)
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
python -m pytest -q -m slow -p no:cacheprovider --durations=0 -o addopts="" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
{
    echo "# Long checks (pytest -m slow)"
    echo
    echo "Command: \`bash scripts/slow_tests.sh $*\`, started $start, exit status $status."
    echo "Machine: $(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(python -c "import jax; print(jax.devices()[0].platform)" 2>/dev/null); load before: $load_before,"
    echo "after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")."
    echo
    echo '```'
    grep -E "passed|failed|error|^[0-9.]+s (call|setup)" "$log" | head -40
    echo '```'
} > "$out"
rm -f "$log"
echo "wrote $out"
exit "$status"
