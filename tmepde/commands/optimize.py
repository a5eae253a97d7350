"""``tmepde optimize CONFIG``: optimise dose schedules by gradient, with constraints, against
a CMA-ES baseline (docs/optimization.md).

The config is a run config whose own schedule is the starting point and the reference (e.g.
the clinical standard), plus an ``[optimize]`` table: decision variables per agent
(``[[optimize.agents]]``: times and amounts, per-dose cap, budget, window, minimum interval),
the objective (tumor burden at the horizon and/or its time average, relative to no
treatment) and a toxicity limit on the peak plasma level of a systemic agent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import add_overrides, load_config_with, register


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config with an [optimize] table, e.g. configs/optimize/ifng_schedule.toml")
    add_overrides(p, "optimize.steps=10")
    p.add_argument("--no-cma", action="store_true", help="skip the CMA-ES baseline")


def problem(cfg):
    """(setup, objective(p), toxicity(p) or None, burden(p) -> (T,), agents, no-treatment params)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from .. import therapy
    from ..optimize import DoseAgent
    from ..runner import build

    oc = cfg.data["optimize"]
    setup = build(cfg)
    sim, model = setup.simulator, cfg.model
    names = model.names
    cells = [model.index(n) for n in ("tumor", "stem") if n in names]
    if not cells:
        raise ValueError(f"model.path: tmepde optimize needs 'tumor' (and 'stem') species for the tumor "
                         f"burden; the model has {', '.join(names)}")
    vol = jnp.asarray(cfg.grid.cell_volumes(), sim.dtype)
    t_end = cfg.data["time"]["t_end"]
    y0 = jnp.asarray(setup.y0)

    def burden(p):
        ys = sim.run(p, y0, setup.n_saves)
        return jnp.sum(sum(ys[:, i] for i in cells) * vol, axis=tuple(range(1, ys.ndim - 1)))

    agents = [DoseAgent(a["prefix"], a["max_amount"], a["budget"], a["t_min"],
                        a.get("t_max", t_end), a["min_interval"], a["optimize_times"]) for a in oc["agents"]]
    params = dict(setup.params)
    for ag in agents:
        n = int(np.size(params[ag.amounts_key]))
        if float(np.sum(params[ag.amounts_key])) > ag.budget * (1 + 1e-9):
            print(f"note: the config's {ag.prefix} schedule exceeds optimize budget {ag.budget:g}; "
                  "the start is projected onto the constraints", file=sys.stderr)
        if ag.optimize_times and ag.t_max - ag.t_min < ag.min_interval * (n - 1):
            raise ValueError(f"optimize.agents: {n} doses of {ag.prefix} cannot be {ag.min_interval} h "
                             f"apart in [{ag.t_min}, {ag.t_max}] h; widen t_min/t_max or lower min_interval")
    none = dict(params, **{ag.amounts_key: jnp.zeros_like(params[ag.amounts_key]) for ag in agents})
    b_none = np.asarray(burden(none))  # the simulator's own jitted loop: one compile for all forward runs
    ref_final, ref_mean = float(b_none[-1]), float(b_none.mean())
    kind = oc["objective"]

    def objective(p):
        b = burden(p)
        if kind == "final":
            return b[-1] / ref_final
        if kind == "mean":
            return jnp.mean(b) / ref_mean
        return b[-1] / ref_final + jnp.mean(b) / ref_mean

    agent = oc["toxicity_agent"]
    t_fine = jnp.arange(0.0, t_end + 0.25, 0.25, dtype=sim.dtype)

    def toxicity(p):
        ka = p.get(f"pk_{agent}_ka")
        c = therapy.pk_concentration(t_fine, p[f"sys_{agent}_times"], p[f"sys_{agent}_amounts"],
                                     ke=p[f"pk_{agent}_ke"], volume_ml=p[f"pk_{agent}_V"], ka=ka,
                                     bioavailability=p[f"pk_{agent}_F"], width=p["dose_width_h"])
        return jnp.max(c)

    toxicity = jax.jit(toxicity)  # called eagerly many times by the projections and bisection
    return setup, objective, (toxicity if "toxicity_limit" in oc else None), burden, agents, none


def run_optimize(cfg, *, cma: bool = True, log=print) -> dict:
    import jax
    import numpy as np

    from ..optimize import optimize_cma, optimize_schedule

    oc = cfg.data["optimize"]
    setup, objective, toxicity, burden, agents, none = problem(cfg)
    limit = oc.get("toxicity_limit", np.inf)
    start = dict(setup.params)
    f = objective
    log(f"gradient: projected Adam, {oc['steps']} steps")
    grad = optimize_schedule(objective, start, agents, steps=oc["steps"], learning_rate=oc["learning_rate"],
                             toxicity=toxicity, toxicity_limit=limit)
    log(f"  objective {grad.initial_objective:.5g} -> {grad.objective:.5g} with {grad.n_simulations} "
        f"sim-equivalents ({grad.wall_s:.0f} s)")
    res = {"gradient": grad, "agents": agents, "config": cfg, "none": none, "start": start}
    if cma and oc["cma_simulations"] > 0:
        log(f"CMA-ES: {oc['cma_simulations']} simulations")
        res["cma"] = optimize_cma(objective, start, agents, max_simulations=oc["cma_simulations"],
                                  toxicity=toxicity, toxicity_limit=limit)
        log(f"  objective {res['cma'].initial_objective:.5g} -> {res['cma'].objective:.5g} "
            f"({res['cma'].wall_s:.0f} s)")
    jb = burden
    res["burden"] = {"no treatment": np.asarray(jb(none)), "standard (config)": np.asarray(jb(start)),
                     "gradient": np.asarray(jb(grad.params))}
    res["objective"] = {"no treatment": float(f(none)), "standard (config)": float(f(start)),
                        "gradient": grad.objective}
    res["toxicity"] = {k: (float(toxicity(p)) if toxicity else None) for k, p in
                       (("no treatment", none), ("standard (config)", start), ("gradient", grad.params))}
    if "cma" in res:
        res["burden"]["CMA-ES"] = np.asarray(jb(res["cma"].params))
        res["objective"]["CMA-ES"] = res["cma"].objective
        res["toxicity"]["CMA-ES"] = float(toxicity(res["cma"].params)) if toxicity else None
    res["times"] = np.asarray(setup.simulator.save_times(setup.n_saves))
    res["violations"] = constraint_violations(grad.params, agents, toxicity, limit)
    prefix = Path(oc["output"])
    prefix.parent.mkdir(parents=True, exist_ok=True)
    from ..summaries import write_optimize

    schedules = {"standard (config)": start, "gradient": grad.params}
    histories = {"gradient (projected Adam)": grad.history}
    if "cma" in res:
        schedules["CMA-ES"] = res["cma"].params
        histories["CMA-ES"] = res["cma"].history
    h5 = write_optimize(Path(f"{prefix}.h5"), times=res["times"], burden=res["burden"],
                        objective=res["objective"], toxicity=res["toxicity"], schedules=schedules,
                        agents=agents, histories=histories, config_toml=cfg.to_toml(),
                        objective_name=oc["objective"])
    res["outputs"] = [write_schedule(cfg, grad.params, agents, Path(f"{prefix}_schedule.toml")),
                      plot(h5, Path(f"{prefix}.png")), Path(f"{prefix}.md"), h5]
    Path(f"{prefix}.md").write_text(report(res), encoding="utf-8")
    return res


def constraint_violations(params, agents, toxicity, limit, tol=1e-6) -> list[str]:
    """Every violated constraint, as text (empty list: all hold)."""
    import numpy as np

    out = []
    for ag in agents:
        a = np.asarray(params[ag.amounts_key])
        t = np.sort(np.asarray(params[ag.times_key]))
        if a.min() < -tol or a.max() > ag.max_amount * (1 + tol):
            out.append(f"{ag.prefix}: amount outside [0, {ag.max_amount:g}]")
        if a.sum() > ag.budget * (1 + tol):
            out.append(f"{ag.prefix}: total {a.sum():g} > budget {ag.budget:g}")
        if ag.optimize_times:
            if t.min() < ag.t_min - tol or t.max() > ag.t_max + tol:
                out.append(f"{ag.prefix}: times outside [{ag.t_min:g}, {ag.t_max:g}] h")
            if len(t) > 1 and np.diff(t).min() < ag.min_interval - 1e-6:
                out.append(f"{ag.prefix}: doses {np.diff(t).min():.3g} h apart < {ag.min_interval:g} h")
    if toxicity is not None and float(toxicity(params)) > limit * (1 + 1e-6):
        out.append(f"toxicity {float(toxicity(params)):.4g} > limit {limit:g}")
    return out


def write_schedule(cfg, params, agents, path: Path) -> Path:
    import copy

    import numpy as np
    import tomli_w

    from ..config import loads_config

    data = copy.deepcopy(cfg.data)
    data.pop("optimize", None)
    for ag in agents:
        for k in (ag.times_key, ag.amounts_key):
            data["model"]["params"][k] = [float(x) for x in np.asarray(params[k])]  # exact: budget holds
    text = "# Optimised schedule written by `tmepde optimize`; `tmepde run` runs it.\n" + tomli_w.dumps(data)
    loads_config(text, base_dir=cfg.base_dir)
    path.write_text(text, encoding="utf-8")
    return path


def plot(opt_file: Path, path: Path) -> Path:
    """Schedules, burden curves and objective vs simulations (from the ``tmepde-optimize``
    HDF5 file; ``tmepde plot`` draws the same)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..summaries import optimize_figure

    fig = optimize_figure(opt_file)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _sims_to_reach(history, target):
    for sims, best in history:
        if best <= target:
            return sims
    return None


def report(res) -> str:
    import jax
    import numpy as np

    cfg = res["config"]
    oc = cfg.data["optimize"]
    g = res["gradient"]
    lines = [f"# Dose optimisation ({oc['output']})", "",
             f"Config grid {cfg.grid.shape} × {cfg.grid.spacing[0]:g} µm ({cfg.grid.geometry}), "
             f"horizon {cfg.data['time']['t_end']:g} h, dt {cfg.data['time']['dt']:g} h; objective "
             f"'{oc['objective']}' (relative to no treatment; lower is better); toxicity: peak plasma "
             f"{oc['toxicity_agent']} <= {oc.get('toxicity_limit', 'none')} ng/mL; device "
             f"{jax.devices()[0].platform}.", "",
             "| schedule | objective | peak plasma (ng/mL) |", "|---|---|---|"]
    for k, v in res["objective"].items():
        tox = res["toxicity"][k]
        lines.append(f"| {k} | {v:.6f} | {'-' if tox is None else f'{tox:.3f}'} |")
    lines += ["", "Optimised schedule (gradient):", ""]
    for ag in res["agents"]:
        t = np.asarray(g.params[ag.times_key])
        a = np.asarray(g.params[ag.amounts_key])
        lines.append(f"- `{ag.prefix}` times (h): {', '.join(f'{x:.1f}' for x in t)}; amounts (ng): "
                     f"{', '.join(f'{x:.4g}' for x in a)}; total {a.sum():.4g} of budget {ag.budget:.4g}")
    lines += ["", f"Constraints of the gradient result: {'all hold' if not res['violations'] else '; '.join(res['violations'])}"
              f" (toxicity scale-down factor {g.toxicity_scale:.3f}).", "",
              "## Gradient vs CMA-ES (cost in simulations)", "",
              "A gradient evaluation is counted as 2 simulations (1 forward + 1 reverse pass); its",
              "forward pass also evaluates the current schedule, so only the last iterate needs one",
              "more forward run.", "",
              "| optimizer | simulations used | raw forward runs | best objective | wall (s) |", "|---|---|---|---|---|"]
    n_steps = len(g.history) - 1
    lines.append(f"| gradient (projected Adam) | {g.n_simulations} (sim-equivalents) | 1 fwd + "
                 f"{n_steps} fwd+bwd | {g.objective:.6f} | {g.wall_s:.0f} |")
    if "cma" in res:
        c = res["cma"]
        lines.append(f"| CMA-ES | {c.n_simulations} | {c.n_simulations} | {c.objective:.6f} | {c.wall_s:.0f} |")
        reach = _sims_to_reach(c.history, g.objective)
        g_reach = _sims_to_reach(g.history, c.objective)
        lines += ["", f"CMA-ES simulations to reach the gradient's objective {g.objective:.6f}: "
                  f"{reach if reach is not None else f'not reached within {c.n_simulations}'}.",
                  f"Gradient sim-equivalents to reach CMA-ES's final objective {c.objective:.6f}: "
                  f"{g_reach if g_reach is not None else 'not reached'}."]
        if reach is None:
            ratio = f"> {c.n_simulations / g.n_simulations:.1f}×"
        else:
            ratio = f"{reach / g.n_simulations:.1f}×"
        lines.append(f"Ratio (CMA-ES sims to match / gradient sim-equivalents): {ratio} (target ≥ 5×).")
    lines.append("")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    cfg = load_config_with(args, "optimize", "configs/optimize/ifng_schedule.toml")
    res = run_optimize(cfg, cma=not args.no_cma)
    for p in res["outputs"]:
        print(f"wrote {p}")
    if res["violations"]:
        print("constraint violations: " + "; ".join(res["violations"]), file=sys.stderr)
        return 1
    return 0


register("optimize", "optimise dose times and amounts (budget, caps, interval, toxicity) by gradient, "
         "with a CMA-ES baseline", _args, _run)
