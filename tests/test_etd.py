"""Exponential time differencing (``etd1``, ``etdrk2``): exactness on the linear part,
observed orders, conservation, the φ-functions near 0, and derivatives."""

import decimal
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tmepde as tp
from tmepde.stepping.etd import PHI_SERIES_RADIUS, phi_functions
from tmepde.transforms import LaplacianTransform

H = 3600.0  # s per h: diffusivities are in µm²/s, time in h


def _slope(xs, errs):
    return np.polyfit(np.log(xs), np.log(errs), 1)[0]


def _final(model, grid, y0, t_end, dt, scheme, params=None):
    sim = tp.Simulator(model, grid, dt=dt, save_every=t_end, scheme=scheme)
    p = model.default_params(sim.dtype) if params is None else params
    return np.asarray(sim.run(p, model.stack(y0, grid, sim.dtype), 1)[-1])


# -- linear diffusion + decay: exact in time ------------------------------------------------
@pytest.mark.parametrize("scheme,bc", [("etd1", "neumann"), ("etdrk2", "dirichlet")])
def test_exact_on_linear_diffusion_decay(scheme, bc):
    # u' = D∇²u - k u with zero flux, or with u = 2 on every face (the Dirichlet lift is a
    # constant source): exact solution u* + T⁻¹ e^{-t(Dμ + k)} T (u0 - u*) in the transform's
    # eigenbasis, u* the discrete steady state. A step of 0.5 h is ~700 explicit limits.
    n, h, D, k, t_end = 12, 8.0, 2.0, 0.4, 2.0
    grid = tp.Grid((n, n), h)
    spec = "neumann" if bc == "neumann" else 2.0
    model = tp.Model([tp.Species("u", diffusivity=D, decay=k, boundary=spec)])
    bcs = tp.resolve_boundaries(spec, 2)
    T = LaplacianTransform(grid, bcs)
    u0 = np.random.default_rng(1).random((n, n))
    if bc == "neumann":
        u_star = np.zeros((n, n))
    else:  # D H (∇²_0 u* + lift) - k u* = 0
        lift = tp.operators.dirichlet_lift(grid, bcs)
        u_star = np.asarray(T.apply_multiplier(jnp.asarray(D * H * lift)[None],
                                               1 / (D * H * T.eigenvalues + k))[0])
    exact = u_star + np.asarray(T.apply_multiplier(jnp.asarray(u0 - u_star)[None],
                                                   np.exp(-t_end * (D * H * T.eigenvalues + k)))[0])
    scale = np.abs(exact).max()
    for dt in (t_end, t_end / 16):  # one step and many
        err = np.abs(_final(model, grid, {"u": u0}, t_end, dt, scheme)[0] - exact).max() / scale
        assert err <= 1e-12, (dt, err)
    if scheme == "etd1":  # ablation: IMEX Euler at the same 16 steps is O(dt) off
        err_sbdf1 = np.abs(_final(model, grid, {"u": u0}, t_end, t_end / 16, "sbdf1")[0] - exact).max() / scale
        assert err_sbdf1 > 1e-4


# -- nonlinear problem: observed orders ------------------------------------------------------
def _nonlinear_problem():
    """Fisher–KPP ``u`` (constant D, decay: spectral) and a nutrient ``w`` taken up at a rate
    that depends on ``u`` (local decay: reference + explicit remainder), zero flux, 1D."""
    n, h = 32, 5.0
    grid = tp.Grid((n,), h)
    x = grid.axis_centers(0)

    def reactions(t, y, p):
        u, w = y["u"], y["w"]
        return {"u": p["r"] * u * (1 - u) * w, "w": 0.3 * (1 + 0.5 * jnp.sin(t))}

    def local_decay(t, y, p):
        return {"w": p["q"] * (0.2 + y["u"] ** 2)}

    model = tp.Model([tp.Species("u", diffusivity=0.5, decay=0.1),
                      tp.Species("w", diffusivity=2.0)], reactions, {"r": 1.5, "q": 2.0},
                     local_decay=local_decay)
    y0 = {"u": 0.05 + 0.9 * np.exp(-((x - 50.0) / 20.0) ** 2), "w": 1.0 + 0.5 * np.cos(x / 30.0)}
    return grid, model, y0


@functools.lru_cache(maxsize=1)
def _nonlinear_reference(t_end=2.0):
    # Independent reference: classical RK4 well inside its explicit limit (1.7e-3 h).
    grid, model, y0 = _nonlinear_problem()
    return _final(model, grid, y0, t_end, 1 / 1024, "rk4")


@pytest.mark.parametrize("scheme,order", [("etd1", 1), ("etdrk2", 2)])
def test_observed_order_on_nonlinear_problem(scheme, order):
    grid, model, y0 = _nonlinear_problem()
    ref = _nonlinear_reference()
    # Ratios of successive errors for etdrk2: 3.2 (0.25 -> 0.125), 3.6, 3.8: asymptotic below 0.1.
    dts = [0.0625, 0.03125, 0.015625]
    errs = [np.abs(_final(model, grid, y0, 2.0, dt, scheme) - ref).max() for dt in dts]
    assert abs(_slope(dts, errs) - order) < 0.15, errs


# -- conservation ----------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["etd1", "etdrk2"])
def test_mass_balance_of_exchange(scheme):
    # u <-> v exchange (linear and nonlinear), zero flux, no decay: Σ(u + v) is invariant;
    # each species' total changes by h Σ f (φ₁(0) = 1, φ₂(0) = 1/2 on the constant mode).
    n = 24
    grid = tp.Grid((n, n), 10.0)

    def reactions(t, y, p):
        u, v = y["u"], y["v"]
        flow = 0.7 * u - 0.2 * v + 0.5 * u * u * v
        return {"u": -flow, "v": flow}

    model = tp.Model([tp.Species("u", diffusivity=3.0), tp.Species("v", diffusivity=0.2)], reactions)
    rng = np.random.default_rng(2)
    y0 = {"u": rng.random((n, n)), "v": rng.random((n, n))}
    total0 = sum(y.sum() for y in y0.values())
    y = _final(model, grid, y0, 4.0, 0.25, scheme)
    assert abs(y.sum() - total0) / total0 < 1e-13
    assert abs(y[0].sum() - y0["u"].sum()) / total0 > 1e-2  # mass did move between species


# -- space-varying decay: the reference decay -------------------------------------------------
def _uptake_norms(scheme, dt=2.0, steps=10):
    """L2 norms after each step of u' = D∇²u - k(x) u, k 0.1/h on the left half and 20.1/h on
    the right (k_max > 2 k_min), signed initial data, no positivity fix-ups."""
    n = 16
    grid = tp.Grid((n,), 10.0)
    k = np.where(np.arange(n) < n // 2, 0.1, 20.1)
    model = tp.Model([tp.Species("u", diffusivity=0.5, nonnegative=False)],
                     local_decay=lambda t, y, p: {"u": jnp.asarray(k)})
    sim = tp.Simulator(model, grid, dt=dt, save_every=dt, scheme=scheme)
    y0 = np.cos(np.arange(n) * 0.7)[None]
    ys = np.asarray(sim.run(model.default_params(sim.dtype), jnp.asarray(y0), steps))
    return np.linalg.norm(ys[:, 0], axis=1), k


def test_midpoint_reference_decay_is_contractive_at_large_steps(monkeypatch):
    # ‖u⁺‖ ≤ (e^{-ah} + (1 - e^{-ah}) r) ‖u‖, a = (k_min + k_max)/2, r = (k_max - k_min)/(k_max + k_min).
    norms, k = _uptake_norms("etd1")
    a, r, h = (k.min() + k.max()) / 2, (k.max() - k.min()) / (k.max() + k.min()), 2.0
    bound = np.exp(-a * h) + (1 - np.exp(-a * h)) * r
    assert np.all(norms[1:] <= bound * norms[:-1] * (1 + 1e-12)), (norms, bound)
    # Ablation: the minimum as reference (remainder up to 200x k_ref) blows up.
    from tmepde.stepping import etd

    monkeypatch.setattr(etd, "reference_decay", lambda k_tot: jnp.min(k_tot, axis=1, keepdims=True))
    norms_min, _ = _uptake_norms("etd1")
    assert norms_min[-1] > 1e6 * norms_min[0]


# -- φ-functions -----------------------------------------------------------------------------
def _phi_mp(z):
    """φ₁, φ₂ in 800-digit decimal arithmetic (the standard library's, exactly rounded exp)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 800  # (e^z - 1 - z)/z² at z = 1e-300 cancels ~600 digits
        z = decimal.Decimal(z)  # exact: every float is a finite decimal
        if z == 0:
            return 1.0, 0.5
        e = z.exp() - 1
        return float(e / z), float((e - z) / (z * z))


@pytest.mark.parametrize("z", [0.0, 1e-300, -1e-12, 1e-9, -1e-6, 3e-4, -1e-3, -0.3,
                               -PHI_SERIES_RADIUS * (1 - 1e-12), -PHI_SERIES_RADIUS, 0.49, -0.7,
                               -1.0, -5.0, -40.0, -1e6])
def test_phi_functions_match_high_precision(z):
    p1, p2 = phi_functions(jnp.asarray(z, jnp.float64))
    e1, e2 = _phi_mp(z)
    assert abs(float(p1) - e1) <= 4e-16 * abs(e1)
    assert abs(float(p2) - e2) <= 6e-16 * abs(e2)


def test_phi_derivatives_finite_at_zero():
    # φ₁'(0) = 1/2, φ₂'(0) = 1/6 (the series' linear coefficients); no 0/0 anywhere.
    d1 = jax.grad(lambda z: phi_functions(z)[0])(0.0)
    d2 = jax.grad(lambda z: phi_functions(z)[1])(0.0)
    assert abs(float(d1) - 0.5) < 1e-15 and abs(float(d2) - 1 / 6) < 1e-15
    d_far = jax.grad(lambda z: phi_functions(z)[0])(-2.0)  # (e^z (z - 1) + 1)/z²
    assert abs(float(d_far) - (np.exp(-2.0) * (-3.0) + 1) / 4) < 1e-15


# -- derivatives -----------------------------------------------------------------------------
def test_gradient_matches_finite_differences():
    grid, model, y0 = _nonlinear_problem()
    sim = tp.Simulator(model, grid, dt=0.25, save_every=1.0, scheme="etdrk2")
    y0s = model.stack(y0, grid, sim.dtype)
    base = model.default_params(sim.dtype)
    weights = jnp.linspace(0.5, 1.5, grid.shape[0])

    def loss(r, q, d):
        p = dict(base, r=r, q=q, D_w=d)
        ys = sim.run(p, y0s, 1)
        return jnp.sum(weights * ys[-1, 0]) + jnp.sum(ys[-1, 1] ** 2)

    x = (1.5, 2.0, 2.0)
    g = jax.grad(loss, argnums=(0, 1, 2))(*x)
    for i, gi in enumerate(g):
        eps = 1e-5 * x[i]
        up = list(x); up[i] += eps
        dn = list(x); dn[i] -= eps
        fd = (float(loss(*up)) - float(loss(*dn))) / (2 * eps)
        assert abs(float(gi) - fd) <= 1e-6 * abs(fd), (i, float(gi), fd)
        assert abs(fd) > 1e-3  # the parameter matters


# -- unsupported cases -------------------------------------------------------------------------
def test_diffusivity_map_is_refused_in_one_line():
    grid = tp.Grid((8, 8), 10.0)
    model = tp.Model([tp.Species("u", diffusivity=np.full((8, 8), 1.0))])
    sim = tp.Simulator(model, grid, dt=0.1, scheme="etd1")
    with pytest.raises(ValueError, match=r"does not support diffusivity maps \(species \['u'\]\); use scheme"):
        sim.run(model.default_params(sim.dtype), jnp.ones((1, 8, 8)), 1)


def test_spherical_grid_is_refused_in_one_line():
    grid = tp.Grid((8,), 10.0, geometry="spherical")
    model = tp.Model([tp.Species("u", diffusivity=1.0)])
    sim = tp.Simulator(model, grid, dt=0.1, scheme="etdrk2")
    with pytest.raises(ValueError, match="does not support spherical grids; use scheme"):
        sim.run(model.default_params(sim.dtype), jnp.ones((1, 8)), 1)
