"""Fitting synthetic data made with known parameters recovers them within their reported
uncertainty, and unidentifiable parameters are reported as such."""

import jax.numpy as jnp
import numpy as np

import tmepde as tp
from tmepde.fit import FitParameter, fit


def _logistic_model():
    def reactions(t, y, p):
        u = y["tumor"]
        return {"tumor": p["growth"] * u * (1 - u / p["capacity"])}

    return tp.Model([tp.Species("tumor", diffusivity=0.02)], reactions,
                    {"growth": 0.05, "capacity": 0.8}, name="logistic")


def test_fit_recovers_parameters_within_uncertainty():
    grid = tp.Grid((16,), 20.0)
    model = _logistic_model()
    x = grid.axis_centers(0)
    y0 = model.stack({"tumor": 0.05 + 0.2 * np.exp(-((x - 160) / 60) ** 2)}, grid)
    sim = tp.Simulator(model, grid, dt=2.0, save_every=8.0)
    n_saves = 15  # 120 h

    def burden(p):
        return jnp.sum(sim.run(p, y0, n_saves)[1:, 0], axis=-1) * grid.cell_volume

    truth = model.default_params()
    clean = np.asarray(burden(truth))
    noise_sd = 0.02 * clean.mean()
    data = clean + noise_sd * np.random.default_rng(3).standard_normal(clean.shape)

    def residuals(p):
        return (burden(p) - data) / noise_sd

    start = dict(truth, growth=jnp.asarray(0.03), capacity=jnp.asarray(1.2))
    result = fit(residuals, start, [
        FitParameter("growth", 0.03),
        FitParameter("capacity", 1.2, lower=0.1, upper=5.0, transform="logit"),
        # The motility barely changes total burden: the data cannot identify it.
        FitParameter("D_tumor", 0.02, prior_sd=1.0),
    ], scale_by_residual=False)
    for name in ("growth", "capacity"):
        err = abs(result.values[name] - float(truth[name]))
        assert err < 3 * result.std_error[name], (name, result.values[name], result.std_error[name])
        assert result.std_error[name] < 0.1 * float(truth[name])
        assert result.identifiable[name]
    print(result.summary())
    assert not result.identifiable["D_tumor"]
    # χ²: the cost at the optimum is near its expectation (n_data - n_params) / 2.
    assert 0.2 * 15 / 2 < result.cost < 2.5 * 15 / 2, result.cost
    assert result.history[-1] < result.history[0]
