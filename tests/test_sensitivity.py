"""Global sensitivity (Sobol' indices, Morris screening) against closed forms."""

import math

import numpy as np
import jax.numpy as jnp
import pytest

import tmepde as tp
from tmepde import sensitivity
from tmepde.config import ConfigError, loads_config

T = 24.0  # h
RANGES = {"decay_u": (0.02, 0.10), "decay_v": (0.01, 0.03)}  # 1/h


def _two_decays():
    """f(k_u, k_v) = e^{-k_u T} + e^{-k_v T}: additive, so S1 = ST and Σ S1 = 1 exactly."""
    model = tp.Model([tp.Species("u", diffusivity=0.0, decay=0.05), tp.Species("v", diffusivity=0.0, decay=0.02)],
                     name="two_decays")
    grid = tp.Grid((2,), 10.0)
    sim = tp.Simulator(model, grid, dt=0.125, save_every=T, dtype=jnp.float64)
    y0 = model.stack({"u": 1.0, "v": 1.0}, grid, jnp.float64)
    return model, grid, sim, y0


def _outcome(table):
    model, grid, sim, y0 = _two_decays()
    unit, values = sensitivity.sample(table)
    y = sensitivity.outcomes(sim, model.default_params(jnp.float64), list(table["params"]), values, y0,
                             n_saves=1, save_index=1, species_index=[0, 1],
                             cell_volumes=np.full(grid.shape, 0.5), log=False)  # total = f
    return unit, values, y


def _table(method, n):
    raw = {"method": method, "n": n, "seed": 1, "species": ["u", "v"],
           "params": {k: list(v) for k, v in RANGES.items()}}
    model, *_ = _two_decays()
    return sensitivity.resolve_table(raw, model.default_params(), model.names, T, T)


def _decay_variance(lo, hi):
    """Var(e^{-kT}) for k ~ U(lo, hi)."""
    m1 = (math.exp(-lo * T) - math.exp(-hi * T)) / (T * (hi - lo))
    m2 = (math.exp(-2 * lo * T) - math.exp(-2 * hi * T)) / (2 * T * (hi - lo))
    return m2 - m1**2


def test_sobol_indices_match_the_analytic_variance_decomposition():
    table = _table("sobol", 1024)
    unit, values, y = _outcome(table)
    # The simulator reproduces the closed form (implicit decay, dt = 1/8 h).
    exact_f = np.exp(-values[:, 0] * T) + np.exp(-values[:, 1] * T)
    np.testing.assert_allclose(y, exact_f, rtol=2e-4)
    idx = sensitivity.analyze(table, unit, y)
    var = np.array([_decay_variance(*RANGES["decay_u"]), _decay_variance(*RANGES["decay_v"])])
    exact_s = var / var.sum()  # ~ (0.93, 0.07)
    np.testing.assert_allclose(idx["S1"], exact_s, atol=0.04)
    np.testing.assert_allclose(idx["ST"], exact_s, atol=0.04)
    assert abs(idx["S1"].sum() - 1) < 0.05


def test_morris_mu_star_lies_between_the_exact_elementary_effects():
    table = _table("morris", 16)  # 4 levels: steps of Δ = 2/3 from x = 0 or 1/3
    unit, values, y = _outcome(table)
    idx = sensitivity.analyze(table, unit, y)
    for j, (lo, hi) in enumerate(RANGES.values()):
        f = lambda x: math.exp(-(lo + x * (hi - lo)) * T)  # noqa: E731
        effects = [abs(f(2 / 3) - f(0)) / (2 / 3), abs(f(1) - f(1 / 3)) / (2 / 3)]
        assert min(effects) * (1 - 1e-3) <= idx["mu_star"][j] <= max(effects) * (1 + 1e-3), (j, idx, effects)


CONFIG = """
[grid]
shape = [4]
spacing = 10.0
[time]
t_end = 48.0
dt = 0.5
save_every = 12.0
[model]
path = "tmepde.models.examples:fisher_kpp"
[initial.tumor]
type = "uniform"
value = 0.05
[solver]
dtype = "float64"
[sensitivity]
n = 64
species = ["tumor"]
log = true
[sensitivity.params]
growth = [0.02, 0.06]
D_tumor = { range = [0.01, 1.0], scale = "log" }
"""


def test_cli_sensitivity_of_logistic_growth(tmp_path, capsys):
    """A uniform tumor grows logistically whatever its motility: all variance is growth's."""
    from tmepde.cli import main

    cfg = tmp_path / "s.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "s.h5"
    assert main(["sensitivity", str(cfg), "-o", str(out), "--no-progress"]) == 0
    data = sensitivity.read_sensitivity(out)
    names = data["names"]
    s1, st = data["indices"]["S1"], data["indices"]["ST"]
    assert s1[names.index("growth")] > 0.9
    assert st[names.index("D_tumor")] < 1e-6  # motility cannot change a uniform field
    # log10 burden at 48 h against the logistic closed form, for every run
    r = data["samples"][:, names.index("growth")]
    u = 1 / (1 + (1 / 0.05 - 1) * np.exp(-r * 48.0))
    np.testing.assert_allclose(data["outcome"], np.log10(u * 40.0), atol=1e-4)
    assert (tmp_path / "s.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| growth |" in table and f"{s1[names.index('growth')]:.3f}" in table
    assert main(["sensitivity", str(cfg), "-o", str(out), "--no-progress"]) == 2  # no clobbering


@pytest.mark.parametrize("change, key", [
    ("sensitivity.n=48", "sensitivity.n"),
    ("sensitivity.time=30.0", "sensitivity.time"),
    ("sensitivity.params.grwoth=[0.1, 0.2]", "sensitivity.params.grwoth"),
    ("sensitivity.params.growth=[0.2, 0.1]", "sensitivity.params.growth"),
    ("sensitivity.species=[\"tumour\"]", "sensitivity.species"),
    ("sensitivity.method=\"fast\"", "sensitivity.method"),
])
def test_bad_sensitivity_tables_name_the_key(change, key):
    with pytest.raises(ConfigError) as e:
        loads_config(CONFIG, [change])
    assert e.value.path == key and "\n" not in str(e.value)


def test_resolved_table_round_trips():
    cfg = loads_config(CONFIG)
    again = loads_config(cfg.to_toml())
    assert again.data["sensitivity"] == cfg.data["sensitivity"]


def test_log_offset_is_added_before_the_log_and_checked():
    """``log_offset`` turns the outcome into log10(total + offset), against the raw totals of
    the same runs; bad values name the key."""
    table = _table("morris", 4)
    model, grid, sim, y0 = _two_decays()
    unit, values = sensitivity.sample(table)
    kw = dict(n_saves=1, save_index=1, species_index=[0, 1], cell_volumes=np.full(grid.shape, 0.5))
    params = model.default_params(jnp.float64)
    raw = sensitivity.outcomes(sim, params, list(table["params"]), values, y0, log=False, **kw)
    logged = sensitivity.outcomes(sim, params, list(table["params"]), values, y0, log=True,
                                  log_offset=0.25, **kw)
    np.testing.assert_allclose(logged, np.log10(raw + 0.25), rtol=1e-14)
    assert np.all(logged > np.log10(raw))
    for bad, why in ((-1.0, "must be a number >= 0"), ("1", "must be a number >= 0")):
        with pytest.raises(sensitivity.SensitivityError, match=why):
            sensitivity.resolve_table({"log": True, "log_offset": bad, "params": {"decay_u": [0.02, 0.1]}},
                                      model.default_params(), model.names, T, T)
    with pytest.raises(sensitivity.SensitivityError, match="applies to a log10 outcome"):
        sensitivity.resolve_table({"log_offset": 1.0, "params": {"decay_u": [0.02, 0.1]}},
                                  model.default_params(), model.names, T, T)
