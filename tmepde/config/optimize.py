"""``[optimize]``: dose-schedule optimisation with ``tmepde optimize`` (docs/optimization.md)."""

from __future__ import annotations

from typing import Mapping

from .._dose_keys import schedule_keys, systemic_prefix  # tmepde.therapy's naming, no JAX
from .schema import (BOOLEAN, INTEGER, NUMBER, OPTIONAL, REQUIRED, STRING, ConfigError, Key,
                     key_table, nonnegative, one_of, positive, resolve_keys)

__all__ = ["OPTIMIZE", "OPTIMIZE_AGENT", "resolve_optimize", "reference"]


OPTIMIZE = {
    "objective": Key(STRING, "final", "'final' (tumor burden at the horizon), 'mean' (its time average) "
                     "or 'both' (their sum), each relative to the untreated value", 'objective = "mean"',
                     one_of(("final", "mean", "both"))),
    "exposure": Key(NUMBER, 0.0, "weight of the exposure term added to the objective: Σ over systemic "
                    "agents of plasma AUC / the starting schedule's AUC (the model's PK)", "exposure = 0.05",
                    nonnegative("")),
    "toxicity_agent": Key(STRING, "ifng", "systemic agent whose peak plasma level is the toxicity "
                          "(the model's observable plasma_<agent>)", 'toxicity_agent = "ifng"'),
    "toxicity_limit": Key(NUMBER, OPTIONAL, "peak plasma level allowed (ng/mL); absent = no limit",
                          "toxicity_limit = 1.0", positive(" ng/mL")),
    "steps": Key(INTEGER, 30, "L-BFGS iterations per augmented-Lagrangian round (with starts > 1: batched "
                 "value-and-gradient calls)", "steps = 30", positive("")),
    "starts": Key(INTEGER, 1, "L-BFGS starts run side by side in one vmapped batch (1 = a single start; "
                  "> 1: the config's schedule and random perturbations of it, each call evaluating all)",
                  "starts = 8", positive("")),
    "spread": Key(NUMBER, 0.5, "size of the random perturbations of the extra starts (and of the restarts of a "
                  "converged start), in the unconstrained coordinates (logits of amount / max_amount)",
                  "spread = 0.5", positive("")),
    "coordinates": Key(STRING, "logit", "search coordinates of the amounts: 'logit' (amount = max_amount · "
                       "sigmoid(v)) or 'sine' (max_amount · (1 + sin w)/2, Box 1966: better conditioned near "
                       "empty and full slots); the same schedules either way", 'coordinates = "sine"',
                       one_of(("logit", "sine"))),
    "rounds": Key(INTEGER, 6, "augmented-Lagrangian rounds (multiplier updates) at most", "rounds = 6",
                  positive("")),
    "tolerance": Key(NUMBER, 1e-3, "constraint tolerance, relative (total/budget - 1, peak/limit - 1)",
                     "tolerance = 1e-3", positive("")),
    "cma_factor": Key(NUMBER, 1.0, "wall time of the CMA-ES baseline, in multiples of the gradient run's "
                      "(0 = skip)", "cma_factor = 1.0", nonnegative("")),
    "penalty": Key(NUMBER, 1e4, "μ of the quadratic penalty the CMA-ES baseline minimises (and of the "
                   "penalised value both optimisers report)", "penalty = 1e4", positive("")),
    "seed": Key(INTEGER, 0, "CMA-ES random seed", "seed = 0", nonnegative("")),
}
OPTIMIZE_AGENT = {
    "prefix": Key(STRING, REQUIRED, "dose parameters <prefix>_times (h) and <prefix>_amounts",
                  'prefix = "sys_ifng"'),
    "max_amount": Key(NUMBER, REQUIRED, "cap per dose (amount units of the agent, ng)", "max_amount = 1.73e5",
                      positive("")),
    "budget": Key(NUMBER, REQUIRED, "cap on the total amount", "budget = 1.04e6", positive("")),
    "t_min": Key(NUMBER, 0.0, "earliest dose time (h)", "t_min = 0.0", nonnegative(" h")),
    "t_max": Key(NUMBER, OPTIONAL, "latest dose time (h); absent = time.t_end", "t_max = 600.0",
                 nonnegative(" h")),
    "min_interval": Key(NUMBER, 0.0, "minimum spacing between doses (h)", "min_interval = 24.0",
                        nonnegative(" h")),
    "optimize_times": Key(BOOLEAN, True, "also move the dose times (else amounts only)",
                          "optimize_times = true"),
}


def resolve_optimize(raw: Mapping, defaults: Mapping) -> dict:
    out = resolve_keys(raw, OPTIMIZE, "optimize", skip=("agents",))
    agents = raw.get("agents")
    if not isinstance(agents, list) or not agents or not all(isinstance(a, dict) for a in agents):
        raise ConfigError("optimize.agents", "optimize.agents must be an array of tables: "
                          '[[optimize.agents]] prefix = "sys_ifng" max_amount = 1.73e5 budget = 1.04e6')
    resolved = []
    for i, a in enumerate(agents):
        path = f"optimize.agents[{i}]"
        ag = resolve_keys(a, OPTIMIZE_AGENT, path)
        for key in schedule_keys(ag["prefix"]):
            if key not in defaults:
                raise ConfigError(f"{path}.prefix", f"{path}.prefix '{ag['prefix']}': the model has no "
                                  f"parameter '{key}'; dose prefixes look like 'sys_ifng', "
                                  "'it_il12'")
        if ag.get("t_max") is not None and ag["t_max"] <= ag["t_min"]:
            raise ConfigError(f"{path}.t_max", f"{path}.t_max ({ag['t_max']}) must be > t_min ({ag['t_min']})")
        resolved.append(ag)
    out["agents"] = resolved
    if schedule_keys(systemic_prefix(out["toxicity_agent"]))[0] not in defaults:
        raise ConfigError("optimize.toxicity_agent", f"optimize.toxicity_agent '{out['toxicity_agent']}' "
                          "has no systemic schedule (sys_<agent>_times); e.g. toxicity_agent = \"ifng\"")
    from ..optimize import OptimizeError, check_table

    try:  # slot counts and spans against the model (time.t_end is checked again at the run)
        check_table(out, defaults, float("inf"))
    except OptimizeError as e:
        raise ConfigError(e.key, str(e)) from None
    return out


def reference() -> list[str]:
    """The ``[optimize]`` part of docs/config.md, markdown lines."""
    return [
        "## `[optimize]`",
        "",
        "Optional: dose-schedule optimisation with `tmepde optimize CONFIG` (ignored by",
        "`tmepde run`); see docs/optimization.md. The config's own schedule is the starting",
        "point and the reference (e.g. the clinical standard).",
        "",
        *key_table(OPTIMIZE),
        "",
        "### `[[optimize.agents]]`",
        "",
        "Decision variables: the dose times and amounts of one agent per table.",
        "",
        *key_table(OPTIMIZE_AGENT),
        "",
    ]
