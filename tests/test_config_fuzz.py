"""Property-based fuzzing of the config layer (resolve/validate only, no simulation).

Every generated config either resolves (and then round-trips through its TOML) or raises
ConfigError with a one-line message that names the key it concerns: never another exception
type, never a traceback from deep inside numpy, the grid or the model factory.
"""

import copy
import math
import warnings

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from tmepde.config import ConfigError, ConfigWarning, apply_override, loads_config, resolve

BASE = {
    "grid": {"shape": [12, 10], "spacing": 5.0},
    "time": {"t_end": 1.0, "dt": 0.1, "save_every": 0.5},
    "model": {"path": "tmepde.models.examples:gray_scott"},
    "initial": {"u": {"type": "disk", "center": [30.0, 25.0], "radius": 10.0, "value": 1.0},
                "v": [{"type": "uniform", "value": 0.25},
                      {"type": "clusters", "n": 3, "radius": 6.0, "value": 0.5, "seed": 1}]},
}

# Places to poke: real keys (wrong values), near-miss spellings, and whole tables.
PATHS = [
    "grid.shape", "grid.spacing", "grid.geometry", "grid.spasing",
    "time.t_end", "time.dt", "time.save_every", "time.tend",
    "model.path", "model.options.du", "model.options.dv", "model.options.d_u",
    "model.params.feed", "model.params.kill", "model.params.D_u", "model.params.decay_v",
    "model.params.D_uu", "model.params",
    "solver.scheme", "solver.dtype", "solver.cg_tol", "solver.chemotaxis_limiter",
    "solver.start_window", "solver.start_windows",
    "output.path", "output.chunk", "output.compression",
    "species.u.diffusivity", "species.u.decay", "species.u.boundary", "species.u.units",
    "species.u.nonnegative", "species.v.boundary.x_lo", "species.v.boundary.y",
    "species.v.boundary.default", "species.v.boundary.x_lo.value", "species.v.boundary.x_lo.kind",
    "species.w.decay",
    "initial.u.type", "initial.u.center", "initial.u.radius", "initial.u.value", "initial.u.width",
    "initial.u.amplitude", "initial.u.n", "initial.u.seed", "initial.u.path", "initial.u",
    "initial.v", "initial.w",
    "sweep.grid.feed", "sweep.cohort.n", "sweep.cohort.cv.kill", "sweep.arms", "sweep.chunk",
    "grid", "time", "solver", "bogus",
]

finite = st.floats(allow_nan=False, allow_infinity=False)
numbers = st.one_of(
    st.integers(-5, 200), st.integers(), finite, st.floats(),
    st.sampled_from([0, 0.0, -0.0, 1e-300, 1e300, 5e-324, 2**63, 10**30, float("nan"),
                     float("inf"), -float("inf"), 0.1, 0.5, 1.0, 2.0, 16, 40.0]),
)
scalars = st.one_of(numbers, st.booleans(), st.text(max_size=8),
                    st.sampled_from(["neumann", "periodic", "dirichlet", "zero_flux", "disk",
                                     "gaussian", "clusters", "uniform", "file", "sbdf2", "rk4",
                                     "float64", "spherical", "", "tmepde.models.examples:fisher_kpp",
                                     "tmepde.models.examples:nope", "nomodule:model", "a:b:c"]))
# Flat (not st.recursive): generating nested values costs more than resolving them.
values = st.one_of(
    scalars,
    st.lists(numbers, max_size=4),
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["kind", "value", "type", "x_lo", "x", "default", "name",
                                     "set", "center", "radius", "n", "feed", "valeu"]),
                    scalars, max_size=3),
)
mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(PATHS), values),
    st.tuples(st.just("del"), st.sampled_from(PATHS), st.none()),
)


def _apply(raw: dict, op: str, path: str, value) -> None:
    parts = path.split(".")
    node = raw
    for p in parts[:-1]:
        if not isinstance(node, dict):
            return
        node = node.setdefault(p, {})
    if not isinstance(node, dict):
        return
    if op == "del":
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def _names_key(e: ConfigError) -> bool:
    """The message names the key: its dotted path, the path without a list index, or the
    key's name together with its table ("unknown species 'w' in [initial]")."""
    msg, path = str(e), e.path
    first, last = path.split(".")[0], path.split(".")[-1].split("[")[0]
    return (path in msg or path.split("[")[0] in msg or path.rsplit(".", 1)[0] in msg
            or (f"'{last}'" in msg and f"[{first}" in msg))


def _check_error(e: ConfigError) -> None:
    msg = str(e)
    assert msg and "\n" not in msg, msg
    assert e.path, f"no key named: {msg}"
    assert _names_key(e), (e.path, msg)


@settings(max_examples=1000, deadline=None, derandomize=True, database=None,
          phases=(Phase.explicit, Phase.generate),  # no shrinking: failures print as drawn
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_generated_configs_resolve_or_raise_one_named_config_error(mutations):
    raw = copy.deepcopy(BASE)
    for op, path, value in mutations:
        _apply(raw, op, path, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)  # legal but suspicious: allowed here
        try:
            cfg = resolve(raw)
        except ConfigError as e:
            _check_error(e)
            return
        # A config that resolves is complete and reproducible: its TOML loads to the same data.
        again = loads_config(cfg.to_toml())
    assert again.data == cfg.data
    assert cfg.n_saves >= 1 and all(math.isfinite(h) and h > 0 for h in cfg.grid.spacing)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          phases=(Phase.explicit, Phase.generate),  # no shrinking: failures print as drawn
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS + ["", ".", "grid..shape", "time.t_end.x"]),
                          st.text(max_size=12)), min_size=1, max_size=3))
def test_generated_set_overrides_resolve_or_raise_one_named_config_error(overrides):
    text = "\n".join(["[grid]", "shape = [8, 8]", "[time]", "t_end = 1.0", "dt = 0.5",
                      "save_every = 0.5", "[model]", 'path = "tmepde.models.examples:gray_scott"'])
    sets = [f"{k}={v}" for k, v in overrides]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        try:
            loads_config(text, sets)
        except ConfigError as e:
            msg = str(e)
            assert msg and "\n" not in msg
            assert msg.startswith("--set") or (e.path and _names_key(e)), (e.path, msg)


def test_the_fuzz_reaches_both_outcomes():
    """The strategies are not degenerate: the base resolves, and a mutation can break it."""
    resolve(copy.deepcopy(BASE))
    raw = copy.deepcopy(BASE)
    _apply(raw, "set", "time.dt", float("nan"))
    with pytest.raises(ConfigError) as info:
        resolve(raw)
    _check_error(info.value)
    raw = {"grid": {"shape": [4]}}
    apply_override(raw, "grid.spacing=2.0")
    assert raw["grid"]["spacing"] == 2.0
