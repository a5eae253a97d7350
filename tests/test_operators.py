"""Stencils against polynomials and dense matrices; transform solves against dense solves."""

import itertools

import jax.numpy as jnp
import numpy as np
import scipy.fft
import pytest

from tmepde import Grid, resolve_boundaries
from tmepde import operators
from tmepde.transforms import LaplacianTransform

from reference import dense_laplacian, dense_variable_diffusion_1d

KINDS = [("neumann", "neumann"), ("dirichlet", "dirichlet"), ("neumann", "dirichlet"),
         ("dirichlet", "neumann"), ("periodic", "periodic")]


def _bcs(kinds, values=None):
    spec = {}
    for a, (lo, hi) in zip("xyz", kinds):
        vlo, vhi = (values or {}).get(a, (0.0, 0.0))
        spec[f"{a}_lo"] = (lo, vlo)
        spec[f"{a}_hi"] = (hi, vhi)
    return spec


@pytest.mark.parametrize("shape,spacing", [((9,), (0.7,)), ((7, 8), (1.0, 2.5)), ((5, 6, 7), (1.0, 0.5, 2.0))])
def test_laplacian_exact_on_quadratics(shape, spacing):
    grid = Grid(shape, spacing)
    X = grid.coordinates()
    coeffs = [1.3, -0.4, 2.2][: grid.ndim]
    u = sum(c * x**2 for c, x in zip(coeffs, X)) + 0.5 * X[0]
    lap = np.asarray(operators.laplacian(jnp.asarray(u)[None], grid, resolve_boundaries("neumann", grid.ndim))[0])
    interior = tuple(slice(1, -1) for _ in shape)
    np.testing.assert_allclose(lap[interior], 2 * sum(coeffs), rtol=1e-12)


def test_dirichlet_ghost_exact_for_linear_profiles():
    # u = a + b x takes the face values exactly, so the Laplacian vanishes in every cell.
    grid = Grid((11, 4), (2.0, 1.0))
    x, _ = grid.coordinates()
    a, b = 0.3, 0.05
    L = grid.extent[0]
    bcs = resolve_boundaries({"x_lo": ("dirichlet", a), "x_hi": ("dirichlet", a + b * L)}, 2)
    lap = operators.laplacian(jnp.asarray(a + b * x)[None], grid, bcs)
    np.testing.assert_allclose(np.asarray(lap), 0.0, atol=1e-14)


@pytest.mark.parametrize("kinds", list(itertools.product(KINDS, KINDS)))
def test_laplacian_matches_dense_matrix_and_lift(kinds):
    grid = Grid((6, 7), (1.5, 0.8))
    rng = np.random.default_rng(0)
    u = rng.random(grid.shape)
    values = {"x": (0.7, -0.2), "y": (1.1, 0.4)}
    bcs = resolve_boundaries(_bcs(kinds, values), 2)
    A = dense_laplacian(grid.shape, grid.spacing, kinds)
    lap_h = np.asarray(operators.laplacian(jnp.asarray(u)[None], grid, bcs, homogeneous=True)[0])
    np.testing.assert_allclose(lap_h.ravel(), A @ u.ravel(), rtol=1e-12, atol=1e-12)
    lap = np.asarray(operators.laplacian(jnp.asarray(u)[None], grid, bcs)[0])
    np.testing.assert_allclose(lap, lap_h + operators.dirichlet_lift(grid, bcs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kinds", list(itertools.product(KINDS, KINDS)))
def test_transform_solve_equals_dense_solve(kinds):
    grid = Grid((7, 8), (2.0, 1.0))
    bcs = resolve_boundaries(_bcs(kinds), 2)
    T = LaplacianTransform(grid, bcs)
    A = dense_laplacian(grid.shape, grid.spacing, kinds)
    rng = np.random.default_rng(1)
    r = rng.random((2,) + grid.shape)
    gamma_d = np.array([0.3, 5.0]).reshape(2, 1, 1)
    k = np.array([0.0, 0.2]).reshape(2, 1, 1)
    u = np.asarray(T.apply_multiplier(jnp.asarray(r), 1 / (1 + gamma_d * T.eigenvalues + k)))
    for s in range(2):
        M = (1 + k[s, 0, 0]) * np.eye(grid.size) - gamma_d[s, 0, 0] * A
        np.testing.assert_allclose(u[s].ravel(), np.linalg.solve(M, r[s].ravel()), rtol=1e-11, atol=1e-12)


def test_transform_eigenvalues_3d_periodic_mixed():
    grid = Grid((4, 5, 6), (1.0, 2.0, 0.5))
    kinds = [("periodic", "periodic"), ("dirichlet", "neumann"), ("periodic", "periodic")]
    T = LaplacianTransform(grid, resolve_boundaries(_bcs(kinds), 3))
    A = dense_laplacian(grid.shape, grid.spacing, kinds)
    r = np.random.default_rng(2).random(grid.shape)
    u = np.asarray(T.apply_multiplier(jnp.asarray(r), 1 / (1 + 0.7 * T.eigenvalues)))
    np.testing.assert_allclose(u.ravel(), np.linalg.solve(np.eye(grid.size) - 0.7 * A, r.ravel()), rtol=1e-11)


@pytest.mark.parametrize("shape", [(6, 7), (5, 6, 7), (4, 8, 9)])
def test_zero_flux_transform_is_scipy_dct_and_solves_exactly(shape):
    """All faces zero-flux: the trailing two axes share one rfft2 (2D Makhoul). Coefficients
    equal SciPy's DCT-II (scaled by 2^-d), and the solve equals the dense solve, odd sizes too."""
    grid = Grid(shape, 1.5)
    kinds = [("neumann", "neumann")] * len(shape)
    T = LaplacianTransform(grid, resolve_boundaries(_bcs(kinds), len(shape)))
    r = np.random.default_rng(3).random((2,) + shape)
    axes = tuple(range(1, len(shape) + 1))
    coeffs = np.asarray(T.forward(jnp.asarray(r)))
    np.testing.assert_allclose(coeffs, scipy.fft.dctn(r, type=2, axes=axes) / 2 ** len(shape), rtol=1e-12, atol=1e-12)
    u = np.asarray(T.apply_multiplier(jnp.asarray(r), 1 / (1 + 0.7 * T.eigenvalues)))
    A = dense_laplacian(grid.shape, grid.spacing, kinds)
    np.testing.assert_allclose(u[1].ravel(), np.linalg.solve(np.eye(grid.size) - 0.7 * A, r[1].ravel()), rtol=1e-11)


@pytest.mark.parametrize("lead", KINDS[:4])
def test_fused_zero_flux_pair_equals_separate_transforms_and_dense_solve(lead):
    """``apply_multiplier`` on two zero-flux trailing axes applies the multiplier in the rfft2
    half spectrum (no cosine coefficients formed). With a leading axis of any real kind and a
    multiplier that varies per species, it must equal inverse(m · forward(u)), and with the
    solve's multiplier the dense solve; odd and even sizes."""
    grid = Grid((5, 6, 7), (1.0, 0.5, 2.0))
    kinds = [lead, ("neumann", "neumann"), ("neumann", "neumann")]
    T = LaplacianTransform(grid, resolve_boundaries(_bcs(kinds), 3))
    rng = np.random.default_rng(4)
    r = jnp.asarray(rng.random((2,) + grid.shape))
    m = jnp.asarray(rng.random((2,) + T.eigenvalues.shape) + 0.1)
    separate = np.asarray(T.inverse(T.forward(r) * m, r.dtype))
    np.testing.assert_allclose(np.asarray(T.apply_multiplier(r, m)), separate, rtol=1e-12, atol=1e-13)
    u = np.asarray(T.apply_multiplier(r, 1 / (1 + 0.7 * T.eigenvalues)))
    A = dense_laplacian(grid.shape, grid.spacing, kinds)
    np.testing.assert_allclose(u[0].ravel(), np.linalg.solve(np.eye(grid.size) - 0.7 * A, np.asarray(r[0]).ravel()),
                               rtol=1e-11)


@pytest.mark.parametrize("lo,hi", KINDS)
def test_variable_diffusion_matches_dense(lo, hi):
    grid = Grid((9,), 1.5)
    rng = np.random.default_rng(3)
    d = 0.5 + rng.random(9)
    u = rng.random(9)
    bcs = resolve_boundaries({"x_lo": lo, "x_hi": hi}, 1)
    out = operators.variable_diffusion(jnp.asarray(u)[None], jnp.asarray(d)[None], grid, bcs, homogeneous=True)
    A = dense_variable_diffusion_1d(d, 1.5, lo, hi)
    # Dirichlet faces take D extrapolated to the face, (3 d_0 - d_1)/2 within [d_0/2, 3 d_0/2].
    for i, j, bc in ((0, 1, lo), (-1, -2, hi)):
        if bc == "dirichlet":
            face = np.clip(1.5 * d[i] - 0.5 * d[j], 0.5 * d[i], 1.5 * d[i])
            A[i, i] += 2 * (d[i] - face) / 1.5**2
    np.testing.assert_allclose(np.asarray(out[0]), A @ u, rtol=1e-12)
    # Symmetric (so CG applies) and, for constant D, equal to D times the Laplacian.
    np.testing.assert_allclose(A, A.T, rtol=1e-12)
    const = operators.variable_diffusion(jnp.asarray(u)[None], jnp.full((1, 9), 2.0), grid, bcs)
    lap = operators.laplacian(jnp.asarray(u)[None], grid, bcs)
    np.testing.assert_allclose(np.asarray(const), 2.0 * np.asarray(lap), rtol=1e-12)


def test_chemotaxis_flux_conservative_and_upwind():
    grid = Grid((10, 12), (1.0, 2.0))
    rng = np.random.default_rng(4)
    u = jnp.asarray(rng.random((1,) + grid.shape))
    c = jnp.asarray(rng.random((1,) + grid.shape))
    bcs = resolve_boundaries("neumann", 2)
    div = operators.chemotaxis_divergence(u, c, 3.0, grid, bcs)
    assert abs(float(jnp.sum(div))) < 1e-12 * float(jnp.sum(jnp.abs(div)))
    # 1D check of the upwind flux against a hand computation at one interior face.
    g1 = Grid((3,), 2.0)
    u1 = jnp.asarray([[1.0, 2.0, 4.0]])
    c1 = jnp.asarray([[0.0, 1.0, 0.5]])
    out = np.asarray(operators.chemotaxis_divergence(u1, c1, 0.5, g1, resolve_boundaries("neumann", 1))[0])
    f01 = 0.5 * (1.0 - 0.0) / 2.0 * 1.0  # velocity > 0: donor is cell 0
    f12 = 0.5 * (0.5 - 1.0) / 2.0 * 4.0  # velocity < 0: donor is cell 2
    np.testing.assert_allclose(out, [-f01 / 2.0, (f01 - f12) / 2.0, f12 / 2.0], rtol=1e-14)


def test_balanced_preconditioner_solves_exactly_in_fewer_cg_iterations():
    """CG for ``(I - γ(D∇² - k(x))) u = b`` with an IFN-γ-like uptake: D 16.5 µm²/s, γ 1/3 h,
    20 µm cells, k 3 /h outside and 53 /h inside a tumor disk of radius 300 µm. The balanced
    scaled spectral preconditioner must give the dense solve's answer and take fewer
    iterations than the spectral solve at the mean coefficient (the ablation: w = 1;
    measured 18 against 25)."""
    import jax

    from tmepde.discretization import _balanced_preconditioner, _pcg, _scaled_spectral

    grid = Grid((48, 48), (20.0, 20.0))
    kinds = [("neumann", "neumann")] * 2
    bcs = resolve_boundaries(_bcs(kinds), 2)
    T = LaplacianTransform(grid, bcs)
    x, y = grid.coordinates()
    k = 3.0 + 50.0 / (1 + np.exp((np.hypot(x - 480, y - 480) - 300) / 20.0))
    gamma, D = 1 / 3, 16.5 * 3600
    b = np.random.default_rng(7).random(grid.shape)
    A = np.eye(grid.size) - gamma * (D * dense_laplacian(grid.shape, grid.spacing, kinds) - np.diag(k.ravel()))
    exact = np.linalg.solve(A, b.ravel()).reshape(grid.shape)

    def matvec(u):
        return u - gamma * (D * operators.laplacian(u, grid, bcs, homogeneous=True) - k[None] * u)

    eig = jnp.asarray(T.eigenvalues)
    balanced = _balanced_preconditioner(gamma, jnp.full((1, 1, 1), D), jnp.asarray(k)[None], eig)
    mean_only = (1 / (1 + gamma * (D * eig + k.mean())), jnp.ones((1,) + grid.shape))
    its = {}
    for name, m in (("balanced", balanced), ("mean", mean_only)):
        u, it = jax.jit(lambda b_: _pcg(matvec, b_, jnp.zeros_like(b_), _scaled_spectral(T, m), 1e-10, 200))(
            jnp.asarray(b)[None])
        np.testing.assert_allclose(np.asarray(u[0]), exact, rtol=1e-8, atol=1e-9 * np.abs(exact).max())
        its[name] = int(it)
    assert its["balanced"] <= 0.8 * its["mean"], its


@pytest.mark.parametrize("kinds", [KINDS[0], KINDS[1]])
def test_stencil_chebyshev_solve_equals_dense_and_transform_solve(kinds):
    """Slowly diffusing species (κ = 1 + dt D Σ 4/h² ≤ 3 at the default D) are solved by a
    fixed number of Chebyshev steps on the stencil: the answer must be the dense solve's to
    float64 round-off, for zero-flux and Dirichlet faces (with the lift); a D that
    pushes κ past the bound must fall back to the transform solve (also exact); and the
    gradient w.r.t. D and k must equal the transform solve's."""
    import jax

    import tmepde as tp
    from tmepde.discretization import Discretization

    grid = Grid((12, 10), (10.0, 8.0))
    values = {"x": (0.3, 0.1), "y": (0.2, 0.4)} if kinds[0] == "dirichlet" else None
    bcs_spec = _bcs([kinds, kinds], values)
    model = tp.Model([tp.Species("a", diffusivity=0.005, boundary=bcs_spec),
                      tp.Species("b", diffusivity=0.008, boundary=bcs_spec)])
    disc = Discretization(model, grid, stencil_dt=0.5)
    plain = Discretization(model, grid)
    # κ at the default D and γ = 0.5 h: 1.92 and 2.48, Chebyshev steps sized for 2 and 3
    assert [(g.kind, g.kappa) for g in disc.groups] == [("stencil", 2.0), ("stencil", 3.0)]
    assert [g.kind for g in plain.groups] == ["spectral"]
    rng = np.random.default_rng(5)
    rhs = jnp.asarray(rng.random((2,) + grid.shape))
    A = dense_laplacian(grid.shape, grid.spacing, [kinds, kinds])
    for scale in (1.0, 30.0):  # κ 1.5-1.8, then 16-24: the transform fallback
        params = {"D_a": 0.005 * scale, "D_b": 0.008 * scale, "decay_a": 0.3, "decay_b": 0.0}
        gamma = 1 / 3
        u = np.asarray(jax.jit(lambda r, p: disc.implicit_solve(r, gamma, p))(rhs, params))
        ref = np.asarray(jax.jit(lambda r, p: plain.implicit_solve(r, gamma, p))(rhs, params))
        for i, (d, k) in enumerate(((0.005, 0.3), (0.008, 0.0))):
            D = d * scale * 3600
            lift = np.asarray(operators.dirichlet_lift(grid, resolve_boundaries(bcs_spec, 2)))
            dense = np.linalg.solve((1 + gamma * k) * np.eye(grid.size) - gamma * D * A,
                                    (np.asarray(rhs[i]) + gamma * D * lift).ravel())
            np.testing.assert_allclose(u[i].ravel(), dense, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(u, ref, rtol=1e-13, atol=1e-13)

    def loss(d, p):
        params = {"D_a": d, "D_b": 0.008, "decay_a": p, "decay_b": 0.1}
        return jnp.sum(d_.implicit_solve(rhs, 1 / 3, params) ** 2)

    grads = []
    for d_ in (disc, plain):
        grads.append(np.asarray(jax.jit(jax.grad(loss, argnums=(0, 1)))(0.005, 0.3)))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10)
