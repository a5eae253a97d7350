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
    n_calls = {"n": 0}

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
