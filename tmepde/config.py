"""TOML run configurations: a declarative schema, strict validation, resolution, TOML output.

A config is read with :func:`load_config` (file) or :func:`loads_config` (text), with optional
``--set``-style overrides (``"time.t_end=48"``). Everything is checked before anything is
computed; every mistake raises :class:`ConfigError` (a ``ValueError``) whose message starts
with, or names, the full dotted key (``grid.spacing``) and says what to write instead.

The result is a :class:`Config`: the resolved tables (every default filled in, the model's
species and parameters spelled out) plus the objects built from them (grid, model). Its
:meth:`Config.to_toml` text loads back to the same config, and is what result files store.

The schema below is the single source of truth: ``docs/config.md`` is generated from it
(``python -m tmepde.config > docs/config.md``; a test keeps the two equal).

Units: length µm, time h, diffusivity µm²/s, decay 1/h.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import tomllib
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from . import initial as _initial
from .grid import AXIS_NAMES, Boundary, Grid, parse_boundary, resolve_boundaries
from .model import Model, ModelLoadError, ParameterError, did_you_mean, load_model
from .stepping import BDF_ORDERS, SCHEMES

__all__ = ["ConfigError", "ConfigWarning", "Config", "load_config", "loads_config", "apply_override",
           "resolve", "config_reference", "SCHEMA"]

MAX_STEPS = 10**9  # time steps per run: beyond this a run cannot finish (and int32 step counters wrap)
MAX_SPACING = 1e6  # µm: a cell larger than 1 m is a unit mistake
MAX_CLUSTERS = 100_000  # initial clusters: each one is a pass over the grid


class ConfigError(ValueError):
    """A configuration mistake. ``path`` is the dotted key it concerns ('' for the file).
    The message is one line."""

    def __init__(self, path: str, message: str):
        super().__init__(" ".join(str(message).split("\n")))
        self.path = path


class ConfigWarning(UserWarning):
    """A legal but suspicious config value (e.g. doses scheduled after the end of the run)."""


# --------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------

class _Required:
    def __repr__(self):
        return "required"


class _FromModel:
    def __repr__(self):
        return "from the model"


REQUIRED = _Required()
FROM_MODEL = _FromModel()  # default taken from the model's own declaration
DOMAIN_CENTER = object()  # default filled in from the grid
OPTIONAL = None  # key may be absent; then it is absent from the resolved config too


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v) -> bool:
    """A number, or every number of a list, is finite (and fits a float)."""
    try:
        return all(math.isfinite(x) for x in (v if isinstance(v, list) else [v]))
    except OverflowError:  # an integer beyond the float range
        return False


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Type:
    """A TOML value type: its name in messages and docs, and a membership test."""

    name: str
    test: Callable[[object], bool]


NUMBER = Type("number", _is_number)
INTEGER = Type("integer", _is_int)
STRING = Type("string", lambda v: isinstance(v, str))
BOOLEAN = Type("boolean", lambda v: isinstance(v, bool))
INT_LIST = Type("list of integers", lambda v: isinstance(v, list) and all(_is_int(x) for x in v))
NUMBER_LIST = Type("list of numbers", lambda v: isinstance(v, list) and all(_is_number(x) for x in v))
NUMBER_OR_LIST = Type("number or list of numbers", lambda v: _is_number(v) or NUMBER_LIST.test(v))
STRING_LIST = Type("list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
BOUNDARY = Type("string, number or table",
                lambda v: isinstance(v, (str, dict)) or _is_number(v))


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key: type, default (``REQUIRED``, ``FROM_MODEL``, ``None`` = optional or a
    value), a one-line description with units, a TOML example, and an optional check
    ``check(value) -> problem or None`` for values of the right type."""

    type: Type
    default: object
    doc: str
    example: str
    check: Callable[[object], str | None] | None = None


def _positive(unit):
    return lambda v: None if v > 0 else f"must be > 0{unit}"


def _nonnegative(unit):
    return lambda v: None if v >= 0 else f"must be >= 0{unit}"


def _one_of(options):
    return lambda v: None if v in options else f"must be one of {', '.join(map(repr, options))}"


def _check_shape(v):
    if not 1 <= len(v) <= 3:
        return "must have 1, 2 or 3 entries (cells per axis)"
    if any(n < 2 for n in v):
        return "entries must be >= 2 (cells per axis)"
    return None


def _check_spacing(v):
    vals = v if isinstance(v, list) else [v]
    if not vals or any(not (math.isfinite(h) and h > 0) for h in vals):
        return "must be > 0 µm (one number, or one per axis)"
    if any(h > MAX_SPACING for h in vals):
        return f"must be at most {MAX_SPACING:g} µm (1 m) per cell; lengths are in µm"
    return None


def _check_file_name(v):
    if not v.strip():
        return "must be a file name, not empty"
    if v.endswith(("/", "\\")) or Path(v).is_dir():
        return "is a folder; give a file name inside it"
    return None


def _check_cg_tol(v):
    return None if 0 < v < 1 else "must be between 0 and 1 (a relative tolerance)"


GRID = {
    "shape": Key(INT_LIST, REQUIRED, "cells per axis; 1, 2 or 3 entries, each >= 2",
                 "shape = [128, 128]", _check_shape),
    "spacing": Key(NUMBER_OR_LIST, 10.0, "cell size in µm; one number for all axes or one per axis",
                   "spacing = 10.0", _check_spacing),
    "geometry": Key(STRING, "cartesian", "'cartesian', or 'spherical' for a 1D radial grid of shells "
                    "(a spherically symmetric 3D tumor; x_lo is the centre)", 'geometry = "spherical"',
                    lambda v: None if v in ("cartesian", "spherical") else "must be 'cartesian' or 'spherical'"),
}

TIME = {
    "t_end": Key(NUMBER, REQUIRED, "end time in h (the run starts at 0); a whole multiple of save_every",
                 "t_end = 24.0", _positive(" h")),
    "dt": Key(NUMBER, REQUIRED, "time step in h", "dt = 0.1", _positive(" h")),
    "save_every": Key(NUMBER, REQUIRED, "output interval in h; a whole multiple of dt",
                      "save_every = 1.0", _positive(" h")),
}

MODEL = {
    "path": Key(STRING, REQUIRED, "'package.module:attribute', a Model or a zero-argument callable "
                "returning one", 'path = "tmepde.models.examples:gray_scott"',
                lambda v: None if ":" in v else "must look like 'package.module:attribute'"),
}
# [model.params]: free keys, checked against Model.default_params() names.
# [model.options]: free keys, passed as keyword arguments to a model factory.
PARAM_TYPE = NUMBER_OR_LIST

SOLVER = {
    "scheme": Key(STRING, "sbdf2", f"time stepping scheme, one of {', '.join(SCHEMES)}",
                  'scheme = "sbdf2"', _one_of(SCHEMES)),
    "dtype": Key(STRING, "float32", "floating point precision, 'float32' or 'float64'",
                 'dtype = "float64"', _one_of(("float32", "float64"))),
    "cg_tol": Key(NUMBER, OPTIONAL, "relative tolerance of the conjugate-gradient solves "
                  "(variable diffusivity, local uptake); absent = engine default",
                  "cg_tol = 1e-8", _check_cg_tol),
    "chemotaxis_limiter": Key(BOOLEAN, True, "limit chemotactic fluxes so densities stay "
                              "non-negative and below capacity", "chemotaxis_limiter = true"),
    "start_window": Key(NUMBER, 1.0, "hours integrated on a graded mesh at the start (sbdf2/3/4): "
                        "about the length of the initial transient; at most one save interval",
                        "start_window = 4.0", _nonnegative(" h")),
}

OUTPUT = {
    "path": Key(STRING, "result.h5", "HDF5 file to write, relative to the working directory "
                "(the CLI's -o overrides it)", 'path = "run.h5"', lambda v: _check_file_name(v)),
    "chunk": Key(INTEGER, 10, "saves computed per compiled call; the file is flushed and the "
                 "progress bar updated after each chunk", "chunk = 10", _positive("")),
    "compression": Key(INTEGER, 4, "gzip level of the field datasets, 0 (off) to 9",
                       "compression = 4",
                       lambda v: None if 0 <= v <= 9 else "must be between 0 and 9"),
}

SPECIES = {
    "diffusivity": Key(NUMBER, FROM_MODEL, "diffusivity in µm²/s (>= 0)", "diffusivity = 20.0",
                       _nonnegative(" µm²/s")),
    "decay": Key(NUMBER, FROM_MODEL, "linear decay rate in 1/h (>= 0)", "decay = 0.5",
                 _nonnegative(" 1/h")),
    "boundary": Key(BOUNDARY, FROM_MODEL,
                    "'neumann' (= 'zero_flux'), 'periodic', a number (Dirichlet value), or a table "
                    "by face: keys default, x, y, z, x_lo, x_hi, ..., each a kind or "
                    "{kind = \"dirichlet\", value = 1.0}",
                    'boundary = "periodic"'),
    "units": Key(STRING, FROM_MODEL, "units of the field, written to the output",
                 'units = "ng/mL"'),
    "nonnegative": Key(BOOLEAN, FROM_MODEL, "clip round-off negatives to 0 after each step",
                       "nonnegative = true"),
}

_CENTER = Key(NUMBER_LIST, DOMAIN_CENTER, "position in µm, one entry per axis",
              "center = [640.0, 640.0]")
INITIAL = {
    "uniform": {
        "value": Key(NUMBER, REQUIRED, "value in every cell", "value = 1.0"),
    },
    "gaussian": {
        "center": _CENTER,
        "width": Key(NUMBER, REQUIRED, "standard deviation in µm", "width = 50.0", _positive(" µm")),
        "amplitude": Key(NUMBER, 1.0, "peak value", "amplitude = 1.0"),
    },
    "disk": {
        "center": _CENTER,
        "radius": Key(NUMBER, REQUIRED, "radius in µm (disk in 2D, ball in 3D)", "radius = 100.0",
                      _positive(" µm")),
        "value": Key(NUMBER, 1.0, "value inside", "value = 1.0"),
    },
    "clusters": {
        "n": Key(INTEGER, REQUIRED, "number of clusters", "n = 10",
                 lambda v: None if 0 <= v <= MAX_CLUSTERS else f"must be between 0 and {MAX_CLUSTERS}"),
        "radius": Key(NUMBER, REQUIRED, "cluster radius in µm", "radius = 30.0", _positive(" µm")),
        "value": Key(NUMBER, 1.0, "value inside a cluster (overlaps are not added)", "value = 1.0"),
        "seed": Key(INTEGER, 0, "random seed (>= 0); the same seed gives the same field", "seed = 0",
                    _nonnegative("")),
    },
    "file": {
        "path": Key(STRING, REQUIRED, ".npy array of the grid's shape; relative paths are "
                    "relative to the config file", 'path = "cells.npy"'),
        "scale": Key(NUMBER, 1.0, "factor applied to the array", "scale = 1.0"),
    },
}
INITIAL_ALIASES = {"ball": "disk", "npy": "file", "constant": "uniform"}

SECTIONS = {
    "grid": (GRID, "Uniform cell-centred grid. The domain along each axis is [0, shape × spacing] µm."),
    "time": (TIME, "Time stepping and output times, all in hours."),
    "model": (MODEL, "The model to run. `[model.options]` are keyword arguments of a model factory "
              "(the grid is passed too when the factory takes `grid`). `[model.params]` overrides its parameters by name "
              "(reaction parameters, plus `D_<species>` µm²/s, `decay_<species>` 1/h, "
              "`chi_<species>`); names are checked against `Model.default_params()`."),
    "solver": (SOLVER, "Numerical options."),
    "output": (OUTPUT, "The HDF5 result file (layout: docs/hdf5.md)."),
}
SCHEMA = {**{k: v[0] for k, v in SECTIONS.items()}, "species": SPECIES, "initial": INITIAL}
TOP_LEVEL = ("grid", "time", "model", "solver", "output", "species", "initial", "sweep",
             "fit", "optimize", "sensitivity")


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------

_did_you_mean = did_you_mean  # one helper for every unknown-name message


def _unknown_key(path: str, key: str, valid: Sequence[str], what: str = "key") -> ConfigError:
    full = f"{path}.{key}" if path else key
    hint = _did_you_mean(key, valid, (path + ".") if path else "")
    where = f"[{path}]" if path else "the top level"
    return ConfigError(full, f"unknown {what} '{full}'; {hint}valid {what}s in {where}: "
                       f"{', '.join(valid) if valid else '(none)'}")


def _type_name(v) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "table"}.get(type(v), type(v).__name__)


def _table(value, path: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(path, f"{path} must be a table ([{path}]), got {value!r} ({_type_name(value)})")
    return value


def _resolve_keys(raw: Mapping, keys: Mapping[str, Key], path: str, skip=()) -> dict:
    """Check ``raw`` against ``keys`` and fill in defaults (``FROM_MODEL`` keys stay absent)."""
    for k in raw:
        if k not in keys and k not in skip:
            raise _unknown_key(path, k, list(keys) + list(skip))
    out = {}
    for k, spec in keys.items():
        full = f"{path}.{k}"
        if k not in raw:
            if spec.default is REQUIRED:
                raise ConfigError(full, f"missing required key '{full}' ({spec.doc}); "
                                  f"add it under [{path}], e.g. {spec.example}")
            if spec.default is not None and spec.default is not FROM_MODEL and spec.default is not DOMAIN_CENTER:
                out[k] = spec.default
            continue
        v = raw[k]
        if not spec.type.test(v):
            raise ConfigError(full, f"{full} must be a {spec.type.name}, got {_short(v)} "
                              f"({_type_name(v)}); e.g. {spec.example}")
        if spec.type in (NUMBER, NUMBER_LIST, NUMBER_OR_LIST, INTEGER, INT_LIST) and not _finite(v):
            raise ConfigError(full, f"{full} must be finite, got {_short(v)}; e.g. {spec.example}")
        if spec.check is not None:
            problem = spec.check(v)
            if problem:
                raise ConfigError(full, f"{full} {problem}, got {_short(v)}; e.g. {spec.example}")
        if spec.type is NUMBER:
            v = float(v)
        elif spec.type in (NUMBER_LIST, NUMBER_OR_LIST):
            v = [float(x) for x in v] if isinstance(v, list) else float(v)
        out[k] = v
    return out


def _short(v) -> str:
    """``repr`` of a config value, cut to one short line."""
    text = repr(v).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def _whole_multiple(a: float, b: float) -> int | None:
    """``a / b`` if it is a whole number >= 1, else None."""
    r = a / b
    if not math.isfinite(r):
        return None
    n = round(r)
    return n if n >= 1 and abs(r - n) <= 1e-9 * max(1.0, r) else None


def _fmt(x: float) -> str:
    return f"{x:g}"


# --------------------------------------------------------------------------------------
# Boundaries
# --------------------------------------------------------------------------------------

def _boundary_to_toml(b: Boundary):
    return b.kind if b.kind != "dirichlet" else {"kind": "dirichlet", "value": b.value}


def _resolve_boundary(spec, ndim: int, path: str) -> dict:
    """Per-face table ``{x_lo: "neumann" | {kind, value}, ...}`` from a config value."""
    def one(v, where):
        if isinstance(v, dict):
            extra = sorted(set(v) - {"kind", "value"})
            if extra:
                raise _unknown_key(where, extra[0], ["kind", "value"])
        if isinstance(v, list) or isinstance(v, bool):
            raise ConfigError(where, f"{where} must be a kind ('neumann', 'periodic'), a number "
                              f"(Dirichlet value) or {{kind = \"dirichlet\", value = 1.0}}, got {_short(v)}")
        try:
            return parse_boundary(v)
        except (ValueError, TypeError) as e:
            raise ConfigError(where, f"{where}: {e}") from None

    if isinstance(spec, dict) and "kind" in spec:
        spec = one(spec, path)
    elif isinstance(spec, dict):
        faces = [f"{a}_{side}" for a in AXIS_NAMES[:ndim] for side in ("lo", "hi")]
        valid = ["default", *AXIS_NAMES[:ndim], *faces]
        for k in spec:
            if k not in valid:
                raise _unknown_key(path, k, valid, "face")
        spec = {k: one(v, f"{path}.{k}") for k, v in spec.items()}
    elif not isinstance(spec, Boundary):
        spec = one(spec, path)
    try:
        bcs = resolve_boundaries(spec, ndim)
    except (ValueError, TypeError) as e:
        raise ConfigError(path, f"{path}: {e}") from None
    return {f"{a}_{side}": _boundary_to_toml(b)
            for a, pair in zip(AXIS_NAMES, bcs) for side, b in zip(("lo", "hi"), pair)}


def _boundary_objects(table: Mapping) -> dict:
    return {face: parse_boundary(v) if not isinstance(v, dict) else Boundary(v["kind"], v.get("value", 0.0))
            for face, v in table.items()}


# --------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Config:
    """A resolved, validated configuration.

    data: the resolved tables (plain dicts, TOML-serialisable).
    grid: the :class:`~tmepde.grid.Grid`. model: the model with the ``[species]`` overrides
    applied. base_dir: where relative paths in the config were resolved from.
    """

    data: dict
    grid: Grid
    model: Model
    base_dir: Path

    @property
    def n_saves(self) -> int:
        """Number of save intervals (the result holds ``n_saves + 1`` states with t = 0)."""
        return _whole_multiple(self.data["time"]["t_end"], self.data["time"]["save_every"])

    @property
    def dtype(self):
        return np.dtype(self.data["solver"]["dtype"])

    def params(self, dtype=None) -> dict:
        """Model parameters with the ``[model.params]`` overrides applied."""
        return self.model.params(dtype, **self.data["model"].get("params", {}))

    def initial_fields(self) -> dict:
        """``{species: float64 array of the grid's shape}`` for species with an initial entry."""
        out = {}
        for name, parts in self.data["initial"].items():
            out[name] = sum((_make_initial(self.grid, p) for p in parts), np.zeros(self.grid.shape))
        return out

    def initial_state(self) -> np.ndarray:
        """Stacked initial state ``(n_species, *grid.shape)``, float64; missing species are 0."""
        fields = self.initial_fields()
        return np.stack([fields.get(n, np.zeros(self.grid.shape)) for n in self.model.names])

    def to_toml(self) -> str:
        """The resolved config as TOML text; :func:`loads_config` of it gives the same config."""
        import tomli_w

        return tomli_w.dumps(self.data)

    def replace(self, *overrides: str) -> "Config":
        """A new config with ``dotted.key=value`` overrides applied to the resolved tables."""
        raw = copy.deepcopy(self.data)
        for o in overrides:
            apply_override(raw, o)
        return resolve(raw, self.base_dir)


def _make_initial(grid: Grid, part: Mapping) -> np.ndarray:
    kind = part["type"]
    if kind == "uniform":
        return _initial.uniform(grid, part["value"])
    if kind == "gaussian":
        return _initial.gaussian(grid, part["center"], part["width"], part["amplitude"])
    if kind == "disk":
        return _initial.disk(grid, part["center"], part["radius"], part["value"])
    if kind == "clusters":
        return _initial.clusters(grid, part["n"], part["radius"], part["value"], part["seed"])
    if kind == "file":
        return _initial.from_file(grid, part["path"], part["scale"])
    raise AssertionError(kind)


def parse_value(text: str):
    """A ``--set`` value: parsed as a TOML value (``48``, ``[64, 64]``, ``"a"``, ``true``),
    else taken as a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict, assignment: str) -> dict:
    """Apply ``"dotted.key=value"`` to the raw tables in place (creating tables as needed)."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError("", f"--set expects dotted.key=value (e.g. --set time.t_end=48), got {assignment!r}")
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            prefix = ".".join(parts[: i + 1])
            raise ConfigError(prefix, f"--set {key}: {prefix} is a value, not a table")
    node[parts[-1]] = parse_value(text.strip())
    return raw


def loads_config(text: str, overrides: Sequence[str] = (), base_dir: str | Path = ".",
                 source: str = "<config>") -> Config:
    """Parse TOML text, apply ``dotted.key=value`` overrides, validate and resolve."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"{source} is not valid TOML: {e}") from None
    for o in overrides:
        apply_override(raw, o)
    return resolve(raw, base_dir)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a TOML config file; relative paths inside it are relative to its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise ConfigError("", f"config file {str(path)!r} is not UTF-8 text (byte 0x{e.object[e.start]:02x} "
                          f"on line {line}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError("", f"cannot read config file {str(path)!r}: {e.strerror or e}") from None
    return loads_config(text, overrides, base_dir=path.parent, source=str(path))


def resolve(raw: Mapping, base_dir: str | Path = ".") -> Config:
    """Validate raw TOML tables and fill in every default. Raises :class:`ConfigError`."""
    base_dir = Path(base_dir)
    for k in raw:
        if k not in TOP_LEVEL:
            raise _unknown_key("", k, list(TOP_LEVEL), "section")
    data = {}
    for sec in ("grid", "time", "model", "solver", "output"):
        data[sec] = _resolve_keys(_table(raw.get(sec, {}), sec), SCHEMA[sec], sec,
                                  skip=("params", "options") if sec == "model" else ())

    # grid
    g = data["grid"]
    ndim = len(g["shape"])
    if isinstance(g["spacing"], list) and len(g["spacing"]) != ndim:
        raise ConfigError("grid.spacing", f"grid.spacing has {len(g['spacing'])} entries but grid.shape "
                          f"has {ndim}; give one spacing per axis or a single number")
    if not isinstance(g["spacing"], list):
        g["spacing"] = [g["spacing"]] * ndim
    if g["geometry"] == "spherical" and ndim != 1:
        raise ConfigError("grid.geometry", f"grid.geometry = 'spherical' needs a 1D grid.shape (radial "
                          f"shells), got {g['shape']}; e.g. shape = [100]")
    try:
        grid = Grid(tuple(g["shape"]), tuple(g["spacing"]), geometry=g["geometry"])
    except ValueError as e:
        raise ConfigError("grid.spacing", str(e)) from None

    # time
    t = data["time"]
    steps = t["t_end"] / t["dt"]
    if steps > MAX_STEPS:
        raise ConfigError("time.dt", f"time.dt = {_fmt(t['dt'])} h gives {steps:.3g} steps to time.t_end = "
                          f"{_fmt(t['t_end'])} h, more than a run can take ({MAX_STEPS:.0e}); use "
                          f"dt >= {_fmt(t['t_end'] / MAX_STEPS)} h (the IMEX schemes are stable at "
                          "dt ~ 0.1-1 h)")
    if t["save_every"] > t["t_end"]:  # (also keeps save_every / dt <= MAX_STEPS below)
        raise ConfigError("time.save_every", f"time.save_every ({_fmt(t['save_every'])} h) must be at "
                          f"most time.t_end ({_fmt(t['t_end'])} h); e.g. save_every = {_fmt(t['t_end'])}")
    r = _whole_multiple(t["save_every"], t["dt"])
    if r is None:
        fix = max(1, round(t["save_every"] / t["dt"])) * t["dt"]
        raise ConfigError("time.save_every",
                          f"time.save_every ({_fmt(t['save_every'])} h) must be a whole multiple of "
                          f"time.dt ({_fmt(t['dt'])} h); e.g. save_every = {_fmt(fix)}")
    if _whole_multiple(t["t_end"], t["save_every"]) is None:
        fix = max(1, round(t["t_end"] / t["save_every"])) * t["save_every"]
        raise ConfigError("time.t_end",
                          f"time.t_end ({_fmt(t['t_end'])} h) must be a whole multiple of "
                          f"time.save_every ({_fmt(t['save_every'])} h); e.g. t_end = {_fmt(fix)}")

    sw = data["solver"]["start_window"]
    if "start_window" not in raw.get("solver", {}):  # the default (1 h), cut to one save interval
        data["solver"]["start_window"] = min(sw, t["save_every"])
    elif sw > t["save_every"] * (1 + 1e-12):
        raise ConfigError("solver.start_window", f"solver.start_window ({_fmt(sw)} h) must be at most "
                          f"one save interval (time.save_every = {_fmt(t['save_every'])} h); e.g. "
                          f"start_window = {_fmt(min(1.0, t['save_every']))}")

    # model (a factory may already build arrays of the grid's size: check a lower bound first)
    _check_memory(grid, None, data)
    options = _table(raw.get("model", {}).get("options", {}), "model.options")
    try:
        model = load_model(data["model"]["path"], options, grid, search=[base_dir])
    except ModelLoadError as e:
        key = f"model.{e.key}"
        msg = str(e)
        raise ConfigError(key, msg if msg.startswith(key) else f"{key}: {msg}") from None
    if options:
        data["model"]["options"] = options
    _check_memory(grid, model, data)

    # species overrides -> a model copy with replaced Species
    raw_species = _table(raw.get("species", {}), "species")
    new_species = []
    resolved_species = {}
    for name in raw_species:
        if name not in model.names:
            raise ConfigError(f"species.{name}", f"unknown species '{name}' in [species] for model "
                              f"'{model.name}'; known species: {', '.join(model.names)}")
    for s in model.species:
        path = f"species.{s.name}"
        over = _resolve_keys(_table(raw_species.get(s.name, {}), path), SPECIES, path)
        changes = {k: v for k, v in over.items() if k != "boundary"}
        boundary = _resolve_boundary(over.get("boundary", s.boundary), ndim, f"{path}.boundary")
        changes["boundary"] = _boundary_objects(boundary)
        try:
            s = dataclasses.replace(s, **changes)
        except ValueError as e:
            raise ConfigError(path, f"{path}: {e}") from None
        new_species.append(s)
        entry = {}
        if not s.variable_diffusivity:  # a diffusivity map is the model's and is not written out
            entry["diffusivity"] = float(s.diffusivity)
        entry.update(decay=float(s.decay), boundary=boundary, units=s.units, nonnegative=bool(s.nonnegative))
        resolved_species[s.name] = entry
    if raw_species:
        model = model.with_species(new_species)
    data["species"] = resolved_species

    # model parameters
    defaults = model.default_values()  # NumPy: validation builds no JAX arrays
    transport = {f"{p}{s.name}" for s in model.species for p in ("D_", "decay_")}
    raw_params = _table(raw.get("model", {}).get("params", {}), "model.params")
    params = {}
    for k, v in raw_params.items():
        full = f"model.params.{k}"
        if k not in defaults:
            hint = _did_you_mean(k, defaults)
            raise ConfigError(full, f"unknown parameter '{full}' for model '{model.name}'; {hint}"
                              f"known parameters: {', '.join(sorted(defaults))}")
        if not PARAM_TYPE.test(v):
            raise ConfigError(full, f"{full} must be a number or list of numbers, got {_short(v)} ({_type_name(v)})")
        if not _finite(v):
            raise ConfigError(full, f"{full} must be finite, got {_short(v)}")
        arr = np.asarray(v, dtype=float)
        shape = np.shape(defaults[k])
        if arr.shape != shape and (arr.ndim or not k.startswith("D_")):
            want = "a number" if not shape else f"a list of {shape[0]} numbers"
            raise ConfigError(full, f"{full} must be {want} like the model's default (shape {shape}), "
                              f"got {_short(v)}")
        if (k.startswith(("D_", "decay_")) and k in transport) and np.any(arr < 0):
            unit = "µm²/s" if k.startswith("D_") else "1/h"
            raise ConfigError(full, f"{full} must be >= 0 {unit}, got {v!r}")
        params[k] = [float(x) for x in v] if isinstance(v, list) else float(v)
    try:
        model.check_params({**defaults, **params})
    except ParameterError as e:
        key = f"model.params.{e.name}" if e.name else "model.params"
        raise ConfigError(key, f"{key}: {e}") from None
    _check_dose_times(defaults, params, t["t_end"])
    # Spell out the other parameters (diffusivities and decays live in [species.*]).
    full_params = {k: float(np.asarray(v)) for k, v in defaults.items()
                   if k not in transport and np.ndim(v) == 0}
    full_params.update(params)
    data["model"]["params"] = full_params

    # initial conditions
    raw_initial = _table(raw.get("initial", {}), "initial")
    data["initial"] = {}
    for name, spec in raw_initial.items():
        path = f"initial.{name}"
        if name not in model.names:
            raise ConfigError(path, f"unknown species '{name}' in [initial] for model '{model.name}'; "
                              f"known species: {', '.join(model.names)}")
        parts = spec if isinstance(spec, list) else [spec]
        resolved = []
        for i, part in enumerate(parts):
            ppath = f"{path}[{i}]" if isinstance(spec, list) else path
            resolved.append(_resolve_initial(_table(part, ppath), ppath, grid, base_dir))
            _check_initial_part(resolved[-1], ppath, grid, model.species[model.index(name)])
        data["initial"][name] = resolved
    if "sweep" in raw:
        data["sweep"] = _resolve_sweep(_table(raw["sweep"], "sweep"), defaults, model, data["initial"])
    # -- begin [fit]/[optimize] (tmepde fit / tmepde optimize) --
    if "fit" in raw:
        data["fit"] = _resolve_fit(_table(raw["fit"], "fit"), defaults)
    if "optimize" in raw:
        data["optimize"] = _resolve_optimize(_table(raw["optimize"], "optimize"), defaults)
    # -- end [fit]/[optimize] --
    if "sensitivity" in raw:  # tmepde sensitivity; validated by its own module
        from .sensitivity import SensitivityError, resolve_table

        try:
            data["sensitivity"] = resolve_table(_table(raw["sensitivity"], "sensitivity"), defaults,
                                                model.names, t["t_end"], t["save_every"])
        except SensitivityError as e:
            raise ConfigError(e.key, str(e)) from None
    return Config(data=data, grid=grid, model=model, base_dir=base_dir)


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_estimate(shape: Sequence[int], n_species: int, dtype: str, scheme: str, chunk: int) -> int:
    """Bytes a run holds at once (estimate): the state ``S × cells`` in the run's dtype times
    the states the scheme keeps (IMEX BDF of order k: the current state, k look-ahead states,
    k - 1 rates, right-hand side and solve work; explicit RK: stages), plus two chunks of
    ``output.chunk`` saves (one computing, one being written), plus the float64 initial
    fields built on the host."""
    cells = math.prod(int(n) for n in shape)  # Python ints: never overflows
    k = BDF_ORDERS.get(scheme, 1 if scheme == "sbdf1" else 0)
    history = 2 * k + 4 if k else 8
    item = 8 if dtype == "float64" else 4
    return n_species * cells * (item * (history + 2 * chunk) + 2 * 8)


def _check_memory(grid: Grid, model: Model | None, data: Mapping) -> None:
    """Refuse a run whose state cannot fit in memory, before anything is allocated (without
    the model: as if it had one species, a lower bound)."""
    n_species = len(model.names) if model is not None else 1
    need = memory_estimate(grid.shape, n_species, data["solver"]["dtype"],
                           data["solver"]["scheme"], data["output"]["chunk"])
    have = _available_memory()
    if have is not None and need > have:
        gib = 2.0 ** 30
        cells = " x ".join(map(str, grid.shape))
        what = f"{n_species} species" if model is not None else "at least one species"
        raise ConfigError("grid.shape", f"grid.shape: {cells} cells x {what} "
                          f"({data['solver']['dtype']}, {data['solver']['scheme']}, output.chunk = "
                          f"{data['output']['chunk']}) needs about {need / gib:.3g} GiB, more than the "
                          f"{have / gib:.3g} GiB of memory available; use fewer cells (a coarser "
                          "grid.spacing over the same domain) or a smaller output.chunk")


def _check_dose_times(defaults: Mapping, params: Mapping, t_end: float) -> None:
    """Dose schedules (``<name>_times`` with ``<name>_amounts``): a dose with a non-zero
    amount after ``time.t_end`` is never given, which is legal (a shortened run) but worth
    a warning."""
    for k in params:
        if not (k.endswith("_times") and k[:-6] + "_amounts" in defaults):
            continue
        times = np.atleast_1d(np.asarray(params[k], float))
        amounts = np.atleast_1d(np.asarray(params.get(k[:-6] + "_amounts", defaults[k[:-6] + "_amounts"]), float))
        late = times[(amounts != 0) & (times > t_end)] if amounts.shape == times.shape else times[times > t_end]
        if late.size:
            warnings.warn(ConfigWarning(
                f"model.params.{k}: {late.size} dose(s) at t > time.t_end = {_fmt(t_end)} h "
                f"(first at {_fmt(float(late.min()))} h) are never given"), stacklevel=4)


_INITIAL_VALUE_KEYS = {"uniform": "value", "gaussian": "amplitude", "disk": "value", "clusters": "value",
                       "file": "scale"}


def _check_initial_part(part: Mapping, path: str, grid: Grid, species) -> None:
    """A shape must cover at least one cell centre of the domain (a shape placed outside it,
    e.g. centres in µm on a grid whose spacing was given in mm, would silently start at 0),
    and a non-negative species cannot start negative."""
    kind = part["type"]
    vkey = _INITIAL_VALUE_KEYS[kind]
    if species.nonnegative and part[vkey] < 0:
        raise ConfigError(f"{path}.{vkey}", f"{path}.{vkey} must be >= 0 ({species.name} is a "
                          f"non-negative field), got {_fmt(part[vkey])}")
    extent = " x ".join(f"[0, {_fmt(e)}]" for e in grid.extent)
    if kind in ("disk", "gaussian"):
        reach = part["radius"] if kind == "disk" else 5 * part["width"]
        d = _initial.nearest_cell_distance(grid, part["center"])
        if d > reach:
            what = (f"radius {_fmt(part['radius'])} µm" if kind == "disk"
                    else f"width {_fmt(part['width'])} µm")
            raise ConfigError(f"{path}.center", f"{path}.center {part['center']} µm ({kind}, {what}) lies "
                              f"outside the domain {extent} µm: it covers no cell; lengths are in µm "
                              "(check grid.spacing and grid.shape, or move the center)")
    elif kind == "clusters" and part["n"] > 0:
        centers = _initial.cluster_centers(grid, part["n"], part["seed"])
        if not any(_initial.nearest_cell_distance(grid, c) <= part["radius"] for c in centers):
            raise ConfigError(f"{path}.radius", f"{path}.radius ({_fmt(part['radius'])} µm) is too small "
                              f"for cells of {' x '.join(_fmt(h) for h in grid.spacing)} µm: no cluster "
                              "covers a cell centre; lengths are in µm")
    elif kind == "file":
        arr = np.load(part["path"], mmap_mode="r", allow_pickle=False)
        if arr.dtype.kind not in "biuf":
            raise ConfigError(f"{path}.path", f"{path}.path: the array in {part['path']!r} holds "
                              f"{arr.dtype}, not numbers")
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"{path}.path", f"{path}.path: the array in {part['path']!r} has "
                              "non-finite values (NaN or inf)")
        if species.nonnegative and np.any(arr < 0):
            raise ConfigError(f"{path}.path", f"{path}.path: the array in {part['path']!r} has negative "
                              f"values, but {species.name} is a non-negative field")


def _resolve_initial(part: Mapping, path: str, grid: Grid, base_dir: Path) -> dict:
    kinds = list(INITIAL)
    if "type" not in part:
        raise ConfigError(f"{path}.type", f"missing required key '{path}.type'; add e.g. "
                          f'type = "uniform" (one of {", ".join(kinds)})')
    kind = part["type"]
    if not isinstance(kind, str) or INITIAL_ALIASES.get(kind, kind) not in INITIAL:
        raise ConfigError(f"{path}.type", f"{path}.type must be one of {', '.join(map(repr, kinds))}, "
                          f"got {kind!r}")
    kind = INITIAL_ALIASES.get(kind, kind)
    out = {"type": kind, **_resolve_keys({k: v for k, v in part.items() if k != "type"},
                                         INITIAL[kind], path)}
    if "center" in INITIAL[kind]:
        if "center" not in out:
            out["center"] = _initial.domain_center(grid)
        elif len(out["center"]) != grid.ndim:
            raise ConfigError(f"{path}.center", f"{path}.center must have {grid.ndim} entries "
                              f"(µm, one per axis), got {out['center']!r}")
    out = {"type": kind, **{k: out[k] for k in INITIAL[kind] if k in out}}  # schema order
    if kind == "file":
        p = Path(out["path"])
        p = p if p.is_absolute() else (base_dir / p)
        out["path"] = str(p.resolve())
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}.path", f"{path}.path: cannot read {str(p)!r} as a .npy array: {e}") from None
        if arr.shape != grid.shape:
            raise ConfigError(f"{path}.path", f"{path}.path: the array in {str(p)!r} has shape "
                              f"{tuple(arr.shape)}, expected the grid shape {grid.shape}")
    return out


# --------------------------------------------------------------------------------------
# [sweep]: batches of runs (tmepde sweep; docs/batch.md)
# --------------------------------------------------------------------------------------

SWEEP = {
    "path": Key(STRING, "sweep.h5", "HDF5 sweep file to write (the CLI's -o overrides it)",
                'path = "cohort.h5"'),
    "chunk": Key(INTEGER, OPTIONAL, "members per compiled chunk, rounded up to a multiple of the "
                 "device count; absent = the most that fit in half the free device memory",
                 "chunk = 64", _positive("")),
    "save_fields": Key(BOOLEAN, False, "also store every member's fields (B × T × S × grid: can "
                       "be huge); observables are always stored", "save_fields = true"),
    "field_stride": Key(INTEGER, 1, "with save_fields, keep every k-th save of the fields",
                        "field_stride = 4", _positive("")),
    "burden": Key(STRING_LIST, OPTIONAL, "species whose total is the tumor burden of the response "
                  "summary; absent = tumor and stem when the model has them (else no summary)",
                  'burden = ["tumor", "stem"]'),
    "cr_fraction": Key(NUMBER, 1e-3, "complete response: burden below this fraction of its "
                       "baseline", "cr_fraction = 1e-3",
                       lambda v: None if 0 < v < 1 else "must be between 0 and 1"),
    "detection": Key(NUMBER, OPTIONAL, "complete response also when the burden falls below this "
                     "absolute level (µm^ndim × field units); absent = no absolute threshold",
                     "detection = 100.0", _nonnegative("")),
    "pr_change": Key(NUMBER, -30.0, "partial response: diameter-equivalent change <= this (%)",
                     "pr_change = -30.0", lambda v: None if -100 < v < 0 else "must be between -100 and 0 %"),
    "pd_change": Key(NUMBER, 20.0, "progressive disease: diameter-equivalent change >= this (%)",
                     "pd_change = 20.0", _positive(" %")),
}
SWEEP_COHORT = {
    "n": Key(INTEGER, REQUIRED, "number of virtual patients (log-normal parameter draws)", "n = 100",
             _positive("")),
    "seed": Key(INTEGER, 0, "random seed (>= 0); the same seed gives the same patients in every arm",
                "seed = 0", _nonnegative("")),
}
SWEEP_ARM = {
    "name": Key(STRING, REQUIRED, "arm name (unique; written to the file and the summary)",
                'name = "ifng_pulsed"',
                lambda v: None if v and "/" not in v else "must be a non-empty name without '/'"),
}


def _sweep_value(key: str, v, path: str, defaults: Mapping, model: Model, initial: Mapping):
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
        hint = _did_you_mean(key, defaults)
        path = path.rsplit("[", 1)[0] if path.endswith("]") else path  # the key, not one value
        raise ConfigError(path, f"{path}: unknown parameter '{key}' for model '{model.name}'; {hint}"
                          "sweep a model parameter or 'initial.<species>.<key>'")
    shape = np.shape(defaults[key])
    if not PARAM_TYPE.test(v) or np.shape(v) != shape:
        want = "a number" if not shape else f"a list of {shape[0]} numbers"
        raise ConfigError(path, f"{path} must be {want} (the shape of parameter '{key}'), got {_short(v)}")
    if not _finite(v):
        raise ConfigError(path, f"{path} must be finite, got {_short(v)}")
    try:
        model.check_params({**defaults, key: np.asarray(v, float)})
    except ParameterError as e:
        raise ConfigError(path, f"{path}: {e}") from None
    return [float(x) for x in v] if isinstance(v, list) else float(v)


def _resolve_sweep(raw: Mapping, defaults: Mapping, model: Model, initial: Mapping) -> dict:
    out = _resolve_keys(raw, SWEEP, "sweep", skip=("grid", "cohort", "arms"))
    for name in out.get("burden", []):
        if name not in model.names:
            raise ConfigError("sweep.burden", f"sweep.burden names unknown species '{name}'; "
                              f"species: {', '.join(model.names)}")
    grid = {}
    for k, values in _table(raw.get("grid", {}), "sweep.grid").items():
        path = f"sweep.grid.{k}"
        if not isinstance(values, list) or not values:
            raise ConfigError(path, f"{path} must be a non-empty list of values, got {values!r}; "
                              f"e.g. {k} = [0.5, 1.0, 2.0]")
        grid[k] = [_sweep_value(k, v, f"{path}[{i}]", defaults, model, initial)
                   for i, v in enumerate(values)]
    if grid:
        out["grid"] = grid
    if "cohort" in raw:
        rc = _table(raw["cohort"], "sweep.cohort")
        cohort = _resolve_keys(rc, SWEEP_COHORT, "sweep.cohort", skip=("cv",))
        cv = {}
        for k, c in _table(rc.get("cv", {}), "sweep.cohort.cv").items():
            path = f"sweep.cohort.cv.{k}"
            if k not in defaults:
                hint = _did_you_mean(k, defaults)
                raise ConfigError(path, f"{path}: unknown parameter '{k}' for model '{model.name}'; "
                                  f"{hint}cv keys are model parameters")
            if not _is_number(c) or not (c >= 0 and math.isfinite(c)):
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
            arm = _resolve_keys(a, SWEEP_ARM, path, skip=("set",))
            if arm["name"] in seen:
                raise ConfigError(f"{path}.name", f"{path}.name {arm['name']!r} is used twice; "
                                  "arm names must be unique")
            seen.add(arm["name"])
            arm["set"] = {k: _sweep_value(k, v, f"{path}.set.{k}", defaults, model, initial)
                          for k, v in _table(a.get("set", {}), f"{path}.set").items()}
            resolved.append(arm)
        out["arms"] = resolved
    return out


# --------------------------------------------------------------------------------------
# -- begin [fit] and [optimize] (tmepde fit, tmepde optimize; docs/fitting.md, docs/optimization.md)
# --------------------------------------------------------------------------------------
FIT_PSEUDO = ("v0_mm3", "il12_dose_ng")  # fit-only parameters (tmepde.ct26): initial volume, IL-12/injection
FIT = {
    "data": Key(STRING, OPTIONAL, "csv of measured volumes (columns arm, mouse, day, volume_mm3); "
                "absent = the packaged CT26 data set; relative to the config file", 'data = "volumes.csv"'),
    "growth_params": Key(STRING_LIST, ["growth_tumor", "D_tumor", "v0_mm3"],
                         "stage 1, fitted on the PBS arm (pooled): model parameters or v0_mm3 (initial "
                         "tumor-cell volume, mm³)", 'growth_params = ["growth_tumor", "D_tumor", "v0_mm3"]'),
    "immune_params": Key(STRING_LIST, ["il12_dose_ng", "a6_il12_to_ifng", "kill_cd8"],
                         "stage 2, fitted on PBS + rVSV-mIL12-mGMCSF arms jointly: model parameters or "
                         "il12_dose_ng (effective IL-12 per injection, ng)",
                         'immune_params = ["il12_dose_ng", "kill_cd8"]'),
    "cohort_params": Key(STRING_LIST, ["v0_mm3", "il12_dose_ng", "kill_cd8"],
                         "per-animal fits of the IL-12 arm (virtual cohort), with priors at the stage 2 "
                         "values", 'cohort_params = ["v0_mm3", "kill_cd8"]'),
    "prior_sd": Key(NUMBER, 1.0, "s.d. of the Gaussian priors in log-parameter space (1 = a factor e)",
                    "prior_sd = 1.0", _positive("")),
    "sigma": Key(NUMBER, 0.3, "nominal s.d. of log-volume residuals (the covariance is rescaled by "
                 "the residual variance)", "sigma = 0.3", _positive("")),
    "max_steps": Key(INTEGER, 40, "Levenberg–Marquardt steps per fit", "max_steps = 40", _positive("")),
    "output": Key(STRING, "results/ct26", "prefix of the outputs: <output>_fit.png, <output>_fit.md, "
                  "<output>_fitted.toml (relative to the working directory)", 'output = "results/ct26"'),
}
OPTIMIZE = {
    "objective": Key(STRING, "final", "'final' (tumor burden at the horizon), 'mean' (its time average) "
                     "or 'both' (their sum), each relative to the untreated value", 'objective = "mean"',
                     _one_of(("final", "mean", "both"))),
    "toxicity_agent": Key(STRING, "ifng", "systemic agent whose peak plasma level is the toxicity "
                          "(parameter sys_<agent>_times must exist)", 'toxicity_agent = "ifng"'),
    "toxicity_limit": Key(NUMBER, OPTIONAL, "peak plasma level allowed (ng/mL); absent = no limit",
                          "toxicity_limit = 1.0", _positive(" ng/mL")),
    "steps": Key(INTEGER, 30, "projected-Adam steps", "steps = 30", _positive("")),
    "learning_rate": Key(NUMBER, 0.05, "Adam learning rate on scaled variables", "learning_rate = 0.05",
                         _positive("")),
    "cma_simulations": Key(INTEGER, 200, "simulation budget of the CMA-ES baseline (0 = skip)",
                           "cma_simulations = 200", _nonnegative("")),
    "output": Key(STRING, "results/optimize", "prefix of the outputs: <output>.png, <output>.md, "
                  "<output>_schedule.toml", 'output = "results/optimize_ifng"'),
}
OPTIMIZE_AGENT = {
    "prefix": Key(STRING, REQUIRED, "dose parameters <prefix>_times (h) and <prefix>_amounts",
                  'prefix = "sys_ifng"'),
    "max_amount": Key(NUMBER, REQUIRED, "cap per dose (amount units of the agent, ng)", "max_amount = 1.73e5",
                      _positive("")),
    "budget": Key(NUMBER, REQUIRED, "cap on the total amount", "budget = 1.04e6", _positive("")),
    "t_min": Key(NUMBER, 0.0, "earliest dose time (h)", "t_min = 0.0", _nonnegative(" h")),
    "t_max": Key(NUMBER, OPTIONAL, "latest dose time (h); absent = time.t_end", "t_max = 600.0",
                 _nonnegative(" h")),
    "min_interval": Key(NUMBER, 0.0, "minimum spacing between doses (h)", "min_interval = 24.0",
                        _nonnegative(" h")),
    "optimize_times": Key(BOOLEAN, True, "also move the dose times (else amounts only)",
                          "optimize_times = true"),
}


def _check_param_names(names, path, defaults, extra=()):
    for i, n in enumerate(names):
        if n not in defaults and n not in extra:
            hint = _did_you_mean(n, list(defaults) + list(extra))
            raise ConfigError(f"{path}[{i}]", f"{path}[{i}]: unknown parameter '{n}'; {hint}"
                              f"use a model parameter{' or one of ' + ', '.join(extra) if extra else ''}")
        if names.count(n) > 1:
            raise ConfigError(path, f"{path} lists '{n}' twice")


def _resolve_fit(raw: Mapping, defaults: Mapping) -> dict:
    out = _resolve_keys(raw, FIT, "fit")
    for k in ("growth_params", "immune_params", "cohort_params"):
        _check_param_names(out[k], f"fit.{k}", defaults, FIT_PSEUDO)
    return out


def _resolve_optimize(raw: Mapping, defaults: Mapping) -> dict:
    out = _resolve_keys(raw, OPTIMIZE, "optimize", skip=("agents",))
    agents = raw.get("agents")
    if not isinstance(agents, list) or not agents or not all(isinstance(a, dict) for a in agents):
        raise ConfigError("optimize.agents", "optimize.agents must be an array of tables: "
                          '[[optimize.agents]] prefix = "sys_ifng" max_amount = 1.73e5 budget = 1.04e6')
    resolved = []
    for i, a in enumerate(agents):
        path = f"optimize.agents[{i}]"
        ag = _resolve_keys(a, OPTIMIZE_AGENT, path)
        for suffix in ("_times", "_amounts"):
            if ag["prefix"] + suffix not in defaults:
                raise ConfigError(f"{path}.prefix", f"{path}.prefix '{ag['prefix']}': the model has no "
                                  f"parameter '{ag['prefix']}{suffix}'; dose prefixes look like 'sys_ifng', "
                                  "'it_il12'")
        if ag.get("t_max") is not None and ag["t_max"] <= ag["t_min"]:
            raise ConfigError(f"{path}.t_max", f"{path}.t_max ({ag['t_max']}) must be > t_min ({ag['t_min']})")
        resolved.append(ag)
    out["agents"] = resolved
    if f"sys_{out['toxicity_agent']}_times" not in defaults:
        raise ConfigError("optimize.toxicity_agent", f"optimize.toxicity_agent '{out['toxicity_agent']}' "
                          "has no systemic schedule (sys_<agent>_times); e.g. toxicity_agent = \"ifng\"")
    return out
# -- end [fit] and [optimize] --


# --------------------------------------------------------------------------------------
# Generated reference (docs/config.md)
# --------------------------------------------------------------------------------------

def _default_text(spec: Key) -> str:
    d = spec.default
    if d is REQUIRED:
        return "**required**"
    if d is FROM_MODEL:
        return "from the model"
    if d is None:
        return "(absent)"
    if d is DOMAIN_CENTER:
        return "domain centre"
    if isinstance(d, bool):
        return f"`{str(d).lower()}`"
    if isinstance(d, str):
        return f'`"{d}"`'
    return f"`{d!r}`"


def _key_table(keys: Mapping[str, Key]) -> list[str]:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for k, spec in keys.items():
        doc = spec.doc.replace("|", "\\|")
        lines.append(f"| `{k}` | {spec.type.name} | {_default_text(spec)} | {doc} |")
    return lines


def config_reference() -> str:
    """Markdown reference of every config key, generated from the schema (docs/config.md)."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from tmepde/config.py by `python -m tmepde.config > docs/config.md`;",
        "     do not edit by hand (tests/test_config.py checks it is up to date). -->",
        "",
        "Runs are described by a TOML file: `tmepde run CONFIG.toml [-o OUT.h5] [--set key=value ...]`.",
        "Units: length µm, time h, diffusivity µm²/s, decay 1/h.",
        "",
        "Everything is validated before anything is computed. A mistake (unknown key, wrong type,",
        "impossible value, unknown species or parameter) stops with a `ConfigError` naming the",
        "full dotted key, e.g. `grid.spacing must be > 0 µm (one number, or one per axis), got -1.0;",
        "e.g. spacing = 10.0`.",
        "",
        "What is checked besides types: numbers are finite (no `nan`, `inf`); the file is UTF-8;",
        "rates, amounts and initial densities of non-negative species are >= 0 (every model",
        "parameter whose default is > 0, `D_*`, `decay_*` and dose `*_times`/`*_amounts`/`*_rate`;",
        "a model declares sign-free ones in `Model(signed_params=...)`); array parameters (dose",
        "schedules) get a list of their length; a dose with a non-zero amount after `time.t_end`",
        "is a warning (`ConfigWarning`: it is never given); `time.t_end / time.dt` is at most 1e9",
        "steps; an explicit `solver.start_window` is at most `time.save_every` (the default is cut",
        "to it); every initial shape covers at least one cell centre (a disk or Gaussian centred",
        "outside the domain, e.g. a spacing given in mm, is an error); the run's memory (state x",
        "the scheme's history + 2 x `output.chunk` saves) must fit in the available memory, which",
        "is checked before anything is allocated. A model module that is not installed is",
        "imported from the config's folder or the working directory (`path = \"mymodel:model\"`).",
        "",
        "During a run, a non-negative field that was present and becomes exactly 0 in every cell",
        "within one save interval stops the run (`CollapseError`, exit status 1): decay never",
        "reaches exactly 0, so this is the clipping of negative values hiding an unstable step.",
        "",
        "`--set dotted.key=value` changes one key before validation; the value is read as a TOML",
        "value (`--set grid.shape=[64,64]`, `--set solver.scheme=\"rk4\"`) or else as a bare string",
        "(`--set solver.scheme=rk4`).",
        "",
        "The resolved config (every default filled in, the model's species and reaction parameters",
        "spelled out) is stored in each result file as the root attribute `config_toml`; running it",
        "again reproduces the run.",
        "",
    ]
    for sec, (keys, doc) in SECTIONS.items():
        out += [f"## `[{sec}]`", "", doc, "", *_key_table(keys), ""]
    out += [
        "Constraints across keys: `time.save_every` is a whole multiple of `time.dt`, and",
        "`time.t_end` a whole multiple of `time.save_every`; `grid.spacing` has one entry or",
        "one per axis. The resolved `[model.params]` lists every scalar parameter except",
        "`D_*` and `decay_*` (those are in `[species.*]`).",
        "",
        "## `[species.<name>]`",
        "",
        "Overrides of a species' declaration in the model; `<name>` must be one of the model's",
        "species. Absent keys keep the model's values; the resolved config lists every species.",
        "",
        *_key_table(SPECIES),
        "",
        "Boundary example: `boundary = { default = \"neumann\", x_lo = { kind = \"dirichlet\", "
        "value = 1.0 } }`.",
        "Periodic must be set on both faces of an axis. The resolved config lists every face.",
        "",
        "## `[initial.<name>]`",
        "",
        "Initial condition of a species, a table with a `type`, or a list of such tables whose",
        "fields are added (`initial.cells = [{ type = \"disk\", ... }, { type = \"clusters\", ... }]`).",
        "Species without an entry start at 0. Shapes cover the cells whose centres lie inside.",
        f"Aliases: {', '.join(f'`{a}` = `{b}`' for a, b in INITIAL_ALIASES.items())}.",
        "",
    ]
    for kind, keys in INITIAL.items():
        out += [f"### `type = \"{kind}\"`", "", *_key_table(keys), ""]
    out += [
        "## `[sweep]`",
        "",
        "Optional: a batch of runs for `tmepde sweep CONFIG` (ignored by `tmepde run`); see",
        "docs/batch.md. Members are every combination of arm × grid point × virtual patient, all",
        "run as one compiled program per chunk and written to one HDF5 file (docs/hdf5.md).",
        "",
        *_key_table(SWEEP),
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
        *_key_table(SWEEP_COHORT),
        "| `cv` | table | `{}` | `{ <parameter> = cv, ... }`, each cv >= 0 (absent: n identical patients) |",
        "",
        "### `[[sweep.arms]]`",
        "",
        "Treatment arms (an array of tables), each applied on top of the config: dose schedules,",
        "parameter or initial-condition changes. Absent = one arm named `base`.",
        "",
        *_key_table(SWEEP_ARM),
        "| `set` | table | `{}` | `{ <parameter or initial.<species>.<key>> = value, ... }` |",
        "",
    ]
    # -- begin [fit]/[optimize] reference --
    out += [
        "## `[fit]`",
        "",
        "Optional: fitting to measured tumor volumes with `tmepde fit CONFIG` (ignored by",
        "`tmepde run`); the worked example is configs/fit/ct26.toml (docs/fitting.md). Fitted",
        "names are model parameters or the fit-only `v0_mm3` (initial tumor-cell volume, mm³)",
        "and `il12_dose_ng` (effective IL-12 per intratumoral injection, ng).",
        "",
        *_key_table(FIT),
        "",
        "## `[optimize]`",
        "",
        "Optional: dose-schedule optimisation with `tmepde optimize CONFIG` (ignored by",
        "`tmepde run`); see docs/optimization.md. The config's own schedule is the starting",
        "point and the reference (e.g. the clinical standard).",
        "",
        *_key_table(OPTIMIZE),
        "",
        "### `[[optimize.agents]]`",
        "",
        "Decision variables: the dose times and amounts of one agent per table.",
        "",
        *_key_table(OPTIMIZE_AGENT),
        "",
    ]
    # -- end [fit]/[optimize] reference --
    return "\n".join(out)


if __name__ == "__main__":  # python -m tmepde.config > docs/config.md
    import sys

    sys.stdout.write(config_reference())
