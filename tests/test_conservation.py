"""Mass conservation (zero flux, no reactions) and positivity, incl. chemotaxis and variable D."""

import jax.numpy as jnp
import numpy as np
import pytest

import tmepde as tp


def _disk(grid, center, radius, value):
    X = grid.coordinates()
    r2 = sum((x - c) ** 2 for x, c in zip(X, center))
    return np.where(r2 <= radius**2, value, 0.0)


@pytest.mark.parametrize("scheme,dt", [("sbdf2", 0.25), ("sbdf1", 0.25), ("ssprk3", 0.0005)])
def test_mass_and_positivity_with_chemotaxis_and_variable_diffusivity(scheme, dt):
    grid = tp.Grid((40, 36), 10.0)
    x, y = grid.coordinates()
    # Heterogeneous tissue: a stiff stromal band where diffusion is 20x slower.
    d_map = np.where(np.abs(x - 200) < 50, 0.5, 10.0)
    attractant = np.exp(-((x - 300) ** 2 + (y - 180) ** 2) / (2 * 60.0**2))
    model = tp.Model([
        tp.Species("cells", diffusivity=0.02,
                   chemotaxis=tp.Chemotaxis("chem", sensitivity=2.0, capacity=1.0)),
        tp.Species("chem", diffusivity=0.0),
        tp.Species("solute", diffusivity=d_map),
    ])
    y0 = {"cells": _disk(grid, (100, 180), 60, 0.8), "chem": attractant,
          "solute": _disk(grid, (200, 100), 50, 3.0)}
    t_end = 6.0 if scheme != "ssprk3" else 0.5
    _, f = tp.simulate(model, grid, y0, t_end=t_end, dt=dt, save_every=t_end / 4, scheme=scheme)
    cells, solute = np.asarray(f["cells"]), np.asarray(f["solute"])
    for name, series in (("cells", cells), ("solute", solute)):
        mass = series.sum(axis=(1, 2))
        np.testing.assert_allclose(mass, mass[0], rtol=1e-12, err_msg=name)
        assert series.min() >= 0.0, (name, series.min())
    # The cells really moved up the gradient (centre of mass shifts toward x = 300 µm) ...
    com = (cells[-1] * x).sum() / cells[-1].sum()
    assert com > 100 + (20 if scheme != "ssprk3" else 1), com
    # ... and volume filling keeps them below capacity.
    assert cells.max() <= 1.0 + 1e-12


def test_dirichlet_face_flux_balances_mass_change():
    """With a Dirichlet face the mass changes only by the boundary flux D (g - u_0) / (h/2)."""
    grid = tp.Grid((50,), 4.0)
    D = 1.0
    model = tp.Model([tp.Species("u", diffusivity=D, boundary={"x_lo": ("dirichlet", 2.0)})])
    dt = 0.01
    _, f = tp.simulate(model, grid, {"u": 0.5}, t_end=0.02, dt=dt, save_every=dt, scheme="sbdf1")
    u = np.asarray(f["u"])
    # IMEX Euler is implicit: mass change over a step = dt × flux at the new state.
    flux = D * 3600 * (2.0 - u[1:, 0]) / (grid.spacing[0] / 2)  # into the domain, per µm² face
    dmass = (u[1:] - u[:-1]).sum(axis=1) * grid.spacing[0]
    np.testing.assert_allclose(dmass, dt * flux, rtol=1e-11)


def test_local_decay_uptake_matches_pointwise_exponential():
    """Uniform state, implicit local uptake k(y) = q·cells: u' = -q c u, with c constant."""
    grid = tp.Grid((8, 8), 10.0)

    def uptake(t, y, p):
        return {"u": p["q"] * y["cells"]}

    model = tp.Model([tp.Species("u", diffusivity=50.0), tp.Species("cells", diffusivity=0.0)],
                     params={"q": 3.0}, local_decay=uptake)
    dts = [0.1, 0.05]
    errs = []
    for dt in dts:
        _, f = tp.simulate(model, grid, {"u": 1.0, "cells": 0.5}, t_end=1.0, dt=dt, save_every=1.0)
        errs.append(abs(float(f["u"][-1, 3, 3]) - np.exp(-1.5)))
    assert errs[1] < 1e-3 and 3.5 < errs[0] / errs[1] < 4.5, errs  # second order in dt
