"""``[sweep]``: a batch of runs for ``tmepde sweep`` (arms × grid points × virtual patients);
see docs/batch.md."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..model import Model, ParameterError
from .run import INITIAL, PARAM_TYPE
from .schema import (BOOLEAN, INTEGER, NUMBER, OPTIONAL, REQUIRED, STRING, STRING_LIST, ConfigError,
                     Key, as_table, did_you_mean, finite, is_number, key_table, nonnegative, positive,
                     resolve_keys, short)

__all__ = ["SWEEP", "SWEEP_COHORT", "SWEEP_ARM", "sweep_value", "resolve_sweep", "reference"]


SWEEP = {
    "path": Key(STRING, "sweep.h5", "HDF5 sweep file to write (the CLI's -o overrides it)",
                'path = "cohort.h5"'),
    "chunk": Key(INTEGER, OPTIONAL, "members per compiled chunk, rounded up to a multiple of the "
                 "device count; absent = the most that fit in half the free device memory",
                 "chunk = 64", positive("")),
    "save_fields": Key(BOOLEAN, False, "also store every member's fields (B × T × S × grid: can "
                       "be huge); observables are always stored", "save_fields = true"),
    "field_stride": Key(INTEGER, 1, "with save_fields, keep every k-th save of the fields",
                        "field_stride = 4", positive("")),
    "burden": Key(STRING_LIST, OPTIONAL, "species whose total is the tumor burden of the response "
                  "summary; absent = tumor and stem when the model has them (else no summary)",
                  'burden = ["tumor", "stem"]'),
    "cr_fraction": Key(NUMBER, 1e-3, "complete response: burden below this fraction of its "
                       "baseline", "cr_fraction = 1e-3",
                       lambda v: None if 0 < v < 1 else "must be between 0 and 1"),
    "detection": Key(NUMBER, OPTIONAL, "complete response also when the burden falls below this "
                     "absolute level (µm^ndim × field units); absent = no absolute threshold",
                     "detection = 100.0", nonnegative("")),
    "pr_change": Key(NUMBER, -30.0, "partial response: diameter-equivalent change <= this (%)",
                     "pr_change = -30.0", lambda v: None if -100 < v < 0 else "must be between -100 and 0 %"),
    "pd_change": Key(NUMBER, 20.0, "progressive disease: diameter-equivalent change >= this (%)",
                     "pd_change = 20.0", positive(" %")),
}
SWEEP_COHORT = {
    "n": Key(INTEGER, REQUIRED, "number of virtual patients (log-normal parameter draws)", "n = 100",
             positive("")),
    "seed": Key(INTEGER, 0, "random seed (>= 0); the same seed gives the same patients in every arm",
                "seed = 0", nonnegative("")),
}
SWEEP_ARM = {
    "name": Key(STRING, REQUIRED, "arm name (unique; written to the file and the summary)",
                'name = "ifng_pulsed"',
                lambda v: None if v and "/" not in v else "must be a non-empty name without '/'"),
}


def sweep_value(key: str, v, path: str, defaults: Mapping, model: Model, initial: Mapping):
    """One value of a swept key: a model parameter (number, or list of the parameter's length)
    or ``initial.<species>.<key>`` (a number of that initial-condition key)."""
    if key.startswith("initial."):
        parts = key.split(".")
        name = parts[1] if len(parts) == 3 else None
        if name is None or name not in initial or len(initial[name]) != 1 or \
                parts[2] not in INITIAL[initial[name][0]["type"]] or parts[2] in ("center", "path"):
            raise ConfigError(path, f"{path}: '{key}' is not a numeric key of a single-part "
                              f"[initial.<species>] entry; swept initial keys look like "
                              f"'initial.cd8.seed' (entries: {', '.join(sorted(initial)) or 'none'})")
        spec = INITIAL[initial[name][0]["type"]][parts[2]]
        if not spec.type.test(v):
            raise ConfigError(path, f"{path} must be a {spec.type.name}, got {v!r}; e.g. {spec.example}")
        problem = spec.check(v) if spec.check else None
        if problem:
            raise ConfigError(path, f"{path} {problem}, got {v!r}")
        return v
    if key not in defaults:
        hint = did_you_mean(key, defaults)
        path = path.rsplit("[", 1)[0] if path.endswith("]") else path  # the key, not one value
        raise ConfigError(path, f"{path}: unknown parameter '{key}' for model '{model.name}'; {hint}"
                          "sweep a model parameter or 'initial.<species>.<key>'")
    shape = np.shape(defaults[key])
    if not PARAM_TYPE.test(v) or np.shape(v) != shape:
        want = "a number" if not shape else f"a list of {shape[0]} numbers"
        raise ConfigError(path, f"{path} must be {want} (the shape of parameter '{key}'), got {short(v)}")
    if not finite(v):
        raise ConfigError(path, f"{path} must be finite, got {short(v)}")
    try:
        model.check_params({**defaults, key: np.asarray(v, float)})
    except ParameterError as e:
        raise ConfigError(path, f"{path}: {e}") from None
    return [float(x) for x in v] if isinstance(v, list) else float(v)


def resolve_sweep(raw: Mapping, defaults: Mapping, model: Model, initial: Mapping) -> dict:
    out = resolve_keys(raw, SWEEP, "sweep", skip=("grid", "cohort", "arms"))
    for name in out.get("burden", []):
        if name not in model.names:
            raise ConfigError("sweep.burden", f"sweep.burden names unknown species '{name}'; "
                              f"species: {', '.join(model.names)}")
    grid = {}
    for k, values in as_table(raw.get("grid", {}), "sweep.grid").items():
        path = f"sweep.grid.{k}"
        if not isinstance(values, list) or not values:
            raise ConfigError(path, f"{path} must be a non-empty list of values, got {values!r}; "
                              f"e.g. {k} = [0.5, 1.0, 2.0]")
        grid[k] = [sweep_value(k, v, f"{path}[{i}]", defaults, model, initial)
                   for i, v in enumerate(values)]
    if grid:
        out["grid"] = grid
    if "cohort" in raw:
        rc = as_table(raw["cohort"], "sweep.cohort")
        cohort = resolve_keys(rc, SWEEP_COHORT, "sweep.cohort", skip=("cv",))
        cv = {}
        for k, c in as_table(rc.get("cv", {}), "sweep.cohort.cv").items():
            path = f"sweep.cohort.cv.{k}"
            if k not in defaults:
                hint = did_you_mean(k, defaults)
                raise ConfigError(path, f"{path}: unknown parameter '{k}' for model '{model.name}'; "
                                  f"{hint}cv keys are model parameters")
            if not is_number(c) or not (c >= 0 and math.isfinite(c)):
                raise ConfigError(path, f"{path} (coefficient of variation) must be a number >= 0, "
                                  f"got {c!r}; e.g. {k} = 0.3")
            cv[k] = float(c)
        cohort["cv"] = cv
        out["cohort"] = cohort
    if "arms" in raw:
        arms = raw["arms"]
        if not isinstance(arms, list) or not arms or not all(isinstance(a, dict) for a in arms):
            raise ConfigError("sweep.arms", "sweep.arms must be an array of tables: [[sweep.arms]] "
                              'name = "control" ... [[sweep.arms]] name = "treated" set = { ... }')
        resolved, seen = [], set()
        for i, a in enumerate(arms):
            path = f"sweep.arms[{i}]"
            arm = resolve_keys(a, SWEEP_ARM, path, skip=("set",))
            if arm["name"] in seen:
                raise ConfigError(f"{path}.name", f"{path}.name {arm['name']!r} is used twice; "
                                  "arm names must be unique")
            seen.add(arm["name"])
            arm["set"] = {k: sweep_value(k, v, f"{path}.set.{k}", defaults, model, initial)
                          for k, v in as_table(a.get("set", {}), f"{path}.set").items()}
            resolved.append(arm)
        out["arms"] = resolved
    return out


def reference() -> list[str]:
    """The ``[sweep]`` part of docs/config.md, markdown lines."""
    return [
        "## `[sweep]`",
        "",
        "Optional: a batch of runs for `tmepde sweep CONFIG` (ignored by `tmepde run`); see",
        "docs/batch.md. Members are every combination of arm × grid point × virtual patient, all",
        "run as one compiled program per chunk and written to one HDF5 file (docs/hdf5.md).",
        "",
        *key_table(SWEEP),
        "",
        "### `[sweep.grid]`",
        "",
        "Full-factorial grid: `<key> = [v1, v2, ...]`. A key is a model parameter (a number per",
        "value, or a list of the parameter's length for array parameters such as dose times) or a",
        "numeric key of a single-part initial condition, `initial.<species>.<key>` (e.g.",
        "`\"initial.cd8.seed\" = [1, 2, 3]`).",
        "",
        "### `[sweep.cohort]`",
        "",
        "Virtual patients: each parameter in `cv` is log-normal with median its value in the",
        "member (config, arm and grid applied) and coefficient of variation `cv`",
        "(σ_log = √(ln(1 + cv²))). Patient `i` has the same draws in every arm and grid point.",
        "",
        *key_table(SWEEP_COHORT),
        "| `cv` | table | `{}` | `{ <parameter> = cv, ... }`, each cv >= 0 (absent: n identical patients) |",
        "",
        "### `[[sweep.arms]]`",
        "",
        "Treatment arms (an array of tables), each applied on top of the config: dose schedules,",
        "parameter or initial-condition changes. Absent = one arm named `base`.",
        "",
        *key_table(SWEEP_ARM),
        "| `set` | table | `{}` | `{ <parameter or initial.<species>.<key>> = value, ... }` |",
        "",
    ]
