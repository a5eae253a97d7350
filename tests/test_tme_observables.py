"""TME observables against hand computations and closed forms.

The observables are jax functions of one saved state; each is checked against a NumPy
evaluation of its definition or an analytic value on a resolved grid, and the values the
result writer stores are checked against the stored fields.
"""

import math

import numpy as np
import jax.numpy as jnp
import pytest

import tmepde as tp
from tmepde.models import tme


def _state(grid, fields):
    model = tme.tme_model(grid=grid, n_doses=2)
    return model, model.stack(fields, grid, jnp.float64)


def test_burden_pdl1_and_ratios_match_numpy():
    grid = tp.Grid((24, 20), (10.0, 12.0))
    rng = np.random.default_rng(0)
    f = {n: rng.uniform(0.0, 0.3, grid.shape) for n in
         ("tumor", "stem", "cd8", "cd8_ex", "treg", "mdsc", "pdl1", "ifng", "apd1")}
    model, y = _state(grid, f)
    p = model.params(jnp.float64)
    obs = {k: float(v) for k, v in model.observe(0.0, y, p, grid).items()}
    vol = 120.0  # µm² per cell
    tum = f["tumor"] + f["stem"]
    assert obs["tumor_burden"] == pytest.approx(vol * tum.sum(), rel=1e-12)
    assert obs["stem_fraction"] == pytest.approx(f["stem"].sum() / tum.sum(), rel=1e-12)
    mean = np.average(f["pdl1"], weights=tum)
    assert obs["pdl1_mean"] == pytest.approx(mean, rel=1e-12)
    assert obs["pdl1_sd"] == pytest.approx(math.sqrt(np.average((f["pdl1"] - mean) ** 2, weights=tum)), rel=1e-10)
    assert obs["ifng_intratumoral"] == pytest.approx(np.average(f["ifng"], weights=tum), rel=1e-12)
    assert obs["cd8_treg_ratio"] == pytest.approx(f["cd8"].sum() / f["treg"].sum(), rel=1e-12)
    assert obs["exhausted_fraction"] == pytest.approx(f["cd8_ex"].sum() / (f["cd8"] + f["cd8_ex"]).sum(), rel=1e-12)
    assert obs["mdsc_load"] == pytest.approx(vol * f["mdsc"].sum(), rel=1e-12)
    assert obs["tissue_apd1"] == pytest.approx(np.average(f["apd1"], weights=tum), rel=1e-12)


def test_empty_populations_give_zero_not_nan():
    grid = tp.Grid((8, 8), 20.0)
    model, y = _state(grid, {"tumor": 0.5})
    obs = model.observe(0.0, y, model.params(jnp.float64), grid)
    assert all(np.isfinite(float(v)) for v in obs.values())
    assert float(obs["cd8_treg_ratio"]) == 0.0 and float(obs["exhausted_fraction"]) == 0.0
    assert float(obs["infiltration_depth"]) == 0.0


@pytest.mark.parametrize("d, expected_fraction", [(2, 1 / 3), (3, 1 / 4)])
def test_infiltration_depth_of_uniform_effectors_is_R_over_d_plus_1(d, expected_fraction):
    # Effectors spread uniformly over a uniform tumor ball of radius R: mean depth
    # E[R - r] = R - d/(d+1) R = R/(d+1) (2D: R/3, 3D: R/4).
    n, h, R = (200, 10.0, 600.0) if d == 2 else (64, 20.0, 400.0)
    grid = tp.Grid((n,) * d, h)
    r = np.sqrt(sum((c - n * h / 2) ** 2 for c in grid.coordinates()))
    ball = (r < R).astype(float)
    depth = float(tme.infiltration_depth(jnp.asarray(0.01 * ball), jnp.asarray(0.6 * ball), grid))
    assert depth == pytest.approx(expected_fraction * R, rel=0.02)


def test_infiltration_depth_on_spherical_shells():
    grid = tp.Grid((200,), 5.0, geometry="spherical")
    r = grid.coordinates()[0]
    ball = (r < 500.0).astype(float)
    depth = float(tme.infiltration_depth(jnp.asarray(ball), jnp.asarray(ball), grid))
    assert depth == pytest.approx(500.0 / 4, rel=0.01)


def test_writer_stores_observables_of_the_stored_fields(tmp_path):
    from tmepde.io import ResultWriter, open_result

    grid = tp.Grid((12, 12), 20.0)
    model = tme.tme_model(grid=grid, n_doses=2)
    p = model.params(jnp.float64, sys_pd1_amounts=[2e8, 0.0])
    ys = np.random.default_rng(2).uniform(0.0, 0.5, (3, len(model.names), *grid.shape))
    path = tmp_path / "obs.h5"
    from tmepde.runner import model_observer

    times = np.array([0.0, 4.0, 8.0])
    with ResultWriter(path, grid, model, observables=model.observables) as w:
        w.append(times, ys, model_observer(model, p, grid)(times, ys))
    with open_result(path) as res:
        obs = res.observables
    vol = 400.0
    burden = vol * (ys[:, model.index("tumor")] + ys[:, model.index("stem")]).sum(axis=(1, 2))
    np.testing.assert_allclose(obs["tumor_burden"], burden, rtol=1e-12)
    # i.v. anti-PD-1 once the smooth bolus (centred 3 widths after the dose time) is in:
    # C(t) = dose/V · exp(-ke (t - t_centre)), here t = 8 h, t_centre = 3 h.
    ke, V = float(p["pk_pd1_ke"]), float(p["pk_pd1_V"])
    assert obs["plasma_pd1"][2] == pytest.approx(2e8 / V * math.exp(-ke * 5.0), rel=1e-5)


def test_parameter_table_covers_every_default_and_has_not_drifted():
    from pathlib import Path

    from tmepde.models import tme_parameters

    p = tme.tme_model().default_params()
    assert tme_parameters.unlisted(p) == []
    outside = {k: float(p[k]) for k, (_, _, lo, hi, _) in tme_parameters.PARAMETERS.items()
               if k in p and not lo <= float(p[k]) <= hi}
    assert outside == {}
    doc = (Path(__file__).parents[1] / "docs" / "model.md").read_text()
    table = doc.split("<!-- parameter-table:start -->\n")[1].split("<!-- parameter-table:end -->")[0]
    assert table == tme_parameters.markdown_table(), \
        "docs/model.md is stale: regenerate with python -m tmepde.models.tme_parameters"
