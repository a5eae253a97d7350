"""scripts/gpu_check.py at --dry-run sizes: every check runs and reports a number (on a
CPU here; the same script on a GPU machine writes results/gpu.md). Slow: run with
``pytest -m slow tests/test_gpu_check.py`` (or ``bash scripts/gpu_check.sh --dry-run``)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~5 min on 2 CPU cores: four fresh processes each compile the full TME model
def test_gpu_check_dry_run_reports_every_check(tmp_path):
    out = tmp_path / "gpu.md"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry-run", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 6, rows
    assert not any("FAIL" in r for r in rows), rows
    # every timed row carries a measured number
    for r in rows[1:4]:
        assert re.search(r"\| \d+\.\d s \|", r), r
    agreement = float(re.search(r"max rel\. diff ([0-9.e+-]+)", rows[5]).group(1))
    assert agreement <= 1e-3
