"""Gradient-based least-squares fitting of model parameters, with uncertainty.

The fit works in an unconstrained space ``z``: positive parameters as ``log p``, bounded ones
as a scaled logit, free ones as themselves, so the optimiser (Levenberg–Marquardt from
optimistix, Jacobians by forward-mode AD through the whole simulation) never leaves the
admissible set. Weak Gaussian priors in ``z`` regularise what the data cannot identify.

Uncertainty is the Gauss–Newton (Laplace) approximation at the optimum:
``Cov(z) ≈ σ² (JᵀJ)⁻¹`` with ``J`` the Jacobian of the weighted residuals (priors included);
standard errors map to parameter space by the delta method. A parameter counts as
identifiable from the data when its posterior standard deviation in ``z`` is well below its
prior standard deviation (the data, not the prior, pin it), judged on the data-only
marginal covariance so that correlated, sloppy combinations are caught.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Mapping, Sequence

import numpy as np
import jax
import jax.numpy as jnp
import optimistix as optx


@dataclasses.dataclass(frozen=True)
class FitParameter:
    """One fitted parameter.

    name: key in the model's parameter dict. initial: starting value (model units).
    lower/upper: bounds (both or neither); transform: "log" (positive), "logit" (bounded),
    or "none". prior_sd: standard deviation of a Gaussian prior in the transformed space,
    centred on ``initial`` (``None``: no prior). For "log" a prior_sd of 1 means "within a
    factor e of the initial value".
    """

    name: str
    initial: float
    lower: float | None = None
    upper: float | None = None
    transform: str = "log"
    prior_sd: float | None = None

    def __post_init__(self):
        if self.transform not in ("log", "logit", "none"):
            raise ValueError(f"fit parameter {self.name!r}: transform must be 'log', 'logit' or "
                             f"'none', got {self.transform!r}")
        if self.transform == "log" and not self.initial > 0:
            raise ValueError(f"fit parameter {self.name!r}: a log-transformed parameter needs "
                             f"initial > 0, got {self.initial!r}")
        if self.transform == "logit":
            if self.lower is None or self.upper is None or not self.lower < self.initial < self.upper:
                raise ValueError(
                    f"fit parameter {self.name!r}: transform 'logit' needs lower < initial < upper, "
                    f"got lower={self.lower!r}, initial={self.initial!r}, upper={self.upper!r}")

    def to_z(self, p):
        if self.transform == "log":
            return jnp.log(p)
        if self.transform == "logit":
            s = (p - self.lower) / (self.upper - self.lower)
            return jnp.log(s) - jnp.log1p(-s)
        return p

    def from_z(self, z):
        if self.transform == "log":
            return jnp.exp(z)
        if self.transform == "logit":
            return self.lower + (self.upper - self.lower) * jax.nn.sigmoid(z)
        return z

    def dp_dz(self, z):
        return jax.grad(self.from_z)(z)


@dataclasses.dataclass
class FitResult:
    """Outcome of :func:`fit`. Values in model units unless named ``*_z``."""

    names: list[str]
    values: dict[str, float]
    z: np.ndarray
    cov_z: np.ndarray
    std_error: dict[str, float]
    correlation: np.ndarray
    identifiable: dict[str, bool]
    cost: float  # 0.5 Σ weighted residual² (data part)
    n_data: int
    sigma2: float  # residual variance estimate used to scale the covariance
    n_simulations: int
    history: list[float]

    def summary(self) -> str:
        lines = [f"{'parameter':<24}{'value':>12}{'std error':>12}  identifiable"]
        for n in self.names:
            lines.append(f"{n:<24}{self.values[n]:>12.4g}{self.std_error[n]:>12.3g}  "
                         f"{'yes' if self.identifiable[n] else 'no'}")
        lines.append(f"cost {self.cost:.4g} over {self.n_data} data; σ² {self.sigma2:.3g}; "
                     f"{self.n_simulations} simulation-equivalents")
        return "\n".join(lines)


def fit(residual_fn: Callable[[dict], jax.Array], base_params: Mapping, fit_params: Sequence[FitParameter],
        *, max_steps: int = 50, rtol: float = 1e-6, atol: float = 1e-8,
        identifiable_ratio: float = 0.5, scale_by_residual: bool = True) -> FitResult:
    """Minimise ``0.5 ||residual_fn(params)||²`` over ``fit_params``.

    residual_fn: params dict -> weighted residual vector (e.g. (model - data) / σ); it is
        differentiated by forward mode, so any tmepde run inside it is fine.
    base_params: the full parameter dict; non-fitted entries stay fixed.
    scale_by_residual: scale the covariance by the residual variance (σ² = 2 cost /
        (n_data - n_params)); set False when residuals are already in units of known noise.
    """
    fit_params = list(fit_params)
    names = [fp.name for fp in fit_params]
    unknown = sorted(set(names) - set(base_params))
    if unknown:
        raise KeyError(f"fit names unknown parameters {unknown}; known: {sorted(base_params)}")
    z0 = jnp.asarray([float(fp.to_z(jnp.asarray(fp.initial, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)))
                      for fp in fit_params])
    prior_idx = [i for i, fp in enumerate(fit_params) if fp.prior_sd is not None]
    prior_sd = jnp.asarray([fit_params[i].prior_sd for i in prior_idx])

    def to_params(z):
        p = dict(base_params)
        for i, fp in enumerate(fit_params):
            p[fp.name] = jnp.asarray(fp.from_z(z[i]), dtype=jnp.asarray(base_params[fp.name]).dtype)
        return p

    def data_residuals(z):
        return jnp.ravel(residual_fn(to_params(z)))

    def all_residuals(z, _args=None):
        r = data_residuals(z)
        if prior_idx:
            r = jnp.concatenate([r, (z[jnp.asarray(prior_idx)] - z0[jnp.asarray(prior_idx)]) / prior_sd])
        return r

    history = [float(0.5 * jnp.sum(data_residuals(z0) ** 2))]
    solver = optx.LevenbergMarquardt(rtol=rtol, atol=atol)
    sol = optx.least_squares(all_residuals, solver, z0, max_steps=max_steps, throw=False)
    z = sol.value
    n_steps = int(sol.stats.get("num_steps", max_steps))
    r_data = data_residuals(z)
    n_data = int(r_data.size)
    cost = float(0.5 * jnp.sum(r_data**2))
    history.append(cost)
    J = np.asarray(jax.jacfwd(all_residuals)(z))
    dof = max(n_data - len(names), 1)
    sigma2 = 2 * cost / dof if scale_by_residual else 1.0
    # Data-only Fisher information scaled by σ²; priors enter unscaled (they are beliefs).
    J_data = J[:n_data]
    info = J_data.T @ J_data / sigma2
    for k, i in enumerate(prior_idx):
        info[i, i] += 1 / float(prior_sd[k]) ** 2
    cov_z = np.linalg.pinv(info)
    data_info = J_data.T @ J_data / sigma2
    data_info += 1e-12 * np.trace(data_info) * np.eye(len(names))  # ridge: singular -> huge sd
    data_sd_z = np.sqrt(np.clip(np.diag(np.linalg.inv(data_info)), 0, None))
    sd_z = np.sqrt(np.clip(np.diag(cov_z), 0, None))
    corr = cov_z / np.outer(sd_z, sd_z).clip(1e-300)
    values, std_error, identifiable = {}, {}, {}
    for i, fp in enumerate(fit_params):
        values[fp.name] = float(fp.from_z(z[i]))
        std_error[fp.name] = float(abs(fp.dp_dz(z[i])) * sd_z[i])
        # Identifiable: the data alone (no prior) pin z to a marginal standard deviation
        # below `identifiable_ratio` × the prior width (or × 1, i.e. ~50 % relative error
        # for a log parameter, when there is no prior). Marginal, so correlations count.
        ref = fit_params[i].prior_sd if fit_params[i].prior_sd is not None else 1.0
        identifiable[fp.name] = bool(data_sd_z[i] < identifiable_ratio * ref)
    return FitResult(names, values, np.asarray(z), cov_z, std_error, corr, identifiable, cost,
                     n_data, float(sigma2), n_steps * (1 + len(names)), history)


# -- population (nonlinear mixed-effects) fits ---------------------------------------------------
# Model: subject i has random effects η_i ~ N(0, diag ω²); its log-observations are
# y_ij ~ N(μ_ij(θ, η_i), σ²) (log-normal, i.e. proportional error on the original scale),
# a right-censored point says only y > c_ij (a subject that left the study with a large
# tumor), contributing log P(y > c) = log Φ((μ − c)/σ), and a left-censored point (a reading
# below the limit of quantification) only y < c_ij, contributing log Φ((c − μ)/σ) (Beal 2001,
# method M3). A finite mixture (e.g. responders and non-responders to a treatment) sums the
# subject's class out: L_i = Σ_c π_c(θ) L_i,c, each L_i,c with its own inner mode η̂_i,c
# (Lavielle 2014, ch. 9, mixtures of structural models). The marginal likelihood integrates η out;
# the Laplace approximation (Pinheiro and Bates 1995; Wang 2007 for FOCE) replaces each
# integral by the inner optimum η̂_i and the curvature there:
#   −log L_i ≈ ℓ_i(η̂_i) + ½ log det H_i − (k/2) log 2π,  ℓ_i = −log p(y_i | η) p(η).
# ``hessian="exact"`` uses ∇²ℓ_i (Laplace); ``"gauss-newton"`` uses Jᵀ diag(∂²ℓ/∂μ²) J + Ω⁻¹
# (first-order conditional estimation, FOCE), which needs one derivative order less.


@dataclasses.dataclass(frozen=True)
class PopulationData:
    """Observations of N subjects on a common grid of n_t times (log scale).

    y: (N, n_t) log-observations; observed: (N, n_t) 1 where y counts; censor: (N, n_t)
    bounds (log scale) of censored points; censored: (N, n_t) 1 where the point is
    right-censored (y > censor: e.g. dropout at a large volume), −1 where it is
    left-censored (y < censor: a reading below the limit of quantification, Beal 2001 M3),
    0 elsewhere. covariates: a pytree with leading axis N passed to ``predict`` per subject
    (e.g. the dose of the subject's arm).
    """

    y: np.ndarray
    observed: np.ndarray
    censor: np.ndarray
    censored: np.ndarray
    covariates: object = None


@dataclasses.dataclass
class PopulationFit:
    """Outcome of :func:`population_fit` (everything in the transformed space ``z``).

    theta: (p,) fixed effects; omega: (k,) random-effect s.d.; sigma: residual s.d.;
    eta: (N, k) conditional modes η̂_i; nll: −log marginal likelihood (Laplace);
    cov: (p + k + 1, p + k + 1) inverse observed information over
    ``[theta, log omega, log sigma]``; std_error: its root diagonal, ``inf`` for a coordinate
    the information does not identify (see :func:`information_covariance`; its rows and
    columns of ``cov`` are NaN); identified: (p + k + 1,) bool, False there.
    With a mixture (``population_fit(mixture=...)``): eta_components (C, N, k) the modes in
    each class, membership (N, C) each subject's posterior class probabilities, and eta the
    modes in the subject's most probable class.
    """

    names: list[str]
    re_names: list[str]
    theta: np.ndarray
    omega: np.ndarray
    sigma: float
    eta: np.ndarray
    nll: float
    cov: np.ndarray
    std_error: np.ndarray
    n_steps: int
    history: list[float]
    objective: Callable | None = dataclasses.field(default=None, repr=False)  # jitted value-and-grad
    free: np.ndarray | None = None  # (p + k + 1,) bool: False where held at its start (std_error 0)
    identified: np.ndarray | None = None  # (p + k + 1,) bool: False where std_error is inf
    eta_components: np.ndarray | None = None  # (C, N, k) modes per mixture class
    membership: np.ndarray | None = None      # (N, C) posterior class probabilities
    mixture: Callable | None = dataclasses.field(default=None, repr=False)   # theta -> (C,) log weights
    subjects: Callable | None = dataclasses.field(default=None, repr=False)  # jitted per-class −log L_i

    @property
    def eta_start(self) -> np.ndarray:
        """Warm start of the inner modes for the compiled objective: (C, N, k) or (N, k)."""
        return self.eta if self.eta_components is None else self.eta_components

    @property
    def free_mask(self) -> np.ndarray:
        return np.ones(self.u.size, bool) if self.free is None else np.asarray(self.free, bool)

    @property
    def identified_mask(self) -> np.ndarray:
        """(p + k + 1,) bool: False for a free coordinate without a finite standard error."""
        if self.identified is not None:
            return np.asarray(self.identified, bool)
        return np.isfinite(self.std_error) | ~self.free_mask

    @property
    def u(self) -> np.ndarray:
        return np.concatenate([self.theta, np.log(self.omega), [np.log(self.sigma)]])


def _point_loss(mu, y, observed, censor, censored, sigma):
    """Per-point −log likelihood, shape of ``mu``: the N(μ, σ²) density where ``observed``;
    −log P(y > c) = −log Φ((μ − c)/σ) where ``censored`` is 1 (right-censored); −log P(y < c)
    = −log Φ((c − μ)/σ) where it is −1 (left-censored, below the limit of quantification)."""
    r = (y - mu) / sigma
    dens = 0.5 * r**2 + jnp.log(sigma) + 0.5 * jnp.log(2 * jnp.pi)
    side = jnp.sign(censored)
    tail = -jax.scipy.special.log_ndtr(side * (mu - censor) / sigma)
    return observed * dens + jnp.abs(censored) * tail


def _subject_terms(predict, hessian):
    """``terms(eta, theta, log_omega, log_sigma, y, obs, cen, cmask, x) -> (ℓ_i, ∇ℓ_i, H_i)`` for
    one subject. Gauss–Newton: one forward-mode pass of ``predict`` gives μ and J = ∂μ/∂η, so
    each use costs one simulation with k tangents (and one copy in the compiled program)."""
    d1 = jax.vmap(jax.grad(_point_loss), (0, 0, 0, 0, 0, None))
    d2 = jax.vmap(jax.grad(jax.grad(_point_loss)), (0, 0, 0, 0, 0, None))

    def prior(eta, log_omega):
        omega = jnp.exp(log_omega)
        return 0.5 * jnp.sum((eta / omega) ** 2) + jnp.sum(log_omega) + 0.5 * eta.size * jnp.log(2 * jnp.pi)

    def ell(eta, theta, log_omega, log_sigma, y, obs, cen, cmask, x):
        mu = predict(theta, eta, x)
        return jnp.sum(_point_loss(mu, y, obs, cen, cmask, jnp.exp(log_sigma))) + prior(eta, log_omega)

    def terms(eta, theta, log_omega, log_sigma, y, obs, cen, cmask, x):
        args = (theta, log_omega, log_sigma, y, obs, cen, cmask, x)
        if hessian == "exact":
            f, g = jax.value_and_grad(ell)(eta, *args)
            return f, g, jax.hessian(ell)(eta, *args)
        sigma = jnp.exp(log_sigma)
        mu, J = _value_and_jacfwd(lambda e: predict(theta, e, x), eta)
        f = jnp.sum(_point_loss(mu, y, obs, cen, cmask, sigma)) + prior(eta, log_omega)
        inv_w = jnp.exp(-2 * log_omega)
        g = J.T @ d1(mu, y, obs, cen, cmask, sigma) + eta * inv_w
        H = J.T @ (d2(mu, y, obs, cen, cmask, sigma)[:, None] * J) + jnp.diag(inv_w)
        return f, g, H

    return ell, terms


def _value_and_jacfwd(fn, x):
    """``fn(x)`` and its Jacobian from one batched forward-mode pass (k tangents)."""
    pushfwd = lambda v: jax.jvp(fn, (x,), (v,))  # noqa: E731
    mus, cols = jax.vmap(pushfwd, out_axes=(None, -1))(jnp.eye(x.size, dtype=x.dtype))
    return mus, cols


def _inner(terms, n_iter):
    """Levenberg–Marquardt on η: one evaluation of ``terms`` per iteration (a rejected step
    raises the damping); the first iteration only evaluates the start."""

    def solve(eta0, *args):
        k = eta0.size

        def body(_, carry):
            eta, f, g, H, lam = carry
            w, V = jnp.linalg.eigh(0.5 * (H + H.T))
            w = jnp.maximum(w, 1e-8 + 1e-6 * jnp.max(jnp.abs(w))) + lam
            step = jnp.where(jnp.isfinite(f), -V @ ((V.T @ g) / w), 0.0)
            f2, g2, H2 = terms(eta + step, *args)
            ok = jnp.isfinite(f2) & (f2 <= f)
            pick = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
            return (pick(eta + step, eta), pick(f2, f), pick(g2, g), pick(H2, H),
                    jnp.where(ok, lam / 3.0, jnp.maximum(lam, 1e-3) * 4.0))

        dt = eta0.dtype
        init = (eta0, jnp.asarray(jnp.inf, dt), jnp.zeros(k, dt), jnp.eye(k, dtype=dt), jnp.asarray(0.0, dt))
        return jax.lax.fori_loop(0, n_iter + 1, body, init)[0]

    return solve


def _mixture_size(mixture, n_theta: int) -> int:
    """Number of classes of ``mixture(theta) -> (C,) log weights`` (1 without a mixture)."""
    if mixture is None:
        return 1
    return int(jax.eval_shape(mixture, jax.ShapeDtypeStruct((n_theta,), jnp.result_type(float))).shape[0])


def make_subject_laplace(predict: Callable, data: PopulationData, n_theta: int, n_re: int, *,
                         hessian: str = "gauss-newton", inner_steps: int = 20, mixture=None):
    """``subjects(u, eta0) -> (L, η̂)``, not jitted: per-subject Laplace −log L_i.

    Without ``mixture``: L (N,), η̂ (N, k), ``eta0`` (N, k). With ``mixture`` (a function
    ``theta -> (C,) log class weights``, summing to 0 in exp): ``predict`` takes the class as a
    fourth argument, ``predict(theta, eta, x, c)`` with ``c`` a float 0.0 .. C − 1, and L
    (C, N) is the Laplace −log L_i,c of each subject in each class (η̂, eta0: (C, N, k)).
    """
    if hessian not in ("exact", "gauss-newton"):
        raise ValueError(f"hessian must be 'exact' or 'gauss-newton', got {hessian!r}")
    n_c = _mixture_size(mixture, n_theta)
    pred = predict if mixture is None else (lambda th, e, xc: predict(th, e, xc[0], xc[1]))
    _, terms = _subject_terms(pred, hessian)
    solve = _inner(terms, inner_steps)
    arrays = tuple(jnp.asarray(a) for a in (data.y, data.observed, data.censor, data.censored))
    n_sub = data.y.shape[0]
    cov = data.covariates if data.covariates is not None else jnp.zeros(n_sub)

    def per_subject(u, eta0, x):
        theta, log_omega, log_sigma = u[:n_theta], u[n_theta:n_theta + n_re], u[-1]
        common = (theta, log_omega, log_sigma)
        axes = (0, None, None, None, 0, 0, 0, 0, 0)
        eta = jax.vmap(solve, axes)(jax.lax.stop_gradient(eta0), *jax.lax.stop_gradient(common), *arrays, x)
        eta = jax.lax.stop_gradient(eta)
        vals, _, H = jax.vmap(terms, axes)(eta, *common, *arrays, x)
        logdet = jnp.linalg.slogdet(H)[1]
        return vals + 0.5 * logdet - 0.5 * n_re * jnp.log(2 * jnp.pi), eta

    if mixture is None:
        return lambda u, eta0: per_subject(u, eta0, cov)
    classes = jnp.broadcast_to(jnp.arange(n_c, dtype=jnp.result_type(float))[:, None], (n_c, n_sub))

    def per_class(u, eta0):
        return jax.vmap(lambda e, c: per_subject(u, e, (cov, c)))(eta0, classes)

    return per_class


def mixture_membership(L, log_weights) -> np.ndarray:
    """(N, C) posterior class probabilities of each subject, ∝ π_c L_i,c (L: (C, N) −log L)."""
    a = np.asarray(log_weights)[:, None] - np.asarray(L)
    a = np.exp(a - a.max(axis=0))
    return (a / a.sum(axis=0)).T


def make_population_objective(predict: Callable, data: PopulationData, n_theta: int, n_re: int, *,
                              hessian: str = "gauss-newton", inner_steps: int = 20,
                              prior_mean=None, prior_sd=None, mixture=None):
    """``objective(u, eta0) -> (−log L, η̂)``, jitted, with ``u = [θ, log ω, log σ]``.

    predict(theta (p,), eta (k,), x) -> μ (n_t,): the log-scale prediction of one subject
    with covariates ``x`` (one leaf slice of ``data.covariates``); it must be JAX-traceable.
    prior_mean/prior_sd: optional Gaussian prior on θ (weak regularisation, added to −log L).
    mixture: optional ``theta -> (C,) log class weights``; then ``predict(theta, eta, x, c)``
    and −log L = −Σ_i log Σ_c π_c exp(−L_i,c), the class summed out
    (:func:`make_subject_laplace`); η̂ and ``eta0`` are (C, N, k).
    The gradient (``jax.grad`` of the first output) treats η̂ as fixed: exact for ℓ(η̂) by the
    envelope theorem, approximate for ½ log det H.
    """
    subjects = make_subject_laplace(predict, data, n_theta, n_re, hessian=hessian, inner_steps=inner_steps,
                                    mixture=mixture)

    def laplace(u, eta0):
        L, eta = subjects(u, eta0)
        theta = u[:n_theta]
        if mixture is None:
            total = jnp.sum(L)
        else:
            total = -jnp.sum(jax.scipy.special.logsumexp(mixture(theta)[:, None] - L, axis=0))
        if prior_sd is not None:
            total = total + 0.5 * jnp.sum(((theta - prior_mean) / prior_sd) ** 2)
        return total, eta

    return jax.jit(laplace), jax.jit(jax.value_and_grad(laplace, has_aux=True))


def _bfgs(value_grad, u0, eta0, max_steps, free, tol=1e-5, log=None, hinv0=None):
    """BFGS with Armijo backtracking on the coordinates ``free`` (bool mask); others fixed.
    log: called with a line after the first evaluation (which compiles) and every step.
    hinv0: starting inverse-Hessian approximation (default the identity)."""
    u = np.asarray(u0, float).copy()
    t_start = time.perf_counter()
    (f, eta), g = value_grad(u, eta0)
    if log is not None:
        log(f"  start: -log L {float(f):.3f} ({time.perf_counter() - t_start:.0f} s, compiling included)")
    f, g, eta = float(f), np.asarray(g) * free, np.asarray(eta)
    Hinv = np.eye(u.size) if hinv0 is None else np.asarray(hinv0, float).copy()
    history, steps, restarts = [f], 0, 0
    for steps in range(1, max_steps + 1):
        d = -(Hinv @ g) * free
        if g @ d >= 0:                       # not a descent direction: restart
            Hinv, d = np.eye(u.size), -g
        t, accepted = 1.0, False
        for _ in range(12):
            (f2, eta2), g2 = value_grad(u + t * d, eta)
            f2 = float(f2)
            if np.isfinite(f2) and f2 <= f + 1e-4 * t * (g @ d):
                accepted = True
                break
            t *= 0.3
        if not accepted:
            # The outer gradient is approximate (η̂ held fixed in ½ log det H): a quasi-Newton
            # direction built from it can fail where steepest descent still makes progress.
            if restarts < 2 and not np.allclose(Hinv, np.eye(u.size)):
                Hinv, restarts = np.eye(u.size), restarts + 1
                continue
            break
        g2 = np.asarray(g2) * free
        s, yv = t * d, g2 - g
        if s @ yv > 1e-12:
            rho = 1.0 / (s @ yv)
            I = np.eye(u.size)
            Hinv = (I - rho * np.outer(s, yv)) @ Hinv @ (I - rho * np.outer(yv, s)) + rho * np.outer(s, s)
        u, f, g, eta = u + s, f2, g2, np.asarray(eta2)
        history.append(f)
        if log is not None:
            log(f"  step {steps}/{max_steps}: -log L {f:.3f}, |grad| {np.max(np.abs(g)):.2g} "
                f"({time.perf_counter() - t_start:.0f} s)")
        if np.max(np.abs(g)) < tol or abs(history[-2] - f) < tol * 1e-2:
            break
    return u, f, eta, steps, history


def _fd_value_grad(value_grad, free, h: float = 1e-3):
    """``value_grad`` with its gradient replaced by central differences of its value (each
    with the inner modes re-optimised from the point's warm start) over the ``free``
    coordinates: 2 × (free) evaluations. The analytic gradient holds η̂ fixed in ½ log det H
    (approximate), which near a mixture's optimum can point nowhere downhill."""
    idx = np.nonzero(np.asarray(free, bool))[0]

    class _Lazy:
        """The gradient, computed when read (np.asarray): a rejected line-search trial
        costs one evaluation, not 2 × (free) + 1."""

        def __init__(self, u, eta):
            self.u, self.eta, self.g = u, eta, None

        def __array__(self, dtype=None, copy=None):
            if self.g is None:
                self.g = np.zeros(self.u.size)
                for j in idx:
                    e = np.zeros(self.u.size)
                    e[j] = h
                    self.g[j] = (float(value_grad(self.u + e, self.eta)[0][0])
                                 - float(value_grad(self.u - e, self.eta)[0][0])) / (2 * h)
            return self.g if dtype is None else self.g.astype(dtype)

    def vg(u, eta0):
        u = np.asarray(u, float)
        (f, eta), _ = value_grad(u, eta0)
        return (f, eta), _Lazy(u, eta)

    return vg


def _bfgs_polished(vg, u0, eta0, max_steps, free, polish_steps, log=None):
    """:func:`_bfgs` with the analytic gradient, then (``polish_steps`` > 0) continued with
    finite-difference gradients (:func:`_fd_value_grad`) from where it stopped."""
    u, f, eta, n_steps, history = _bfgs(vg, u0, eta0, max_steps, free, log=log)
    if polish_steps > 0:
        if log is not None:
            log(f"  polish with finite-difference gradients from -log L {f:.3f}")
        # stops at |grad| < 1e-3 or a step gaining < 1e-5 (the differences' own noise is ~1e-6)
        u, f, eta, n2, h2 = _bfgs(_fd_value_grad(vg, free), u, eta, polish_steps, free, tol=1e-3, log=log)
        n_steps, history = n_steps + n2, history + h2[1:]
    return u, f, eta, n_steps, history


def population_fit(predict: Callable, data: PopulationData, theta0, omega0, sigma0, *,
                   names: Sequence[str] | None = None, re_names: Sequence[str] | None = None,
                   hessian: str = "gauss-newton", inner_steps: int = 20, max_steps: int = 60,
                   prior_sd: float | None = None, fd_step: float = 1e-2, fixed_omega=(),
                   mixture=None, polish_steps: int = 0, prior_mean=None, log=None) -> PopulationFit:
    """Maximum (Laplace-)marginal-likelihood fit of fixed effects θ, random-effect s.d. ω
    and residual s.d. σ (all in ``z``; see :func:`make_population_objective` for ``predict``).

    Outer optimiser: BFGS on ``[θ, log ω, log σ]`` with the inner η̂ warm-started from the last
    accepted point. Uncertainty: the inverse of the observed information, the Hessian of
    −log L by central differences (step ``fd_step``) of its gradient; where it is singular
    or not positive the coordinate is reported not identified (``std_error`` inf,
    :func:`information_covariance`), not given the pseudo-inverse's zero-width interval.
    prior_sd: weak Gaussian prior on θ centred on ``prior_mean`` (default ``theta0``; None: none).
    fixed_omega: indices of random effects whose ω stays at ``omega0`` (e.g. a spread known
    from an untreated arm); their standard error is reported as 0.
    mixture: optional ``theta -> (C,) log class weights``: a finite mixture of subject classes
    summed out of the likelihood (``predict(theta, eta, x, c)``; :func:`make_population_objective`).
    polish_steps: BFGS steps with finite-difference gradients of −log L after the analytic
    ones stop (:func:`_bfgs_polished`); 0: none. With polish steps the observed information
    is the central difference of those finite-difference gradients too (the analytic
    gradient's error would otherwise enter the Hessian: spurious singular or negative
    directions).
    log: progress lines (e.g. ``print``): the first evaluation, then every outer step.
    """
    theta0 = np.asarray(theta0, float)
    omega0 = np.atleast_1d(np.asarray(omega0, float))
    p, k = theta0.size, omega0.size
    if not (np.all(omega0 > 0) and sigma0 > 0):
        raise ValueError(f"omega0 and sigma0 must be > 0, got {omega0!r}, {sigma0!r}")
    prior_mean = None if prior_sd is None else jnp.asarray(theta0 if prior_mean is None else prior_mean, float)
    obj, vg = make_population_objective(predict, data, p, k, hessian=hessian, inner_steps=inner_steps,
                                        prior_mean=prior_mean, prior_sd=prior_sd, mixture=mixture)
    subjects = None if mixture is None else jax.jit(make_subject_laplace(
        predict, data, p, k, hessian=hessian, inner_steps=inner_steps, mixture=mixture))
    u0 = np.concatenate([theta0, np.log(omega0), [np.log(sigma0)]])
    eta0 = np.zeros((_mixture_size(mixture, p), data.y.shape[0], k)[int(mixture is None):])
    free = np.ones(u0.size, bool)
    free[[p + int(i) for i in fixed_omega]] = False
    u, f, eta, n_steps, history = _bfgs_polished(vg, u0, eta0, max_steps, free, polish_steps, log=log)
    info_vg = _fd_value_grad(vg, free) if polish_steps > 0 else vg
    cov, identified = information_covariance(observed_information(info_vg, u, eta, fd_step), free)
    modes = _class_modes(mixture, subjects, u, eta, p)
    return PopulationFit(list(names or [f"theta{i}" for i in range(p)]),
                         list(re_names or [f"eta{i}" for i in range(k)]),
                         u[:p], np.exp(u[p:p + k]), float(np.exp(u[-1])), modes.pop("eta"), f, cov,
                         _std_error(cov, identified), n_steps, history, vg, free, identified,
                         mixture=mixture, subjects=subjects, **modes)


def _class_modes(mixture, subjects, u, eta, n_theta: int) -> dict:
    """Fields of a :class:`PopulationFit` for the inner modes ``eta`` at ``u``: without a
    mixture just ``eta``; with one, the per-class modes, the membership and the modes of each
    subject's most probable class."""
    if mixture is None:
        return dict(eta=np.asarray(eta))
    L, eta = subjects(jnp.asarray(u), jnp.asarray(eta))
    member = mixture_membership(L, mixture(jnp.asarray(u[:n_theta])))
    eta = np.asarray(eta)
    best = np.argmax(member, axis=1)
    return dict(eta=eta[best, np.arange(eta.shape[1])], eta_components=eta, membership=member)


def information_covariance(H, free, *, min_information: float = 1e-2, max_loading: float = 0.01):
    """Inverse of the observed information ``H`` over the ``free`` coordinates, and which of
    them it identifies: ``(cov, identified)``, shapes ``(n, n)`` and ``(n,)``.

    A direction of ``H`` (an eigenvector of its free block) is not identified when its
    eigenvalue is below ``min_information`` (a standard error above ``min_information^-1/2`` =
    10 on the fitted scale, a factor e¹⁰ for a log parameter) or below 1e-8 of the largest
    (rounding), or negative (not a maximum of the likelihood in that direction). A coordinate
    whose unit vector puts more than ``max_loading`` of its squared length on such directions
    has no finite standard error: ``identified`` False, its rows and columns of ``cov`` NaN
    (the pseudo-inverse would print a zero-width or arbitrary interval there). The others get
    the inverse restricted to the identified directions. Held (not free) coordinates are not
    estimated: zero rows and columns, ``identified`` True.
    """
    H = 0.5 * (np.asarray(H, float) + np.asarray(H, float).T)
    free = np.asarray(free, bool)
    n = H.shape[0]
    cov = np.zeros((n, n))
    identified = np.ones(n, bool)
    idx = np.nonzero(free)[0]
    if idx.size == 0:
        return cov, identified
    lam, V = np.linalg.eigh(H[np.ix_(idx, idx)])
    good = (lam >= min_information) & (lam > 1e-8 * np.max(np.abs(lam)))
    block = (V[:, good] / lam[good]) @ V[:, good].T
    bad = np.sum(V[:, ~good] ** 2, axis=1) > max_loading
    block[bad, :] = np.nan
    block[:, bad] = np.nan
    cov[np.ix_(idx, idx)] = block
    identified[idx[bad]] = False
    return cov, identified


def _std_error(cov, identified) -> np.ndarray:
    """Root diagonal of ``cov``; ``inf`` where ``identified`` is False."""
    se = np.sqrt(np.clip(np.nan_to_num(np.diag(cov)), 0, None))
    return np.where(identified, se, np.inf)


def observed_information(value_grad, u, eta, h=1e-3) -> np.ndarray:
    """Hessian of −log L at ``u`` by central differences of the gradient (symmetrised)."""
    n = u.size
    H = np.zeros((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        gp = np.asarray(value_grad(u + e, eta)[1])
        gm = np.asarray(value_grad(u - e, eta)[1])
        H[:, j] = (gp - gm) / (2 * h)
    return 0.5 * (H + H.T)


def profile_likelihood(predict: Callable, data: PopulationData, result: PopulationFit, index: int,
                       offsets=(-3.0, -1.5, 1.5, 3.0), *, hessian: str = "gauss-newton",
                       inner_steps: int = 20, max_steps: int = 30, level: float = 0.95,
                       prior_sd: float | None = None, theta_prior=None, points: list | None = None):
    """Profile of −log L over fixed effect ``index`` (z-space) at ``θ̂ + offsets · SE``.

    The objective compiled by :func:`population_fit` is reused (``result.objective``); the
    remaining arguments only matter without it.
    A coordinate the information does not identify (infinite standard error) is stepped by
    ``offsets`` × 1 on its fitted scale instead.
    Returns ``(values (m,), deviance 2ΔnLL (m,), (lower, upper))``: the other parameters
    re-optimised at each value by ``max_steps`` BFGS steps, started at their conditional
    optimum under the fit's covariance (:func:`_profile_start`); the interval is where the
    signed root deviance crosses ±z_(1+level)/2, interpolated linearly (None where the grid
    does not reach it: the likelihood is flatter than the Wald interval says).
    points: a list to which each grid point's re-optimised ``(u, η̂, −log L)`` is appended
    (a point below the optimum is where to continue the fit from, with its own modes).
    """
    p, k = result.theta.size, result.omega.size
    vg = result.objective
    if vg is None:      # a result without its compiled objective (e.g. loaded from disk)
        prior_mean = None if prior_sd is None else jnp.asarray(theta_prior)
        _, vg = make_population_objective(predict, data, p, k, hessian=hessian, inner_steps=inner_steps,
                                          prior_mean=prior_mean, prior_sd=prior_sd, mixture=result.mixture)
    free = result.free_mask.copy()
    free[index] = False
    u_hat = result.u
    vals, dev = [], []
    se = float(result.std_error[index])
    identified = bool(np.isfinite(se) and se > 0)
    step = se if identified else 1.0   # not identified: unit steps (fitted scale)
    direction, hinv0 = _profile_start(result.cov, index, free, identified)
    for off in offsets:
        u0 = u_hat + off * step * direction
        u1, f, eta1, _, _ = _bfgs(vg, u0, result.eta_start, max_steps, free, hinv0=hinv0)
        if points is not None:
            points.append((u1, eta1, f))
        vals.append(u0[index])
        dev.append(2 * (f - result.nll))
    vals, dev = np.asarray(vals), np.asarray(dev)
    zq = float(jax.scipy.stats.norm.ppf(0.5 + level / 2))
    root = np.sign(vals - u_hat[index]) * np.sqrt(np.clip(dev, 0, None))
    bounds = []
    for side in (-1, 1):
        xs = np.concatenate([[u_hat[index]], vals[np.sign(vals - u_hat[index]) == side]])
        rs = np.concatenate([[0.0], root[np.sign(vals - u_hat[index]) == side]])
        order = np.argsort(np.abs(xs - u_hat[index]))
        xs, rs = xs[order], rs[order]
        hit = np.nonzero(np.abs(rs) >= zq)[0]
        if hit.size == 0:
            bounds.append(None)
            continue
        j = hit[0]
        bounds.append(float(xs[j - 1] + (side * zq - rs[j - 1]) * (xs[j] - xs[j - 1]) / (rs[j] - rs[j - 1])))
    return vals, dev, tuple(bounds)


def _profile_start(cov, index: int, free, identified: bool):
    """Where a profile point starts and the inverse Hessian its BFGS starts with.

    Along coordinate ``index``, the others are moved to their conditional optimum of the
    quadratic model at the fit, ``û + Δ Σ[:, j] / Σ[j, j]`` (exact for a quadratic −log L;
    with the others held at û a correlated pair's deviance is 1/(1 − ρ²) too high), and the
    BFGS starts from their conditional covariance ``Σ − Σ[:, j] Σ[j, :] / Σ[j, j]`` (the inverse
    of the Hessian block it minimises over) rather than the identity. Returns
    ``(direction (n,), hinv0 (n, n) or None)``; for a coordinate the information does not
    identify the others stay at û and BFGS starts from the identity."""
    n = free.size
    direction = np.zeros(n)
    direction[index] = 1.0
    if not identified or cov is None or not np.isfinite(cov[index, index]) or cov[index, index] <= 0:
        return direction, None
    c = np.where(np.isfinite(cov), cov, 0.0)
    direction = np.where(free, c[:, index] / c[index, index], 0.0)
    direction[index] = 1.0
    hinv0 = c - np.outer(c[:, index], c[index, :]) / c[index, index]
    hinv0 = hinv0 * np.outer(free, free)
    missing = free & (np.diag(hinv0) <= 0)     # a coordinate the information does not identify
    hinv0[missing, missing] = 1.0
    return direction, hinv0


def refit(result: PopulationFit, u0, *, max_steps: int = 60, fd_step: float = 1e-2, eta0=None,
          polish_steps: int = 0, log=None) -> PopulationFit:
    """Continue a population fit from ``u0 = [θ, log ω, log σ]`` (e.g. a profile point that
    beat the optimum) with the objective compiled by :func:`population_fit`; ``eta0``: warm
    start of the inner modes (default the fit's; a profile point's own modes reproduce the
    −log L it found, the fit's may converge elsewhere)."""
    vg = result.objective
    if vg is None:
        raise ValueError("refit needs a PopulationFit from population_fit (with its objective)")
    p, k = result.theta.size, result.omega.size
    u, f, eta, n_steps, history = _bfgs_polished(vg, np.asarray(u0, float),
                                                 result.eta_start if eta0 is None else eta0,
                                                 max_steps, result.free_mask, polish_steps, log=log)
    if f > result.nll:          # never worse than where we were
        return result
    info_vg = _fd_value_grad(vg, result.free_mask) if polish_steps > 0 else vg
    cov, identified = information_covariance(observed_information(info_vg, u, eta, fd_step), result.free_mask)
    return dataclasses.replace(result, theta=u[:p], omega=np.exp(u[p:p + k]), sigma=float(np.exp(u[-1])),
                               nll=f, cov=cov, std_error=_std_error(cov, identified),
                               identified=identified, n_steps=result.n_steps + n_steps,
                               history=result.history + history[1:],
                               **_class_modes(result.mixture, result.subjects, u, eta, p))


# -- posterior sampling (NUTS) -------------------------------------------------------------------
# The Laplace/FOCE intervals above assume a quadratic log-likelihood around the optimum; the
# profile likelihood drops that for one parameter at a time. Sampling the joint posterior with
# the No-U-Turn sampler (Hoffman and Gelman 2014; numpyro's implementation, Phan et al. 2019)
# drops it altogether and integrates the random effects exactly instead of by Laplace. The
# potential and its gradient are the simulator's own JAX program (reverse mode through
# ``predict``), so every leapfrog step costs one forward + adjoint simulation per subject.


@dataclasses.dataclass
class NutsResult:
    """Draws of :func:`nuts` / :func:`posterior_nuts` and their convergence diagnostics.

    names: (p,) coordinates of ``samples``; samples: (chains, draws, p); r_hat: (p,) split
    Gelman–Rubin statistic (Gelman et al. 2013, BDA3 §11.4); ess: (p,) effective sample size
    over all chains; divergences: divergent transitions after warm-up; accept: mean
    acceptance probability; extra: further draws (e.g. ``"eta"``: (chains, draws, N, k)).
    """

    names: list[str]
    samples: np.ndarray
    r_hat: np.ndarray
    ess: np.ndarray
    divergences: int
    accept: float
    wall_s: float
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def flat(self) -> np.ndarray:
        """(chains × draws, p) pooled draws."""
        return self.samples.reshape(-1, self.samples.shape[-1])

    def interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed credible interval per coordinate: ((p,), (p,))."""
        a = 50 * (1 - level)
        return np.percentile(self.flat, a, axis=0), np.percentile(self.flat, 100 - a, axis=0)

    def summary(self) -> str:
        lo, hi = self.interval()
        lines = [f"{'parameter':<24}{'mean':>10}{'sd':>10}{'2.5 %':>10}{'97.5 %':>10}{'R-hat':>8}{'ESS':>8}"]
        for j, n in enumerate(self.names):
            x = self.flat[:, j]
            lines.append(f"{n:<24}{x.mean():>10.4g}{x.std():>10.3g}{lo[j]:>10.4g}{hi[j]:>10.4g}"
                         f"{self.r_hat[j]:>8.3f}{self.ess[j]:>8.0f}")
        lines.append(f"{self.samples.shape[0]} chains x {self.samples.shape[1]} draws; {self.divergences} "
                     f"divergences; acceptance {self.accept:.2f}; {self.wall_s:.0f} s")
        return "\n".join(lines)


def nuts(potential: Callable, init, *, names: Sequence[str] | None = None, chains: int = 4,
         warmup: int = 500, samples: int = 500, seed: int = 0, target_accept: float = 0.8,
         max_tree_depth: int = 8, chunk: int = 100, init_jitter: float = 0.1, dense_mass: bool = False,
         inverse_mass_matrix=None, adapt_mass_matrix: bool = True, log=None) -> NutsResult:
    """NUTS draws from ``exp(−potential(q))`` for a flat parameter vector ``q``.

    potential: (p,) -> scalar, JAX-traceable (its gradient is ``jax.grad``); init: (p,) start
    (each chain starts at ``init`` plus N(0, init_jitter²) so that R-hat can see disagreement).
    Chains run vectorised (one batched potential call per leapfrog step for all chains), with
    windowed step-size and mass-matrix adaptation during ``warmup`` (diagonal, or dense with
    ``dense_mass``: a full covariance estimate, which takes out linear correlations such as a
    ridge between two fixed effects, at O(p²) per step).
    chunk: draws per progress line (``log``); the sampler state carries over between chunks.
    inverse_mass_matrix: initial metric ((p,) or (p, p) with ``dense_mass``), e.g. the inverse
    Hessian of the potential at the mode; ``adapt_mass_matrix=False`` keeps it through
    warm-up (only the step size adapts): a warm-up window shorter than a few times p gives a
    dense estimate worse than a good Laplace metric.
    """
    try:
        from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
        from numpyro.infer import NUTS
    except ImportError as err:  # optional dependency
        raise ImportError("posterior sampling needs numpyro: pip install numpyro (or tmepde[fit])") from err

    if chains < 2:
        raise ValueError(f"nuts: chains must be >= 2 to compute R-hat, got {chains}")
    init = np.asarray(init, float)
    p = init.size
    names = list(names) if names is not None else [f"q{i}" for i in range(p)]
    rng = np.random.default_rng(seed)
    q0 = jnp.asarray(init[None] + init_jitter * rng.standard_normal((chains, p)))
    # Warm-up and sampling advance in chunks of one length, so one compiled program serves
    # both (numpyro's adaptation schedule lives in the state, keyed on the step counter).
    chunk = max(1, min(chunk, samples))
    warmup = -(-warmup // chunk) * chunk
    kernel = NUTS(potential_fn=potential, target_accept_prob=target_accept, max_tree_depth=max_tree_depth,
                  dense_mass=dense_mass, adapt_mass_matrix=adapt_mass_matrix,
                  inverse_mass_matrix=None if inverse_mass_matrix is None else jnp.asarray(inverse_mass_matrix))
    t0 = time.perf_counter()
    state = kernel.init(jax.random.split(jax.random.PRNGKey(seed), chains), warmup, q0, (), {})
    step = kernel.sample   # vectorised over chains: init with a batch of keys makes it so

    @jax.jit
    def advance(state):
        def body(s, _):
            s = step(s, (), {})
            return s, (s.z, s.diverging, s.accept_prob)
        return jax.lax.scan(body, state, None, length=chunk)

    draws, div, acc = [], 0, []
    for done in range(chunk, warmup + samples + 1, chunk):
        state, (z, d, a) = advance(state)
        if done <= warmup:
            if log is not None and done == warmup:
                log(f"  NUTS warm-up: {chains} chains x {warmup} steps, step size "
                    f"{np.mean(np.asarray(state.adapt_state.step_size)):.3g} "
                    f"({time.perf_counter() - t0:.0f} s, compiling included)")
            continue
        draws.append(np.swapaxes(np.asarray(z), 0, 1))        # (chains, chunk, p)
        div += int(np.sum(np.asarray(d)))
        acc.append(np.asarray(a))
        if log is not None:
            log(f"  NUTS draws {done - warmup}/{samples} per chain: acceptance {np.mean(acc[-1]):.2f}, "
                f"{div} divergences ({time.perf_counter() - t0:.0f} s)")
    x = np.concatenate(draws, axis=1)[:, :samples]
    r_hat = np.asarray(split_gelman_rubin(x))
    ess = np.asarray(effective_sample_size(x))
    return NutsResult(names, x, r_hat, ess, div, float(np.mean(np.concatenate(acc))),
                      time.perf_counter() - t0)


def _forward_mode_vjp(predict: Callable, n_theta: int) -> Callable:
    """``predict(theta, eta, x, *rest)`` with a reverse-mode rule built from forward mode: the
    forward pass returns μ and its Jacobian in (θ, η) from one batched forward-mode pass
    (:func:`_value_and_jacfwd`, p + k tangents), the backward pass is ``Jᵀ μ̄``. Values are
    ``predict``'s own; ``x`` and ``rest`` get zero cotangents (covariates, class labels)."""

    @jax.custom_vjp
    def f(theta, eta, x, *rest):
        return predict(theta, eta, x, *rest)

    def fwd(theta, eta, x, *rest):
        te = jnp.concatenate([theta, eta])
        mu, J = _value_and_jacfwd(lambda v: predict(v[:n_theta], v[n_theta:], x, *rest), te)
        return mu, (J, x, rest)

    def bwd(res, ct):
        J, x, rest = res
        g = J.T @ ct
        zero = lambda a: jax.tree_util.tree_map(jnp.zeros_like, a)  # noqa: E731
        return (g[:n_theta], g[n_theta:], zero(x), *zero(rest))

    f.defvjp(fwd, bwd)
    return f


def laplace_metric(potential: Callable, q0, *, dense: bool = True, h: float = 1e-4, floor: float = 1e-6):
    """Inverse Hessian of ``potential`` at ``q0`` (central differences of its gradient,
    symmetrised; eigenvalues floored at ``floor`` × the largest, so a flat or not positive
    direction gets a wide metric instead of a negative one): the Laplace covariance, as an
    inverse mass matrix for NUTS ((p, p), or its diagonal for ``dense=False``)."""
    grad = jax.jit(jax.grad(potential))
    q0 = np.asarray(q0, float)
    n = q0.size
    H = np.zeros((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        H[:, j] = (np.asarray(grad(jnp.asarray(q0 + e))) - np.asarray(grad(jnp.asarray(q0 - e)))) / (2 * h)
    lam, V = np.linalg.eigh(0.5 * (H + H.T))
    lam = np.maximum(lam, floor * lam.max())
    cov = (V / lam) @ V.T
    return cov if dense else np.diag(cov)


def _class_mode_terms(predict, data, start, eta_c, subjects, n_c, cov, arrays, *, response: bool = False):
    """At each subject's class-c mode ``eta_c`` (C, N, k) of ``subjects``: the Gauss–Newton
    Hessian (C, n, k, k) of the subject's −log p(y_i, η | θ̂, ω̂, σ̂, class c)
    (:func:`_subject_terms`), and with ``response`` also ``dη̂_i,c / du`` (C, n, k, p + k + 1),
    how the mode moves with the population coordinates ``u = [θ, log ω, log σ]``, by the
    implicit function theorem on ``∇_η ℓ_i(η̂; u) = 0``: ``−H_ηη⁻¹ ∂²ℓ_i/∂η∂u`` (the cross
    term exact). One compiled pass over classes and subjects."""
    p, k = start.theta.size, start.omega.size
    ell, terms = _subject_terms(lambda th, e, xc: predict(th, e, xc[0], xc[1]), "gauss-newton")
    u = jnp.asarray(start.u)
    idx = jnp.asarray(subjects)
    sub = lambda a: jax.tree_util.tree_map(lambda v: v[idx], a)  # noqa: E731

    def one(e, y, obs, cen, cmask, x):
        args = (y, obs, cen, cmask, x)
        H = terms(e, u[:p], u[p:p + k], u[-1], *args)[2]
        if not response:
            return H, None
        cross = jax.jacfwd(lambda uu: jax.grad(ell)(e, uu[:p], uu[p:p + k], uu[-1], *args))(u)   # (k, p+k+1)
        return H, -jnp.linalg.solve(H, cross)

    def one_class(e, c):
        x = (sub(cov), jnp.full(idx.size, c))
        return jax.vmap(one)(e, *sub(arrays), x)

    H, G = jax.jit(jax.vmap(one_class))(jnp.asarray(eta_c)[:, idx], jnp.arange(n_c, dtype=u.dtype))
    return np.asarray(H), (None if G is None else np.asarray(G))


def _pseudo_priors(H, eta_c, subjects, omega):
    """Means (C, n, k) and precisions (C, n, k, k) on ξ = η / ω̂ of Gaussians at the per-class
    modes ``eta_c`` (C, N, k) of ``subjects``, from their Hessians ``H`` in η
    (:func:`_class_mode_terms`), scaled to ξ."""
    return np.asarray(eta_c)[:, subjects] / omega, H * omega[:, None] * omega[None, :]


def posterior_nuts(predict: Callable, data: PopulationData, start: PopulationFit, *,
                   prior_mean=None, prior_sd=None, omega_prior=None, sigma_prior=None,
                   chains: int = 4, warmup: int = 300, samples: int = 300, seed: int = 0,
                   target_accept: float = 0.8, max_tree_depth: int = 7, chunk: int = 50,
                   dense_mass: bool = False, mixture=None, class_effects: str = "per-class",
                   class_free=None, pseudo_prior_scale: float = 1.5, centred=(), jacobian: str = "forward",
                   init_jitter: float = 0.1, metric: str = "adapt", follow_modes: bool = True,
                   log=None) -> NutsResult:
    """Joint posterior of a population model by NUTS: fixed effects θ, log ω, log σ and every
    subject's random effects, with no Laplace approximation.

    Non-centred (η_i = ω ⊙ ξ_i, ξ_i ~ N(0, I); Papaspiliopoulos et al. 2007), which removes the
    funnel between ω and η that stalls centred samplers when few subjects inform ω.
    Priors: θ ~ N(prior_mean, prior_sd²) (``prior_sd=None``: N(θ̂, 10²), i.e. nearly flat, the
    population fit had none); log ω ~ N(m, s²) and log σ ~ N(m, s²) from ``omega_prior`` /
    ``sigma_prior`` = (m, s) (default: centred on the fit with s = 1, a factor e).
    start: a :class:`PopulationFit` (its θ̂, ω̂, σ̂, η̂ start every chain, plus N(0,
    init_jitter²) per chain and coordinate).
    mixture: ``theta -> (C,) log class weights`` (default: the fit's), ``predict(theta, eta,
    x, c)``; the class of each subject is summed out of the potential (no discrete parameter
    to sample).
    class_effects: with a mixture, "per-class" (default) gives each subject one random effect
    per class, ξ_i,c (η_i,c = ω ⊙ ξ_i,c), in the product space of Carlin and Chib (1995): the
    joint density of subject i is ``Σ_c π_c p(y_i | θ, η_i,c, c) N(ξ_i,c; 0, I) Π_{c'≠c}
    g_i,c'(ξ_i,c')``, each ``g`` a normalised "pseudo-prior" for the effect of a class the
    subject is not in. Integrating out all ξ_i,c gives exactly the marginal likelihood
    Σ_c π_c ∫ p(y_i | η, c) N(η; 0, Ω) dη of the model, whatever the g, so the posterior of θ, ω,
    σ and of (class, η_i,class) is unchanged. What changes is the geometry: with one η_i shared
    by the classes (``"shared"``), an animal whose data fit both classes has a bimodal η_i (each
    class needs its own η to explain the same volumes), between whose modes NUTS rarely crosses;
    per class, each ξ_i,c is unimodal and the class weight moves continuously. The g are
    Gaussians at the fit's per-class modes ``start.eta_components`` with the Gauss–Newton
    posterior covariance there, widened ``pseudo_prior_scale`` times in s.d. (they only need to
    cover where each class's effect lives; Carlin and Chib's advice, close to the conditional
    posterior, makes class switches frequent).
    "aligned": one sampled ζ_i per subject, mapped per class onto the subject's own value
    (θ + η) at that class's mode, ``θ̂ + η̂_i,c + L_i,c ζ_i`` (``L L'``: ``pseudo_prior_scale²``
    × the Gauss–Newton inverse curvature there), the class summed out with the Jacobian
    ``|L_i,c|``: a class-wise change of variables of the augmented model (class, η), so the
    posterior of θ, ω, σ and of (class, η) is exactly the model's; both classes' modes sit at
    ζ ≈ 0, so the class weight moves continuously without a pseudo-prior's extra dimensions
    (it needs the fit's per-class modes to stay close to the posterior's: a class whose mode
    moves many of its s.d. away sits at a distant ζ again). follow_modes (default): the class
    modes move with ``u = [θ, log ω, log σ]`` to first order, ``η̂_i,c + G_i,c (u − û)``
    (``G = dη̂/du`` by the implicit function theorem at the fit, :func:`_class_mode_terms`): a
    shift in the map that is triangular in (u, ζ), so the Jacobian is still ``|L_i,c|`` and the
    posterior the same, while a class whose mode moves with a fixed effect (an animal that
    responds only while the treatment effect is weak) stays near ζ ≈ 0.
    class_free: (N,) bool, subjects whose prediction does not depend on the class (e.g. an
    untreated animal when the classes differ in the treatment effect): one η_i for them, their
    class term Σ_c π_c p(y_i | η_i) = p(y_i | η_i), simulated once (as class 0).
    centred: random effects (names in ``start.re_names``) sampled centred, as the subject's
    own value ``(θ_j + η_i,j) / ω_j`` instead of ``ξ_i,j``, for effects whose ω the fit held
    fixed (no funnel then) and that the data pin per subject: non-centred, θ_j and the mean of
    the ξ_i,j trade off along a ridge (the data fix only θ_j + ω_j ξ_i,j) that NUTS crosses
    slowly. A linear change of variables with unit Jacobian: the posterior is the same.
    The random effect ``j`` enters θ at ``start.names.index(start.re_names[j])``.
    jacobian: how the potential's gradient passes through ``predict``. "forward" (default):
    each subject's prediction and its Jacobian in (θ, η_i) from one batched forward-mode pass
    (p + k tangents), the gradient then ``Jᵀ ∂U/∂μ`` (:func:`_forward_mode_vjp`); "reverse":
    reverse mode through the simulator. Same values and gradients to rounding; forward mode
    is several times cheaper for a time-stepped ``predict`` with few parameters per subject
    (the adjoint of a long scan stores and replays every step).
    metric: "adapt" (default): the mass matrix adapted in warm-up from the identity;
    "laplace": fixed to the inverse Hessian of the potential at the start (central
    differences of its gradient, eigenvalues floored at 1e-6 of the largest), only the step
    size adapted; "laplace-adapt": that as the start of the adaptation.
    Returns a :class:`NutsResult` over ``[θ, log ω, log σ]`` (names as in ``start``, then
    ``omega_<re>``, ``sigma``; an ω the fit held fixed stays fixed and is left out). Extras:
    ``eta`` (chains, draws, N, k) each subject's random effect (with a mixture: of a class
    drawn from its class probabilities given the draw, ``class`` (chains, draws, N)),
    ``membership`` (chains, draws, N, C) each draw's class probabilities given θ and the η's,
    ``r_hat_eta`` / ``ess_eta`` (N, k) of ``eta``, ``r_hat_membership`` / ``ess_membership``
    (N,) of the probability of the last class, ``r_hat_xi_max`` / ``ess_xi_min`` over every
    sampled subject coordinate, and ``r_hat_eta_max`` / ``ess_eta_min`` the worst of all these.
    """
    p, k = start.theta.size, start.omega.size
    n_sub = data.y.shape[0]
    arrays = tuple(jnp.asarray(a) for a in (data.y, data.observed, data.censor, data.censored))
    cov = jax.tree_util.tree_map(jnp.asarray, data.covariates) if data.covariates is not None else jnp.zeros(n_sub)
    pm = jnp.asarray(start.theta if prior_mean is None else prior_mean, float)
    ps = jnp.asarray(10.0 if prior_sd is None else prior_sd, float)
    om_m, om_s = omega_prior if omega_prior is not None else (np.log(start.omega), 1.0)
    sg_m, sg_s = sigma_prior if sigma_prior is not None else (np.log(start.sigma), 1.0)
    om_m, sg_m = jnp.asarray(om_m, float), jnp.asarray(sg_m, float)
    mixture = start.mixture if mixture is None else mixture
    n_c = _mixture_size(mixture, p)
    classes = jnp.arange(n_c, dtype=jnp.result_type(float))
    raw_predict = predict
    if jacobian == "forward":
        predict = _forward_mode_vjp(predict, p)
    elif jacobian != "reverse":
        raise ValueError(f"posterior_nuts: jacobian must be 'forward' or 'reverse', got {jacobian!r}")
    if class_effects not in ("per-class", "shared", "aligned"):
        raise ValueError(f"posterior_nuts: class_effects must be 'per-class', 'shared' or 'aligned', "
                         f"got {class_effects!r}")
    batch = jax.vmap(predict, (None, 0, 0)) if mixture is None else jax.vmap(predict, (None, 0, 0, None))
    per_class = mixture is not None and class_effects in ("per-class", "aligned")
    aligned = mixture is not None and class_effects == "aligned"
    cfree = np.zeros(n_sub, bool) if class_free is None else np.asarray(class_free, bool)
    if cfree.shape != (n_sub,):
        raise ValueError(f"posterior_nuts: class_free must have one entry per subject ({n_sub}), "
                         f"got shape {cfree.shape}")
    own = np.nonzero(~cfree)[0] if per_class else np.zeros(0, int)      # one η per class
    one = np.setdiff1d(np.arange(n_sub), own)                            # one η for all classes

    # class-free subjects are simulated once (class 0), the others once per class
    dep = np.nonzero(~cfree)[0] if mixture is not None else np.zeros(0, int)
    ind = np.setdiff1d(np.arange(n_sub), dep)
    pick = lambda a, idx: jax.tree_util.tree_map(lambda v: v[idx], a)  # noqa: E731
    cov_dep, cov_ind = pick(cov, dep), pick(cov, ind)
    arr_dep, arr_ind = pick(arrays, dep), pick(arrays, ind)

    def class_nll(theta, eta, log_sigma):
        """(C, N) −log p(y_i | θ, η_c,i, class c) for eta (C, N, k)."""
        sig = jnp.exp(log_sigma)
        if mixture is None:
            return jnp.sum(_point_loss(batch(theta, eta[0], cov), *arrays, sig), axis=1)[None]
        out = jnp.zeros((n_c, n_sub), eta.dtype)
        if ind.size:
            v = jnp.sum(_point_loss(batch(theta, eta[0, ind], cov_ind, classes[0]), *arr_ind, sig), axis=1)
            out = out.at[:, ind].set(jnp.broadcast_to(v, (n_c, ind.size)))
        if dep.size:
            v = jax.vmap(lambda c, e: jnp.sum(_point_loss(batch(theta, e, cov_dep, c), *arr_dep, sig), axis=1))(
                classes, eta[:, dep])
            out = out.at[:, dep].set(v)
        return out

    free_om = np.nonzero(start.free_mask[p:p + k])[0]     # sampled ω; the others stay at ω̂
    kf = free_om.size
    log_om_hat = jnp.asarray(np.log(start.omega))
    om_m = om_m if np.ndim(om_m) == 0 else om_m[free_om]
    om_s = om_s if np.ndim(om_s) == 0 else jnp.asarray(om_s)[free_om]
    m = p + kf + 1
    n_one = one.size * k
    cen = np.zeros(k, bool)
    for name in centred:
        if name not in start.re_names:
            raise ValueError(f"posterior_nuts: centred names {name!r}, not a random effect; "
                             f"random effects: {start.re_names}")
        j = start.re_names.index(name)
        if start.free_mask[p + j]:
            raise ValueError(f"posterior_nuts: centred {name!r} needs its ω held fixed by the fit "
                             f"(fixed_omega); a sampled ω with a centred effect makes a funnel")
        if name not in start.names:
            raise ValueError(f"posterior_nuts: centred {name!r} is not a fixed effect (start.names), "
                             f"so its θ is unknown")
        cen[j] = True
    cen_theta = np.array([start.names.index(n) if cen[j] else 0 for j, n in enumerate(start.re_names)])
    cen, cen_om = jnp.asarray(cen), jnp.asarray(start.omega)
    # sampled coordinate = ξ + shift(θ): θ_j / ω_j for a centred effect, 0 otherwise
    shift = lambda theta: jnp.where(cen, theta[cen_theta] / cen_om, 0.0)  # noqa: E731
    eta_c0 = (np.broadcast_to(start.eta, (n_c, n_sub, k)) if start.eta_components is None
              else np.asarray(start.eta_components))
    if own.size:
        # pseudo-priors g_i,c = N(mean, prec⁻¹) on ξ_i,c: Gauss–Newton curvature of the
        # class-c subject term at the fit's mode, in ξ (Hη → diag ω Hη diag ω), widened
        H_own, G_own = _class_mode_terms(raw_predict, data, start, eta_c0, own, n_c, cov, arrays,
                                         response=aligned and follow_modes)
        g_mean, g_prec = _pseudo_priors(H_own, eta_c0, own, start.omega)
        g_prec = g_prec / pseudo_prior_scale**2
        if aligned:
            # one ζ_i per subject, mapped per class onto the subject's own value (θ + η) at
            # the class's mode, z_i,c = θ̂ + η̂_i,c + L_i,c ζ_i, L L' the mode's covariance in η
            # (pseudo_prior_scale² × the Gauss–Newton inverse curvature)
            re_idx = np.array([start.names.index(n) if n in start.names else -1 for n in start.re_names])
            has_theta = jnp.asarray(re_idx >= 0)
            re_idx = jnp.asarray(np.maximum(re_idx, 0))
            theta_re = lambda theta: jnp.where(has_theta, theta[re_idx], 0.0)  # noqa: E731
            cov_xi = np.linalg.inv(g_prec)                                  # (C, n_own, k, k)
            a_L = np.linalg.cholesky(cov_xi * np.outer(start.omega, start.omega))
            # map centre: the class mode η̂ when it follows u (below), else the subject's own
            # value θ̂ + η̂ held where the fit put it
            a_mean = jnp.asarray(np.asarray(eta_c0)[:, own]
                                 + (0.0 if follow_modes else np.asarray(theta_re(jnp.asarray(start.theta)))))
            a_L = jnp.asarray(a_L)
            # the class modes follow the population coordinates to first order (a shift in ζ's
            # map, triangular in (u, ζ): the Jacobian stays |L|), so a mode that moves with θ,
            # ω or σ stays at ζ ≈ 0 instead of drifting away from where its class is sampled
            a_u0, a_G = jnp.asarray(start.u), (jnp.asarray(G_own) if follow_modes else None)
            a_logdet = jnp.sum(jnp.log(jnp.diagonal(a_L, axis1=-2, axis2=-1)), axis=-1)   # (C, n_own)
        g_mean, g_prec = jnp.asarray(g_mean), jnp.asarray(g_prec)
        g_logdet = jnp.linalg.slogdet(g_prec)[1]                      # (C, n_own)

    def unpack(q):
        """θ, log ω, log σ and ξ (C, N, k) from a flat q = [θ, log ω_free, log σ, ξ_one, ξ_own]."""
        log_omega = log_om_hat.at[free_om].set(q[p:p + kf])
        xi = jnp.zeros((n_c, n_sub, k), q.dtype).at[:, one].set(q[m:m + n_one].reshape(1, one.size, k))
        if own.size and not aligned:
            xi = xi.at[:, own].set(q[m + n_one:].reshape(n_c, own.size, k))
        xi = xi - shift(q[:p])
        if own.size and aligned:
            zeta = q[m + n_one:].reshape(own.size, k)
            eta_own = a_mean + jnp.einsum("cikl,il->cik", a_L, zeta)
            if follow_modes:
                du = jnp.concatenate([q[:p], log_omega, q[p + kf:p + kf + 1]]) - a_u0
                eta_own = eta_own + jnp.einsum("cikj,j->cik", a_G, du)
            else:
                eta_own = eta_own - theta_re(q[:p])
            xi = xi.at[:, own].set(eta_own / jnp.exp(log_omega))
        return q[:p], log_omega, q[p + kf], xi

    def logits(q):
        """(C, N) a_c,i with −log p(y, ξ | θ, ω, σ) = −Σ_i logsumexp_c a_c,i + ½|ξ_one|²."""
        theta, log_omega, log_sigma, xi = unpack(q)
        a = -class_nll(theta, xi * jnp.exp(log_omega), log_sigma)
        if mixture is not None:
            a = a + mixture(theta)[:, None]
        if own.size and aligned:
            # N(η_i,c; 0, Ω) (ω sampled: its normaliser counts) times the map's Jacobian
            x = xi[:, own]
            a = a.at[:, own].add(-0.5 * jnp.sum(x**2, axis=-1) - jnp.sum(log_omega) + a_logdet)
        elif own.size:
            x = xi[:, own]                                             # (C, n_own, k)
            d = x - g_mean
            log_g = -0.5 * jnp.einsum("cik,cikl,cil->ci", d, g_prec, d) + 0.5 * g_logdet
            log_n = -0.5 * jnp.sum(x**2, axis=-1)                       # (2π)^(-k/2) cancels
            a = a.at[:, own].add(log_n - log_g + jnp.sum(log_g, axis=0))
        return a

    def potential(q):
        theta, log_omega, log_sigma, xi = unpack(q)
        nll = -jnp.sum(jax.scipy.special.logsumexp(logits(q), axis=0))
        prior = (0.5 * jnp.sum(xi[0, one] ** 2) + 0.5 * jnp.sum(((theta - pm) / ps) ** 2)
                 + 0.5 * jnp.sum(((log_omega[free_om] - om_m) / om_s) ** 2) + 0.5 * ((log_sigma - sg_m) / sg_s) ** 2)
        return jnp.where(jnp.isfinite(nll), nll + prior, jnp.inf)

    s0 = np.asarray(shift(jnp.asarray(start.theta)))
    q0 = np.concatenate([start.theta, np.log(start.omega[free_om]), [np.log(start.sigma)],
                         (start.eta[one] / start.omega + s0).ravel(),
                         np.zeros(own.size * k) if aligned else (eta_c0[:, own] / start.omega + s0).ravel()])
    names = list(start.names) + [f"omega_{start.re_names[i]}" for i in free_om] + ["sigma"]
    xi_names = ([f"xi{i}_{j}" for i in one for j in range(k)]
                + ([f"zeta{i}_{j}" for i in own for j in range(k)] if aligned else
                   [f"xi{i}_{j}_class{c}" for c in range(n_c) for i in own for j in range(k)]))
    inv_mass = None
    if metric not in ("adapt", "laplace", "laplace-adapt"):
        raise ValueError(f"posterior_nuts: metric must be 'adapt', 'laplace' or 'laplace-adapt', got {metric!r}")
    if metric != "adapt":
        inv_mass = laplace_metric(potential, q0, dense=dense_mass)
    res = nuts(potential, q0, names=names + xi_names, chains=chains,
               warmup=warmup, samples=samples, seed=seed, target_accept=target_accept,
               max_tree_depth=max_tree_depth, chunk=chunk, dense_mass=dense_mass,
               init_jitter=init_jitter, inverse_mass_matrix=inv_mass,
               adapt_mass_matrix=metric != "laplace", log=log)
    x = res.samples
    flat = jnp.asarray(x.reshape(-1, x.shape[-1]))
    parts = jax.jit(jax.vmap(unpack))(flat)
    eta_c = np.asarray(parts[3] * jnp.exp(parts[1])[:, None, None, :])          # (draws, C, N, k)
    shape = x.shape[:2]
    extra = {"r_hat_xi_max": float(np.nanmax(res.r_hat[m:])), "ess_xi_min": float(np.nanmin(res.ess[m:]))}
    if mixture is None:
        eta = eta_c[:, 0]
    else:
        probs = np.asarray(jax.jit(lambda xs: jax.lax.map(lambda q: jax.nn.softmax(logits(q), axis=0).T, xs))(
            flat))                                          # (draws, N, C)
        # a class per draw and subject from its class probabilities, and that class's η
        u = np.random.default_rng(seed + 1).random(probs.shape[:2])
        cls = np.minimum(np.sum(u[..., None] > np.cumsum(probs, axis=-1), axis=-1), n_c - 1)
        eta = np.take_along_axis(eta_c, cls[:, None, :, None], axis=1)[:, 0]
        extra["membership"] = probs.reshape(*shape, n_sub, n_c)
        extra["class"] = cls.reshape(*shape, n_sub)
        extra["eta_classes"] = eta_c.reshape(*shape, n_c, n_sub, k)
    eta = eta.reshape(*shape, n_sub, k)
    extra["eta"] = eta
    extra["centred"] = list(centred)
    extra["class_effects"] = class_effects if mixture is not None else None
    extra["potential"] = potential   # −log density of the sampled coordinates (+ const.)
    extra["logits"] = logits         # (C, N) class log weights: softmax over C = P(class | q)
    extra["unpack_eta"] = lambda q: unpack(q)[3] * jnp.exp(unpack(q)[1])   # (C, N, k) η per class
    # convergence of what is reported per subject: its η and its class probability
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    def diag(a):
        """Split R-hat and ESS per column; a column constant over all draws (e.g. a class
        probability of exactly 1) counts as converged: R-hat 1, ESS the number of draws."""
        a = a.reshape(*shape, -1)
        const = np.ptp(a.reshape(-1, a.shape[-1]), axis=0) == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            r, e = np.asarray(split_gelman_rubin(a)), np.asarray(effective_sample_size(a))
        return np.where(const, 1.0, r), np.where(const, float(a.shape[0] * a.shape[1]), e)

    rh, es = diag(eta)
    extra["r_hat_eta"], extra["ess_eta"] = rh.reshape(n_sub, k), es.reshape(n_sub, k)
    worst_r, worst_e = [extra["r_hat_xi_max"], np.nanmax(rh)], [extra["ess_xi_min"], np.nanmin(es)]
    if mixture is not None:
        rh, es = diag(extra["membership"][..., -1])
        extra["r_hat_membership"], extra["ess_membership"] = rh, es
        worst_r.append(np.nanmax(rh))
        worst_e.append(np.nanmin(es))
    extra["r_hat_eta_max"] = float(np.max(worst_r))
    extra["ess_eta_min"] = float(np.min(worst_e))
    return NutsResult(names, x[..., :m], res.r_hat[:m], res.ess[:m], res.divergences, res.accept,
                      res.wall_s, extra)
