"""The tutorial (docs/tutorial.py) runs end to end at small size, and its numbers hold:
the fit recovers the rates that made the data, the optimised schedule beats the standard
one within the budget."""

import runpy
import sys

import numpy as np


def test_tutorial_runs_and_its_results_hold(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["tutorial.py", "--small", "--out", str(tmp_path)])
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "docs" / "tutorial.py"
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        assert e.code == 0
    r = np.load(tmp_path / "tutorial_numbers.npz")
    # truth: growth 0.02 /h, kill 0.05 /h; 5 % noise on 15 volumes
    assert abs(r["growth"] - 0.02) < 3 * r["growth_se"] and r["growth_se"] < 0.2 * 0.02
    assert abs(r["kill"] - 0.05) < 3 * r["kill_se"] and r["kill_se"] < 0.2 * 0.05
    assert r["optimised"] < r["standard"] - 0.1      # clearly less tumor at day 14
    assert r["total"] <= 5e5 * 1.01                  # the budget holds (penalty: ≤ 1 % over)
    for name in ("standard_fields.png", "standard_observables.png", "tutorial_summary.png"):
        assert (tmp_path / name).stat().st_size > 5000
