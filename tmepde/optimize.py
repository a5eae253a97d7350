"""Dose-schedule optimisation by gradient, with constraints, and a gradient-free baseline.

Decision variables are the dose times and amounts of one or more agents, stored in the
model's parameter dict as arrays (``<prefix>_times`` in h, ``<prefix>_amounts``); the
objective is any differentiable scalar of a run (e.g. final or time-averaged tumor burden).

Constraints are kept by projection after every optimiser step (projected Adam, optax):

* bounds ``0 <= amount <= max_amount`` and a total budget ``Σ amount <= budget`` per agent
  (Euclidean projection onto the capped simplex, by bisection on the multiplier);
* times inside ``[t_min, t_max]`` and at least ``min_interval`` apart (sorted, then pushed
  forward/back, which is the projection for an ordered schedule up to ties);
* a toxicity limit ``toxicity(params) <= limit`` (e.g. peak systemic IFN-γ): a quadratic
  penalty during the search, and at the end all amounts are scaled down by bisection until
  the limit holds (toxicity increases with dose), so the returned schedule satisfies it.

The gradient-free baseline (:func:`optimize_cma`) runs CMA-ES (package ``cma``) on the same
variables with the same projection and counts simulations the same way.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Mapping, Sequence

import numpy as np
import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class DoseAgent:
    """Decision variables for one agent.

    prefix: parameter keys ``<prefix>_times`` (h) and ``<prefix>_amounts``.
    max_amount: per-dose cap; budget: cap on the total; t_min/t_max: window for dose times
    (h); min_interval: minimum spacing between doses (h); optimize_times: also move times.
    """

    prefix: str
    max_amount: float
    budget: float
    t_min: float = 0.0
    t_max: float = np.inf
    min_interval: float = 0.0
    optimize_times: bool = True

    @property
    def times_key(self):
        return f"{self.prefix}_times"

    @property
    def amounts_key(self):
        return f"{self.prefix}_amounts"


def project_amounts(a: np.ndarray, cap: float, budget: float) -> np.ndarray:
    """Euclidean projection onto {0 <= a_i <= cap, Σ a_i <= budget}."""
    a = np.clip(np.asarray(a, float), 0.0, cap)
    if a.sum() <= budget:
        return a
    lo, hi = 0.0, float(np.max(a))
    for _ in range(100):  # a_i(λ) = clip(a_i - λ, 0, cap); Σ decreases in λ
        lam = 0.5 * (lo + hi)
        if np.clip(a - lam, 0.0, cap).sum() > budget:
            lo = lam
        else:
            hi = lam
    return np.clip(a - hi, 0.0, cap)


def project_times(t: np.ndarray, t_min: float, t_max: float, gap: float) -> np.ndarray:
    """Sorted times in [t_min, t_max] with spacing >= gap (forward then backward sweep)."""
    t = np.sort(np.asarray(t, float))
    n = len(t)
    if n and t_max - t_min < gap * (n - 1):
        raise ValueError(f"cannot fit {n} doses {gap} h apart in [{t_min}, {t_max}] h")
    t = np.clip(t, t_min, t_max)
    for i in range(1, n):
        t[i] = max(t[i], t[i - 1] + gap)
    t[-1:] = np.minimum(t[-1:], t_max)
    for i in range(n - 2, -1, -1):
        t[i] = min(t[i], t[i + 1] - gap)
    return t


def project(params: Mapping, agents: Sequence[DoseAgent]) -> dict:
    out = dict(params)
    for ag in agents:
        out[ag.amounts_key] = jnp.asarray(project_amounts(np.asarray(params[ag.amounts_key]), ag.max_amount, ag.budget))
        if ag.optimize_times:
            out[ag.times_key] = jnp.asarray(project_times(np.asarray(params[ag.times_key]), ag.t_min, ag.t_max,
                                                          ag.min_interval))
    return out


def _enforce_toxicity(params, agents, toxicity, limit):
    """Scale all amounts by the largest factor in [0, 1] that meets the toxicity limit."""
    if toxicity is None or float(toxicity(params)) <= limit:
        return params, 1.0

    def scaled(s):
        return dict(params, **{ag.amounts_key: params[ag.amounts_key] * s for ag in agents})

    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if float(toxicity(scaled(mid))) <= limit:
            lo = mid
        else:
            hi = mid
    return scaled(lo), lo


@dataclasses.dataclass
class OptimizeResult:
    params: dict
    objective: float
    initial_objective: float
    history: list[tuple[int, float]]  # (simulations used, best objective so far)
    n_simulations: int
    wall_s: float
    toxicity: float | None
    toxicity_scale: float

    def schedule(self, agents: Sequence[DoseAgent]) -> dict:
        return {ag.prefix: {"times_h": np.asarray(self.params[ag.times_key]).tolist(),
                            "amounts": np.asarray(self.params[ag.amounts_key]).tolist()} for ag in agents}


def _scales(agents):
    """Typical magnitudes so one learning rate suits amounts and times alike."""
    return {ag.amounts_key: ag.max_amount for ag in agents} | {
        ag.times_key: (ag.min_interval or 24.0) for ag in agents if ag.optimize_times}


def optimize_schedule(objective: Callable[[dict], jax.Array], params: Mapping, agents: Sequence[DoseAgent], *,
                      steps: int = 40, learning_rate: float = 0.05,
                      toxicity: Callable[[dict], jax.Array] | None = None, toxicity_limit: float = np.inf,
                      penalty: float = 100.0, gradient_cost: float = 2.0) -> OptimizeResult:
    """Projected Adam on scaled variables. Each value-and-gradient evaluation counts as
    ``gradient_cost`` simulations (forward + adjoint) in the reported budget.

    The forward pass of each gradient evaluation also gives the objective and the toxicity
    of the current (projected, feasible-in-every-other-way) schedule, so the best schedule is
    tracked without extra runs; only the last iterate costs one more forward simulation.
    """
    scales = _scales(agents)
    keys = list(scales)
    p = project(dict(params), agents)
    tox_fn = toxicity if toxicity is not None else (lambda q: jnp.zeros(()))

    def loss(x, base):
        q = dict(base, **{k: x[k] * scales[k] for k in keys})
        value = objective(q)
        tox = tox_fn(q)
        penalised = value
        if toxicity is not None and np.isfinite(toxicity_limit):
            excess = jnp.maximum(tox / toxicity_limit - 1.0, 0.0)
            penalised = value + penalty * excess**2 * jnp.abs(jax.lax.stop_gradient(value))
        return penalised, (value, tox)

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    opt = optax.adam(learning_rate)
    x = {k: jnp.asarray(p[k]) / scales[k] for k in keys}
    state = opt.init(x)
    t0 = time.perf_counter()
    initial = best = None
    best_p, history, sims = p, [], 0

    def consider(value, tox, q):
        nonlocal best, best_p
        feasible = toxicity is None or tox <= toxicity_limit
        if feasible and (best is None or value < best):
            best, best_p = value, q
        history.append((int(sims), best if best is not None else value))

    for _ in range(steps):
        (_, (value, tox)), g = value_and_grad(x, p)  # objective of p and its gradient
        sims += gradient_cost
        if initial is None:
            initial = float(value)
        consider(float(value), float(tox), p)
        updates, state = opt.update(g, state, x)
        x = optax.apply_updates(x, updates)
        p = project(dict(p, **{k: x[k] * scales[k] for k in keys}), agents)
        x = {k: jnp.asarray(p[k]) / scales[k] for k in keys}
    sims += 1  # the last iterate
    last = float(objective(p))
    if initial is None:
        initial = last
    consider(last, float(tox_fn(p)), p)
    final, factor = _enforce_toxicity(best_p, agents, toxicity, toxicity_limit)
    value = float(objective(final))
    return OptimizeResult(final, value, initial, history, int(sims), time.perf_counter() - t0,
                          None if toxicity is None else float(toxicity(final)), factor)


def optimize_cma(objective: Callable[[dict], jax.Array], params: Mapping, agents: Sequence[DoseAgent], *,
                 max_simulations: int = 100, sigma0: float = 0.3, seed: int = 0,
                 toxicity: Callable[[dict], jax.Array] | None = None, toxicity_limit: float = np.inf
                 ) -> OptimizeResult:
    """CMA-ES baseline on the same (scaled, projected) variables and simulation budget."""
    import cma

    scales = _scales(agents)
    keys = list(scales)
    p0 = project(dict(params), agents)
    sizes = [int(np.size(p0[k])) for k in keys]
    f = jax.jit(objective)
    tox = jax.jit(toxicity) if toxicity is not None else None

    def unpack(vec):
        out, i = dict(p0), 0
        for k, n in zip(keys, sizes):
            out[k] = jnp.asarray(vec[i:i + n] * scales[k])
            i += n
        return project(out, agents)

    def evaluate(vec):
        q = unpack(vec)
        value = float(f(q))
        if tox is not None and float(tox(q)) > toxicity_limit:
            value += 1e3 * abs(value)  # infeasible
        return value

    x0 = np.concatenate([np.ravel(np.asarray(p0[k])) / scales[k] for k in keys])
    t0 = time.perf_counter()
    initial = float(f(p0))
    es = cma.CMAEvolutionStrategy(x0, sigma0, {"seed": seed + 1, "verbose": -9,
                                               "maxfevals": max_simulations - 1})
    sims, best, best_vec = 1, initial, x0
    history = [(1, initial)]
    while not es.stop() and sims < max_simulations:
        cands = es.ask()
        cands = cands[: max_simulations - sims]
        vals = [evaluate(c) for c in cands]
        if len(cands) == es.popsize:
            es.tell(cands, vals)
        for c, v in zip(cands, vals):
            sims += 1
            if v < best:
                best, best_vec = v, np.asarray(c)
            history.append((sims, best))
        if len(cands) < es.popsize:
            break
    final, factor = _enforce_toxicity(unpack(best_vec), agents, toxicity, toxicity_limit)
    return OptimizeResult(final, float(f(final)), initial, history, sims, time.perf_counter() - t0,
                          None if toxicity is None else float(toxicity(final)), factor)
