"""Dose schedules as smooth, unconstrained decision vectors, and two ways to optimise them.

A schedule of several agents is a set of dose *slots* (e.g. one a day for four weeks). Each
slot has an amount and a time, and both are decision variables, mapped from an
unconstrained vector ``z`` so that simple bounds can never be violated:

* amount ``a = cap · sigmoid(v)`` in ``(0, cap)`` (ng);
* time ``t = nominal + window · tanh(u)`` within ``± window`` h of the slot's nominal time
  (a window below half the slot spacing keeps the doses in order).

Everything a bound cannot express is a constraint ``g(a) ≤ 0`` — here the total amount of an
agent against its budget — handled by a penalty, not by rescaling after a step:
``J(z) = objective(z) + μ/2 Σ max(0, g)²`` (quadratic exterior penalty, the same function for
every optimiser, so their values compare). An exposure term (dose-proportional plasma AUC
of linear PK) can be added to the objective with a weight.

Optimisers, on the same ``J``:

* :func:`minimize_lbfgs`: L-BFGS (SciPy's L-BFGS-B), value and gradient from one compiled
  reverse-mode pass through the whole simulation;
* :func:`minimize_cma`: CMA-ES (package ``cma``, Hansen 2016) with each generation
  evaluated as one vmapped batch — the fair way to run a population method on this engine.

Both return a trace of (wall seconds, best J so far), so costs compare as measured time.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Mapping, Sequence

import numpy as np
import jax
import jax.numpy as jnp

__all__ = ["SlotAgent", "ScheduleSpace", "Trace", "minimize_lbfgs", "minimize_cma"]


@dataclasses.dataclass(frozen=True)
class SlotAgent:
    """Dose slots of one agent.

    prefix: the model's schedule parameters ``<prefix>_times`` (h) and ``<prefix>_amounts``
    (ng), arrays with one entry per slot. nominal: (n,) slot times (h). cap: largest amount
    per dose (ng). window: how far a dose may move from its nominal time (h, ≥ 0; 0 fixes
    the times). budget: largest total amount (ng; inf: none).
    """

    prefix: str
    nominal: tuple
    cap: float
    window: float = 0.0
    budget: float = float("inf")

    def __post_init__(self):
        if not self.cap > 0:
            raise ValueError(f"SlotAgent {self.prefix!r}: cap must be > 0 ng, got {self.cap!r}")
        if not self.window >= 0:
            raise ValueError(f"SlotAgent {self.prefix!r}: window must be >= 0 h, got {self.window!r}")
        if not self.budget > 0:
            raise ValueError(f"SlotAgent {self.prefix!r}: budget must be > 0 ng, got {self.budget!r}")

    @property
    def n(self) -> int:
        return len(self.nominal)


@dataclasses.dataclass(frozen=True)
class ScheduleSpace:
    """The decision vector of several agents: ``z = [v (amounts), u (times, if free)]`` per agent."""

    agents: tuple

    @property
    def size(self) -> int:
        return sum(ag.n * (2 if ag.window > 0 else 1) for ag in self.agents)

    def decode(self, z) -> dict:
        """``z`` (size,) -> ``{<prefix>_amounts: (n,), <prefix>_times: (n,)}``."""
        out, i = {}, 0
        for ag in self.agents:
            v = z[i:i + ag.n]
            i += ag.n
            out[f"{ag.prefix}_amounts"] = ag.cap * jax.nn.sigmoid(v)
            nominal = jnp.asarray(ag.nominal, z.dtype)
            if ag.window > 0:
                out[f"{ag.prefix}_times"] = nominal + ag.window * jnp.tanh(z[i:i + ag.n])
                i += ag.n
            else:
                out[f"{ag.prefix}_times"] = nominal
        return out

    def encode(self, amounts: Mapping[str, Sequence[float]], dtype=np.float64) -> np.ndarray:
        """A starting ``z`` from amounts per prefix (times at their nominal values)."""
        parts = []
        for ag in self.agents:
            a = np.clip(np.asarray(amounts[ag.prefix], float) / ag.cap, 1e-6, 1 - 1e-6)
            parts.append(np.log(a / (1 - a)))
            if ag.window > 0:
                parts.append(np.zeros(ag.n))
        return np.concatenate(parts).astype(dtype)

    def violation(self, z):
        """(n_agents,) relative budget excess ``Σa/budget - 1`` (≤ 0 when feasible)."""
        doses = self.decode(z)
        return jnp.stack([jnp.sum(doses[f"{ag.prefix}_amounts"]) / ag.budget - 1.0
                          if np.isfinite(ag.budget) else jnp.asarray(-1.0, z.dtype)
                          for ag in self.agents])

    def penalized(self, objective: Callable, mu: float = 100.0) -> Callable:
        """``J(z) = objective(decoded doses) + μ/2 Σ max(0, g)²`` (pure, jittable)."""

        def J(z):
            g = self.violation(z)
            return objective(self.decode(z)) + 0.5 * mu * jnp.sum(jnp.maximum(g, 0.0) ** 2)

        return J


@dataclasses.dataclass
class Trace:
    """What an optimiser did: best ``z`` and ``J``, ``history`` rows of (wall seconds since
    the start of the search, evaluations, best J so far), and the compile time paid before
    the search started (``compile_s``, not in the history's clock)."""

    z: np.ndarray
    value: float
    history: list
    wall_s: float
    evaluations: int
    compile_s: float = 0.0

    def best_at(self, seconds: float) -> float:
        """Best J reached within ``seconds`` of wall time (inf if none yet)."""
        vals = [v for t, _, v in self.history if t <= seconds]
        return min(vals) if vals else float("inf")

    def time_to(self, target: float) -> float:
        """Wall seconds until the best J first reached ``target`` (inf if never)."""
        for t, _, v in self.history:
            if v <= target:
                return t
        return float("inf")


def minimize_lbfgs(J: Callable, z0, *, max_steps: int = 100, tol: float = 1e-9,
                   value_and_grad: Callable | None = None) -> Trace:
    """L-BFGS (SciPy's L-BFGS-B, no bounds needed: ``z`` is unconstrained) on ``J`` from
    ``z0``, with the value and gradient from one compiled reverse-mode pass per evaluation
    (``value_and_grad``: pass one already compiled to share it). Compilation is done and
    timed before the search clock starts; every evaluation is in the history."""
    from scipy.optimize import minimize

    z0 = jnp.asarray(z0)
    tc = time.perf_counter()
    vg = value_and_grad or jax.jit(jax.value_and_grad(J)).lower(z0).compile()
    compile_s = time.perf_counter() - tc
    history: list = []
    best = {"value": np.inf, "z": np.asarray(z0)}
    t0 = time.perf_counter()

    def fun(x):
        value, grad = vg(jnp.asarray(x, z0.dtype))
        value = float(value)
        if value < best["value"]:
            best.update(value=value, z=np.array(x))
        history.append((time.perf_counter() - t0, len(history) + 1, best["value"]))
        return value, np.asarray(grad, np.float64)

    minimize(fun, np.asarray(z0, np.float64), jac=True, method="L-BFGS-B",
             options={"maxiter": max_steps, "ftol": tol, "gtol": 1e-8})
    return Trace(best["z"], best["value"], history, time.perf_counter() - t0, len(history), compile_s)


def minimize_cma(J: Callable, z0, *, sigma0: float = 1.0, seed: int = 0, max_seconds: float = 60.0,
                 max_evaluations: int = 10**6, batched_J: Callable | None = None) -> Trace:
    """CMA-ES on ``J`` until ``max_seconds`` of wall time or ``max_evaluations``; each
    generation is one call of ``batched_J`` ((popsize, size) -> (popsize,), default
    ``jit(vmap(J))``)."""
    import cma

    es = cma.CMAEvolutionStrategy(np.asarray(z0, float), sigma0,
                                  {"seed": seed + 1, "verbose": -9, "maxfevals": max_evaluations})
    dtype = jnp.asarray(z0).dtype
    tc = time.perf_counter()
    population = jax.ShapeDtypeStruct((es.popsize, np.size(z0)), dtype)
    f = batched_J or jax.jit(jax.vmap(J)).lower(population).compile()
    compile_s = time.perf_counter() - tc
    t0 = time.perf_counter()
    value = float(f(jnp.broadcast_to(jnp.asarray(z0, dtype), population.shape))[0])
    best, best_z, evaluations = value, np.asarray(z0, float), 1
    history = [(time.perf_counter() - t0, evaluations, best)]
    while not es.stop() and time.perf_counter() - t0 < max_seconds and evaluations < max_evaluations:
        cands = np.asarray(es.ask())
        vals = np.asarray(f(jnp.asarray(cands, dtype)), float)
        vals = np.where(np.isfinite(vals), vals, np.inf)
        es.tell(list(cands), vals.tolist())
        evaluations += len(cands)
        i = int(np.argmin(vals))
        if vals[i] < best:
            best, best_z = float(vals[i]), cands[i]
        history.append((time.perf_counter() - t0, evaluations, best))
    return Trace(best_z, best, history, time.perf_counter() - t0, evaluations, compile_s)
