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
* :func:`minimize_multistart`: K L-BFGS searches advanced together, each step one vmapped
  value-and-gradient call over all of them (optionally in other coordinates, e.g.
  :meth:`ScheduleSpace.sine_chart`);
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

from .therapy import schedule_keys

__all__ = ["SlotAgent", "ScheduleSpace", "Trace", "cma_popsize", "minimize_lbfgs", "minimize_auglag", "minimize_cma",
           "minimize_multistart", "multistart_points"]


@dataclasses.dataclass(frozen=True)
class SlotAgent:
    """Dose slots of one agent.

    prefix: the model's schedule parameters ``<prefix>_times`` (h) and ``<prefix>_amounts``
    (ng), arrays with one entry per slot. nominal: (n,) slot times (h), the start. cap:
    largest amount per dose (ng). budget: largest total amount (ng; inf: none).

    Times, one of two ways (both keep their bounds for any decision vector):

    * window: how far a dose may move from its nominal time (h, ≥ 0; 0 fixes the times);
    * span ``(t_min, t_max)`` (h) with ``min_interval`` (h): the doses move anywhere in the
      span, in order and at least ``min_interval`` apart. The n + 1 gaps beyond the minimum
      (before the first dose, between doses, after the last) are a softmax of n free logits
      and a fixed 0, times the slack ``t_max - t_min - (n - 1)·min_interval``.
    """

    prefix: str
    nominal: tuple
    cap: float
    window: float = 0.0
    budget: float = float("inf")
    span: tuple | None = None
    min_interval: float = 0.0

    def __post_init__(self):
        name = f"SlotAgent {self.prefix!r}"
        if not self.cap > 0:
            raise ValueError(f"{name}: cap must be > 0 ng, got {self.cap!r}")
        if not self.window >= 0:
            raise ValueError(f"{name}: window must be >= 0 h, got {self.window!r}")
        if not self.budget > 0:
            raise ValueError(f"{name}: budget must be > 0 ng, got {self.budget!r}")
        if not self.min_interval >= 0:
            raise ValueError(f"{name}: min_interval must be >= 0 h, got {self.min_interval!r}")
        if self.span is not None:
            t_min, t_max = self.span
            if not t_max > t_min:
                raise ValueError(f"{name}: span ({t_min}, {t_max}) h needs t_max > t_min")
            if self.slack < 0:
                raise ValueError(f"{name}: {self.n} doses cannot be {self.min_interval:g} h apart in "
                                 f"[{t_min:g}, {t_max:g}] h; widen the span or lower min_interval")

    @property
    def n(self) -> int:
        return len(self.nominal)

    @property
    def times_key(self) -> str:
        return schedule_keys(self.prefix)[0]

    @property
    def amounts_key(self) -> str:
        return schedule_keys(self.prefix)[1]

    @property
    def free_times(self) -> bool:
        return self.span is not None or self.window > 0

    @property
    def slack(self) -> float:
        """Span left after the minimum intervals (h)."""
        return self.span[1] - self.span[0] - (self.n - 1) * self.min_interval

    def _times(self, u):
        """(n,) logits -> (n,) ordered times in the span."""
        s = jax.nn.softmax(jnp.concatenate([u, jnp.zeros((1,), u.dtype)]))
        return self.span[0] + self.slack * jnp.cumsum(s)[:-1] + self.min_interval * jnp.arange(self.n, dtype=u.dtype)

    def _logits(self, times) -> np.ndarray:
        """Inverse of :meth:`_times` (times clipped into the span, gaps at least 1e-6 of the slack)."""
        t = np.sort(np.asarray(times, float))
        gaps = np.diff(np.concatenate([[self.span[0] - self.min_interval], t, [self.span[1] + self.min_interval]])) - self.min_interval
        gaps = np.maximum(gaps, 1e-6 * max(self.slack, 1e-12))
        return np.log(gaps[:-1]) - np.log(gaps[-1])


@dataclasses.dataclass(frozen=True)
class ScheduleSpace:
    """The decision vector of several agents: ``z = [v (amounts), u (times, if free)]`` per agent."""

    agents: tuple

    @property
    def size(self) -> int:
        return sum(ag.n * (2 if ag.free_times else 1) for ag in self.agents)

    def decode(self, z) -> dict:
        """``z`` (size,) -> ``{<prefix>_amounts: (n,), <prefix>_times: (n,)}``."""
        out, i = {}, 0
        for ag in self.agents:
            v = z[i:i + ag.n]
            i += ag.n
            out[ag.amounts_key] = ag.cap * jax.nn.sigmoid(v)
            nominal = jnp.asarray(ag.nominal, z.dtype)
            if ag.span is not None:
                out[ag.times_key] = ag._times(z[i:i + ag.n])
                i += ag.n
            elif ag.window > 0:
                out[ag.times_key] = nominal + ag.window * jnp.tanh(z[i:i + ag.n])
                i += ag.n
            else:
                out[ag.times_key] = nominal
        return out

    def encode(self, amounts: Mapping[str, Sequence[float]], dtype=np.float64) -> np.ndarray:
        """A starting ``z`` from amounts per prefix (clipped into ``(0, cap)``), times at
        their nominal values (into the span, ordered, when a span is set)."""
        parts = []
        for ag in self.agents:
            a = np.clip(np.asarray(amounts[ag.prefix], float) / ag.cap, 1e-6, 1 - 1e-6)
            parts.append(np.log(a / (1 - a)))
            if ag.span is not None:
                parts.append(ag._logits(ag.nominal))
            elif ag.window > 0:
                parts.append(np.zeros(ag.n))
        return np.concatenate(parts).astype(dtype)

    def amount_mask(self) -> np.ndarray:
        """(size,) bool: which entries of ``z`` are amount logits."""
        mask, i = np.zeros(self.size, bool), 0
        for ag in self.agents:
            mask[i:i + ag.n] = True
            i += ag.n * (2 if ag.free_times else 1)
        return mask

    def sine_chart(self) -> tuple:
        """Other coordinates ``w`` for a gradient search, as numpy maps ``(to_w, to_z, dz_dw)``:
        an amount is ``cap · (1 + sin w) / 2`` instead of ``cap · sigmoid(z)`` (Box 1966's
        transformation for bounds); times keep theirs. Same schedules, better conditioned: the
        sigmoid's slope ``a (1 − a/cap)`` makes a nearly empty or nearly full slot (1 % or
        1 − 1e-6 of its cap) 100× to 10⁶× stiffer than a half-full one, the sine's slope
        ``√(a (cap − a))`` only 5× to 10³×. ``dz_dw(w)`` (size,): the diagonal Jacobian, so
        ``∂J/∂w = ∂J/∂z · dz_dw`` from a program compiled in ``z``."""
        mask = self.amount_mask()
        eps = 1e-15

        def to_w(z):
            w = np.array(z, np.float64)
            w[..., mask] = np.arcsin(np.clip(2 / (1 + np.exp(-w[..., mask])) - 1, -1.0, 1.0))
            return w

        def _p(w):
            return np.clip((1 + np.sin(w[..., mask])) / 2, eps, 1 - eps)

        def to_z(w):
            z = np.array(w, np.float64)
            p = _p(z)
            z[..., mask] = np.log(p) - np.log1p(-p)
            return z

        def dz_dw(w):
            d = np.ones(np.shape(w))
            p = _p(np.asarray(w))
            d[..., mask] = np.cos(np.asarray(w)[..., mask]) / (2 * p * (1 - p))
            return d

        return to_w, to_z, dz_dw

    def violation(self, z):
        """(n_agents,) relative budget excess ``Σa/budget - 1`` (≤ 0 when feasible)."""
        doses = self.decode(z)
        return jnp.stack([jnp.sum(doses[ag.amounts_key]) / ag.budget - 1.0
                          if np.isfinite(ag.budget) else jnp.asarray(-1.0, z.dtype)
                          for ag in self.agents])

    def constraints(self, z, extra: Callable | None = None):
        """(m,) all constraint values ``g(z) ≤ 0``: the budgets, then ``extra(doses)`` (e.g.
        a peak plasma level over its limit, relative)."""
        g = self.violation(z)
        if extra is None:
            return g
        return jnp.concatenate([g, jnp.atleast_1d(jnp.asarray(extra(self.decode(z)), g.dtype))])

    def penalized(self, objective: Callable, mu: float = 100.0, constraints: Callable | None = None) -> Callable:
        """``J(z) = objective(decoded doses) + μ/2 Σ max(0, g)²`` (pure, jittable);
        ``constraints``: extra ``g(doses)`` as in :meth:`constraints`."""

        def J(z):
            g = self.constraints(z, constraints)
            return objective(self.decode(z)) + 0.5 * mu * jnp.sum(jnp.maximum(g, 0.0) ** 2)

        return J

    def lagrangian(self, objective: Callable, constraints: Callable | None = None) -> Callable:
        """Augmented Lagrangian of the inequality-constrained problem (Powell-Hestenes-
        Rockafellar; Nocedal & Wright 2006, §17.4):
        ``L(z, λ, μ) = f + 1/(2μ) Σ (max(0, λ + μ g)² − λ²)``, returned as
        ``(L, (f, g))``. At λ = 0 it is :meth:`penalized`; with the multipliers updated
        (:func:`minimize_auglag`) the constraints hold at the end without μ → ∞."""

        def L(z, lam, mu):
            g = self.constraints(z, constraints)
            f = objective(self.decode(z))
            return f + jnp.sum(jnp.maximum(lam + mu * g, 0.0) ** 2 - lam ** 2) / (2 * mu), (f, g)

        return L


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
    info: dict = dataclasses.field(default_factory=dict)

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


def _lbfgs(fun, x0, max_steps, tol, log, label, t0, counter):
    """SciPy L-BFGS-B on ``fun(x) -> (value, grad)``; one ``log`` line per iteration."""
    from scipy.optimize import minimize

    it = {"n": 0}

    def callback(intermediate_result):
        it["n"] += 1
        if log is not None:
            log(f"{label} iteration {it['n']:3d}: J {float(intermediate_result.fun):.6g}, "
                f"{counter()} evaluations, {time.perf_counter() - t0:.1f} s")

    return minimize(fun, np.asarray(x0, np.float64), jac=True, method="L-BFGS-B", callback=callback,
                    options={"maxiter": max_steps, "ftol": tol, "gtol": 1e-8})


def minimize_lbfgs(J: Callable, z0, *, max_steps: int = 100, tol: float = 1e-9,
                   value_and_grad: Callable | None = None, log: Callable | None = None) -> Trace:
    """L-BFGS (SciPy's L-BFGS-B, no bounds needed: ``z`` is unconstrained) on ``J`` from
    ``z0``, with the value and gradient from one compiled reverse-mode pass per evaluation
    (``value_and_grad``: pass one already compiled to share it). Compilation is done and
    timed before the search clock starts; every evaluation is in the history. ``log``:
    called with one line per iteration (J, evaluations, elapsed seconds)."""
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

    _lbfgs(fun, z0, max_steps, tol, log, "L-BFGS", t0, lambda: len(history))
    return Trace(best["z"], best["value"], history, time.perf_counter() - t0, len(history), compile_s)


def minimize_auglag(L: Callable, z0, n_constraints: int, *, mu: float = 10.0, mu_max: float = 1e6,
                    outer: int = 8, max_steps: int = 50, tol: float = 1e-3, ftol: float = 1e-10,
                    reference_mu: float | None = None, starts: int = 1, spread: float = 0.5, seed: int = 0,
                    chart: tuple | None = None, log: Callable | None = None) -> Trace:
    """Augmented-Lagrangian method: L-BFGS on ``z ↦ L(z, λ, μ)`` (from
    :meth:`ScheduleSpace.lagrangian`), then ``λ ← max(0, λ + μ g)``, and ``μ ← 10 μ`` when
    the largest violation did not fall below a quarter of the previous one (Nocedal & Wright
    2006, Alg. 17.4). Stops when ``max g ≤ tol`` and the multipliers settle, or after
    ``outer`` rounds of at most ``max_steps`` L-BFGS iterations.

    ``starts > 1``: each round is :func:`minimize_multistart` (``max_steps`` batched calls) on
    a population of ``starts`` points (``z0`` and ``spread``-sized perturbations of it, then
    the previous round's points); the multipliers follow the start with the lowest ``L``.
    ``chart``: search coordinates as in :func:`minimize_multistart` (e.g.
    :meth:`ScheduleSpace.sine_chart`), for either kind of round.

    ``L(z, λ, μ) -> (value, (f, g))`` is compiled once with λ (m,) and μ as arguments, so
    updating them costs nothing. The history holds, per evaluation, the best penalised value
    ``f + μ_ref/2 Σ max(0, g)²`` (``reference_mu``, default ``mu_max``) among evaluations
    with ``max g ≤ tol`` (inf until the first such): the quantity a penalty-method baseline
    reports, so the two compare. The returned ``z`` is the last round's iterate (its ``f``,
    ``g``, λ and μ in ``info``)."""
    z0 = jnp.asarray(z0)
    dtype = z0.dtype
    lam = jnp.zeros((n_constraints,), dtype)
    mu_ref = mu_max if reference_mu is None else reference_mu
    tc = time.perf_counter()
    multi = starts > 1
    if multi:
        shape = jax.ShapeDtypeStruct((starts, z0.size), dtype)
        vg = jax.jit(jax.vmap(jax.value_and_grad(L, has_aux=True), in_axes=(0, None, None))).lower(
            shape, lam, jnp.asarray(mu, dtype)).compile()
    else:
        vg = jax.jit(jax.value_and_grad(L, has_aux=True)).lower(z0, lam, jnp.asarray(mu, dtype)).compile()
    compile_s = time.perf_counter() - tc
    history: list = []
    best = {"value": np.inf, "z": np.asarray(z0)}
    t0 = time.perf_counter()
    state = {"lam": lam, "mu": jnp.asarray(mu, dtype)}

    def penalised(f, g):
        """(…,) f + μ_ref/2 Σ max(0, g)² where max g ≤ tol, else inf."""
        value = f + 0.5 * mu_ref * np.sum(np.maximum(g, 0.0) ** 2, axis=-1)
        return np.where(np.max(g, axis=-1, initial=-np.inf) <= tol, value, np.inf)

    def fun(x):
        (value, (f, g)), grad = vg(jnp.asarray(x, dtype), state["lam"], state["mu"])
        pen = float(penalised(float(f), np.asarray(g, float)))
        if pen < best["value"]:
            best.update(value=pen, z=np.array(x))
        history.append((time.perf_counter() - t0, len(history) + 1, best["value"]))
        return float(value), np.asarray(grad, np.float64)

    def batched(Z):
        (value, (f, g)), grad = vg(Z, state["lam"], state["mu"])
        return value, grad, penalised(np.asarray(f, float), np.asarray(g, float))

    def at(points):
        """The population's best point by L, with its f and g (one batched call)."""
        (value, (f, g)), _ = vg(jnp.asarray(points, dtype), state["lam"], state["mu"])
        i = int(np.nanargmin(np.where(np.isfinite(value), value, np.nan)))
        return np.asarray(points[i], np.float64), f[i], g[i]

    z, worst = np.asarray(z0, np.float64), np.inf
    points = multistart_points(z, starts, spread, seed) if multi else None
    for k in range(outer):
        label = f"AL round {k + 1} (mu {float(state['mu']):.3g})"
        if multi:
            tr = minimize_multistart(None, z, points=points, batched=batched, max_steps=max_steps, tol=ftol, chart=chart,
                                     spread=spread, seed=seed + k, log=log and (lambda line, lb=label: log(f"{lb} {line}")))
            t_off, n_off = time.perf_counter() - t0 - tr.wall_s, len(history) and history[-1][1]
            for t, n, v in tr.history:
                history.append((t_off + t, n_off + n, min(v, best["value"])))
            if tr.value < best["value"]:
                best.update(value=tr.value, z=np.asarray(tr.z))
            points = np.asarray(tr.info["points"])
            z, f, g = at(points)
        else:
            if chart is None:
                z = _lbfgs(fun, z, max_steps, ftol, log, label, t0, lambda: len(history)).x
            else:
                to_w, to_z, dz_dw = chart

                def fun_w(w):
                    value, grad = fun(to_z(w))
                    return value, grad * dz_dw(w)

                z = to_z(_lbfgs(fun_w, to_w(z), max_steps, ftol, log, label, t0, lambda: len(history)).x)
            (_, (f, g)), _ = vg(jnp.asarray(z, dtype), state["lam"], state["mu"])
        g_max = float(jnp.max(g, initial=-jnp.inf))
        new_lam = jnp.maximum(state["lam"] + state["mu"] * g, 0.0)
        settled = float(jnp.max(jnp.abs(new_lam - state["lam"]), initial=0.0)) <= tol * (1 + float(jnp.max(new_lam, initial=0.0)))
        if log is not None:
            log(f"AL round {k + 1}: f {float(f):.6g}, max constraint {g_max:.3g}, multipliers "
                f"{np.array2string(np.asarray(new_lam), precision=3)}, {time.perf_counter() - t0:.1f} s")
        state["lam"] = new_lam
        if g_max <= tol and settled:
            break
        if g_max > 0.25 * worst and float(state["mu"]) < mu_max:
            state["mu"] = jnp.minimum(10 * state["mu"], mu_max)
        worst = min(worst, max(g_max, 0.0))
    if multi:
        z, f, g = at(points)
    else:
        (_, (f, g)), _ = vg(jnp.asarray(z, dtype), state["lam"], state["mu"])
    history.append((time.perf_counter() - t0, (history[-1][1] if history else 0) + (starts if multi else 1),
                    best["value"]))
    info = {"f": float(f), "g": np.asarray(g).tolist(), "lam": np.asarray(state["lam"]).tolist(),
            "mu": float(state["mu"]), "rounds": k + 1, "starts": starts}
    value = float(f) + 0.5 * mu_ref * float(np.sum(np.maximum(np.asarray(g), 0.0) ** 2))
    return Trace(np.asarray(z), value, history, time.perf_counter() - t0, history[-1][1] - (starts if multi else 1),
                 compile_s, info)


def _two_loop(g, S, Y):
    """L-BFGS direction ``-H g`` from the pairs (s, y) (oldest first); ``H0 = s·y / y·y``
    of the newest pair (Nocedal & Wright 2006, Alg. 7.4)."""
    q, alphas = g.copy(), []
    for s, y in zip(reversed(S), reversed(Y)):
        a = (s @ q) / (s @ y)
        alphas.append(a)
        q -= a * y
    if S:
        q *= (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1])
    for (s, y), a in zip(zip(S, Y), reversed(alphas)):
        q += s * (a - (y @ q) / (s @ y))
    return -q


def multistart_points(z0, starts: int, spread: float, seed: int = 0) -> np.ndarray:
    """``(starts, size)`` starting points: ``z0`` itself, then ``z0 + spread · N(0, 1)``
    (spread in the units of ``z``: logits of amounts, times' unconstrained coordinates)."""
    z0 = np.asarray(z0, np.float64)
    noise = np.random.default_rng(seed).normal(size=(starts - 1, z0.size))
    return np.concatenate([z0[None], z0[None] + spread * noise])


def minimize_multistart(J: Callable | None, z0, *, starts: int = 8, spread: float = 0.5, seed: int = 0,
                        max_steps: int = 100, max_seconds: float = np.inf, memory: int = 10, tol: float = 1e-9,
                        respawn: bool = True, points=None, batched: Callable | None = None,
                        chart: tuple | None = None, initial_step: str = "unit", stale_after: int | None = 3,
                        log: Callable | None = None) -> Trace:
    """Batched multi-start L-BFGS: ``starts`` independent L-BFGS searches advanced in lockstep,
    every step one vmapped value-and-gradient call on all of them — on this engine a batch of
    K costs far less than K single calls, as a CMA-ES generation does.

    Each start (``points``, default :func:`multistart_points` of ``z0``) runs its own L-BFGS
    (two-loop recursion, ``memory`` pairs) with a backtracking Armijo line search; every
    batched call evaluates one trial point per start, so no start waits for another's line
    search. A start whose relative decrease falls below ``tol``, or whose line search fails
    from steepest descent, has converged; with ``respawn`` it restarts (memory cleared) at
    the best point so far plus ``spread`` · N(0, 1) noise — a basin-hopping restart, so the
    batch keeps searching until ``max_steps`` batched calls or ``max_seconds`` of wall time.

    ``batched(Z (K, n)) -> (F (K,), G (K, n), R (K,))``: values, gradients and the value to
    report (``R``; default ``F``) — pass one compiled for the batch to share it; the default
    is ``jit(vmap(value_and_grad(J)))``. Evaluations in the trace count candidates (K per
    call). ``info``: ``calls``, the final value of each start, the numbers of respawns, of
    accepted steps and of rejected trials (``backtracks``), all starts together.
    ``chart``: ``(to_w, to_z, dz_dw)`` (e.g. :meth:`ScheduleSpace.sine_chart`): search in
    ``w`` (points, perturbations and restarts there) with ``J`` still compiled in ``z``; the
    trace's points are ``z``. ``initial_step``: first trial step of a new direction, ``"unit"``
    (α = 1, the quasi-Newton step) or ``"interpolated"`` (α = min(1, 1.01 · 2 Δf / g·d) from
    the last decrease; Nocedal & Wright 2006, eq. 3.60). ``stale_after`` (k; None: never) is the
    step-length floor: a step whose pair has s·y ≤ 0 (no positive curvature, e.g. where ``J``
    is concave) is not stored, so the direction keeps the scale ``H0 = s·y / y·y`` of older,
    more curved pairs and can stay orders of magnitude too short, each step accepted; after k
    such accepted steps in a row the memory is dropped and the next direction is steepest
    descent with a first step of unit length in ``z`` (``info["stale_resets"]`` counts these).
    ``log``: one line per batched call."""
    if chart is not None:
        to_w, to_z, dz_dw = chart
        inner = batched
        if inner is None:
            vg0 = jax.jit(jax.vmap(jax.value_and_grad(J)))

            def inner(Z):
                F, G = vg0(Z)
                return F, G, F

        def batched_w(W):
            W = np.asarray(W, np.float64)
            F, G, R = inner(jnp.asarray(to_z(W), jnp.asarray(z0).dtype))
            return F, np.asarray(G, np.float64) * dz_dw(W), R

        w0 = to_w(np.asarray(z0, np.float64))
        P = None if points is None else to_w(np.asarray(points, np.float64))
        tr = minimize_multistart(None, w0, starts=starts, spread=spread, seed=seed, max_steps=max_steps,
                                 max_seconds=max_seconds, memory=memory, tol=tol, respawn=respawn, points=P,
                                 batched=batched_w, initial_step=initial_step, stale_after=stale_after, log=log)
        tr.z = to_z(tr.z)
        tr.info["points"] = to_z(tr.info["points"])
        return tr
    if initial_step not in ("unit", "interpolated"):
        raise ValueError(f"minimize_multistart: initial_step must be 'unit' or 'interpolated', got {initial_step!r}")
    if stale_after is not None and stale_after < 1:
        raise ValueError(f"minimize_multistart: stale_after must be >= 1 or None, got {stale_after!r}")
    z0 = np.asarray(z0, np.float64)
    X = np.asarray(multistart_points(z0, starts, spread, seed) if points is None else points, np.float64)
    if X.ndim != 2 or X.shape[1] != z0.size:
        raise ValueError(f"minimize_multistart: points must be (starts, {z0.size}), got {X.shape}")
    K, n = X.shape
    if K < 1 or max_steps < 1:
        raise ValueError(f"minimize_multistart: need starts >= 1 and max_steps >= 1, got {K} and {max_steps}")
    dtype = jnp.asarray(z0).dtype
    tc = time.perf_counter()
    if batched is None:
        vg = jax.jit(jax.vmap(jax.value_and_grad(J))).lower(jax.ShapeDtypeStruct((K, n), dtype)).compile()

        def batched(Z):
            F, G = vg(Z)
            return F, G, F
    compile_s = time.perf_counter() - tc
    rng = np.random.default_rng(seed + 7919)
    c1 = 1e-4
    f = np.full(K, np.inf)           # value at each start's accepted point
    f_prev = np.full(K, np.inf)      # at the one before
    g = np.zeros((K, n))             # its gradient
    x = X.copy()                     # accepted points
    d = np.zeros((K, n))             # search directions
    alpha = np.zeros(K)              # trial step along d
    slope = np.zeros(K)              # g·d at the accepted point (< 0)
    backtracks = np.zeros(K, int)
    stale = np.zeros(K, int)         # consecutive accepted steps whose (s, y) pair was not stored
    fresh = np.ones(K, bool)         # trial is a new start (accept unconditionally)
    S = [[] for _ in range(K)]
    Y = [[] for _ in range(K)]
    trial = X.copy()
    best = {"value": np.inf, "z": z0.copy()}
    history: list = []
    respawns, calls, accepted, backtracked, stale_resets = 0, 0, 0, 0, 0
    t0 = time.perf_counter()

    def new_direction(i):
        nonlocal stale_resets
        if stale_after is not None and stale[i] >= stale_after and S[i]:
            stale_resets += 1  # the memory's scale is stale: steepest descent, unit length (below)
            S[i].clear(), Y[i].clear()
            stale[i] = 0
        di = _two_loop(g[i], S[i], Y[i])
        if not np.all(np.isfinite(di)) or di @ g[i] >= 0:  # not a descent direction: forget the memory
            S[i].clear(), Y[i].clear()
            di = -g[i]
        d[i], slope[i], backtracks[i] = di, di @ g[i], 0
        gn = np.linalg.norm(g[i])
        alpha[i] = 1.0 if S[i] else min(1.0, 1.0 / max(gn, 1e-300))  # first step: unit length in z
        if initial_step == "interpolated" and S[i] and np.isfinite(f_prev[i]) and f_prev[i] > f[i]:
            # the minimiser of the quadratic through the last decrease (Nocedal & Wright 2006, eq. 3.60)
            alpha[i] = min(1.0, 1.01 * 2 * (f[i] - f_prev[i]) / slope[i])
        trial[i] = x[i] + alpha[i] * d[i]

    def restart(i):
        nonlocal respawns
        respawns += 1
        S[i].clear(), Y[i].clear()
        fresh[i], f_prev[i], stale[i] = True, np.inf, 0
        trial[i] = best["z"] + spread * rng.normal(size=n)

    while calls < max_steps and time.perf_counter() - t0 < max_seconds:
        F, G, R = (np.asarray(a, np.float64) for a in batched(jnp.asarray(trial, dtype)))
        calls += 1
        for i in range(K):
            if np.isfinite(R[i]) and R[i] < best["value"]:
                best.update(value=float(R[i]), z=trial[i].copy())
        history.append((time.perf_counter() - t0, calls * K, best["value"]))
        for i in range(K):
            ok = np.isfinite(F[i]) and np.all(np.isfinite(G[i]))
            if fresh[i]:
                if not ok:
                    restart(i)
                    continue
                fresh[i] = False
                x[i], f[i], g[i] = trial[i], F[i], G[i]
                new_direction(i)
            elif ok and F[i] <= f[i] + c1 * alpha[i] * slope[i]:
                accepted += 1
                s, y = trial[i] - x[i], G[i] - g[i]
                stale[i] += 1
                if s @ y > 1e-10 * np.linalg.norm(s) * np.linalg.norm(y):  # keep H positive definite
                    S[i].append(s), Y[i].append(y)
                    stale[i] = 0
                    if len(S[i]) > memory:
                        S[i].pop(0), Y[i].pop(0)
                decrease = f[i] - F[i]
                f_prev[i] = f[i]
                x[i], f[i], g[i] = trial[i], F[i], G[i]
                if decrease <= tol * max(1.0, abs(F[i])) and respawn:
                    restart(i)
                else:
                    new_direction(i)
            else:
                backtracks[i] += 1
                backtracked += 1
                if backtracks[i] > 30:  # the line search failed
                    if S[i]:
                        S[i].clear(), Y[i].clear()
                        new_direction(i)
                    elif respawn:
                        restart(i)
                    else:
                        trial[i] = x[i]
                    continue
                # minimiser of the quadratic through f, slope and F, kept in [0.1, 0.5] α
                q = F[i] - f[i] - slope[i] * alpha[i] if ok else np.inf
                a_new = -slope[i] * alpha[i] ** 2 / (2 * q) if q > 0 and np.isfinite(q) else 0.1 * alpha[i]
                alpha[i] = float(np.clip(a_new, 0.1 * alpha[i], 0.5 * alpha[i]))
                trial[i] = x[i] + alpha[i] * d[i]
        if log is not None:
            log(f"multistart call {calls:3d} ({K} starts): best J {best['value']:.6g}, "
                f"starts at {np.array2string(np.sort(f)[:4], precision=4)}..., {history[-1][0]:.1f} s")
    return Trace(best["z"], best["value"], history, time.perf_counter() - t0, calls * K, compile_s,
                 {"calls": calls, "starts": K, "final": f.tolist(), "respawns": respawns, "points": x.copy(),
                  "accepted": accepted, "backtracks": backtracked, "stale_resets": stale_resets})


def cma_popsize(size: int) -> int:
    """CMA-ES's default population for ``size`` variables, ``4 + ⌊3 ln n⌋`` (Hansen 2016):
    the batch that a shared ``batched_J`` must be compiled for."""
    return 4 + int(3 * np.log(size))


def minimize_cma(J: Callable, z0, *, sigma0: float = 1.0, seed: int = 0, max_seconds: float = 60.0,
                 max_evaluations: int = 10**6, batched_J: Callable | None = None,
                 log: Callable | None = None) -> Trace:
    """CMA-ES on ``J`` until ``max_seconds`` of wall time or ``max_evaluations``; each
    generation is one call of ``batched_J`` ((popsize, size) -> (popsize,), default
    ``jit(vmap(J))``; pass one compiled for :func:`cma_popsize` to share it across seeds).
    ``log``: called with one line per generation (best J, evaluations, elapsed seconds)."""
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
        if log is not None:
            log(f"CMA-ES seed {seed} generation {len(history) - 1:3d}: best J {best:.6g}, "
                f"{evaluations} evaluations, {history[-1][0]:.1f} s")
    return Trace(best_z, best, history, time.perf_counter() - t0, evaluations, compile_s)
