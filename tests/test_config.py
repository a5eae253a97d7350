"""Config schema, validation messages, TOML round trip and initial-condition generators."""

import math
from pathlib import Path

import numpy as np
import pytest

from tmepde import Grid, initial
from tmepde.config import ConfigError, apply_override, config_reference, load_config, loads_config

ROOT = Path(__file__).resolve().parents[1]

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
"""


def _error(text=BASE, overrides=()):
    with pytest.raises(ConfigError) as info:
        loads_config(text, overrides)
    return info.value


# -- error messages: exact text for the common mistakes --------------------------------

@pytest.mark.parametrize("overrides, path, message", [
    (["grid.spasing=5.0"], "grid.spasing",
     "unknown key 'grid.spasing'; did you mean 'grid.spacing'? valid keys in [grid]: shape, spacing, geometry"),
    (['grid.spacing="ten"'], "grid.spacing",
     "grid.spacing must be a number or list of numbers, got 'ten' (string); e.g. spacing = 10.0"),
    (["grid.spacing=0.0"], "grid.spacing",
     "grid.spacing must be > 0 µm (one number, or one per axis), got 0.0; e.g. spacing = 10.0"),
    (["grid.spacing=[1.0, 2.0, 3.0]"], "grid.spacing",
     "grid.spacing has 3 entries but grid.shape has 2; give one spacing per axis or a single number"),
    (['grid.geometry="spherical"'], "grid.geometry",
     "grid.geometry 'spherical' is a 1D radial grid; grid.shape must have one entry, got (16, 16)"),
    (["grid.shape=[1, 16]"], "grid.shape",
     "grid.shape entries must be >= 2 (cells per axis), got [1, 16]; e.g. shape = [128, 128]"),
    (["grid.shape=[4, 4, 4, 4]"], "grid.shape",
     "grid.shape must have 1, 2 or 3 entries (cells per axis), got [4, 4, 4, 4]; e.g. shape = [128, 128]"),
    (["species.u.diffusivity=-1.0"], "species.u.diffusivity",
     "species.u.diffusivity must be >= 0 µm²/s, got -1.0; e.g. diffusivity = 20.0"),
    (["model.params.D_u=-0.1"], "model.params.D_u", "model.params.D_u must be >= 0 µm²/s, got -0.1"),
    (["time.save_every=0.25"], "time.save_every",
     "time.save_every (0.25 h) must be a whole multiple of time.dt (0.1 h); e.g. save_every = 0.2"),
    (["time.t_end=1.1"], "time.t_end",
     "time.t_end (1.1 h) must be a whole multiple of time.save_every (0.2 h); e.g. t_end = 1.2"),
    (["initial.w.type=uniform", "initial.w.value=1.0"], "initial.w",
     "unknown species 'w' in [initial] for model 'gray_scott'; known species: u, v"),
    (["species.w.decay=1.0"], "species.w",
     "unknown species 'w' in [species] for model 'gray_scott'; known species: u, v"),
    (["model.params.fed=0.03"], "model.params.fed",
     "unknown parameter 'model.params.fed' for model 'gray_scott'; did you mean 'feed'? "
     "known parameters: D_u, D_v, decay_u, decay_v, feed, kill"),
    (["grdi.x=1"], "grdi",
     "unknown section 'grdi'; did you mean 'grid'? valid sections in the top level: "
     "grid, time, model, solver, output, patient, species, initial, sweep, fit, optimize, sensitivity"),
    (["solver.scheme=rk5"], "solver.scheme",
     "solver.scheme must be one of 'sbdf2', 'sbdf3', 'sbdf4', 'sbdf1', 'rk4', 'ssprk3', 'euler', "
     "'etd1', 'etdrk2', got 'rk5'; "
     'e.g. scheme = "sbdf2"'),
    (["initial.u.type=blob"], "initial.u.type",
     "initial.u.type must be one of 'uniform', 'gaussian', 'disk', 'clusters', 'file', got 'blob'"),
    (["initial.u.type=disk", "initial.u.radius=3.0", "initial.u.center=[1.0]"], "initial.u.center",
     "initial.u.center must have 2 entries (µm, one per axis), got [1.0]"),
    (["species.u.boundary.x_lo=periodic"], "species.u.boundary",
     "species.u.boundary: axis 'x': periodic must be set on both faces (x_lo and x_hi), "
     "got 'periodic' and 'neumann'"),
    (["model.path=tmepde.models.examples:nope"], "model.path",
     "model.path: module 'tmepde.models.examples' has no attribute 'nope'; "
     "it defines: chemotaxis_demo, fisher_kpp, gray_scott"),
    (["output.compression=12"], "output.compression",
     "output.compression must be between 0 and 9, got 12; e.g. compression = 1"),
    (["time.t_end"], "", "--set expects dotted.key=value (e.g. --set time.t_end=48), got 'time.t_end'"),
])
def test_error_messages(overrides, path, message):
    err = _error(overrides=overrides)
    assert isinstance(err, ValueError)
    assert err.path == path
    assert str(err) == message


def test_missing_required_key():
    err = _error(BASE.replace("dt = 0.1\n", ""))
    assert (err.path, str(err)) == (
        "time.dt", "missing required key 'time.dt' (time step in h); add it under [time], e.g. dt = 0.1")


def test_invalid_toml_names_the_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[grid\nshape = [4, 4]\n")
    with pytest.raises(ConfigError, match=r"bad\.toml is not valid TOML"):
        load_config(p)


# -- resolution ----------------------------------------------------------------------

def test_defaults_and_resolved_toml_round_trip():
    cfg = loads_config(BASE + '[species.u]\nboundary = "periodic"\n[initial.v]\ntype = "disk"\nradius = 10\n')
    d = cfg.data
    assert d["grid"]["spacing"] == [5.0, 5.0]
    # The default start window (1 h) is cut to one save interval (0.2 h here).
    assert d["solver"] == {"scheme": "sbdf2", "dtype": "float32", "chemotaxis_limiter": True,
                           "start_window": 0.2}
    assert d["output"] == {"path": "result.h5", "chunk": 10, "compression": 1}
    assert d["model"]["params"] == {"feed": 0.037, "kill": 0.06}
    assert d["species"]["u"]["boundary"] == {f: "periodic" for f in ("x_lo", "x_hi", "y_lo", "y_hi")}
    assert d["species"]["v"]["diffusivity"] == 0.1  # the model's own value, spelled out
    assert d["initial"]["v"] == [{"type": "disk", "center": [40.0, 40.0], "radius": 10.0, "value": 1.0}]
    assert cfg.n_saves == 5
    again = loads_config(cfg.to_toml())
    assert again.data == d
    assert loads_config(again.to_toml()).to_toml() == cfg.to_toml()


def test_species_override_changes_model_and_params():
    cfg = loads_config(BASE, ["species.u.diffusivity=0.5", "species.v.decay=0.25",
                              'species.v.boundary={ x_lo = { kind = "dirichlet", value = 2.0 } }'])
    u, v = cfg.model.species
    assert u.diffusivity == 0.5 and v.decay == 0.25
    p = cfg.params()
    assert float(p["D_u"]) == 0.5 and float(p["decay_v"]) == 0.25 and float(p["feed"]) == 0.037
    (xlo, xhi), _ = cfg.model.boundaries(cfg.grid)[1]
    assert (xlo.kind, xlo.value, xhi.kind) == ("dirichlet", 2.0, "neumann")
    # The example model itself is untouched.
    from tmepde.models.examples import gray_scott
    assert gray_scott().species[0].diffusivity == 0.2


def test_set_overrides_parse_toml_values_or_strings():
    raw = {}
    apply_override(raw, "grid.shape=[8, 4]")
    apply_override(raw, "time.t_end=48")
    apply_override(raw, "solver.scheme=rk4")          # bare string
    apply_override(raw, 'solver.dtype="float64"')     # quoted string
    apply_override(raw, "solver.chemotaxis_limiter=false")
    assert raw == {"grid": {"shape": [8, 4]}, "time": {"t_end": 48},
                   "solver": {"scheme": "rk4", "dtype": "float64", "chemotaxis_limiter": False}}
    cfg = loads_config(BASE, ["model.params.feed=0.05", "time.t_end=2"])
    assert cfg.data["model"]["params"]["feed"] == 0.05 and cfg.n_saves == 10


def test_shipped_configs_validate():
    paths = [ROOT / "configs" / "default.toml", *sorted((ROOT / "configs" / "examples").glob("*.toml"))]
    assert len(paths) >= 3
    for p in paths:
        cfg = load_config(p)
        assert cfg.n_saves >= 1, p


def test_docs_config_md_is_generated_from_schema():
    committed = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == config_reference(), (
        "docs/config.md is out of date: run `python -m tmepde.config > docs/config.md`")


# -- initial-condition generators ----------------------------------------------------

def test_disk_area_and_ball_volume():
    g2 = Grid((200, 200), 2.0)
    area = initial.disk(g2, radius=150.0, value=3.0).sum() * g2.cell_volume / 3.0
    assert abs(area / (math.pi * 150.0**2) - 1) < 2e-3
    g3 = Grid((48, 48, 48), 5.0)
    vol = initial.disk(g3, radius=90.0).sum() * g3.cell_volume
    assert abs(vol / (4 / 3 * math.pi * 90.0**3) - 1) < 1e-2
    # Centre default = domain centre: the field is symmetric under reflection.
    f = initial.disk(g2, radius=50.0)
    np.testing.assert_array_equal(f, f[::-1, ::-1])


def test_gaussian_integral_matches_analytic():
    g = Grid((128, 96), (4.0, 5.0))
    w, a = 30.0, 2.5
    f = initial.gaussian(g, center=[256.0, 240.0], width=w, amplitude=a)
    # The midpoint rule is spectrally accurate for a Gaussian well inside the domain.
    np.testing.assert_allclose(f.sum() * g.cell_volume, a * 2 * math.pi * w**2, rtol=1e-10)
    assert f.max() <= a
    g1 = Grid(400, 1.0)
    f1 = initial.gaussian(g1, center=[200.0], width=10.0, amplitude=1.0)
    np.testing.assert_allclose(f1.sum(), math.sqrt(2 * math.pi) * 10.0, rtol=1e-10)


def test_random_clusters_reproducible_with_seed():
    g = Grid((64, 64), 5.0)
    a = initial.clusters(g, n=8, radius=20.0, value=0.7, seed=4)
    b = initial.clusters(g, n=8, radius=20.0, value=0.7, seed=4)
    c = initial.clusters(g, n=8, radius=20.0, value=0.7, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) == {0.0, 0.7}
    # Overlaps are not added: covered area is at most n discs.
    covered = (a > 0).sum() * g.cell_volume
    assert 0 < covered <= 8 * math.pi * 20.0**2 * 1.05
    assert initial.clusters(g, n=0, radius=20.0).sum() == 0


def test_initial_from_file_and_components_add(tmp_path):
    g = Grid((16, 16), 5.0)
    arr = np.arange(256.0).reshape(16, 16)
    np.save(tmp_path / "u0.npy", arr)
    text = BASE + """
[initial.u]
type = "file"
path = "u0.npy"
scale = 2.0

[[initial.v]]
type = "uniform"
value = 0.5

[[initial.v]]
type = "disk"
center = [40.0, 40.0]
radius = 10.0
value = 1.0
"""
    (tmp_path / "c.toml").write_text(text)
    cfg = load_config(tmp_path / "c.toml")
    y0 = cfg.initial_state()
    np.testing.assert_array_equal(y0[0], 2 * arr)
    np.testing.assert_array_equal(y0[1], 0.5 + initial.disk(g, [40.0, 40.0], 10.0, 1.0))
    np.save(tmp_path / "bad.npy", np.zeros((8, 8)))
    with pytest.raises(ConfigError, match=r"initial\.u\.path: the array in .*bad\.npy' has shape "
                       r"\(8, 8\), expected the grid shape \(16, 16\)"):
        loads_config(text.replace("u0.npy", "bad.npy"), base_dir=tmp_path)
    with pytest.raises(ValueError, match="expected the grid shape"):
        initial.from_file(g, tmp_path / "bad.npy")


@pytest.mark.parametrize("dt, save_every, t_end, key, message", [
    (0.1, 0.25, None, "time.save_every",
     "time.save_every (0.25 h) must be a whole multiple of time.dt (0.1 h); e.g. save_every = 0.2"),
    (0.1, 0.2, 1.1, "time.t_end",
     "time.t_end (1.1 h) must be a whole multiple of time.save_every (0.2 h); e.g. t_end = 1.2"),
    (0.0, 0.2, None, "time.dt", "time.dt must be a positive number of hours, got 0.0"),
    (float("nan"), 0.2, None, "time.dt", "time.dt must be a positive number of hours, got nan"),
])
def test_simulator_and_config_reject_a_time_grid_with_the_same_line(dt, save_every, t_end, key, message):
    # One validator of the time grid: the Simulator (and simulate) say what the config says.
    import tmepde as tp
    from tmepde.models.examples import gray_scott

    model, grid = gray_scott(), Grid((4, 4), 10.0)
    with pytest.raises(ValueError) as err:
        if t_end is None:
            tp.Simulator(model, grid, dt=dt, save_every=save_every)
        else:
            tp.simulate(model, grid, {"u": 1.0, "v": 0.0}, t_end=t_end, dt=dt, save_every=save_every)
    assert str(err.value) == message and getattr(err.value, "key", None) == key
    if math.isfinite(dt) and dt > 0:
        with pytest.raises(ConfigError) as err:
            loads_config(BASE, [f"time.dt={dt}", f"time.save_every={save_every}",
                                f"time.t_end={t_end or 2.0}"])
        assert err.value.path == key and str(err.value) == message
