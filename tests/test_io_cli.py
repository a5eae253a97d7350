"""Config → run → HDF5 pipeline and the command line, against in-memory Simulator runs."""

import os
import subprocess
import sys
import textwrap
import tomllib

import h5py
import jax
import numpy as np
import pytest

from tmepde import Simulator
from tmepde.cli import main
from tmepde.config import load_config
from tmepde.io import ResultWriter, open_result
from tmepde.runner import NonFiniteError, run_config

CONFIG = """
[grid]
shape = [16, 12]
spacing = [4.0, 5.0]

[time]
t_end = 7.0
dt = 0.25
save_every = 1.0

[model]
path = "tmepde.models.examples:gray_scott"

[model.params]
feed = 0.04

[species.v]
diffusivity = 0.05
boundary = { x = "periodic", y_lo = { kind = "dirichlet", value = 0.1 } }

[initial.u]
type = "uniform"
value = 1.0

[initial.v]
type = "gaussian"
width = 12.0
amplitude = 0.5

[solver]
dtype = "float64"

[output]
chunk = 3
compression = 2
"""


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "run.toml"
    p.write_text(CONFIG)
    return p


def _reference(cfg):
    """Independent in-memory run of the same config with one Simulator.run call."""
    d = cfg.data
    sim = Simulator(cfg.model, cfg.grid, dt=d["time"]["dt"], save_every=d["time"]["save_every"],
                    dtype=np.float64)
    return np.asarray(sim.run(cfg.params(np.float64), cfg.initial_state(), cfg.n_saves))


@pytest.fixture(scope="module")
def result(config_file, tmp_path_factory):
    """The config run through the CLI once (7 saves in chunks of 3, 3 and a remainder of 1)."""
    out = tmp_path_factory.mktemp("out") / "out.h5"
    assert main(["run", str(config_file), "-o", str(out), "--no-progress"]) == 0
    return out


def test_cli_round_trip_matches_in_memory_run(config_file, result):
    out = result
    cfg = load_config(config_file)
    ref = _reference(cfg)
    assert ref.shape == (8, 2, 16, 12)
    with open_result(out) as r:
        assert r.status == "complete"
        assert r.species == ["u", "v"]
        np.testing.assert_array_equal(r.time, np.arange(8.0))
        for i, name in enumerate(r.species):
            np.testing.assert_allclose(r.series(name), ref[:, i], rtol=0, atol=1e-12)
        np.testing.assert_allclose(r.field("v", 5), ref[5, 1], rtol=0, atol=1e-12)
        # The stored config rebuilds the same run.
        assert r.config == cfg.data
        assert r.config["model"]["params"]["feed"] == 0.04
        assert r.grid.shape == (16, 12) and r.grid.spacing == (4.0, 5.0)
        assert r.boundaries("v") == {"x_lo": "periodic", "x_hi": "periodic",
                                     "y_lo": ("dirichlet", 0.1), "y_hi": "neumann"}
        assert r.units("u") == "1"
    with h5py.File(out, "r") as f:
        assert f.attrs["tmepde_version"]
        np.testing.assert_array_equal(f.attrs["grid_shape"], [16, 12])
        np.testing.assert_array_equal(f.attrs["grid_spacing_um"], [4.0, 5.0])
        d = f["fields/v"]
        # stored (time, y, x): x varies fastest, as netCDF/CF and XDMF expect
        assert d.shape == (8, 12, 16) and d.chunks == (1, 12, 16) and d.maxshape == (None, 12, 16)
        assert d.compression == "gzip" and d.compression_opts == 2 and d.dtype == np.float64
        assert d.attrs["diffusivity_um2_per_s"] == 0.05
        assert f["time"].attrs["units"] == "h"


def test_total_observable_is_sum_times_cell_volume(result):
    with open_result(result) as r:
        obs = r.observables
        for name in r.species:
            fields = r.series(name)
            np.testing.assert_allclose(obs[f"total_{name}"], fields.sum(axis=(1, 2)) * 4.0 * 5.0, rtol=1e-13)
            np.testing.assert_array_equal(obs[f"max_{name}"], fields.max(axis=(1, 2)))
            np.testing.assert_array_equal(obs[f"min_{name}"], fields.min(axis=(1, 2)))
        # u starts uniform at 1 on a 64 µm x 60 µm domain.
        assert obs["total_u"][0] == pytest.approx(64.0 * 60.0, rel=1e-14)


def test_set_override_and_info(config_file, tmp_path, capsys):
    out = tmp_path / "s.h5"
    rc = main(["run", str(config_file), "-o", str(out), "--no-progress",
               "--set", "time.t_end=3", "--set", "model.params.kill=0.055", "--set", "solver.scheme=sbdf1"])
    assert rc == 0
    with open_result(out) as r:
        assert len(r) == 4
        stored = tomllib.loads(r.config_toml)
        assert stored["time"]["t_end"] == 3.0
        assert stored["model"]["params"]["kill"] == 0.055
        assert stored["solver"]["scheme"] == "sbdf1"
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "16 x 12 cells" in text
    assert "spacing 4 x 5 µm" in text
    assert "saves:    4, t = 0 .. 3 h" in text
    assert "status:   complete" in text
    assert "total_u" in text


def test_config_error_stops_before_any_output(config_file, tmp_path, capsys):
    out = tmp_path / "never.h5"
    rc = main(["run", str(config_file), "-o", str(out), "--set", "species.v.diffusivity=-1"])
    assert rc == 2
    assert not out.exists()
    assert capsys.readouterr().err.strip() == (
        "tmepde: config error: species.v.diffusivity must be >= 0 µm²/s, got -1; "
        "e.g. diffusivity = 20.0")


NAN_MODEL = """
import jax.numpy as jnp
from tmepde import Model, Species

def _rates(t, y, p):
    # b blows up from t = 0.5 h on; a stays finite.
    return {"a": -0.1 * y["a"], "b": jnp.where(t > 0.45, jnp.nan, 0.0) * jnp.ones_like(y["b"])}

def model():
    return Model([Species("a", diffusivity=0.01), Species("b", diffusivity=0.01)], _rates, {})
"""


def _nan_config(tmp_path, monkeypatch):
    (tmp_path / "nan_model_for_tests.py").write_text(NAN_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    p = tmp_path / "nan.toml"
    p.write_text(textwrap.dedent("""
        [grid]
        shape = [8, 8]
        [time]
        t_end = 1.6
        dt = 0.1
        save_every = 0.2
        [model]
        path = "nan_model_for_tests:model"
        [initial.a]
        type = "uniform"
        value = 1.0
        [solver]
        scheme = "euler"
        dtype = "float64"
        [output]
        chunk = 3
    """))
    return p


def test_nan_run_keeps_completed_saves_and_names_field(tmp_path, monkeypatch, capsys):
    cfg_path = _nan_config(tmp_path, monkeypatch)
    out = tmp_path / "nan.h5"
    with pytest.raises(NonFiniteError) as info:
        run_config(cfg_path, out, progress=False)
    # Forward Euler: the rate at t = 0.5 h first enters the state at t = 0.6 h (save 3).
    assert info.value.species == "b"
    assert info.value.time == pytest.approx(0.6)
    assert "field 'b' became non-finite (NaN or inf) at t = 0.6 h" in str(info.value)
    with open_result(out) as r:
        np.testing.assert_allclose(r.time, [0.0, 0.2, 0.4])  # the finite part of the 2nd chunk too
        assert r.status.startswith("failed: NonFiniteError: field 'b' became non-finite")
        assert np.all(np.isfinite(r.series("b")))
        # a decays at 0.1/h exactly (uniform field, Euler steps of 0.1 h).
        np.testing.assert_allclose(r.field("a", 2), np.full((8, 8), 0.99**4), rtol=1e-12)
    # Through the CLI: exit status 1 and a one-line message naming field and time.
    assert main(["run", str(cfg_path), "-o", str(out), "--no-progress", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "run failed: field 'b' became non-finite (NaN or inf) at t = 0.6 h" in err
    assert main(["info", str(out)]) == 0
    assert "status:   failed: NonFiniteError" in capsys.readouterr().out


def test_exception_mid_run_leaves_completed_chunks(config_file, tmp_path, monkeypatch):
    calls = []
    original = Simulator.advance

    def flaky(self, carry, params, n):
        calls.append(n)
        if len(calls) == 2:  # Ctrl-C once the first chunk has finished computing
            jax.block_until_ready(carry)
            raise KeyboardInterrupt
        return original(self, carry, params, n)

    monkeypatch.setattr(Simulator, "advance", flaky)
    out = tmp_path / "int.h5"
    with pytest.raises(KeyboardInterrupt):  # RunInterrupted, exit status 130 from the CLI
        run_config(load_config(config_file, ["solver.scheme=sbdf1"]), out, progress=False)
    with open_result(out) as r:
        assert r.status == "interrupted: SIGINT"
        np.testing.assert_array_equal(r.time, [0.0, 1.0, 2.0, 3.0])  # save 0 + first chunk of 3
        assert r.series("u").shape == (4, 16, 12)


def test_killed_writer_leaves_readable_file(tmp_path):
    """A process killed with SIGKILL after two flushed chunks: both chunks are on disk."""
    out = tmp_path / "killed.h5"
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from tmepde import Grid
        from tmepde.models.examples import fisher_kpp
        from tmepde.io import ResultWriter
        w = ResultWriter({str(out)!r}, Grid((6, 5), 2.0), fisher_kpp(), config_toml="x = 1")
        w.append([0.0, 1.0], np.ones((2, 1, 6, 5)))
        w.append([2.0], 3 * np.ones((1, 1, 6, 5)))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == -9
    with open_result(out) as r:
        assert r.status == "running"
        np.testing.assert_array_equal(r.time, [0.0, 1.0, 2.0])
        np.testing.assert_array_equal(r.field("tumor", 2), np.full((6, 5), 3.0))
        np.testing.assert_allclose(r.observables["total_tumor"], [120.0, 120.0, 360.0])
        assert r.config == {"x": 1}


def test_writer_rejects_wrong_shape(tmp_path):
    from tmepde import Grid
    from tmepde.models.examples import fisher_kpp

    with ResultWriter(tmp_path / "w.h5", Grid((4, 4), 1.0), fisher_kpp()) as w:
        with pytest.raises(ValueError, match=r"expected \(1, 1, 4, 4\)"):
            w.append([0.0], np.zeros((1, 1, 4, 5)))


@pytest.mark.parametrize("command, table", [("fit", "fit"), ("optimize", "optimize")])
def test_commands_name_the_missing_table(config_file, capsys, command, table):
    assert main([command, str(config_file)]) == 2
    err = capsys.readouterr().err
    assert f"has no [{table}] table; add one (docs/config.md" in err


def test_solver_scheme_and_start_window_reach_the_simulator(config_file):
    """`solver.scheme = "sbdf3"` and `solver.start_window` from a config give the same states
    as a Simulator built by hand with them, and a different window gives different ones."""
    from tmepde.runner import build

    cfg = load_config(config_file, ["solver.scheme=sbdf3", "solver.start_window=0.75"])
    setup = build(cfg)
    assert (setup.simulator.scheme, setup.simulator.start_steps) == ("sbdf3", 3)  # ⌈0.75 / 0.25⌉
    ys = np.asarray(setup.simulator.run(setup.params, setup.y0, 2))
    d = cfg.data["time"]

    def by_hand(window):
        sim = Simulator(cfg.model, cfg.grid, dt=d["dt"], save_every=d["save_every"], scheme="sbdf3",
                        dtype=np.float64, start_window=window)
        return np.asarray(sim.run(cfg.params(np.float64), cfg.initial_state(), 2))

    np.testing.assert_allclose(ys, by_hand(0.75), rtol=1e-12, atol=1e-14)
    assert np.abs(ys - by_hand(0.25)).max() > 1e-9


X64_CONFIG = """
[grid]
shape = [4, 4]

[time]
t_end = 4.0
dt = 0.5
save_every = 2.0

[model]
path = "tmepde.models.examples:gray_scott"

[initial.u]
type = "uniform"
value = 1.000000001

[solver]
dtype = "float64"
"""


def test_float64_run_is_scoped_and_refused_without_x64(tmp_path):
    # u = 1 + ε, v = 0 uniform: v stays 0 and u - 1 = ε exp(-feed t) (Gray–Scott, feed = 0.037 /h).
    # ε = 1e-9 is below float32's resolution at 1, so a run silently in float32 would store u = 1.
    from tmepde.config import ConfigError, loads_config
    from tmepde.runner import build

    cfg = loads_config(X64_CONFIG)
    with jax.enable_x64(False):
        with pytest.raises(ConfigError, match=r"solver.dtype = 'float64' needs JAX's 64-bit mode"):
            build(cfg)
        out = run_config(cfg, tmp_path / "x64.h5", progress=False)
        assert not jax.config.jax_enable_x64  # the run left the setting as it found it
    with open_result(out) as r:
        u = r.series("u")
        assert u.dtype == np.float64
        np.testing.assert_allclose(u[:, 0, 0] - 1.0, 1e-9 * np.exp(-0.037 * r.time), rtol=1e-3)
        assert np.all(r.series("v") == 0.0)


def test_writer_stores_given_observables_and_refuses_missing_ones(tmp_path):
    # The writer evaluates no model: the values of the model's observables come with append.
    from tmepde.grid import Grid
    from tmepde.model import Model, Observable, Species

    obs = Observable("peak", lambda t, y, p, grid: y["u"].max(), units="1", description="peak of u")
    model = Model([Species("u", diffusivity=1.0)], lambda t, y, p: {"u": 0 * y["u"]}, {}, observables=[obs])
    ys = np.arange(2 * 3 * 4, dtype=float).reshape(2, 1, 3, 4)
    with ResultWriter(tmp_path / "o.h5", Grid((3, 4), 2.0), model) as w:
        assert w.observables == ()  # not asked to store any
    with ResultWriter(tmp_path / "p.h5", Grid((3, 4), 2.0), model, observables=model.observables) as w:
        with pytest.raises(ValueError, match=r"no values for the model observables \['peak'\]"):
            w.append([0.0, 1.0], ys)
        w.append([0.0, 1.0], ys, {"peak": [11.0, 23.0]})
        w.finish()
    with open_result(tmp_path / "p.h5") as r:
        np.testing.assert_array_equal(r.observable("peak"), [11.0, 23.0])
        np.testing.assert_array_equal(r.observable("total_u"), [4.0 * 66.0, 4.0 * 210.0])
