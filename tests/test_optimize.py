"""Dose optimisation improves its starting schedule and respects every constraint."""

import jax.numpy as jnp
import numpy as np
import pytest

import tmepde as tp
from tmepde import therapy
from tmepde.optimize import DoseAgent, optimize_cma, optimize_schedule, project_amounts, project_times

KE = np.log(2) / 6.0  # 1/h, drug half-life 6 h
V = 1.0


def _toy():
    """Logistic tumor killed by a drug with one-compartment PK (dose times/amounts are params)."""
    def reactions(t, y, p):
        drug = therapy.pk_concentration(t, p["drug_times"], p["drug_amounts"], ke=KE, volume_ml=V)
        u = y["tumor"]
        return {"tumor": p["growth"] * u * (1 - u) - p["kill"] * drug / (drug + 1.0) * u}

    model = tp.Model([tp.Species("tumor", diffusivity=0.0)], reactions,
                     {"growth": 0.03, "kill": 0.08, "drug_times": np.array([0.0, 10.0, 20.0]),
                      "drug_amounts": np.array([1.0, 1.0, 1.0])})
    grid = tp.Grid((2,), 10.0)
    sim = tp.Simulator(model, grid, dt=1.0, save_every=12.0)
    y0 = model.stack({"tumor": 0.4}, grid)

    def objective(p):
        ys = sim.run(p, y0, 8)  # 96 h
        return jnp.mean(ys[:, 0])  # time-averaged burden

    t_check = jnp.linspace(0.0, 96.0, 385)

    def peak_drug(p):
        return jnp.max(therapy.pk_concentration(t_check, p["drug_times"], p["drug_amounts"], ke=KE, volume_ml=V))

    return model, objective, peak_drug


def test_projections():
    a = project_amounts(np.array([5.0, 1.0, -1.0]), cap=3.0, budget=3.5)
    assert a.sum() == pytest.approx(3.5) and a.max() <= 3.0 and a.min() >= 0
    t = project_times(np.array([30.0, 5.0, 6.0]), 0.0, 40.0, 10.0)
    assert np.all(np.diff(t) >= 10.0 - 1e-12) and t.min() >= 0 and t.max() <= 40


def test_gradient_optimizer_improves_and_respects_constraints():
    model, objective, peak = _toy()
    agent = DoseAgent("drug", max_amount=3.0, budget=4.5, t_min=0.0, t_max=72.0, min_interval=12.0)
    params = model.default_params()
    limit = 2.0
    res = optimize_schedule(objective, params, [agent], steps=25, learning_rate=0.1,
                            toxicity=peak, toxicity_limit=limit)
    assert res.objective < res.initial_objective - 0.01, (res.objective, res.initial_objective)
    a = np.asarray(res.params["drug_amounts"])
    t = np.sort(np.asarray(res.params["drug_times"]))
    assert a.min() >= 0 and a.max() <= 3.0 + 1e-9 and a.sum() <= 4.5 + 1e-9
    assert t.min() >= 0 and t.max() <= 72 and np.all(np.diff(t) >= 12 - 1e-9)
    assert res.toxicity <= limit + 1e-9
    # The baseline gets the same number of simulations; report both (not a timed test).
    cma_res = optimize_cma(objective, params, [agent], max_simulations=res.n_simulations,
                           toxicity=peak, toxicity_limit=limit)
    assert cma_res.n_simulations <= res.n_simulations
    assert cma_res.toxicity <= limit + 1e-9
