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
