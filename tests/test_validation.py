"""Hostile input: every mistake is one named error (exit 2 at the CLI), never a traceback,
never silently accepted, and a run whose field the positivity clip erased is not a success."""

import math
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tmepde as tp
from tmepde import cli, initial
from tmepde.config import run as cfgmod  # where the run sections (and the memory check) live
from tmepde.config import ConfigError, ConfigWarning, load_config, loads_config, memory_estimate
from tmepde.grid import Boundary, Grid
from tmepde.model import Model, ParameterError, Species
from tmepde.models.examples import fisher_kpp, gray_scott

BASE = """
[grid]
shape = [16, 16]
spacing = 5.0

[time]
t_end = 1.0
dt = 0.1
save_every = 0.2

[model]
path = "tmepde.models.examples:gray_scott"

[initial.u]
type = "disk"
center = [40.0, 40.0]
radius = 20.0
value = 1.0
"""

# A model with a dose schedule, written next to its config (model.path = "dosing:model").
DOSING = '''
import numpy as np
from tmepde.model import Model, Species

def _rates(t, y, p):
    return {"drug": -p["rate"] * y["drug"]}

def model(n_doses=2):
    return Model([Species("drug", diffusivity=1.0, units="ng/mL")], _rates,
                 {"rate": 0.5, "sys_x_times": np.zeros(n_doses), "sys_x_amounts": np.zeros(n_doses)},
                 name="dosing")
'''

DOSING_CONFIG = """
[grid]
shape = [8]
spacing = 10.0

[time]
t_end = 10.0
dt = 0.5
save_every = 5.0

[model]
path = "dosing:model"
"""


def _error(overrides, text=BASE, **kw):
    with pytest.raises(ConfigError) as info:
        loads_config(text, overrides, **kw)
    err = info.value
    assert "\n" not in str(err)
    return err


def _cli(argv, capsys):
    """Exit status and stderr lines of ``tmepde ARGV`` run in-process."""
    status = cli.main(argv)
    return status, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def dosing_dir(tmp_path):
    (tmp_path / "dosing.py").write_text(DOSING)
    (tmp_path / "run.toml").write_text(DOSING_CONFIG)
    return tmp_path


# -- values that are not numbers, or not finite -------------------------------------------

@pytest.mark.parametrize("override, key", [
    ("time.t_end=inf", "time.t_end"),
    ("time.dt=nan", "time.dt"),
    ("grid.spacing=inf", "grid.spacing"),
    ("solver.cg_tol=inf", "solver.cg_tol"),
    ("model.params.feed=nan", "model.params.feed"),
    ("model.params.kill=-inf", "model.params.kill"),
    ("initial.u.value=nan", "initial.u.value"),
    ("initial.u.center=[inf, 1.0]", "initial.u.center"),
    ("species.u.decay=inf", "species.u.decay"),
])
def test_non_finite_values_are_named_errors(override, key):
    err = _error([override])
    assert err.path == key and str(err).startswith(key) and "finite" in str(err)


@pytest.mark.parametrize("override, key, words", [
    ("model.params.kill=-0.06", "model.params.kill", "must be >= 0"),   # a negative rate
    ("model.params.D_u=-1.0", "model.params.D_u", "must be >= 0"),
    ("initial.u.value=-0.5", "initial.u.value", "non-negative field"),  # negative density
    ("solver.cg_tol=2.0", "solver.cg_tol", "between 0 and 1"),
    ("time.dt=1e-300", "time.dt", "steps"),
    ('output.path=""', "output.path", "not empty"),
    ("solver.start_window=0.5", "solver.start_window", "at most one save interval"),
    ('initial.u={type="clusters", n=3, radius=10.0, seed=-1}', "initial.u.seed", ">= 0"),
])
def test_nonsense_values_are_named_errors(override, key, words):
    err = _error([override])
    assert err.path == key, str(err)
    assert words in str(err)


def test_default_start_window_is_cut_to_one_save_interval():
    # Only an explicit start_window beyond save_every is an error; the 1 h default is cut.
    assert loads_config(BASE).data["solver"]["start_window"] == 0.2
    assert loads_config(BASE, ["solver.start_window=0.2"]).data["solver"]["start_window"] == 0.2


def test_steps_limit_names_the_fix():
    err = _error(["time.dt=1e-300", "time.save_every=1e-300"])
    # t_end / dt = 1e300 steps; the fix is dt >= t_end / MAX_STEPS = 1e-9 h
    assert "1e+300 steps" in str(err) and "dt >= 1e-09 h" in str(err)


def test_dose_times_and_amounts(dosing_dir):
    path = dosing_dir / "run.toml"
    cfg = load_config(path, ["model.params.sys_x_times=[1.0, 5.0]", "model.params.sys_x_amounts=[2.0, 3.0]"])
    assert cfg.data["model"]["params"]["sys_x_times"] == [1.0, 5.0]
    for override, words in [("model.params.sys_x_times=[-1.0, 5.0]", "must be >= 0"),
                            ("model.params.sys_x_amounts=[-2.0, 3.0]", "must be >= 0"),
                            ("model.params.sys_x_times=5.0", "a list of 2 numbers"),
                            ("model.params.sys_x_times=[1.0, 2.0, 3.0]", "a list of 2 numbers"),
                            ("model.params.rate=-0.5", "must be >= 0")]:
        with pytest.raises(ConfigError) as info:
            load_config(path, [override])
        assert info.value.path == "model.params." + override.split(".")[2].split("=")[0]
        assert words in str(info.value)
    # A dose after t_end is legal (a shortened run) but never given: a warning naming the key.
    with pytest.warns(ConfigWarning, match=r"model\.params\.sys_x_times: 1 dose\(s\) at t > time\.t_end = 10 h"):
        load_config(path, ["model.params.sys_x_times=[1.0, 12.0]", "model.params.sys_x_amounts=[1.0, 1.0]"])
    with warnings.catch_warnings():  # an unused slot (amount 0) late is not worth a warning
        warnings.simplefilter("error")
        load_config(path, ["model.params.sys_x_times=[1.0, 12.0]", "model.params.sys_x_amounts=[1.0, 0.0]"])


def test_array_parameter_given_a_number_fails_before_any_output(dosing_dir, capsys):
    out = dosing_dir / "out.h5"
    status, err = _cli(["run", str(dosing_dir / "run.toml"), "-o", str(out), "--no-progress",
                        "--set", "model.params.sys_x_times=5.0"], capsys)
    assert status == 2 and len(err) == 1 and "model.params.sys_x_times" in err[0]
    assert not out.exists()


# -- options, boundaries, grid, memory ------------------------------------------------------

def test_model_option_of_the_wrong_kind(dosing_dir):
    with pytest.raises(ConfigError) as info:
        load_config(dosing_dir / "run.toml", ['model.options.n_doses="twelve"'])
    assert info.value.path == "model.options"
    assert str(info.value).startswith("model.options.n_doses must be an integer") and "'twelve'" in str(info.value)
    with pytest.raises(ConfigError, match=r"did you mean 'model\.options\.n_doses'\?"):
        load_config(dosing_dir / "run.toml", ["model.options.n_dose=3"])


@pytest.mark.parametrize("override, key, words", [
    ('species.u.boundary={x_lo={kind="dirichlet", valeu=1.0}}', "species.u.boundary.x_lo.valeu",
     "did you mean 'species.u.boundary.x_lo.value'"),
    ('species.u.boundary={x_lo={kind="dirichlet", value=nan}}', "species.u.boundary.x_lo", "finite"),
    ('species.u.boundary={kind="dirichlet", value=inf}', "species.u.boundary", "finite"),
    ('species.u.boundary={x_low="neumann"}', "species.u.boundary.x_low", "did you mean 'species.u.boundary.x_lo'"),
    ('species.u.boundary={x_lo={kind="dirichlet", value="one"}}', "species.u.boundary.x_lo", "number"),
])
def test_boundary_tables_are_checked(override, key, words):
    err = _error([override])
    assert err.path == key and words in str(err), str(err)


def test_boundary_value_must_be_finite_in_the_python_api():
    with pytest.raises(ValueError, match="finite"):
        Boundary("dirichlet", float("nan"))
    assert Boundary("dirichlet", 2).value == 2.0


def test_shape_outside_the_domain_is_an_error():
    # spacing 0.005 instead of 5 (mm for µm): the disk at (40, 40) µm misses the 0.08 µm domain.
    err = _error(["grid.spacing=0.005"])
    assert err.path == "initial.u.center" and "outside the domain" in str(err) and "µm" in str(err)
    loads_config(BASE)  # ablation: the same disk on the intended grid is fine
    # Gaussian: more than 5 widths from every cell centre.
    gauss = ['initial.u={type="gaussian", center=[200.0, 40.0], width=20.0}']
    assert _error(gauss).path == "initial.u.center"
    loads_config(BASE, ['initial.u={type="gaussian", center=[150.0, 40.0], width=20.0}'])  # 4.4 widths
    # Clusters too small to cover any cell centre (cells of 5 µm, radius 0.1 µm).
    err = _error(['initial.u={type="clusters", n=3, radius=0.1}'])
    assert err.path == "initial.u.radius" and "covers a cell centre" in str(err)


def test_nearest_cell_distance_is_exact():
    g = Grid((7, 5), (3.0, 2.0))
    rng = np.random.default_rng(1)
    x, y = g.coordinates()
    for c in rng.uniform(-10, 30, size=(50, 2)):
        brute = np.sqrt(((x - c[0]) ** 2 + (y - c[1]) ** 2).min())
        assert math.isclose(initial.nearest_cell_distance(g, c), brute, rel_tol=1e-12)


def test_impossible_grid_is_refused_with_the_estimate(monkeypatch):
    # 1e5 x 1e5 cells x 2 species, float32, sbdf2 (10 state copies), 2 x 10 saves per chunk,
    # plus float64 initial fields: 2e10 x (4 x (10 + 20) + 16) bytes = 2.72e12 B = 2.47e3 GiB.
    need = memory_estimate((100000, 100000), 2, "float32", "sbdf2", 10)
    assert need == 2 * 10**10 * (4 * (2 * 2 + 4 + 2 * 10) + 16)
    monkeypatch.setattr(cfgmod, "_available_memory", lambda: 1500 * 2**30)
    err = _error(["grid.shape=[100000, 100000]"])
    assert err.path == "grid.shape" and "x 2 species" in str(err)
    assert f"{need / 2**30:.3g} GiB" in str(err) and "1.5e+03 GiB of memory available" in str(err)
    # Below even one species' need, it is refused before the model (whose factory may
    # allocate grid-sized arrays) is built: half the estimate, for one species.
    monkeypatch.setattr(cfgmod, "_available_memory", lambda: 16 * 2**30)
    err = _error(["grid.shape=[100000, 100000]"])
    assert f"{need / 2 / 2**30:.3g} GiB" in str(err) and "at least one species" in str(err)
    # Ablation: with enough memory the same grid resolves (nothing is allocated to check it).
    monkeypatch.setattr(cfgmod, "_available_memory", lambda: 2**50)
    assert loads_config(BASE, ["grid.shape=[100000, 100000]"]).grid.shape == (100000, 100000)


def test_overflowing_values_are_errors_not_crashes():
    assert _error(["grid.shape=[16, 99999999999999999999]"]).path in ("grid.shape",)
    assert _error(["time.t_end=1e308", "time.dt=1e-308", "time.save_every=1e-308"]).path == "time.dt"
    assert _error(["grid.spacing=1e308"]).path.startswith(("grid", "initial"))


# -- the model: loading, parameters -----------------------------------------------------

def test_model_module_next_to_the_config_imports(dosing_dir, tmp_path_factory, monkeypatch):
    cfg = load_config(dosing_dir / "run.toml")
    assert cfg.model.name == "dosing" and cfg.data["model"]["params"]["rate"] == 0.5
    # ... and from the working directory, for a config written elsewhere.
    elsewhere = tmp_path_factory.mktemp("configs")
    (elsewhere / "run.toml").write_text(DOSING_CONFIG)
    monkeypatch.chdir(dosing_dir)
    assert load_config(elsewhere / "run.toml").model.name == "dosing"


def test_misspelt_model_names_get_suggestions(dosing_dir):
    with pytest.raises(ConfigError) as info:
        load_config(dosing_dir / "run.toml", ['model.path="dosing:modle"'])
    assert info.value.path == "model.path" and "did you mean 'dosing:model'?" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(dosing_dir / "run.toml", ['model.path="dosin:model"'])
    assert "did you mean 'dosing'?" in str(info.value) and "next to the config" in str(info.value)


def _sim():
    model = gray_scott()
    grid = Grid((8,), 5.0)
    sim = tp.Simulator(model, grid, dt=0.1, save_every=0.2, scheme="sbdf1")  # quick to compile
    y0 = model.stack({"u": 1.0, "v": 0.25}, grid)
    return model, sim, y0


def test_simulator_rejects_missing_and_unknown_parameters():
    model, sim, y0 = _sim()
    p = model.default_params()
    missing = {k: v for k, v in p.items() if k != "D_u"}
    with pytest.raises(ParameterError, match=r"parameter 'D_u' of model 'gray_scott' is missing"):
        sim.run(missing, y0, 1)
    with pytest.raises(ParameterError, match=r"unknown parameter 'D_uu'.*did you mean 'D_u'\?"):
        sim.run({**p, "D_uu": 1.0}, y0, 1)
    with pytest.raises(ParameterError, match="must be finite"):
        sim.run({**p, "feed": jnp.nan}, y0, 1)
    with pytest.raises(ParameterError, match="must be >= 0"):
        sim.advance(sim.init(y0, p), {**p, "kill": -1.0}, 1)
    # Under jit the names are still checked (static) ...
    with pytest.raises(ParameterError, match="'D_u'"):
        jax.jit(lambda q: sim.run(q, y0, 1))(missing)
    # ... and values are not inspected (traced), so a sound dict runs and matches eager.
    np.testing.assert_allclose(jax.jit(lambda q: sim.run(q, y0, 1))(p), sim.run(p, y0, 1), rtol=1e-6)
    # The old KeyError contract of Model.params holds (ParameterError is both).
    with pytest.raises(KeyError):
        model.params(fed=0.1)


def test_batches_check_values_before_vmap():
    from tmepde import batch

    model, sim, y0 = _sim()
    p = model.default_params()
    bad = {**p, "feed": jnp.asarray([0.03, jnp.inf])}
    with pytest.raises(ParameterError, match="'feed' must be finite"):
        next(batch.iter_batch(sim, bad, ["feed"], y0, 1))
    good = {**p, "feed": jnp.asarray([0.03, 0.04])}
    _, out = next(batch.iter_batch(sim, good, ["feed"], y0, 1))
    assert out.shape == (2, 2, 2, 8)
    assert np.all(np.isfinite(np.asarray(out)))


def test_signed_parameters_may_be_negative():
    m = Model([Species("u", diffusivity=1.0)], lambda t, y, p: {"u": p["bias"] + 0 * y["u"]},
              {"bias": 1.0}, signed_params=["bias"])
    m.check_params(m.params(bias=-1.0))
    m2 = Model([Species("u", diffusivity=1.0)], None, {"bias": 1.0})
    with pytest.raises(ParameterError, match="signed_params"):
        m2.params(bias=-1.0)


# -- collapse hidden by the positivity clip ------------------------------------------------

FISHER = """
[grid]
shape = [16]
spacing = 10.0

[time]
t_end = 4.0
dt = 0.5
save_every = 1.0

[model]
path = "tmepde.models.examples:fisher_kpp"

[initial.tumor]
type = "uniform"
value = 0.5

[solver]
dtype = "float64"
scheme = "sbdf1"

[output]
chunk = 2
"""


def test_collapse_hidden_by_the_positivity_clip_fails_the_run(tmp_path):
    from tmepde.io import open_result
    from tmepde.runner import CollapseError, run_config

    # growth 1e6 /h with dt = 0.5 h: the explicit logistic term overshoots, the clip sets the
    # field to exactly 0 in the first save interval. Without the check this was "complete".
    out = tmp_path / "c.h5"
    with pytest.raises(CollapseError) as info:
        run_config(loads_config(FISHER, ["model.params.growth=1e6"]), out, progress=False)
    assert info.value.species == "tumor" and info.value.time == 1.0
    with open_result(out) as r:
        assert r.status.startswith("failed: CollapseError")
        np.testing.assert_array_equal(r.time, [0.0])  # the last good state is kept
        np.testing.assert_allclose(r.field("tumor")[0], 0.5)
    # Ablation: the intended growth rate runs to completion, the tumor grows logistically.
    ok = run_config(loads_config(FISHER), tmp_path / "ok.h5", progress=False)
    with open_result(ok) as r:
        assert r.status == "complete"
        u = r.field("tumor")[-1]
        expected = 1 / (1 + np.exp(-0.02 * 4.0))  # logistic from 0.5, r = 0.02 /h, t = 4 h
        np.testing.assert_allclose(u, expected, rtol=1e-4)


def test_collapse_check_ignores_decay_below_the_underflow_scale():
    from tmepde.runner import _first_collapse

    names = ["a", "b"]
    prev = np.array([[0.6, 0.1], [1e-30, 0.0]], np.float32)  # b peaks at 1e-30 < sqrt(tiny) = 1.1e-19
    ys = np.zeros((2, 2, 2), np.float32)
    ys[0, 0] = [0.3, 0.1]  # a is alive at the first save, b has underflowed to 0
    assert _first_collapse(prev, ys, names, [True, True]) == (1, "a")  # a vanishes at save 1
    assert _first_collapse(prev, ys[:1], names, [True, True]) is None
    assert _first_collapse(prev, ys, names, [False, True]) is None  # a signed field may cross 0


def test_sweep_member_that_collapses_is_failed_not_complete(tmp_path):
    from tmepde.io import open_result
    from tmepde.sweep import run_sweep

    sweep = '\n[sweep]\n[[sweep.arms]]\nname = "ok"\nset = { growth = 0.02 }\n' \
            '[[sweep.arms]]\nname = "unstable"\nset = { growth = 1e6 }\n'
    with pytest.warns(UserWarning, match="1 of 2 sweep members became non-finite .* or collapsed"):
        out = run_sweep(loads_config(FISHER + sweep), tmp_path / "s.h5", progress=False)
    with open_result(out) as r:
        status = list(r.members["status"])
        arms = list(r.members["arm"])
        assert r.status.startswith("complete: 1 of 2 members")
    assert status[arms.index("ok")] == "complete"  # ablation: the intended growth rate passes
    assert status[arms.index("unstable")].startswith("failed: field 'tumor' collapsed to exactly 0")
    assert "t = 1 h" in status[arms.index("unstable")]


def test_cli_collapse_exits_nonzero_with_one_line(tmp_path, capsys):
    (tmp_path / "f.toml").write_text(FISHER)
    status, err = _cli(["run", str(tmp_path / "f.toml"), "-o", str(tmp_path / "o.h5"), "--no-progress",
                        "--set", "model.params.growth=1e6"], capsys)
    assert status == 1 and len(err) == 1
    assert "field 'tumor' collapsed to exactly 0" in err[0] and "t = 1 h" in err[0]


# -- the CLI: exit 2 and one line for every bad input ---------------------------------------

def test_non_utf8_config(tmp_path, capsys):
    p = tmp_path / "latin1.toml"
    p.write_bytes(BASE.encode() + "# caf\u00e9\n".encode("latin-1"))
    status, err = _cli(["run", str(p), "--print-config"], capsys)
    assert status == 2 and len(err) == 1
    assert str(p) in err[0] and "not UTF-8" in err[0] and "byte 0xe9" in err[0]


@pytest.mark.parametrize("args, key", [
    (["--set", "time.t_end=inf"], "time.t_end"),
    (["--set", "model.params.feed=nan"], "model.params.feed"),
    (["--set", "model.params.D_uu=1.0"], "model.params.D_uu"),
    (["--set", "initial.u.value=-1.0"], "initial.u.value"),
    (["--set", "grid.spacing=0.005"], "initial.u.center"),
    (["--set", 'species.v.boundary={y_lo={kind="dirichlet", value=nan}}'], "species.v.boundary.y_lo"),
    (["--set", "solver.start_window=1.0"], "solver.start_window"),
    (["--set", "solver.cg_tol=inf"], "solver.cg_tol"),
    (["--set", "time.dt=1e-300"], "time.dt"),
    (["-o", ""], "-o/--output"),
    (["--set", 'output.path=""'], "output.path"),
])
def test_cli_bad_input_exit_2_one_line(tmp_path, capsys, args, key):
    p = tmp_path / "c.toml"
    p.write_text(BASE)
    status, err = _cli(["run", str(p), "--print-config", *args], capsys)
    assert status == 2, err
    assert len(err) == 1 and key in err[0], err


def test_cli_missing_input_file_exit_2(tmp_path, capsys):
    status, err = _cli(["info", str(tmp_path / "nothere.h5")], capsys)
    assert status == 2 and len(err) == 1 and "nothere.h5" in err[0]
    status, err = _cli(["run", str(tmp_path / "nothere.toml")], capsys)
    assert status == 2 and len(err) == 1 and "nothere.toml" in err[0]
