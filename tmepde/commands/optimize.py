"""``tmepde optimize CONFIG -o FILE``: optimise dose amounts and times of a run config's
schedule (its ``[optimize]`` table) by gradient (augmented Lagrangian + L-BFGS) against a
CMA-ES baseline; the library is :mod:`tmepde.optimize` (docs/optimization.md).

Writes FILE (a ``tmepde-optimize`` HDF5 file: ``tmepde info`` / ``tmepde plot`` read it) and,
next to it, ``<stem>.md`` (report), ``<stem>_schedule.toml`` (the optimised schedule as a run
config) and ``<stem>.png``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..cli import add_overrides, load_config_with, register


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config with an [optimize] table, e.g. configs/optimize/ifng_schedule.toml")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="result file (.h5; default <config stem>_optimize.h5 in the current directory)")
    add_overrides(p, "optimize.steps=10")
    p.add_argument("--no-cma", action="store_true", help="skip the CMA-ES baseline")


def write_schedule(cfg, doses: dict, path: Path) -> Path:
    """The run config with its schedule replaced by ``doses`` (exact amounts: the budget holds)."""
    import copy

    import numpy as np
    import tomli_w

    from ..config import loads_config

    data = copy.deepcopy(cfg.data)
    data.pop("optimize", None)
    for k, v in doses.items():
        data["model"]["params"][k] = [float(x) for x in np.asarray(v)]
    text = "# Optimised schedule written by `tmepde optimize`; `tmepde run` runs it.\n" + tomli_w.dumps(data)
    loads_config(text, base_dir=cfg.base_dir)  # it must load as a run config
    path.write_text(text, encoding="utf-8")
    return path


def _run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..config import ConfigError
    from ..optimize import OptimizeError, report, run_optimize, schedule_problem
    from ..runner import build
    from ..summaries import optimize_figure, write_optimize

    cfg = load_config_with(args, "optimize", "configs/optimize/ifng_schedule.toml")
    out = args.output or Path(f"{Path(args.config).stem}_optimize.h5")
    if out.suffix != ".h5":
        raise ConfigError("-o", f"-o {out}: the result file must end in .h5 (e.g. -o {out.with_suffix('.h5')})")
    out.parent.mkdir(parents=True, exist_ok=True)
    setup = build(cfg)
    try:
        problem = schedule_problem(cfg.model, setup.simulator, cfg.grid, setup.params, setup.y0, setup.n_saves,
                                   cfg.data["optimize"], cfg.data["time"]["t_end"])
    except OptimizeError as e:
        raise ConfigError(e.key, str(e)) from None
    res = run_optimize(problem, cma=not args.no_cma, log=lambda line: print(line, flush=True))
    agents = problem.space.agents
    schedules = {k: v for k, v in res.schedules.items() if k != "no treatment"}
    write_optimize(out, times=problem.times, burden={k: v["burden"] for k, v in res.terms.items()},
                   objective={k: v["objective"] for k, v in res.terms.items()},
                   toxicity={k: v["peak"].get(problem.table["toxicity_agent"]) for k, v in res.terms.items()},
                   schedules=schedules, agents=agents, histories=res.histories, config_toml=cfg.to_toml(),
                   objective_name=problem.table["objective"])
    stem = out.with_suffix("")
    toml = write_schedule(cfg, {k: v for k, v in res.schedules["gradient"].items()}, Path(f"{stem}_schedule.toml"))
    fig = optimize_figure(out)
    fig.savefig(f"{stem}.png", dpi=120)
    plt.close(fig)
    command = " ".join(["tmepde optimize", shlex.quote(str(args.config)), "-o", shlex.quote(str(out)),
                        *(f"--set {shlex.quote(o)}" for o in args.overrides), *(["--no-cma"] if args.no_cma else [])])
    Path(f"{stem}.md").write_text(report(res, title=str(args.config), command=command), encoding="utf-8")
    for p in (out, Path(f"{stem}.md"), toml, Path(f"{stem}.png")):
        print(f"wrote {p}")
    if res.violations:
        print("constraint violations: " + "; ".join(res.violations), file=sys.stderr)
        return 1
    return 0


register("optimize", "optimise dose times and amounts (budget, cap, interval, toxicity) by gradient "
         "(augmented Lagrangian + L-BFGS), with a CMA-ES baseline", _args, _run)
