"""Dose-schedule optimisation where gradients should win: batched multi-start L-BFGS against
CMA-ES, honestly timed.

Problem (well-mixed TME model, 28 days): daily dose slots of IFN-γ-1b (s.c.) and
pembrolizumab (i.v.) — an amount and a time (± 6 h) per slot, 112 decision variables. The
objective is the log tumor burden ratio at day 28 plus an exposure term (dose-proportional
plasma AUC of each agent relative to its standard course, weight ``--exposure``); each agent's
total is capped at its standard course's total by a quadratic penalty (same ``J`` for both
optimisers; see :mod:`tmepde.schedules`). Start: the standard schedule (IFN-γ-1b 50 µg/m²
3×/week, pembrolizumab 200 mg q3w).

Budget rule (the same for both): the gradient method — :func:`tmepde.schedules.minimize_multistart`,
``--starts`` L-BFGS searches (the standard schedule and perturbations of it of size
``--spread``, CMA-ES's σ0) advanced together, each step one vmapped value-and-gradient call —
runs for ``--grad-seconds`` of wall time; each of ``--seeds`` CMA-ES seeds (σ0 = 1, each
generation one vmapped batch) gets ``--cma-factor`` times the gradient method's wall time.
Wall-clock seconds after compilation (each compile reported apart; compiled programs shared
by the seeds), measured in one process, side by side. Forward-run equivalents: wall / the
time of one candidate inside a CMA-ES generation (a batched forward run, measured here).

Then a robust schedule: the expected objective over a virtual cohort (``--cohort`` patients,
log-normal growth, kill and recruitment) minimised by L-BFGS from the gradient method's
schedule, against that schedule (the median patient's optimum), both evaluated on the
cohort. The cohort's value and gradient reuse the multi-start program: ``--cohort`` /
``--starts`` batched calls with the patients' parameters in place of the starts.

    nice -n 10 python scripts/bench_optimize.py       # writes results/optimize_benchmark.{md,json}
    python scripts/bench_optimize.py --quick          # smaller budgets, to try it
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import tmepde as tp  # noqa: E402
from tmepde.batch import sample_lognormal  # noqa: E402
from tmepde.models import tme  # noqa: E402
from tmepde.schedules import (ScheduleSpace, SlotAgent, cma_popsize, minimize_cma, minimize_lbfgs,  # noqa: E402
                              minimize_multistart)
from _machine import machine_info  # noqa: E402

DAYS = 28
IFNG_DOSE = 8.65e4   # ng: 50 µg/m² × 1.73 m²
PD1_DOSE = 2.0e8     # ng: 200 mg
SLOTS = [24.0 * d + 9.0 for d in range(DAYS)]           # daily at 09:00
IFNG_STANDARD = [IFNG_DOSE if d % 7 in (0, 2, 4) else 0.0 for d in range(DAYS)]  # Mon/Wed/Fri
PD1_STANDARD = [PD1_DOSE if d == 0 else 0.0 for d in range(DAYS)]  # q3w: one dose in 4 weeks (+ day 21)
PD1_STANDARD[21] = PD1_DOSE
COHORT_CV = {"growth_tumor": 0.3, "kill_cd8": 0.3, "rec_cd8": 0.3}


def build(exposure: float):
    model = tme.tme_model(n_doses={"sys_ifng": DAYS, "sys_pd1": DAYS})
    grid = tp.Grid((2,), 20.0)
    sim = tp.Simulator(model, grid, dt=1.0, save_every=24.0 * DAYS, dtype=jnp.float64)
    y0 = model.stack(tme.uniform_conditions(), grid, jnp.float64)
    base = model.params(jnp.float64)
    tumor = [model.index("tumor"), model.index("stem")]
    space = ScheduleSpace((
        SlotAgent("sys_ifng", tuple(SLOTS), cap=2 * IFNG_DOSE, window=6.0, budget=sum(IFNG_STANDARD)),
        SlotAgent("sys_pd1", tuple(SLOTS), cap=PD1_DOSE, window=6.0, budget=sum(PD1_STANDARD)),
    ))
    refs = {"sys_ifng": sum(IFNG_STANDARD), "sys_pd1": sum(PD1_STANDARD)}

    def log_ratio(doses, params):
        ys = sim.run(dict(params, **doses), y0, 1)
        burden = ys[:, tumor].sum(axis=(1, 2))
        return jnp.log(burden[-1] / burden[0])

    def objective_for(params):
        def objective(doses):
            exp_term = sum(jnp.sum(doses[f"{a}_amounts"]) / r for a, r in refs.items())
            return log_ratio(doses, params) + exposure * exp_term
        return objective

    def J_of(z, varied):
        """The penalised J of one schedule vector for parameters ``base`` updated by ``varied``
        (the cohort's per-patient values; the median patient's for the schedule search)."""
        return space.penalized(objective_for(dict(base, **varied)), mu=1e3)(z)

    return model, sim, base, space, log_ratio, objective_for, J_of


def _uptime() -> str:
    try:
        import subprocess

        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--starts", type=int, default=16, help="L-BFGS starts per batched call")
    p.add_argument("--spread", type=float, default=1.0, help="perturbation of the extra starts (CMA-ES's σ0)")
    p.add_argument("--chart", choices=("sine", "logit"), default="sine",
                   help="coordinates of the gradient search: amounts as cap (1 + sin w)/2 (Box 1966) or the "
                        "shared logits")
    p.add_argument("--grad-seconds", type=float, default=60.0, help="wall time of the gradient method")
    p.add_argument("--cma-factor", type=float, default=5.0, help="CMA-ES wall budget / the gradient method's")
    p.add_argument("--exposure", type=float, default=0.05)
    p.add_argument("--cohort", type=int, default=32, help="patients (a multiple of --starts)")
    p.add_argument("--cohort-steps", type=int, default=10, help="L-BFGS iterations of the cohort optimum")
    p.add_argument("--out", default=str(ROOT / "results" / "optimize_benchmark"))
    p.add_argument("--report-from", metavar="JSON", help="only rewrite the .md from a finished run's .json")
    args = p.parse_args(argv)
    if args.report_from:
        r = json.loads(Path(args.report_from).read_text())
        Path(args.report_from).with_suffix(".md").write_text(report(r), encoding="utf-8")
        print(report(r))
        return 0
    if args.quick:
        args.seeds, args.starts, args.cohort, args.grad_seconds, args.cma_factor, args.cohort_steps = 2, 4, 8, 10.0, 2.0, 3
    if args.cohort % args.starts:
        p.error(f"--cohort {args.cohort} must be a multiple of --starts {args.starts} (the batch is shared)")
    tp.enable_compilation_cache()  # a rerun skips the compiles (their times are then small)
    info = machine_info()
    info["uptime_at_start"] = _uptime()
    command = "python " + " ".join(["scripts/bench_optimize.py", *sys.argv[1:]] if argv is None else
                                   ["scripts/bench_optimize.py", *argv])
    log = lambda line: print(line, flush=True)  # noqa: E731
    model, sim, base, space, log_ratio, objective_for, J_of = build(args.exposure)
    J = space.penalized(objective_for(base), mu=1e3)
    # Empty slots start at 1 % of their cap (at 0 the sigmoid is flat: they could never open).
    z0 = jnp.asarray(space.encode({"sys_ifng": np.maximum(IFNG_STANDARD, 0.02 * IFNG_DOSE),
                                   "sys_pd1": np.maximum(PD1_STANDARD, 0.01 * PD1_DOSE)}))
    K = args.starts
    cohort, keys = sample_lognormal(base, COHORT_CV, args.cohort, seed=0)
    median = {k: jnp.broadcast_to(jnp.asarray(base[k]), (K,)) for k in keys}

    # The two batched programs: K values and gradients (the multi-start step, and K patients
    # of the cohort), and one CMA-ES generation; compiled then timed (best of 3).
    tc = time.perf_counter()
    vg = jax.jit(jax.vmap(jax.value_and_grad(J_of), in_axes=(0, 0))).lower(
        jax.ShapeDtypeStruct((K, space.size), z0.dtype), median).compile()
    compile_grad = time.perf_counter() - tc
    log(f"compiled the {K}-start value and gradient in {compile_grad:.0f} s")
    tc = time.perf_counter()
    population = jax.ShapeDtypeStruct((cma_popsize(space.size), space.size), z0.dtype)
    batched = jax.jit(jax.vmap(J)).lower(population).compile()
    compile_cma = time.perf_counter() - tc
    log(f"compiled a CMA-ES generation ({population.shape[0]} candidates) in {compile_cma:.0f} s")

    def best(fn, n=3):
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            jax.block_until_ready(fn())
            ts.append(time.perf_counter() - t)
        return min(ts)

    Z0 = jnp.broadcast_to(z0, (K, space.size))
    P0 = jnp.broadcast_to(z0, population.shape)
    t_gen, t_bgrad = best(lambda: batched(P0)), best(lambda: vg(Z0, median))
    t_fwd = t_gen / population.shape[0]  # one batched forward run: the unit of cost
    start_value = float(batched(P0)[0])
    log(f"CMA-ES generation {t_gen * 1e3:.0f} ms ({t_fwd * 1e3:.1f} ms a candidate); {K}-start value and "
        f"gradient {t_bgrad * 1e3:.0f} ms ({t_bgrad / t_fwd:.1f} batched forward runs); start J {start_value:.4f}")

    def ms_batched(Z):
        F, G = vg(Z, median)
        return F, G, F

    ms = minimize_multistart(None, z0, starts=K, spread=args.spread, seed=0, max_steps=10**6,
                             max_seconds=args.grad_seconds, batched=ms_batched, log=log,
                             chart=space.sine_chart() if args.chart == "sine" else None)
    ms.compile_s = compile_grad
    budget_s = args.cma_factor * ms.wall_s
    if args.seeds == 0:  # a look at the gradient method alone (nothing written)
        log(f"final value per start: {np.array2string(np.sort(ms.info['final']), precision=4)}")
        return 0
    log(f"multi-start: J {ms.value:.4f} in {ms.wall_s:.1f} s ({ms.info['calls']} calls); each CMA-ES seed gets "
        f"{budget_s:.1f} s")
    cmas = [minimize_cma(J, z0, sigma0=1.0, seed=s, max_seconds=budget_s, batched_J=batched, log=log)
            for s in range(args.seeds)]
    for c in cmas:
        c.compile_s = compile_cma
    cma_final = np.array([c.value for c in cmas])
    cma_median = float(np.median(cma_final))
    t_reach = ms.time_to(cma_median)
    cma_wall = float(np.median([c.wall_s for c in cmas]))
    at_equal = [c.best_at(ms.wall_s) for c in cmas]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = dict(command=command, machine=info, multistart=dict(value=ms.value, wall_s=ms.wall_s, history=ms.history),
                   cma=[dict(value=c.value, wall_s=c.wall_s, history=c.history) for c in cmas])
    out.with_suffix(".json").write_text(json.dumps(partial, indent=1, default=float))  # kept if the rest fails

    # Robust schedule over a virtual cohort, against the median patient's optimum (= ms), with
    # the same compiled program: K patients per call, the schedule repeated.
    chunks = [{k: cohort[k][i:i + K] for k in keys} for i in range(0, args.cohort, K)]
    def common(z):
        """J minus the log burden ratio: exposure and penalty, the same for every patient."""
        doses = space.decode(z)
        exp_term = sum(jnp.sum(doses[ag.amounts_key]) / ag.budget for ag in space.agents)
        return args.exposure * exp_term + 0.5 * 1e3 * jnp.sum(jnp.maximum(space.violation(z), 0.0) ** 2)

    def cohort_vg(z):
        Zr = jnp.broadcast_to(jnp.asarray(z, z0.dtype), (K, space.size))
        F, G = zip(*(vg(Zr, c) for c in chunks))
        return jnp.mean(jnp.concatenate(F)), jnp.mean(jnp.concatenate(G), axis=0), jnp.concatenate(F)

    t_cohort = best(lambda: cohort_vg(z0)[:2], 1)
    log(f"cohort ({args.cohort} patients) value and gradient {t_cohort:.1f} s")
    robust = minimize_lbfgs(None, jnp.asarray(ms.z), max_steps=args.cohort_steps, log=log,
                            value_and_grad=lambda z: cohort_vg(z)[:2])
    outcome, cohort_J = {}, {}
    for name, z in (("standard", z0), ("median-patient optimum", ms.z), ("cohort optimum", robust.z)):
        value, _, each = cohort_vg(jnp.asarray(z))
        outcome[name] = np.asarray(each) - float(common(jnp.asarray(z, z0.dtype)))  # log burden ratio per patient
        cohort_J[name] = float(value)

    doses = {k: np.asarray(v).tolist() for k, v in space.decode(jnp.asarray(ms.z)).items()}
    info["load_average_at_end"] = os.getloadavg()
    info["uptime_at_end"] = _uptime()
    result = dict(machine=info, command=command, args=vars(args), n_variables=space.size,
                  forward_s=t_fwd, generation_s=t_gen, popsize=population.shape[0], batched_gradient_s=t_bgrad,
                  gradient_over_forward=t_bgrad / t_fwd, start=start_value,
                  compile_s=dict(batched_gradient=compile_grad, cma_generation=compile_cma),
                  multistart=dict(value=ms.value, wall_s=ms.wall_s, evaluations=ms.evaluations, calls=ms.info["calls"],
                                  respawns=ms.info["respawns"], compile_s=ms.compile_s,
                                  forward_equivalents=ms.wall_s / t_fwd,
                                  forward_equivalents_by_count=ms.info["calls"] * t_bgrad / t_fwd,
                                  final_per_start=ms.info["final"], history=ms.history),
                  cma=[dict(seed=s, value=c.value, wall_s=c.wall_s, evaluations=c.evaluations,
                            compile_s=c.compile_s, best_at_gradient_wall=a, forward_equivalents=c.wall_s / t_fwd,
                            history=c.history)
                       for s, (c, a) in enumerate(zip(cmas, at_equal))],
                  cma_wall_median=cma_wall,
                  cma_median=cma_median, gradient_time_to_cma_median=t_reach,
                  speedup_to_cma_median=cma_wall / t_reach if np.isfinite(t_reach) and t_reach > 0 else None,
                  gradient_beats_every_cma_at_equal_wall=bool(ms.value < min(at_equal)),
                  cohort_size=args.cohort, cohort_cv=COHORT_CV, cohort_gradient_s=t_cohort,
                  cohort_lbfgs=dict(value=robust.value, wall_s=robust.wall_s, evaluations=robust.evaluations),
                  cohort={k: dict(mean=float(v.mean()), median=float(np.median(v)), worst=float(v.max()),
                                  responders=float((v < 0).mean()), J=cohort_J[k]) for k, v in outcome.items()},
                  gradient_schedule=doses)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float))
    out.with_suffix(".md").write_text(report(result), encoding="utf-8")
    print(report(result))
    return 0


def report(r) -> str:
    ms, cmas = r["multistart"], r["cma"]
    m = r["machine"]
    a = r["args"]
    comp = r["compile_s"]
    lines = [
        "# Dose-schedule optimisation: batched multi-start L-BFGS (gradients) against CMA-ES", "",
        f"Command: `{r['command']}` (under `nice -n 10`) · {m['cpu_model']}, {m['cpu_cores']} cores, "
        f"shared with other jobs: `uptime` at start `{m.get('uptime_at_start', '')}`, at end "
        f"`{m.get('uptime_at_end', '')}` · jax {m['jax']}, backend {m['backend']}", "",
        f"Problem: well-mixed TME, 28 days, daily slots of IFN-γ-1b and pembrolizumab (amount and "
        f"time ± 6 h): {r['n_variables']} variables; J = log burden ratio at day 28 + "
        f"{a['exposure']} × exposure (Σ amounts / standard course per agent: plasma AUC of linear "
        "PK is dose-proportional) + quadratic penalty (μ = 1e3) on each agent's total above the "
        "standard course. Same J, start and variables for both optimisers.", "",
        f"Budget rule (same for both): the gradient method runs {a['grad_seconds']:g} s of wall time "
        f"({a['starts']} L-BFGS starts — the standard schedule and perturbations of size {a['spread']:g}, "
        "CMA-ES's σ0 — advanced together, one vmapped value-and-gradient call per step, a converged "
        f"start restarted near the best point); each of {len(cmas)} CMA-ES seeds (σ0 = 1, population "
        f"{r['popsize']}, one vmapped call per generation) gets {a['cma_factor']:g}× the gradient "
        "method's wall time. Both in one process, one after the other.", "",
        f"One CMA-ES generation {r['generation_s'] * 1e3:.0f} ms, i.e. {r['forward_s'] * 1e3:.1f} ms per "
        f"candidate (= one batched forward run, the cost unit below); one {a['starts']}-start "
        f"value-and-gradient call {r['batched_gradient_s'] * 1e3:.0f} ms = {r['gradient_over_forward']:.1f} "
        f"batched forward runs. Start (standard schedule): J = {r['start']:.4f}. Compiles (not in the "
        f"wall times below): {a['starts']}-start value and gradient {comp['batched_gradient']:.0f} s "
        f"(reused for the cohort), one CMA-ES generation (shared by the seeds) {comp['cma_generation']:.0f} s.", "",
        "| method | final J | wall (s) | evaluations | batched forward-run equiv. (wall / per-candidate time) |",
        "|---|---|---|---|---|",
        f"| multi-start L-BFGS ({a['starts']} starts) | {ms['value']:.4f} | {ms['wall_s']:.1f} | "
        f"{ms['calls']} calls × {a['starts']} value+gradient | {ms['forward_equivalents']:.0f} (by count: "
        f"{ms['forward_equivalents_by_count']:.0f}) |",
    ]
    lines += [f"| CMA-ES seed {c['seed']} | {c['value']:.4f} | {c['wall_s']:.1f} | {c['evaluations']} forward |"
              f" {c['forward_equivalents']:.0f} |" for c in cmas]
    reach = r["gradient_time_to_cma_median"]
    speed = r["speedup_to_cma_median"]
    lines += ["",
              f"- CMA-ES median final J {r['cma_median']:.4f} (median wall {r['cma_wall_median']:.1f} s); the "
              "multi-start L-BFGS reached it after "
              + (f"{reach:.1f} s: 1/{speed:.1f} of CMA-ES's wall time (goal ≤ 1/5: "
                 f"{'met' if speed >= 5 else 'not met'})." if speed else "— never: goal not met."),
              f"- At the gradient method's wall time ({ms['wall_s']:.1f} s) CMA-ES seeds had best J "
              + ", ".join(f"{c['best_at_gradient_wall']:.4f}" for c in cmas)
              + f": multi-start ({ms['value']:.4f}) better than every seed: "
              f"{'yes' if r['gradient_beats_every_cma_at_equal_wall'] else 'no'}.",
              "", f"Robust schedule over a virtual cohort ({r['cohort_size']} patients, log-normal "
              f"growth, CD8 kill and recruitment rates, CV {', '.join(f'{k} {v}' for k, v in r['cohort_cv'].items())}"
              f"; value and gradient {r['cohort_gradient_s']:.1f} s as {r['cohort_size'] // a['starts']} calls of the "
              f"{a['starts']}-wide program): expected J minimised by L-BFGS ({a['cohort_steps']} iterations from "
              f"the median-patient optimum, {r['cohort_lbfgs']['wall_s']:.0f} s). Outcome: log burden ratio at "
              "day 28 per patient (responder: ratio < 1).", "",
              "| schedule | cohort J | mean log ratio | median | worst patient | responders |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {v['J']:.4f} | {v['mean']:.4f} | {v['median']:.4f} | {v['worst']:.4f} | "
              f"{100 * v['responders']:.0f} % |" for k, v in r["cohort"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
