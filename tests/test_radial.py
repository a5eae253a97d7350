"""Spherically symmetric grids: analytic 3D solutions, conservation, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tmepde as tp

H = 3600.0


def _slope(xs, errs):
    return np.polyfit(np.log(xs), np.log(errs), 1)[0]


def test_steady_state_sphere_with_dirichlet_surface_is_second_order():
    """u'' + 2u'/r = u/λ², u(R) = 1: u = R sinh(r/λ) / (r sinh(R/λ))."""
    D, k, R = 10.0, 10.0, 300.0
    lam = np.sqrt(D * H / k)
    errs, sizes = [], [16, 32, 64]
    for n in sizes:
        grid = tp.Grid((n,), R / n, geometry="spherical")
        model = tp.Model([tp.Species("u", diffusivity=D, decay=k, boundary={"x_hi": ("dirichlet", 1.0)})])
        _, f = tp.simulate(model, grid, {"u": 0.0}, t_end=20.0, dt=1.0, save_every=20.0)
        r = grid.axis_centers(0)
        exact = R * np.sinh(r / lam) / (r * np.sinh(R / lam))
        errs.append(np.abs(np.asarray(f["u"][-1]) - exact).max())
    assert abs(_slope([R / n for n in sizes], errs) - 2) < 0.2, errs


def test_radial_gaussian_matches_3d_free_space_solution():
    D, k, sigma0, R, t = 0.5, 0.1, 40.0, 600.0, 1.0
    s2 = sigma0**2 + 2 * D * H * t
    errs, sizes = [], [30, 60, 120]
    for n in sizes:
        grid = tp.Grid((n,), R / n, geometry="spherical")
        r = grid.axis_centers(0)
        model = tp.Model([tp.Species("u", diffusivity=D, decay=k)])
        _, f = tp.simulate(model, grid, {"u": np.exp(-r**2 / (2 * sigma0**2))}, t_end=t, dt=0.01, save_every=t)
        exact = (sigma0**2 / s2) ** 1.5 * np.exp(-r**2 / (2 * s2) - k * t)
        errs.append(np.abs(np.asarray(f["u"][-1]) - exact).max())
    assert abs(_slope([R / n for n in sizes], errs) - 2) < 0.25, errs


def test_radial_mass_conserved_with_chemotaxis_and_variable_d():
    grid = tp.Grid((40,), 10.0, geometry="spherical")
    r = grid.axis_centers(0)
    model = tp.Model([
        tp.Species("cells", diffusivity=0.05, chemotaxis=tp.Chemotaxis("chem", 2.0, capacity=1.0)),
        tp.Species("chem", diffusivity=0.0),
        tp.Species("drug", diffusivity=np.where(r < 150, 1.0, 20.0)),
    ])
    y0 = {"cells": np.where(r > 250, 0.6, 0.0), "chem": np.exp(-r**2 / (2 * 150.0**2)),
          "drug": np.where(r < 100, 2.0, 0.0)}
    _, f = tp.simulate(model, grid, y0, t_end=4.0, dt=0.2, save_every=1.0)
    vol = grid.cell_volumes()
    for name in ("cells", "drug"):
        series = np.asarray(f[name])
        mass = series @ vol
        np.testing.assert_allclose(mass, mass[0], rtol=1e-12, err_msg=name)
        assert series.min() >= 0
    cells = np.asarray(f["cells"])
    assert (cells[-1] * vol * r).sum() / (cells[-1] @ vol) < (cells[0] * vol * r).sum() / (cells[0] @ vol) - 10


def test_radial_gradient_matches_finite_difference():
    grid = tp.Grid((24,), 20.0, geometry="spherical")
    r = grid.axis_centers(0)
    model = tp.Model([tp.Species("tumor", diffusivity=0.02, boundary="neumann")],
                     lambda t, y, p: {"tumor": p["growth"] * y["tumor"] * (1 - y["tumor"])}, {"growth": 0.05})
    sim = tp.Simulator(model, grid, dt=2.0, save_every=24.0)
    y0 = model.stack({"tumor": np.where(r < 100, 0.8, 0.0)}, grid)
    vol = jnp.asarray(grid.cell_volumes())

    def volume_mm3(p):
        return jnp.sum(sim.run(p, y0, 5)[-1, 0] * vol) * 1e-9

    p = model.default_params()
    g = jax.grad(volume_mm3)(p)
    for key in ("growth", "D_tumor"):
        h = 1e-4 * float(p[key])
        fd = (volume_mm3(dict(p, **{key: p[key] + h})) - volume_mm3(dict(p, **{key: p[key] - h}))) / (2 * h)
        np.testing.assert_allclose(float(g[key]), float(fd), rtol=1e-5, err_msg=key)


def test_spherical_grid_rejects_dirichlet_centre():
    grid = tp.Grid((8,), 10.0, geometry="spherical")
    model = tp.Model([tp.Species("u", diffusivity=1.0, boundary={"x_lo": ("dirichlet", 1.0)})])
    with pytest.raises(ValueError, match="x_lo is the centre"):
        tp.Simulator(model, grid, dt=1.0)


def test_spherical_config_runs_through_cli_and_totals_use_shell_volumes(tmp_path):
    from tmepde.cli import main
    from tmepde.io import open_result

    cfg = tmp_path / "sphere.toml"
    cfg.write_text("""
[grid]
shape = [30]
spacing = 10.0
geometry = "spherical"
[time]
t_end = 4.0
dt = 0.5
save_every = 2.0
[model]
path = "tmepde.models.examples:fisher_kpp"
[initial.tumor]
type = "disk"
center = [0.0]
radius = 100.0
value = 0.5
[solver]
dtype = "float64"
""")
    out = tmp_path / "sphere.h5"
    assert main(["run", str(cfg), "-o", str(out), "--no-progress"]) == 0
    with open_result(out) as r:
        grid = r.grid
        assert grid.geometry == "spherical"
        tumor = r.series("tumor")
        np.testing.assert_allclose(r.observables["total_tumor"], tumor @ grid.cell_volumes(), rtol=1e-12)
        # Initial burden: a ball of radius 100 µm at density 0.5 (shells whose centre is inside).
        assert r.observables["total_tumor"][0] == pytest.approx(0.5 * 4 / 3 * np.pi * 100.0**3, rel=1e-12)
