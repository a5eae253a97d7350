"""Dose-schedule optimisation of a run config (``tmepde optimize``): the problem, both
optimisers and the report, as library code.

The decision variables are the dose amounts and times of one or more agents (the model's
``<prefix>_amounts`` (ng) and ``<prefix>_times`` (h) arrays), mapped from an unconstrained
vector by :class:`tmepde.schedules.ScheduleSpace`: amounts in ``(0, cap)`` and times anywhere
in ``[t_min, t_max]``, in order and ``min_interval`` apart, hold for every vector.

Objective (lower is better): tumor burden (the model's ``tumor_burden`` observable) at the
horizon (``final``), its time average (``mean``) or their sum (``both``), each relative to no
treatment; plus ``exposure`` × Σ plasma AUC / the starting schedule's AUC per agent.
Constraints ``g ≤ 0``: each agent's total against its budget (``Σa/budget − 1``) and the
peak plasma level of ``toxicity_agent`` against ``toxicity_limit`` (``peak/limit − 1``).
Plasma levels are the model's own ``plasma_<agent>`` observables (its PK), sampled every
0.25 h.

Optimisers: the augmented-Lagrangian method with L-BFGS inside
(:func:`tmepde.schedules.minimize_auglag`; gradients by reverse mode through the whole run;
with ``starts`` > 1 each round is a batch of L-BFGS starts, one vmapped call per step,
:func:`tmepde.schedules.minimize_multistart`; ``coordinates = "sine"`` searches the amounts in
Box's coordinates, :meth:`tmepde.schedules.ScheduleSpace.sine_chart`),
and a CMA-ES baseline (:func:`tmepde.schedules.minimize_cma`, each generation one vmapped
batch) on the quadratic penalty ``f + μ/2 Σ max(0, g)²``, given ``cma_factor`` times the
gradient run's wall time.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Mapping

import numpy as np
import jax
import jax.numpy as jnp

from .schedules import ScheduleSpace, SlotAgent, Trace, cma_popsize, minimize_auglag, minimize_cma
from .therapy import schedule_keys

__all__ = ["OptimizeError", "agents_from_table", "check_table", "ScheduleProblem", "schedule_problem",
           "OptimizeOutcome", "run_optimize", "report"]

PLASMA_STEP_H = 0.25  # sampling of plasma levels for the peak and the AUC (a dose pulse is ≥ 1 h wide)


class OptimizeError(ValueError):
    """A bad ``[optimize]`` value: ``key`` names it (e.g. ``optimize.agents[0].budget``)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def agents_from_table(table: Mapping, params: Mapping, t_end: float) -> tuple:
    """``[[optimize.agents]]`` tables -> :class:`SlotAgent` s, starting at the schedule in
    ``params`` (its amounts clipped into ``(0, cap)``). Raises :class:`OptimizeError`."""
    agents = []
    for i, a in enumerate(table["agents"]):
        path = f"optimize.agents[{i}]"
        times_key, amounts_key = schedule_keys(a["prefix"])
        times = np.asarray(params[times_key], float).ravel()
        amounts = np.asarray(params[amounts_key], float).ravel()
        if times.shape != amounts.shape:
            raise OptimizeError(f"{path}.prefix", f"{path}.prefix '{a['prefix']}': {times.size} times but "
                                f"{amounts.size} amounts in the model's parameters")
        t_max = t_end if a.get("t_max") is None else a["t_max"]
        if a.get("optimize_times", True) and not t_max > a.get("t_min", 0.0):
            raise OptimizeError(f"{path}.t_max", f"{path}.t_max ({t_max:g} h) must be > t_min "
                                f"({a.get('t_min', 0.0):g} h)")
        span = (float(a.get("t_min", 0.0)), float(t_max)) if a.get("optimize_times", True) else None
        try:
            agents.append(SlotAgent(a["prefix"], tuple(times), cap=float(a["max_amount"]),
                                    budget=float(a["budget"]), span=span,
                                    min_interval=float(a.get("min_interval", 0.0))))
        except ValueError as e:
            key = "min_interval" if "cannot be" in str(e) else "max_amount" if "cap" in str(e) else "budget"
            raise OptimizeError(f"{path}.{key}", f"{path}.{key}: {e}".replace(f"SlotAgent {a['prefix']!r}: ", "")) from None
    return tuple(agents)


def check_table(table: Mapping, params: Mapping, t_end: float) -> None:
    """Validate a resolved ``[optimize]`` table against the model's parameters (the config
    calls this and names the key of an :class:`OptimizeError`)."""
    agents_from_table(table, params, t_end)
    prefixes = [a["prefix"] for a in table["agents"]]
    for p in prefixes:
        if prefixes.count(p) > 1:
            raise OptimizeError("optimize.agents", f"optimize.agents lists '{p}' twice; one table per agent")


def _observable(model, name: str, key: str, hint: str):
    for o in model.observables:
        if o.name == name:
            return o
    raise OptimizeError(key, f"{key}: model '{model.name}' has no observable '{name}' ({hint}); "
                        f"it has: {', '.join(o.name for o in model.observables) or 'none'}")


@dataclasses.dataclass
class ScheduleProblem:
    """Everything both optimisers share. ``f(doses)``: the objective; ``extra(doses)``: the
    non-budget constraints ``(k,)``; ``evaluate(doses)`` (compiled): burden ``(T,)``, peak
    plasma ``(A,)`` and AUC ``(A,)`` per plasma agent (ng/mL, ng·h/mL); ``times`` (T,) h."""

    space: ScheduleSpace
    f: Callable
    extra: Callable | None
    constraint_names: list
    evaluate: Callable
    times: np.ndarray
    plasma_agents: list
    z0: np.ndarray
    start: dict
    none: dict
    table: dict
    reference: dict  # untreated burden terms and start AUCs the objective is relative to
    forward_s: float

    def value_terms(self, doses) -> dict:
        """Objective, constraints (relative; ≤ 0 holds), burden, peaks, AUCs of one schedule."""
        burden, peak, auc = (np.asarray(x) for x in self.evaluate(doses))
        g = [float(np.sum(doses[ag.amounts_key])) / ag.budget - 1.0 for ag in self.space.agents]
        lim = self.table.get("toxicity_limit")
        if lim is not None:
            g.append(float(peak[self.plasma_agents.index(self.table["toxicity_agent"])]) / lim - 1.0)
        return {"objective": float(self._f_from(burden, auc, doses)), "g": g, "burden": burden,
                "peak": dict(zip(self.plasma_agents, peak.tolist())),
                "auc": dict(zip(self.plasma_agents, auc.tolist()))}

    def _f_from(self, burden, auc, doses):
        return _objective_value(self.table, self.reference, burden, auc, self.plasma_agents, doses, np)


def _objective_value(table, ref, burden, auc, plasma_agents, doses, xp):
    kind = table["objective"]
    final = burden[-1] / ref["final"]
    mean = xp.mean(burden) / ref["mean"]
    value = final if kind == "final" else mean if kind == "mean" else final + mean
    w = table.get("exposure", 0.0)
    if w:
        value = value + w * sum(auc[i] / ref["auc"][i] for i in range(len(plasma_agents)))
    return value


def schedule_problem(model, simulator, grid, params: Mapping, y0, n_saves: int, table: Mapping,
                     t_end: float) -> ScheduleProblem:
    """The schedule problem of a run (model, simulator, grid, parameters, initial state
    ``(S, *shape)``, saves) and a resolved ``[optimize]`` table. Runs the untreated and the
    starting schedule once (compiling the forward program)."""
    agents = agents_from_table(table, params, t_end)
    space = ScheduleSpace(agents)
    dtype = simulator.dtype
    burden_obs = _observable(model, "tumor_burden", "optimize.objective",
                             "the objective is the tumor burden")
    sys_agents = [ag.prefix[4:] for ag in agents if ag.prefix.startswith("sys_")]
    tox = table.get("toxicity_limit")
    if tox is not None and table["toxicity_agent"] not in sys_agents:
        sys_agents.append(table["toxicity_agent"])
    plasma_obs = [_observable(model, f"plasma_{a}", "optimize.toxicity_agent" if a == table.get("toxicity_agent")
                              else "optimize.exposure", "the plasma level of the model's PK") for a in sys_agents]
    if table.get("exposure", 0.0) and not plasma_obs:
        raise OptimizeError("optimize.exposure", "optimize.exposure: no optimised agent is systemic "
                            "(prefix sys_<agent>), so there is no plasma exposure; set exposure = 0")
    base = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    y0 = jnp.asarray(y0, dtype)
    t_fine = jnp.arange(0.0, t_end + PLASMA_STEP_H / 2, PLASMA_STEP_H, dtype=dtype)
    save_t = simulator.save_times(n_saves)

    def burden_of(doses):
        p = dict(base, **doses)
        ys = simulator.run(p, y0, n_saves)
        return jax.vmap(lambda t, y: burden_obs.fn(t, {n: y[i] for i, n in enumerate(model.names)}, p, grid))(
            save_t, ys)

    def plasma(doses):
        """Peak (A,) and AUC (A,) of each plasma agent: the model's PK, no simulation."""
        if not plasma_obs:
            return jnp.zeros((0,), dtype), jnp.zeros((0,), dtype)
        p = dict(base, **doses)
        c = jnp.stack([jax.vmap(lambda t, o=o: o.fn(t, {}, p, grid))(t_fine) for o in plasma_obs])
        return jnp.max(c, axis=1), jnp.trapezoid(c, t_fine, axis=1)

    def evaluate(doses):
        return (burden_of(doses), *plasma(doses))

    def doses_of(prm):
        return {k: jnp.asarray(prm[k], dtype) for ag in agents for k in (ag.times_key, ag.amounts_key)}

    start = doses_of(params)
    none = dict(start, **{ag.amounts_key: jnp.zeros_like(start[ag.amounts_key]) for ag in agents})
    ev = jax.jit(evaluate)
    b_none, _, _ = (np.asarray(x) for x in ev(none))
    t0 = time.perf_counter()
    _, _, auc_start = (np.asarray(x) for x in jax.block_until_ready(ev(start)))
    forward_s = time.perf_counter() - t0
    if b_none[-1] <= 0 or b_none.mean() <= 0:
        raise OptimizeError("optimize.objective", "optimize.objective: the untreated tumor burden is 0; "
                            "the config's [initial] needs tumor cells")
    w = table.get("exposure", 0.0)
    if w and np.any(auc_start <= 0):
        bad = [a for a, v in zip(sys_agents, auc_start) if v <= 0]
        raise OptimizeError("optimize.exposure", f"optimize.exposure: the starting schedule gives no plasma "
                            f"exposure of {', '.join(bad)} to compare with; give it doses or set exposure = 0")
    ref = {"final": float(b_none[-1]), "mean": float(b_none.mean()), "auc": [float(v) for v in auc_start]}

    def f(doses):
        burden, (_, auc) = burden_of(doses), plasma(doses)
        return _objective_value(table, ref, burden, auc, sys_agents, doses, jnp)

    extra, names = None, [f"{ag.prefix} total / budget - 1" for ag in agents]
    if tox is not None:
        i_tox = sys_agents.index(table["toxicity_agent"])

        def extra(doses):
            peak, _ = plasma(doses)
            return peak[i_tox:i_tox + 1] / tox - 1.0

        names.append(f"peak plasma {table['toxicity_agent']} / {tox:g} ng/mL - 1")
    z0 = space.encode({ag.prefix: np.maximum(np.asarray(params[ag.amounts_key], float), 0.01 * ag.cap)
                       for ag in agents})
    return ScheduleProblem(space, f, extra, names, ev, np.asarray(save_t), sys_agents, z0,
                           {k: np.asarray(v) for k, v in start.items()},
                           {k: np.asarray(v) for k, v in none.items()}, dict(table), ref, forward_s)


@dataclasses.dataclass
class OptimizeOutcome:
    """Results: ``schedules`` {name: doses}; ``terms`` {name: :meth:`ScheduleProblem.value_terms`};
    ``gradient`` / ``cma`` traces (``cma`` None when skipped); ``histories`` {optimizer:
    (n, 2) forward-run equivalents, best objective}; ``violations``: the gradient result's
    violated constraints as text (empty: all hold)."""

    problem: ScheduleProblem
    schedules: dict
    terms: dict
    gradient: Trace
    cma: Trace | None
    histories: dict
    violations: list
    gradient_s: float


def run_optimize(problem: ScheduleProblem, *, cma: bool = True, log: Callable | None = print) -> OptimizeOutcome:
    """Augmented Lagrangian + L-BFGS, then (``cma``) the CMA-ES baseline on the quadratic
    penalty for ``cma_factor`` × the gradient run's wall time; ``log`` gets one line per
    iteration / generation."""
    t = problem.table
    space = problem.space
    tol = t["tolerance"]
    L = space.lagrangian(problem.f, problem.extra)
    n_con = len(problem.constraint_names)
    starts = t.get("starts", 1)
    if log:
        log(f"gradient: augmented Lagrangian + L-BFGS on {space.size} variables, {n_con} constraints"
            + (f", {starts} starts in one batch" if starts > 1 else "") + " (compiling the value and gradient ...)")
    grad = minimize_auglag(L, jnp.asarray(problem.z0), n_con, outer=t["rounds"], max_steps=t["steps"],
                           tol=tol, reference_mu=t["penalty"], starts=starts, spread=t.get("spread", 0.5),
                           seed=t.get("seed", 0), log=log,
                           chart=space.sine_chart() if t.get("coordinates", "logit") == "sine" else None)
    per_eval = grad.wall_s / max(grad.evaluations, 1)
    if log:
        log(f"  done: objective {grad.info['f']:.6g} in {grad.wall_s:.1f} s ({grad.evaluations} value+gradient "
            f"evaluations{' (batched)' if starts > 1 else ''}, {per_eval / problem.forward_s:.1f}x a forward run "
            f"each; compile {grad.compile_s:.1f} s)")
    decode = jax.jit(space.decode)
    schedules = {"no treatment": problem.none, "start (config)": problem.start,
                 "gradient": {k: np.asarray(v) for k, v in decode(jnp.asarray(grad.z)).items()}}
    histories = {"gradient (augmented Lagrangian + L-BFGS)":
                 [(n * per_eval / problem.forward_s, v) for _, n, v in grad.history if np.isfinite(v)]}
    cma_trace = None
    if cma and t["cma_factor"] > 0:
        J = space.penalized(problem.f, mu=t["penalty"], constraints=problem.extra)
        seconds = t["cma_factor"] * grad.wall_s
        if log:
            log(f"CMA-ES baseline: {seconds:.1f} s ({t['cma_factor']:g}x the gradient run), penalty "
                f"{t['penalty']:g}, population {cma_popsize(space.size)} (compiling one generation ...)")
        cma_trace = minimize_cma(J, jnp.asarray(problem.z0), sigma0=1.0, seed=t["seed"], max_seconds=seconds,
                                 log=log)
        schedules["CMA-ES"] = {k: np.asarray(v) for k, v in decode(jnp.asarray(cma_trace.z)).items()}
        histories["CMA-ES"] = [(n, v) for _, n, v in cma_trace.history]
    terms = {name: problem.value_terms(d) for name, d in schedules.items()}
    violations = [f"{n}: {v:.3g} > {tol:g}" for n, v in zip(problem.constraint_names, terms["gradient"]["g"])
                  if v > tol]
    return OptimizeOutcome(problem, schedules, terms, grad, cma_trace, histories, violations, per_eval)


def report(out: OptimizeOutcome, *, title: str, command: str) -> str:
    """The Markdown report of an outcome."""
    p, t = out.problem, out.problem.table
    g, c = out.gradient, out.cma
    starts_note = f" ({g.info['starts']} starts, batched)" if g.info.get("starts", 1) > 1 else ""
    lines = [f"# Dose optimisation: {title}", "", f"Command: `{command}` (backend {jax.default_backend()}).", "",
             f"Objective '{t['objective']}' (tumor burden relative to no treatment"
             + (f", + {t['exposure']:g} × plasma AUC / the start's" if t.get("exposure") else "")
             + "; lower is better). Constraints (relative, ≤ 0 holds; tolerance "
             f"{t['tolerance']:g}): {'; '.join(p.constraint_names)}.", "",
             "| schedule | objective | " + " | ".join(f"peak plasma {a} (ng/mL)" for a in p.plasma_agents)
             + " | constraints |", "|---|---|" + "---|" * len(p.plasma_agents) + "---|"]
    for name, v in out.terms.items():
        lines.append(f"| {name} | {v['objective']:.6f} | "
                     + " | ".join(f"{v['peak'][a]:.4g}" for a in p.plasma_agents)
                     + f" | {', '.join(f'{x:+.2e}' for x in v['g'])} |")
    lines += ["", "Optimised schedule (gradient):", ""]
    for ag in p.space.agents:
        d = out.schedules["gradient"]
        tt, a = np.asarray(d[ag.times_key]), np.asarray(d[ag.amounts_key])
        lines.append(f"- `{ag.prefix}` times (h): {', '.join(f'{x:.1f}' for x in tt)}; amounts (ng): "
                     f"{', '.join(f'{x:.4g}' for x in a)}; total {a.sum():.4g} of budget {ag.budget:.4g}")
    lines += ["", "Constraints of the gradient result: "
              + ("all hold" if not out.violations else "; ".join(out.violations))
              + f" (multipliers {', '.join(f'{x:.3g}' for x in g.info['lam'])}, μ {g.info['mu']:g}, "
              f"{g.info['rounds']} rounds).", "",
              "## Cost", "",
              f"One forward run {p.forward_s:.3g} s; one value-and-gradient evaluation {out.gradient_s:.3g} s "
              f"({out.gradient_s / p.forward_s:.1f}× forward, measured over the run).", "",
              "| optimizer | objective | wall (s, after compile) | evaluations | forward-run equiv. | compile (s) |",
              "|---|---|---|---|---|---|",
              f"| augmented Lagrangian + L-BFGS{starts_note} | {out.terms['gradient']['objective']:.6f} | {g.wall_s:.1f} | "
              f"{g.evaluations} value+gradient | {g.wall_s / p.forward_s:.0f} | {g.compile_s:.1f} |"]
    if c is not None:
        lines.append(f"| CMA-ES (seed {t['seed']}, penalty μ = {t['penalty']:g}) | "
                     f"{out.terms['CMA-ES']['objective']:.6f} | {c.wall_s:.1f} | {c.evaluations} forward | "
                     f"{c.wall_s / p.forward_s:.0f} | {c.compile_s:.1f} |")
        gv = g.value
        lines += ["", f"Best penalised objective (μ = {t['penalty']:g}): gradient {gv:.6f}, CMA-ES {c.value:.6f} "
                  f"after {t['cma_factor']:g}× the gradient run's wall time; CMA-ES reached the gradient's value "
                  + (f"after {c.time_to(gv):.1f} s." if np.isfinite(c.time_to(gv)) else "— never.")]
    lines.append("")
    return "\n".join(lines)
