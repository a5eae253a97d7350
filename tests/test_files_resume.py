"""`tmepde run --resume FILE` finishes an interrupted run exactly: the file then equals an
uninterrupted run's bit for bit (x64 CPU), multistep history included."""

import jax
import numpy as np
import pytest

from tmepde import Simulator
from tmepde.cli import main
from tmepde.config import loads_config
from tmepde.io import open_result
from tmepde.runner import RunInterrupted, run_config

CONFIG = """
[grid]
shape = [10, 8]
spacing = [4.0, 5.0]
[time]
t_end = 8.0
dt = 0.25
save_every = 1.0
[model]
path = "tmepde.models.examples:gray_scott"
[initial.u]
type = "uniform"
value = 1.0
[initial.v]
type = "gaussian"
width = 12.0
amplitude = 0.5
[solver]
dtype = "float64"
scheme = "{scheme}"
[output]
chunk = 2
compression = 1
"""


def _interrupt_after(monkeypatch, n_calls):
    """Ctrl-C at the n-th chunk dispatch, once the chunks before it have computed."""
    original, calls = Simulator.advance, []

    def interrupted(self, carry, params, n):
        calls.append(n)
        if len(calls) == n_calls:
            jax.block_until_ready(carry)
            raise KeyboardInterrupt
        return original(self, carry, params, n)

    monkeypatch.setattr(Simulator, "advance", interrupted)


@pytest.mark.parametrize("scheme", ["sbdf3", "sbdf2"])
def test_resumed_run_equals_uninterrupted_bit_for_bit(tmp_path, monkeypatch, capsys, scheme):
    cfg = loads_config(CONFIG.format(scheme=scheme))
    full = run_config(cfg, tmp_path / "full.h5", progress=False)
    cut = tmp_path / "cut.h5"
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        with pytest.raises(RunInterrupted):
            run_config(cfg, cut, progress=False)
    with open_result(cut) as r:
        assert r.status == "interrupted: SIGINT"
        n_cut = len(r)
    assert 1 < n_cut < 9  # stopped part-way (save 0 + whole chunks of 2)
    assert main(["run", "--resume", str(cut), "--no-progress"]) == 0
    with open_result(cut) as a, open_result(full) as b:
        assert a.status == "complete" and len(a) == len(b) == 9
        np.testing.assert_array_equal(a.time, b.time)
        for s in b.species:
            np.testing.assert_array_equal(a.series(s), b.series(s))  # bit for bit
        for k, v in b.observables.items():
            np.testing.assert_array_equal(a.observables[k], v)
    # Ablation: restarting from the last save's state alone (no multistep history) differs.
    with open_result(cut) as r:
        y = np.stack([r.field(s, n_cut - 1) for s in r.species])
    from tmepde.runner import build

    setup = build(cfg)
    fresh = np.asarray(setup.simulator.run(setup.params, y, 9 - n_cut, t0=float(n_cut - 1)))
    with open_result(full) as b:
        assert np.abs(fresh[-1, 1] - b.field("v", -1)).max() > 1e-12
    capsys.readouterr()
    assert main(["run", "--resume", str(cut), "--no-progress"]) == 2  # complete now
    assert "is complete; nothing to resume" in capsys.readouterr().err


def test_branch_from_a_save_of_an_earlier_file(tmp_path, capsys):
    """--branch FILE --at T: the new file starts with that save at t = T and continues as an
    in-memory Simulator run from that state and time (bit for bit); the time axis is T..t_end."""
    from tmepde.runner import build

    cfg_path = tmp_path / "run.toml"
    cfg_path.write_text(CONFIG.format(scheme="sbdf2"))
    base = tmp_path / "base.h5"
    assert main(["run", str(cfg_path), "-o", str(base), "--no-progress"]) == 0
    branch = tmp_path / "branch.h5"
    assert main(["run", str(cfg_path), "-o", str(branch), "--no-progress", "--branch", str(base),
                 "--at", "3", "--set", "time.t_end=9.0"]) == 0
    setup = build(loads_config(CONFIG.format(scheme="sbdf2"), ["time.t_end=9.0"]))
    with open_result(base) as b, open_result(branch) as r:
        np.testing.assert_array_equal(r.time, np.arange(3.0, 10.0))
        y3 = np.stack([b.field(s, 3) for s in b.species])
        ref = np.asarray(setup.simulator.run(setup.params, y3, 6, t0=3.0))
        np.testing.assert_array_equal(np.stack([r.series(s) for s in r.species], axis=1), ref)
        assert r.attrs["start_time_h"] == 3.0 and r.status == "complete"
        assert str(r.attrs["branched_from"]).endswith("base.h5 @ 3 h")
    capsys.readouterr()
    assert main(["run", str(cfg_path), "-o", str(tmp_path / "x.h5"), "--no-progress",
                 "--branch", str(base), "--at", "2.5"]) == 2
    assert "no save at t = 2.5 h" in capsys.readouterr().err
