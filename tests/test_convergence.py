"""Observed orders of accuracy against analytic and independent reference solutions."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import tmepde as tp
from tmepde.transforms import LaplacianTransform

from reference import dense_laplacian_1d

H = 3600.0  # s per h: diffusivities are in µm²/s, time in h


def _slope(xs, errs):
    return np.polyfit(np.log(xs), np.log(errs), 1)[0]


def _gaussian(grid, t, D, k, sigma0, center):
    """Exact free-space solution of u_t = D∇²u - k u from a Gaussian of width sigma0 (µm)."""
    s2 = sigma0**2 + 2 * D * H * t
    r2 = sum((x - c) ** 2 for x, c in zip(grid.coordinates(), center))
    return (sigma0**2 / s2) ** (grid.ndim / 2) * np.exp(-r2 / (2 * s2) - k * t)


def _semi_discrete_exact(grid, u0, t, D, k):
    """Exact-in-time solution of the semi-discrete (periodic) problem via its eigenbasis."""
    T = LaplacianTransform(grid, tp.resolve_boundaries("periodic", grid.ndim))
    return np.asarray(T.apply_multiplier(jnp.asarray(u0)[None], np.exp(-t * (D * H * T.eigenvalues + k)))[0])


@pytest.mark.parametrize("ndim,ns", [(1, [40, 80, 160]), (2, [40, 80, 160]), (3, [32, 64, 128])])
def test_spatial_order_two_decaying_gaussian(ndim, ns):
    # Domain wide enough (7.5 final widths from the centre) that periodic images are < 1e-12.
    D, k, sigma0, L, t = 0.2, 0.2, 30.0, 600.0, 0.5
    errs = []
    for n in ns:
        grid = tp.Grid((n,) * ndim, L / n)
        center = (L / 2,) * ndim
        u_h = _semi_discrete_exact(grid, _gaussian(grid, 0, D, k, sigma0, center), t, D, k)
        errs.append(np.abs(u_h - _gaussian(grid, t, D, k, sigma0, center)).max())
    slope = _slope([L / n for n in ns], errs)
    assert abs(slope - 2) < 0.15, (slope, errs)


def _sbdf2_gaussian_error(dt, scheme="sbdf2", ndim=2, n=48):
    D, k, sigma0, L, t_end = 2.0, 0.2, 40.0, 480.0, 0.8
    grid = tp.Grid((n,) * ndim, L / n)
    model = tp.Model([tp.Species("u", diffusivity=D, decay=k, boundary="periodic")])
    u0 = _gaussian(grid, 0, D, k, sigma0, (L / 2,) * ndim)
    _, f = tp.simulate(model, grid, {"u": u0}, t_end=t_end, dt=dt, save_every=t_end, scheme=scheme)
    return np.abs(np.asarray(f["u"][-1]) - _semi_discrete_exact(grid, u0, t_end, D, k)).max()


def test_temporal_order_sbdf2_diffusion_decay():
    dts = [0.1, 0.05, 0.025, 0.0125]
    errs = [_sbdf2_gaussian_error(dt) for dt in dts]
    # The first (IMEX Euler) step makes the coarsest pair look better than order 2.
    assert abs(_slope(dts[1:], errs[1:]) - 2) < 0.2, errs


def _logistic_problem():
    n, h, D, decay, r = 24, 5.0, 1.0, 0.3, 0.8
    grid = tp.Grid((n,), h)
    x = grid.axis_centers(0)
    u0 = 0.2 + 0.7 * np.exp(-((x - 40.0) / 15.0) ** 2)

    def reactions(t, y, p):
        u = y["u"]
        return {"u": p["r"] * u * (1 - u) + 0.1 * jnp.sin(t)}

    model = tp.Model([tp.Species("u", diffusivity=D, decay=decay)], reactions, {"r": r})
    A = D * H * dense_laplacian_1d(n, h, "neumann", "neumann") - decay * np.eye(n)

    def rhs(t, u):
        return A @ u + r * u * (1 - u) + 0.1 * np.sin(t)

    return grid, model, u0, rhs


@pytest.mark.parametrize("scheme,dts,order", [
    ("sbdf2", [0.1, 0.05, 0.025, 0.0125], 2),
    ("sbdf3", [0.025, 0.0125, 0.00625], 3),
    ("sbdf4", [0.0125, 0.00625, 0.003125], 4),
    ("sbdf1", [0.1, 0.05, 0.025], 1),
    ("rk4", [0.0025, 0.002, 0.00125], 4),
])
def test_temporal_order_nonlinear_against_scipy_radau(scheme, dts, order):
    # Stiff: D/h² ≈ 144 /h, far above 1/dt for the implicit schemes.
    grid, model, u0, rhs = _logistic_problem()
    t_end = 0.4
    ref = solve_ivp(rhs, (0, t_end), u0, method="Radau", rtol=1e-12, atol=1e-14).y[:, -1]
    errs = []
    for dt in dts:
        _, f = tp.simulate(model, grid, {"u": u0}, t_end=t_end, dt=dt, save_every=t_end / 2, scheme=scheme)
        errs.append(np.abs(np.asarray(f["u"][-1]) - ref).max())
    slope = _slope(dts, errs)
    assert abs(slope - order) < 0.25, (slope, errs)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_steady_state_dirichlet_decay_order_two(ndim):
    """u'' = (k/D) u, u(0) = 1, u'(L) = 0: u = cosh((L - x)/λ) / cosh(L/λ), λ = √(D/k).

    A steady state is an exact fixed point of SBDF2, so large steps reach it.
    """
    D, k, L = 10.0, 10.0, 300.0
    lam = np.sqrt(D * H / k)
    errs = []
    sizes = [16, 32, 64]
    for m in sizes:
        shape = (m,) + (3,) * (ndim - 1)
        grid = tp.Grid(shape, (L / m,) + (10.0,) * (ndim - 1))
        model = tp.Model([tp.Species("u", diffusivity=D, decay=k, boundary={"x_lo": ("dirichlet", 1.0)})])
        _, f = tp.simulate(model, grid, {"u": 0.0}, t_end=20.0, dt=1.0, save_every=20.0)
        x = grid.coordinates()[0]
        exact = np.cosh((L - x) / lam) / np.cosh(L / lam)
        errs.append(np.abs(np.asarray(f["u"][-1]) - exact).max())
    slope = _slope([L / m for m in sizes], errs)
    assert abs(slope - 2) < 0.2, (slope, errs)


def test_implicit_100x_explicit_limit_within_one_percent():
    # IFN-γ-like: D = 100 µm²/s on 10 µm voxels; the explicit limit is 0.25 s.
    D, k, sigma0, n, h = 100.0, 0.234, 150.0, 256, 10.0
    grid = tp.Grid((n, n), h)
    explicit_limit = h**2 / (2 * grid.ndim * D * H)  # forward Euler, h
    dt = 100 * explicit_limit
    t_end = 8 * dt
    model = tp.Model([tp.Species("ifng", diffusivity=D, decay=k, boundary="periodic")])
    center = (n * h / 2,) * 2
    _, f = tp.simulate(model, grid, {"ifng": _gaussian(grid, 0, D, k, sigma0, center)},
                       t_end=t_end, dt=dt, save_every=t_end)
    exact = _gaussian(grid, t_end, D, k, sigma0, center)
    rel_l2 = np.linalg.norm(np.asarray(f["ifng"][-1]) - exact) / np.linalg.norm(exact)
    assert rel_l2 < 0.01, rel_l2
    # The same step explicitly is unstable: the scheme really is beyond the limit.
    with pytest.warns(UserWarning, match="stability limit"):
        _, g = tp.simulate(model, grid, {"ifng": _gaussian(grid, 0, D, k, sigma0, center)},
                           t_end=t_end, dt=dt, save_every=t_end, scheme="euler")
    rel_l2_explicit = np.linalg.norm(np.asarray(g["ifng"][-1]) - exact) / np.linalg.norm(exact)
    assert rel_l2_explicit > 0.5, rel_l2_explicit


@pytest.mark.parametrize("scheme,order", [("sbdf2", 2), ("sbdf3", 3)])
def test_sbdf_order_through_an_initial_layer(scheme, order):
    """Stiff cytokine c (D/h² ≈ 400/h, vessel supply P V (1 - c), uptake q n c as local
    decay) started off its balance, feeding slow cells n: the slow field integrates the
    initial layer. Uniform steps from the initial state gave successive orders 1.1-1.4 on
    this kind of problem (scripts/bench_stiff.py --order-study); the graded start must keep
    the scheme's order."""
    n, h, D, P, q = 32, 10.0, 10.0, 20.0, 5.0
    grid = tp.Grid((n,), h)
    x = grid.axis_centers(0)
    V = (np.abs(x - 80.0) < 25.0).astype(float)
    n0 = 0.2 + 0.5 * np.exp(-((x - 200.0) / 60.0) ** 2)

    def reactions(t, y, p):
        c, m = y["c"], y["n"]
        return {"c": p["P"] * p["V"], "n": 0.5 * m * (1 - m) * c / (0.1 + c) - 0.2 * m * 0.1 / (0.1 + c)}

    def local_decay(t, y, p):
        return {"c": p["P"] * p["V"] + p["q"] * y["n"]}

    model = tp.Model([tp.Species("c", diffusivity=D), tp.Species("n", diffusivity=0.0)], reactions,
                     {"P": P, "q": q, "V": V}, local_decay=local_decay)
    A = D * H * dense_laplacian_1d(n, h, "neumann", "neumann")

    def rhs(t, u):
        c, m = u[:n], u[n:]
        dc = A @ c + P * V * (1 - c) - q * m * c
        return np.concatenate([dc, 0.5 * m * (1 - m) * c / (0.1 + c) - 0.02 * m / (0.1 + c)])

    t_end = 2.0
    y0 = {"c": np.full(n, 0.5), "n": n0}
    ref = solve_ivp(rhs, (0, t_end), np.concatenate([y0["c"], n0]), method="Radau",
                    rtol=1e-12, atol=1e-14).y[n:, -1]
    dts = [0.25, 0.125, 0.0625]
    errs = []
    for dt in dts:
        _, f = tp.simulate(model, grid, y0, t_end=t_end, dt=dt, save_every=t_end / 2, scheme=scheme)
        errs.append(np.abs(np.asarray(f["n"][-1]) - ref).max())
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert orders.min() >= order - 0.1, (orders, errs)  # sbdf2 with a uniform start: 1.61, 1.33


def test_uniform_imex_bdf_coefficients_and_sbdf4_float32_warning():
    """Uniform-step coefficients equal the textbook SBDF2/3/4 (Ascher-Ruuth-Wetton 1995):
    γ = 2h/3, 6h/11, 12h/25 and extrapolation weights (-1)^(j+1) C(k, j). SBDF4's weights
    (4, -6, 4, -1) amplify round-off by √69 ≈ 8.3, hence the float32 warning."""
    from math import comb

    from tmepde.stepping import imex_bdf_coefficients

    h = 0.3
    expected_a = {2: [4 / 3, -1 / 3], 3: [18 / 11, -9 / 11, 2 / 11], 4: [48 / 25, -36 / 25, 16 / 25, -3 / 25]}
    for k, g in ((2, 2 / 3), (3, 6 / 11), (4, 12 / 25)):
        gamma, a, b = imex_bdf_coefficients(h * np.arange(-k + 1, 2))
        np.testing.assert_allclose(gamma, g * h, rtol=1e-13)
        np.testing.assert_allclose(a, expected_a[k], rtol=1e-12)
        np.testing.assert_allclose(b, [(-1) ** (j + 1) * comb(k, j) for j in range(1, k + 1)], rtol=1e-12)
    model = tp.Model([tp.Species("u", diffusivity=1.0)])
    with pytest.warns(UserWarning, match="sbdf4.*float32"):
        tp.Simulator(model, tp.Grid((8,), 1.0), dt=0.1, scheme="sbdf4", dtype=jnp.float32)


def test_runge_kutta_tableaux_reach_their_order_on_a_nonautonomous_ode():
    """Every registered explicit scheme's tableau, stepped on y' = cos(t) - y² (scalar, so the
    stage times c_i matter), converges at its stated order against Radau (rtol 1e-13); a
    tableau with wrong weights (ablation: RK4's b = (1, 2, 2, 1)/6 permuted to (1, 1, 2, 2)/6,
    still consistent, Σ b = 1, but Σ b c = 7/12 ≠ 1/2) falls to first order."""
    from fractions import Fraction as F

    from tmepde.stepping import SCHEMES, ButcherTableau, ExplicitRK

    def f(t, y):
        return np.cos(t) - y * y

    t_end, y0 = 2.0, 0.5
    exact = solve_ivp(lambda t, y: f(t, y), (0, t_end), [y0], method="Radau", rtol=1e-13,
                      atol=1e-15).y[0, -1]

    def observed_order(tableau):
        errs, ns = [], [20, 40, 80]
        for n in ns:
            y, dt = y0, t_end / n
            for i in range(n):
                y = tableau.evaluate(f, i * dt, y, dt)
            errs.append(abs(y - exact))
        return -_slope(ns, errs)

    explicit = [s for s in SCHEMES.values() if isinstance(s, ExplicitRK)]
    assert {s.name for s in explicit} == {"rk4", "ssprk3", "euler"}
    for s in explicit:
        assert abs(observed_order(s.tableau) - s.order) < 0.15, s.name
    broken = ButcherTableau(a=[[F(1, 2)], [0, F(1, 2)], [0, 0, 1]], b=[F(1, 6), F(1, 6), F(1, 3), F(1, 3)])
    assert abs(observed_order(broken) - 1) < 0.15


def test_a_scheme_registered_from_a_tableau_runs_at_its_order():
    """Adding a scheme is one register() call: Heun's method (a = [[1]], b = (1/2, 1/2)) runs
    through the Simulator and its error against rk4 on the same grid falls 4x per halving of
    dt (order 2)."""
    from fractions import Fraction as F

    from tmepde.stepping import SCHEMES, ButcherTableau, ExplicitRK, register

    register(ExplicitRK("heun", ButcherTableau(a=[[1]], b=[F(1, 2), F(1, 2)]), order=2))
    try:
        model = tp.Model([tp.Species("u", diffusivity=0.1, decay=0.5)])  # explicit limit ~0.5 h
        grid = tp.Grid((32,), 20.0)
        u0 = {"u": 1 + np.cos(2 * np.pi * grid.axis_centers(0) / 640.0)}
        ref = tp.simulate(model, grid, u0, t_end=1.0, dt=0.01, scheme="rk4", dtype=jnp.float64)[1]["u"]
        errs = []
        for dt in (0.1, 0.05):
            u = tp.simulate(model, grid, u0, t_end=1.0, dt=dt, scheme="heun", dtype=jnp.float64)[1]["u"]
            errs.append(float(np.max(np.abs(np.asarray(u[-1]) - np.asarray(ref[-1])))))
        assert 3.6 < errs[0] / errs[1] < 4.4, errs
    finally:
        SCHEMES.pop("heun", None)


def _map_problem(n, lo, hi):
    """-(D u')' + u = f on [0, 1] with a smooth map D(x) and a u that satisfies zero-flux
    conditions where asked and has a non-zero slope at Dirichlet faces (where the face value
    of D matters). Returns the discrete solution's max-norm error at the cell centres."""
    from tmepde import operators

    h = 1.0 / n
    x = (np.arange(n) + 0.5) * h
    if lo == "periodic":
        w, ph = 2 * np.pi, 0.0
        D, Dp = 1 + 0.5 * np.sin(w * x), 0.5 * w * np.cos(w * x)
    else:
        w, ph = {("neumann", "neumann"): (np.pi, 0.0), ("neumann", "dirichlet"): (np.pi / 2, 0.0),
                 ("dirichlet", "neumann"): (np.pi / 2, np.pi / 2),
                 ("dirichlet", "dirichlet"): (np.pi / 2, 0.4)}[(lo, hi)]
        D, Dp = 1 + 0.5 * np.sin(2 * x + 0.3), np.cos(2 * x + 0.3)
    u = lambda s: np.cos(w * s + ph)  # noqa: E731
    f = Dp * w * np.sin(w * x + ph) + D * w**2 * u(x) + u(x)
    spec = {"x_lo": ("dirichlet", float(u(0.0))) if lo == "dirichlet" else lo,
            "x_hi": ("dirichlet", float(u(1.0))) if hi == "dirichlet" else hi}
    bcs = tp.resolve_boundaries(spec, 1)
    grid, d = tp.Grid((n,), h), jnp.asarray(D)[None]
    A = np.stack([np.asarray(operators.variable_diffusion(jnp.eye(n)[i][None], d, grid, bcs,
                                                          homogeneous=True)[0]) for i in range(n)], 1)
    lift = np.asarray(operators.variable_dirichlet_lift(d, grid, bcs)[0])
    np.testing.assert_allclose(  # the lift is the operator's affine part
        lift, np.asarray(operators.variable_diffusion(jnp.zeros((1, n)), d, grid, bcs)[0]), atol=1e-9)
    return np.abs(np.linalg.solve(np.eye(n) - A, f + lift) - u(x)).max()


@pytest.mark.parametrize("lo,hi", [("dirichlet", "dirichlet"), ("neumann", "dirichlet"),
                                   ("dirichlet", "neumann"), ("neumann", "neumann"), ("periodic", "periodic")])
def test_diffusivity_map_order_two_next_to_every_face(lo, hi):
    ns = [16, 32, 64, 128]
    errs = [_map_problem(n, lo, hi) for n in ns]
    slope = -_slope(ns, errs)
    assert slope > 1.95, (slope, errs)


@pytest.mark.slow  # three CG-solve compilations
def test_diffusivity_map_dirichlet_steady_state_through_the_engine():
    """The same map and Dirichlet faces as a steady state of the engine (source as a
    reaction, CG solve with the lift of the extrapolated face D): second order, and equal
    to the dense operator solve."""
    errs = []
    ns = [16, 32, 64]
    for n in ns:
        h = 1.0 / n
        x = (np.arange(n) + 0.5) * h
        D = 1 + 0.5 * np.sin(2 * x + 0.3)
        w, ph = np.pi / 2, 0.4
        f = np.cos(2 * x + 0.3) * w * np.sin(w * x + ph) + D * w**2 * np.cos(w * x + ph) + np.cos(w * x + ph)
        model = tp.Model([tp.Species("u", diffusivity=D / H, decay=1.0, nonnegative=False,
                                     boundary={"x_lo": ("dirichlet", float(np.cos(ph))),
                                               "x_hi": ("dirichlet", float(np.cos(w + ph)))})],
                         lambda t, y, p: {"u": p["f"]}, {"f": f})
        _, out = tp.simulate(model, tp.Grid((n,), h), {"u": 0.0}, t_end=40.0, dt=2.0, save_every=40.0,
                             dtype=jnp.float64)
        errs.append(np.abs(np.asarray(out["u"][-1]) - np.cos(w * x + ph)).max())
        assert abs(errs[-1] - _map_problem(n, "dirichlet", "dirichlet")) < 1e-9, n
    assert -_slope(ns, errs) > 1.95, errs


def test_short_bolus_run_start_window_no_worse_than_none():
    """A 15-minute run of a Gaussian bolus (one save: the default 1 h window is cut to the
    whole run, all of it graded) against the exact semi-discrete solution: second order in
    dt, and no worse than the same run with no graded start (measured at dt = 1/16, 1/32,
    1/64 h: 1.8e-2, 4.5e-3, 1.1e-3 against 5.1e-2, 1.0e-2, 2.4e-3)."""
    D, sigma0, n, L, t_end = 2.0, 10.0, 128, 640.0, 0.25
    grid = tp.Grid((n,), L / n)
    u0 = _gaussian(grid, 0, D, 0.0, sigma0, (L / 2,))
    exact = _semi_discrete_exact(grid, u0, t_end, D, 0.0)
    model = tp.Model([tp.Species("u", diffusivity=D, boundary="periodic")])
    errs = {}
    for window in (1.0, 0.0):
        errs[window] = []
        for dt in (1 / 16, 1 / 32, 1 / 64):
            sim = tp.Simulator(model, grid, dt=dt, save_every=t_end, start_window=window, dtype=jnp.float64)
            ys = sim.run(model.default_params(jnp.float64), jnp.asarray(u0)[None], 1)
            errs[window].append(np.abs(np.asarray(ys[-1, 0]) - exact).max() / exact.max())
    graded, uniform = np.array(errs[1.0]), np.array(errs[0.0])
    assert np.all(graded <= uniform), (graded, uniform)
    assert np.log2(graded[:-1] / graded[1:]).min() > 1.9, graded
