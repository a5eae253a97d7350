"""Fitting synthetic data made with known parameters recovers them within their reported
uncertainty, and unidentifiable parameters are reported as such."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

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


# -- population (mixed-effects) fits ----------------------------------------------------------------
import jax  # noqa: E402
from tmepde.fit import PopulationData, _point_loss, make_population_objective, population_fit  # noqa: E402

TIMES = np.arange(8.0)


def _growth_predict(theta, eta, x):
    """log V = log v0 + η0 + (g + η1) t: exponential growth, random intercept and slope."""
    return theta[0] + eta[0] + (theta[1] + eta[1]) * jnp.asarray(TIMES)


def _simulate(rng, n, theta, omega, sigma, drop_above=None):
    eta = rng.standard_normal((n, 2)) * omega
    mu = np.array([_growth_predict(theta, e, None) for e in eta])
    y = mu + sigma * rng.standard_normal(mu.shape)
    obs = np.ones_like(y)
    cen, cmask = np.zeros_like(y), np.zeros_like(y)
    if drop_above is not None:          # a subject leaves after its first y > drop_above
        for i in range(n):
            big = np.nonzero(y[i] > drop_above)[0]
            if big.size and big[0] + 1 < y.shape[1]:
                j = big[0]
                obs[i, j + 1:] = 0
                cen[i, j + 1], cmask[i, j + 1] = y[i, j], 1.0
    return PopulationData(np.where(obs > 0, y, 0.0), obs, cen, cmask)


def test_censored_point_loss_matches_brute_force_integral():
    mu, sigma, c = 1.3, 0.4, 1.7
    ys = np.linspace(c, mu + 12 * sigma, 200001)
    dens = np.exp(-0.5 * ((ys - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    brute = -np.log(np.trapezoid(dens, ys))
    got = float(_point_loss(jnp.asarray(mu), 0.0, 0.0, c, 1.0, sigma))
    assert abs(got - brute) < 1e-6, (got, brute)


def test_left_censored_point_loss_is_the_normal_cdf_below_the_limit():
    """M3 (Beal 2001): a reading below the limit c contributes −log Φ((c − μ)/σ); Φ here from
    math.erfc, independent of JAX, at a point one and a half σ above and one below the limit."""
    sigma, c = 0.4, 1.7
    for mu in (c + 1.5 * sigma, c - sigma):
        phi = 0.5 * math.erfc(-((c - mu) / sigma) / math.sqrt(2.0))
        got = float(_point_loss(jnp.asarray(mu), 5.0, 0.0, c, -1.0, sigma))   # y ignored
        assert got == pytest.approx(-math.log(phi), rel=1e-12), (mu, got, phi)
    # the same point right-censored is the other tail: the two probabilities add up to 1
    lo = float(_point_loss(jnp.asarray(1.3), 0.0, 0.0, c, -1.0, sigma))
    hi = float(_point_loss(jnp.asarray(1.3), 0.0, 0.0, c, 1.0, sigma))
    assert math.exp(-lo) + math.exp(-hi) == pytest.approx(1.0, abs=1e-14)


def test_left_censoring_recovers_a_decline_that_zeros_as_data_bias():
    """Subjects whose log volume falls below a limit of quantification (read as the limit,
    as a caliper reads 0): the M3 fit recovers the slope within 3 SE; entering the readings as
    observed values at the limit (the ablation) flattens the slope by more than 3 SE."""
    rng = np.random.default_rng(5)
    theta, omega, sigma, loq = np.array([1.0, -0.2]), np.array([0.3, 0.1]), 0.15, 0.0
    full = _simulate(rng, 24, theta, omega, sigma)
    below = full.y < loq
    assert 0.2 < below.mean() < 0.5
    y = np.where(below, loq, full.y)
    m3 = PopulationData(y, np.where(below, 0.0, 1.0), np.where(below, loq, 0.0), np.where(below, -1.0, 0.0))
    naive = PopulationData(y, np.ones_like(y), np.zeros_like(y), np.zeros_like(y))
    kw = dict(theta0=[0.8, -0.1], omega0=[0.3, 0.1], sigma0=0.2, max_steps=60, inner_steps=8)
    fit_m3 = population_fit(_growth_predict, m3, **kw)
    fit_naive = population_fit(_growth_predict, naive, **kw)
    assert abs(fit_m3.theta[1] - theta[1]) < 3 * fit_m3.std_error[1], (fit_m3.theta, fit_m3.std_error)
    assert fit_naive.theta[1] - theta[1] > 3 * fit_naive.std_error[1], (fit_naive.theta, fit_naive.std_error)


def test_mixture_likelihood_is_the_weighted_sum_over_classes():
    """Two classes (class 1: an extra slope δ, e.g. a treatment response), weight π = sigmoid(θ2),
    one random effect: the summed-out Laplace −log L equals −Σ_i log Σ_c π_c ∫ p(y_i|η, c) p(η) dη
    by brute-force quadrature (exact here: linear in η); the class probabilities are the
    normalised terms; a subject whose two classes predict alike keeps the prior π."""
    from tmepde.fit import make_subject_laplace, mixture_membership

    t = jnp.asarray(TIMES)

    def predict(th, e, x, c):
        return th[0] + e[0] + (th[1] + x * c * 0.4) * t    # x: 1 = exposed, 0 = not

    def log_w(th):
        return jnp.stack([jax.nn.log_sigmoid(-th[2]), jax.nn.log_sigmoid(th[2])])

    rng = np.random.default_rng(2)
    x = np.array([1.0, 1.0, 0.0])
    y = np.stack([0.2 + (0.1 + 0.4 * x[0]) * TIMES, 0.1 + 0.1 * TIMES, -0.3 + 0.1 * TIMES])
    y = y + 0.1 * rng.standard_normal(y.shape)
    data = PopulationData(y, np.ones_like(y), np.zeros_like(y), np.zeros_like(y), x)
    theta, omega, sigma = np.array([0.0, 0.1, 0.4]), 0.5, 0.15
    u = jnp.asarray(np.concatenate([theta, [np.log(omega), np.log(sigma)]]))
    obj, _ = make_population_objective(predict, data, 3, 1, inner_steps=4, mixture=log_w)
    got = float(obj(u, jnp.zeros((2, 3, 1)))[0])
    etas = np.linspace(-5, 5, 40001)
    pi = 1 / (1 + np.exp(-theta[2]))
    lik = np.zeros((2, 3))
    for c in range(2):
        for i in range(3):
            mu = theta[0] + etas[:, None] + (theta[1] + x[i] * c * 0.4) * TIMES
            ll = (-0.5 * np.sum((y[i] - mu) ** 2, axis=1) / sigma**2 - 8 * np.log(sigma * np.sqrt(2 * np.pi))
                  - 0.5 * (etas / omega) ** 2 - np.log(omega * np.sqrt(2 * np.pi)))
            lik[c, i] = np.trapezoid(np.exp(ll), etas)
    explicit = -np.sum(np.log((1 - pi) * lik[0] + pi * lik[1]))
    assert got == pytest.approx(explicit, abs=1e-7), (got, explicit)
    L, _ = jax.jit(make_subject_laplace(predict, data, 3, 1, inner_steps=4, mixture=log_w))(
        u, jnp.zeros((2, 3, 1)))
    member = mixture_membership(L, log_w(jnp.asarray(theta)))
    np.testing.assert_allclose(member[:, 1], pi * lik[1] / ((1 - pi) * lik[0] + pi * lik[1]), atol=1e-7)
    assert member[0, 1] > 0.99 and member[1, 1] < 0.01 and member[2, 1] == pytest.approx(pi)


def test_laplace_matches_quadrature_for_one_random_effect():
    """One subject, one random effect: the Laplace −log L against a brute-force integral over η.
    Linear in η: Laplace is exact. Nonlinear (μ = θ exp(η) t): close, as the posterior of η is
    near-Gaussian with 8 points."""
    y = np.log(np.array([1.0, 1.6, 2.2, 3.5, 4.1, 6.0, 7.7, 9.9]))
    data = PopulationData(y[None], np.ones((1, 8)), np.zeros((1, 8)), np.zeros((1, 8)))
    cases = {"linear": (lambda th, e, x: th[0] + e[0] + th[1] * jnp.asarray(TIMES), 1e-8),
             "nonlinear": (lambda th, e, x: jnp.log(th[0] * jnp.exp(e[0]) * (1 + jnp.asarray(TIMES))
                                                    + th[1] * jnp.exp(2 * e[0])), 2e-2)}
    theta, omega, sigma = np.array([0.1, 0.3]), 0.5, 0.2
    for name, (pred, tol) in cases.items():
        obj, _ = make_population_objective(pred, data, 2, 1, hessian="exact", inner_steps=30)
        u = np.concatenate([theta, [np.log(omega), np.log(sigma)]])
        lap = float(obj(jnp.asarray(u), jnp.zeros((1, 1)))[0])
        etas = np.linspace(-4, 4, 40001)
        mu = np.array(jax.vmap(lambda e: pred(theta, e[None], None))(jnp.asarray(etas)))
        loglik = (-0.5 * np.sum((y - mu) ** 2, axis=1) / sigma**2 - 8 * np.log(sigma * np.sqrt(2 * np.pi))
                  - 0.5 * (etas / omega) ** 2 - np.log(omega * np.sqrt(2 * np.pi)))
        m = loglik.max()
        quad = -(m + np.log(np.trapezoid(np.exp(loglik - m), etas)))
        assert abs(lap - quad) < tol, (name, lap, quad)
    # and the nonlinear case is not trivially exact (the check has teeth)
    assert abs(lap - quad) > 1e-6


def test_population_fit_recovers_fixed_effects_and_variances():
    """Simulated cohort (30 subjects, known θ, ω, σ) in which subjects leave after exceeding a
    threshold (their next visit is a right-censored point): θ, log ω and log σ recovered within
    3 SE of the observed information."""
    rng = np.random.default_rng(3)
    theta, omega, sigma = np.array([1.0, 0.35]), np.array([0.3, 0.12]), 0.15
    data = _simulate(rng, 30, theta, omega, sigma, drop_above=3.0)
    assert data.censored.sum() >= 8
    res = population_fit(_growth_predict, data, theta0=[0.5, 0.2], omega0=[0.5, 0.2], sigma0=0.3,
                         max_steps=60, inner_steps=8)
    z = (res.u - np.concatenate([theta, np.log(omega), [np.log(sigma)]])) / res.std_error
    assert np.all(np.abs(z) < 3), (res.u, res.std_error)
    assert np.all(res.std_error < 0.3)  # informative, not a vacuous pass



def test_finite_difference_gradient_of_marginal_likelihood_matches_autodiff():
    """The polish gradient (central differences of −log L, inner modes re-optimised) against
    the analytic gradient where that is exact (linear in η: ½ log det H does not depend on η̂)
    to 1e-5 relative (the central difference's O(h²) error)."""
    from tmepde.fit import _fd_value_grad

    rng = np.random.default_rng(4)
    data = _simulate(rng, 6, np.array([1.0, 0.35]), np.array([0.3, 0.12]), 0.15)
    _, vg = make_population_objective(_growth_predict, data, 2, 2, inner_steps=30)
    u = np.array([0.9, 0.3, np.log(0.25), np.log(0.1), np.log(0.2)])
    (f, eta), g = vg(jnp.asarray(u), jnp.zeros((6, 2)))
    free = np.array([True, True, True, False, True])
    (f2, _), g_fd = _fd_value_grad(vg, free)(u, eta)
    g_fd = np.asarray(g_fd)
    assert float(f2) == pytest.approx(float(f), abs=1e-10)
    assert g_fd[3] == 0.0
    np.testing.assert_allclose(g_fd[free], np.asarray(g)[free], rtol=1e-5, atol=1e-7)   # O(h²), h 1e-3
    assert np.max(np.abs(np.asarray(g)[free])) > 1.0          # away from the optimum: a real gradient

# -- posterior sampling (NUTS) ----------------------------------------------------------------------
def test_nuts_matches_conjugate_linear_gaussian_posterior():
    """Bayesian linear regression with known noise and a Gaussian prior: the posterior is
    N(m, S) with S = (XᵀX/σ² + I/τ²)⁻¹, m = S Xᵀy/σ² (conjugate). NUTS means agree with m
    within 4 Monte-Carlo standard errors (sd/√ESS), the s.d. within 10 %, R-hat ≤ 1.01."""
    from tmepde.fit import nuts

    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(20), np.linspace(-1, 1, 20), np.linspace(-1, 1, 20) ** 2])
    sigma, tau = 0.5, 2.0
    y = X @ np.array([1.0, -2.0, 0.5]) + sigma * rng.standard_normal(20)
    S = np.linalg.inv(X.T @ X / sigma**2 + np.eye(3) / tau**2)
    m = S @ X.T @ y / sigma**2
    Xj, yj = jnp.asarray(X), jnp.asarray(y)

    def potential(b):
        return 0.5 * jnp.sum((yj - Xj @ b) ** 2) / sigma**2 + 0.5 * jnp.sum(b**2) / tau**2

    res = nuts(potential, np.zeros(3), chains=4, warmup=300, samples=500, seed=1)
    draws = res.flat
    sd = np.sqrt(np.diag(S))
    assert np.all(res.r_hat <= 1.01), res.r_hat
    assert np.all(res.ess > 300), res.ess
    mcse = draws.std(axis=0) / np.sqrt(res.ess)
    assert np.all(np.abs(draws.mean(axis=0) - m) < 4 * mcse), (draws.mean(axis=0), m, mcse)
    np.testing.assert_allclose(draws.std(axis=0), sd, rtol=0.1)
    # the strong posterior correlation of intercept and quadratic term is reproduced too
    np.testing.assert_allclose(np.corrcoef(draws.T)[0, 2], S[0, 2] / (sd[0] * sd[2]), atol=0.06)


def _mixture_posterior_case():
    """Three subjects, a class that adds δ to the random slope of exposed subjects (x = 1):
    subject 0 is exposed with a slope between the classes (class 0 needs η ≈ +1.3 ω⁻¹-units
    away from class 1's), so its η is bimodal, one mode per class; subject 1 is a clear
    responder; subject 2 is unexposed (its prediction does not depend on the class)."""
    from tmepde.fit import PopulationFit

    t = jnp.asarray(TIMES)
    delta, omega, sigma = 2.0, 0.5, 0.15
    theta = np.array([0.0, 0.1, 0.0])          # intercept, mean slope, logit π (π = 0.5)

    def predict(th, e, x, c):
        return th[0] + (th[1] + e[0] + x * c * delta) * t

    def log_w(th):
        return jnp.stack([jax.nn.log_sigmoid(-th[2]), jax.nn.log_sigmoid(th[2])])

    x = np.array([1.0, 1.0, 0.0])
    slopes = np.array([theta[1] + 0.9, theta[1] + delta - 0.2, theta[1] - 0.3])
    rng = np.random.default_rng(5)
    y = slopes[:, None] * TIMES + sigma * rng.standard_normal((3, TIMES.size))
    data = PopulationData(y, np.ones_like(y), np.zeros_like(y), np.zeros_like(y), x)
    # the exact posterior of (class, η) of each subject at θ, ω, σ (held by tight priors):
    # 1-D quadrature per class
    etas = np.linspace(-6, 6, 60001)
    lik, mean = np.zeros((2, 3)), np.zeros((2, 3))
    for c in range(2):
        for i in range(3):
            mu = theta[0] + (theta[1] + etas[:, None] + x[i] * c * delta) * TIMES
            w = np.exp(-0.5 * np.sum((y[i] - mu) ** 2, axis=1) / sigma**2 - 0.5 * (etas / omega) ** 2)
            lik[c, i] = np.trapezoid(w, etas)
            mean[c, i] = np.trapezoid(w * etas, etas) / lik[c, i]
    p1 = lik[1] / (lik[0] + lik[1])             # π = 1/2
    eta_mean = (1 - p1) * mean[0] + p1 * mean[1]
    eta_c = np.stack([np.full(3, mean[0, 0]), mean[1]])[..., None]
    eta_c[0, 1:] = mean[0, 1:, None]
    start = PopulationFit(["a", "b", "logit_pi"], ["b"], theta, np.array([omega]), sigma,
                          eta_c[np.argmax(np.stack([1 - p1, p1]), axis=0), np.arange(3)], 0.0,
                          np.eye(5), np.ones(5), 0, [], free=np.array([True, True, True, False, True]),
                          eta_components=eta_c, mixture=log_w)
    return predict, data, start, x, p1, eta_mean


def test_nuts_per_class_effects_recover_the_class_and_effect_posterior():
    """Mixture with a class-dependent effect: one subject's η is bimodal, one mode per class.
    With a random effect per class (Carlin–Chib pseudo-priors, the growth-like effect centred)
    NUTS reproduces each subject's exact P(class 1 | y) and E[η | y] (1-D quadrature, θ and σ
    held by tight priors) within 4 Monte-Carlo standard errors, R-hat ≤ 1.01; the unexposed
    subject keeps P = π. Ablation: one η shared by the classes, started in the most probable
    class's mode, stays there and misses the ambiguous subject's class probability."""
    from tmepde.fit import posterior_nuts

    predict, data, start, x, p1, eta_mean = _mixture_posterior_case()
    assert 0.15 < p1[0] < 0.85 and p1[1] > 0.99     # the case has teeth: subject 0 is ambiguous
    kw = dict(prior_mean=start.theta, prior_sd=0.01, sigma_prior=(np.log(start.sigma), 0.01),
              chains=4, warmup=400, samples=600, seed=3, dense_mass=True, max_tree_depth=6)
    post = posterior_nuts(predict, data, start, class_free=x == 0, centred=("b",), **kw)
    member = post.extra["membership"][..., 1].reshape(-1, 3)
    eta = post.extra["eta"].reshape(-1, 3)
    assert post.extra["r_hat_eta_max"] <= 1.01, post.extra
    mcse_p = member.std(axis=0) / np.sqrt(post.extra["ess_membership"])
    mcse_e = eta.std(axis=0) / np.sqrt(post.extra["ess_eta"][:, 0])
    assert np.all(np.abs(member.mean(axis=0)[:2] - p1[:2]) < 4 * mcse_p[:2] + 1e-3), (member.mean(axis=0), p1, mcse_p)
    assert np.allclose(member[:, 2], 0.5, atol=0.02)   # unexposed: the prior π (θ held near logit 0)
    assert np.all(np.abs(eta.mean(axis=0) - eta_mean) < 4 * mcse_e + 0.01), (eta.mean(axis=0), eta_mean, mcse_e)
    shared = posterior_nuts(predict, data, start, class_effects="shared", **kw)
    p_shared = shared.extra["membership"][..., 0, 1].mean()
    assert abs(p_shared - p1[0]) > 0.15, (p_shared, p1[0])



@pytest.mark.slow
def test_nuts_aligned_class_effects_sum_the_class_out_exactly():
    """One ζ per subject mapped per class onto that class's mode (z_c = m_c(u) + L_c ζ) with
    the class summed out: integrating exp(−potential) over the ambiguous subject's ζ (other
    coordinates held) gives its exact P(class 1 | y, θ, ω, σ) and E[η | y] of brute-force
    quadrature over η per class, whatever the map: checked with class 1's map centred 2.5 of
    its posterior s.d. off its mode (the class effect here also scales η's
    slope, so the classes' curvatures and Jacobians |L_c| differ by 3: a missing or wrong
    Jacobian biases P), at the fit's θ and at a θ whose slope is 0.4 away, where the maps'
    centres have followed the modes (follow_modes) or stayed (follow_modes=False): the
    integral is exact either way, and only the followed map keeps class 1's peak where it
    was in ζ."""
    import jax
    from tmepde.fit import PopulationFit, posterior_nuts

    t = jnp.asarray(TIMES)
    delta, omega, sigma = 1.0, 0.5, 0.3
    theta = np.array([0.0, 0.1, 0.4])          # intercept, mean slope, logit π

    def predict(th, e, x, c):
        return th[0] + (th[1] + e[0] * (1 + 2 * x * c) + x * c * delta) * t

    def log_w(th):
        return jnp.stack([jax.nn.log_sigmoid(-th[2]), jax.nn.log_sigmoid(th[2])])

    x = np.array([1.0, 0.0])
    rng = np.random.default_rng(2)
    y = np.array([theta[1] + 0.75, theta[1] - 0.3])[:, None] * TIMES + sigma * rng.standard_normal((2, TIMES.size))
    data = PopulationData(y, np.ones_like(y), np.zeros_like(y), np.zeros_like(y), x)
    etas = np.linspace(-5, 5, 200001)

    def quadrature(th):
        lik, mean, sd = np.zeros(2), np.zeros(2), np.zeros(2)
        for c in range(2):
            mu = th[0] + (th[1] + etas[:, None] * (1 + 2 * c) + c * delta) * TIMES
            w = np.exp(-0.5 * np.sum((y[0] - mu) ** 2, axis=1) / sigma**2 - 0.5 * (etas / omega) ** 2)
            lik[c] = np.trapezoid(w, etas)
            mean[c] = np.trapezoid(w * etas, etas) / lik[c]
            sd[c] = np.sqrt(np.trapezoid(w * (etas - mean[c]) ** 2, etas) / lik[c])
        pi = 1 / (1 + np.exp(-th[2]))
        p1 = pi * lik[1] / (pi * lik[1] + (1 - pi) * lik[0])
        return p1, (1 - p1) * mean[0] + p1 * mean[1], mean, sd

    p1, e_mean, mean, sd = quadrature(theta)
    assert 0.1 < p1 < 0.9, p1                    # ambiguous: both classes count
    assert sd[1] < 0.5 * sd[0]                  # the classes' curvatures differ
    eta_c = np.array([[mean[0], 0.0], [mean[1] + 2.5 * sd[1], 0.0]])[..., None]
    start = PopulationFit(["a", "b", "logit_pi"], ["b"], theta, np.array([omega]), sigma, eta_c[1], 0.0,
                          np.eye(5), np.ones(5), 0, [], free=np.array([True, True, True, False, True]),
                          eta_components=eta_c, mixture=log_w)
    zs = np.linspace(-40, 40, 16001)
    peaks = {}
    for follow in (True, False):
        post = posterior_nuts(predict, data, start, class_free=x == 0, class_effects="aligned",
                              follow_modes=follow, chains=2, warmup=4, samples=4, chunk=4)
        U, logits = post.extra["potential"], post.extra["logits"]
        for shift in (0.0, 0.4):
            th = theta + np.array([0.0, shift, 0.0])
            p1, e_mean, _, _ = quadrature(th)
            q0 = np.concatenate([th, [np.log(sigma)], [0.0], [0.0]])   # [θ, log σ, ξ_1, ζ_0]
            assert len(post.names) == 4 and q0.size == 6
            qs = jnp.asarray(np.repeat(q0[None], zs.size, axis=0)).at[:, -1].set(zs)
            u = np.asarray(jax.vmap(U)(qs))
            w = np.exp(-(u - u.min()))
            a = np.asarray(jax.vmap(logits)(qs))[:, :, 0]                  # (n, C) subject 0
            pc = np.exp(a - a.max(axis=1, keepdims=True))
            pc /= pc.sum(axis=1, keepdims=True)
            eta_z = np.asarray(jax.vmap(lambda q: post.extra["unpack_eta"](q)[:, 0, 0])(qs))   # (n, C)
            assert w[0] < 1e-12 and w[-1] < 1e-12
            Z = np.trapezoid(w, zs)
            np.testing.assert_allclose(np.trapezoid(w * pc[:, 1], zs) / Z, p1, rtol=1e-6)
            np.testing.assert_allclose(np.trapezoid(w * np.sum(pc * eta_z, axis=1), zs) / Z, e_mean, atol=1e-6)
            peaks[follow, shift] = zs[np.argmax(a[:, 1])]                # class 1's peak in ζ
    # the model is linear in η and θ, so the first-order shift follows class 1's mode exactly
    assert abs(peaks[True, 0.4] - peaks[True, 0.0]) < 0.02, peaks
    assert abs(peaks[False, 0.4] - peaks[False, 0.0]) > 1.0, peaks


def test_nuts_aligned_class_effects_recover_the_class_and_effect_posterior():
    """NUTS with aligned class effects reproduces each subject's exact P(class 1 | y) and
    E[η | y] (quadrature, the case of the per-class test) within 4 Monte-Carlo standard
    errors, R-hat ≤ 1.01, where one η shared by the classes does not."""
    from tmepde.fit import posterior_nuts

    predict, data, start, x, p1, eta_mean = _mixture_posterior_case()
    kw = dict(prior_mean=start.theta, prior_sd=0.01, sigma_prior=(np.log(start.sigma), 0.01),
              chains=4, warmup=400, samples=600, seed=3, dense_mass=True, max_tree_depth=6)
    post = posterior_nuts(predict, data, start, class_free=x == 0, centred=("b",), class_effects="aligned", **kw)
    member = post.extra["membership"][..., 1].reshape(-1, 3)
    eta = post.extra["eta"].reshape(-1, 3)
    assert post.extra["r_hat_eta_max"] <= 1.01, post.extra["r_hat_eta_max"]
    mcse_p = member.std(axis=0) / np.sqrt(post.extra["ess_membership"])
    mcse_e = eta.std(axis=0) / np.sqrt(post.extra["ess_eta"][:, 0])
    assert np.all(np.abs(member.mean(axis=0)[:2] - p1[:2]) < 4 * mcse_p[:2] + 1e-3), (member.mean(axis=0), p1, mcse_p)
    assert np.all(np.abs(eta.mean(axis=0) - eta_mean) < 4 * mcse_e + 0.01), (eta.mean(axis=0), eta_mean, mcse_e)

# -- identifiability of the Laplace (observed-information) intervals -------------------------------
def test_information_covariance_reports_singular_directions_not_zero_width():
    """A zero or negative eigenvalue of the observed information gives no finite standard error
    (the pseudo-inverse gives a zero-width interval there: its variance along a negative
    direction clips to 0, along a null one it is dropped); identified coordinates get the
    ordinary inverse."""
    from tmepde.fit import _std_error, information_covariance

    # coordinates 0, 1 well determined (correlated); 2 has negative curvature (the CT26
    # logit-response ω: flat likelihood, finite-difference noise below zero)
    H = np.array([[4.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, -1e-3]])
    free = np.ones(3, bool)
    cov, ok = information_covariance(H, free)
    assert list(ok) == [True, True, False]
    np.testing.assert_allclose(cov[:2, :2], np.linalg.inv(H[:2, :2]), rtol=1e-12)
    se = _std_error(cov, ok)
    assert np.isinf(se[2]) and np.all(np.isfinite(se[:2]))
    assert np.sqrt(np.clip(np.diag(np.linalg.pinv(H)), 0, None))[2] == 0.0   # what it replaces
    # a null direction mixing two coordinates: neither is identified, a third one still is
    c, s_ = np.cos(0.6), np.sin(0.6)
    R = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]])
    H2 = R @ np.diag([5.0, 0.0, 3.0]) @ R.T
    cov2, ok2 = information_covariance(H2, free)
    assert list(ok2) == [False, False, True]
    assert cov2[2, 2] == pytest.approx(1 / 3.0)
    assert np.all(np.isfinite(np.diag(np.linalg.pinv(H2))))                   # pinv: finite
    # held coordinates are not estimated: zero rows, counted as identified
    cov3, ok3 = information_covariance(H, np.array([True, True, False]))
    assert list(ok3) == [True, True, True] and np.all(cov3[2] == 0)


@pytest.mark.slow
def test_population_fit_marks_a_random_effect_without_data_not_identified():
    """Ablation: a third random effect that the prediction ignores has a flat marginal
    likelihood in its ω (∫ N(η; 0, ω²) dη = 1 for every ω): reported not identified (infinite
    standard error), while θ, the other ω and σ keep the standard errors of the fit without it."""
    rng = np.random.default_rng(3)
    data = _simulate(rng, 12, np.array([1.0, 0.35]), np.array([0.3, 0.12]), 0.15)
    kw = dict(theta0=[1.0, 0.35], sigma0=0.15, max_steps=40, inner_steps=4)
    ref = population_fit(_growth_predict, data, omega0=[0.3, 0.12], **kw)
    res = population_fit(_growth_predict, data, omega0=[0.3, 0.12, 0.4], **kw)
    assert list(res.identified_mask) == [True, True, True, True, False, True]
    assert np.isinf(res.std_error[4]) and np.all(np.isnan(res.cov[4]))
    keep = [0, 1, 2, 3, 5]
    np.testing.assert_allclose(res.std_error[keep], ref.std_error, rtol=0.05)
    np.testing.assert_allclose(res.u[keep], ref.u, atol=0.1 * ref.std_error.min())


def test_profile_starts_at_the_conditional_optimum_of_correlated_effects():
    """Linear Gaussian mixed model (random intercept, fixed slope, times 30-37 so that the
    intercept and slope estimates correlate, |ρ| > 0.9): −log L is exactly quadratic in θ at
    fixed ω, σ, whose information is orthogonal to θ's at the optimum, so the profile deviance
    at θ̂_j + c·SE is c² at the others' conditional optimum. With no BFGS step at all the
    profile's start gives c² to 1e-3 (holding the others at θ̂ instead gives c² / (1 − ρ²)),
    and its interval is the Wald interval."""
    from tmepde.fit import profile_likelihood

    def predict(theta, eta, x):
        return theta[0] + eta[0] + theta[1] * (30.0 + jnp.asarray(TIMES))

    rng = np.random.default_rng(5)
    theta, omega, sigma = np.array([1.0, 0.05]), 0.2, 0.1
    eta = rng.standard_normal((12, 1)) * omega
    mu = np.array([predict(theta, e, None) for e in eta])
    y = mu + sigma * rng.standard_normal(mu.shape)
    data = PopulationData(y, np.ones_like(y), np.zeros_like(y), np.zeros_like(y))
    res = population_fit(predict, data, theta0=[0.8, 0.06], omega0=[0.3], sigma0=0.2,
                         max_steps=80, inner_steps=8, polish_steps=10)
    rho = res.cov[0, 1] / math.sqrt(res.cov[0, 0] * res.cov[1, 1])
    assert abs(rho) > 0.9, rho
    offsets = (-2.0, -1.0, 1.0, 2.0)
    for j in (0, 1):
        vals, dev, (lo, hi) = profile_likelihood(predict, data, res, j, offsets, max_steps=0)
        np.testing.assert_allclose(dev, np.square(offsets), rtol=1e-3)
        z = 1.959964 * res.std_error[j]
        assert lo == pytest.approx(res.u[j] - z, rel=1e-3) and hi == pytest.approx(res.u[j] + z, rel=1e-3)
