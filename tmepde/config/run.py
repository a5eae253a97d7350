"""The run sections of a TOML config: ``[grid]``, ``[time]``, ``[model]``, ``[solver]``,
``[output]``, ``[species.*]``, ``[initial.*]``; their resolution into a :class:`Config`.

A config is read with :func:`load_config` (file) or :func:`loads_config` (text), with optional
``--set``-style overrides (``"time.t_end=48"``). Everything is checked before anything is
computed; every mistake raises :class:`~tmepde.config.schema.ConfigError` (a ``ValueError``)
whose message starts with, or names, the full dotted key (``grid.spacing``) and says what to
write instead. The optional sections are resolved by their own modules: ``[sweep]``
(:mod:`.sweep`), ``[fit]`` (:mod:`.fit`), ``[optimize]`` (:mod:`.optimize`), ``[sensitivity]``
(:mod:`tmepde.sensitivity`).

The result is a :class:`Config`: the resolved tables (every default filled in, the model's
species and parameters spelled out) plus the objects built from them (grid, model). Its
:meth:`Config.to_toml` text loads back to the same config, and is what result files store.

Units: length µm, time h, diffusivity µm²/s, decay 1/h.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import os
import tomllib
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import initial as _initial
from .._dose_keys import schedule_keys, schedule_prefixes
from ..grid import AXIS_NAMES, Boundary, Grid, parse_boundary, resolve_boundaries
from ..model import Model, ModelLoadError, ParameterError, did_you_mean, load_model
from ..stepping import SCHEMES
from ..timegrid import MAX_STEPS, TimeGridError, check_time_grid
from .doses import PATIENT, PATIENT_DOC, dose_amounts_ng, is_dose_key
from .schema import (BOOLEAN, BOUNDARY, DOMAIN_CENTER, FROM_MODEL, INT_LIST, INTEGER, NUMBER,
                     NUMBER_LIST, NUMBER_OR_LIST, OPTIONAL, REQUIRED, STRING, ConfigError,
                     ConfigWarning, Key, as_table, finite, fmt, nonnegative, one_of, positive,
                     resolve_keys, short, type_name, unknown_key, whole_multiple)

__all__ = ["Config", "load_config", "loads_config", "apply_override", "parse_value", "resolve",
           "memory_estimate", "MAX_STEPS", "MAX_SPACING", "MAX_CLUSTERS", "GRID", "TIME", "MODEL",
           "SOLVER", "OUTPUT", "SPECIES", "INITIAL", "INITIAL_ALIASES", "PARAM_TYPE", "SECTIONS",
           "SCHEMA", "TOP_LEVEL"]

MAX_SPACING = 1e6  # µm: a cell larger than 1 m is a unit mistake
MAX_CLUSTERS = 100_000  # initial clusters: each one is a pass over the grid


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
                 "t_end = 24.0", positive(" h")),
    "dt": Key(NUMBER, REQUIRED, "time step in h", "dt = 0.1", positive(" h")),
    "save_every": Key(NUMBER, REQUIRED, "output interval in h; a whole multiple of dt",
                      "save_every = 1.0", positive(" h")),
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
                  'scheme = "sbdf2"', one_of(SCHEMES)),
    "dtype": Key(STRING, "float32", "floating point precision, 'float32' or 'float64'",
                 'dtype = "float64"', one_of(("float32", "float64"))),
    "cg_tol": Key(NUMBER, OPTIONAL, "relative tolerance of the conjugate-gradient solves "
                  "(variable diffusivity, local uptake); absent = engine default",
                  "cg_tol = 1e-8", _check_cg_tol),
    "chemotaxis_limiter": Key(BOOLEAN, True, "limit chemotactic fluxes so densities stay "
                              "non-negative and below capacity", "chemotaxis_limiter = true"),
    "start_window": Key(NUMBER, 1.0, "hours integrated on a graded mesh at the start (sbdf2/3/4): "
                        "about the length of the initial transient; at most one save interval",
                        "start_window = 4.0", nonnegative(" h")),
}

OUTPUT = {
    "path": Key(STRING, "result.h5", "HDF5 file to write, relative to the working directory "
                "(the CLI's -o overrides it)", 'path = "run.h5"', lambda v: _check_file_name(v)),
    "chunk": Key(INTEGER, 10, "saves computed per compiled call; the file is flushed and the "
                 "progress bar updated after each chunk", "chunk = 10", positive("")),
    "compression": Key(INTEGER, 1, "gzip level of the field datasets (after HDF5's byte "
                       "shuffle), 0 (off) to 9; level 1 packs float32 fields within 3 % of level 4 "
                       "at 80 % of its CPU time", "compression = 1",
                       lambda v: None if 0 <= v <= 9 else "must be between 0 and 9"),
}

SPECIES = {
    "diffusivity": Key(NUMBER, FROM_MODEL, "diffusivity in µm²/s (>= 0)", "diffusivity = 20.0",
                       nonnegative(" µm²/s")),
    "decay": Key(NUMBER, FROM_MODEL, "linear decay rate in 1/h (>= 0)", "decay = 0.5",
                 nonnegative(" 1/h")),
    "boundary": Key(BOUNDARY, FROM_MODEL,
                    "'neumann' (= 'zero_flux'), 'periodic', a number (Dirichlet value), or a table "
                    "by face: keys default, x, y, z, x_lo, x_hi, ..., each a kind or "
                    "{kind = \"dirichlet\", value = 1.0}",
                    'boundary = "periodic"'),
    "units": Key(STRING, FROM_MODEL, "units of the field, written to the output",
                 'units = "ng/mL"'),
    "nonnegative": Key(BOOLEAN, FROM_MODEL, "fill negative undershoots from neighbouring cells after "
                       "each step, keeping the species' total",
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
        "width": Key(NUMBER, REQUIRED, "standard deviation in µm", "width = 50.0", positive(" µm")),
        "amplitude": Key(NUMBER, 1.0, "peak value", "amplitude = 1.0"),
    },
    "disk": {
        "center": _CENTER,
        "radius": Key(NUMBER, REQUIRED, "radius in µm (disk in 2D, ball in 3D)", "radius = 100.0",
                      positive(" µm")),
        "value": Key(NUMBER, 1.0, "value inside", "value = 1.0"),
    },
    "clusters": {
        "n": Key(INTEGER, REQUIRED, "number of clusters", "n = 10",
                 lambda v: None if 0 <= v <= MAX_CLUSTERS else f"must be between 0 and {MAX_CLUSTERS}"),
        "radius": Key(NUMBER, REQUIRED, "cluster radius in µm", "radius = 30.0", positive(" µm")),
        "value": Key(NUMBER, 1.0, "value inside a cluster (overlaps are not added)", "value = 1.0"),
        "seed": Key(INTEGER, 0, "random seed (>= 0); the same seed gives the same field", "seed = 0",
                    nonnegative("")),
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
    "patient": (PATIENT, PATIENT_DOC),
}
SCHEMA = {**{k: v[0] for k, v in SECTIONS.items()}, "species": SPECIES, "initial": INITIAL}
TOP_LEVEL = ("grid", "time", "model", "solver", "output", "patient", "species", "initial", "sweep",
             "fit", "optimize", "sensitivity")


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
                raise unknown_key(where, extra[0], ["kind", "value"])
        if isinstance(v, list) or isinstance(v, bool):
            raise ConfigError(where, f"{where} must be a kind ('neumann', 'periodic'), a number "
                              f"(Dirichlet value) or {{kind = \"dirichlet\", value = 1.0}}, got {short(v)}")
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
                raise unknown_key(path, k, valid, "face")
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
        return whole_multiple(self.data["time"]["t_end"], self.data["time"]["save_every"])

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
            raise unknown_key("", k, list(TOP_LEVEL), "section")
    data = {}
    for sec in ("grid", "time", "model", "solver", "output", "patient"):
        data[sec] = resolve_keys(as_table(raw.get(sec, {}), sec), SCHEMA[sec], sec,
                                  skip=("params", "options") if sec == "model" else ())

    # grid
    g = data["grid"]
    try:  # Grid is the one validator of its values; its messages name the key
        grid = Grid(tuple(g["shape"]), g["spacing"], geometry=g["geometry"])
    except ValueError as e:
        key = re.search(r"grid\.(shape|spacing|geometry)", str(e))
        raise ConfigError(key.group(0) if key else "grid", str(e)) from None
    g["spacing"] = list(grid.spacing)

    # time (the time grid's one validator; its messages name the key)
    t = data["time"]
    try:
        check_time_grid(t["dt"], t["save_every"], t["t_end"])
    except TimeGridError as e:
        raise ConfigError(e.key, str(e)) from None

    sw = data["solver"]["start_window"]
    if "start_window" not in raw.get("solver", {}):  # the default (1 h), cut to one save interval
        data["solver"]["start_window"] = min(sw, t["save_every"])
    elif sw > t["save_every"] * (1 + 1e-12):
        raise ConfigError("solver.start_window", f"solver.start_window ({fmt(sw)} h) must be at most "
                          f"one save interval (time.save_every = {fmt(t['save_every'])} h); e.g. "
                          f"start_window = {fmt(min(1.0, t['save_every']))}")

    # model (a factory may already build arrays of the grid's size: check a lower bound first)
    _check_memory(grid, None, data)
    options = as_table(raw.get("model", {}).get("options", {}), "model.options")
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
    raw_species = as_table(raw.get("species", {}), "species")
    new_species = []
    resolved_species = {}
    for name in raw_species:
        if name not in model.names:
            raise ConfigError(f"species.{name}", f"unknown species '{name}' in [species] for model "
                              f"'{model.name}'; known species: {', '.join(model.names)}")
    for s in model.species:
        path = f"species.{s.name}"
        over = resolve_keys(as_table(raw_species.get(s.name, {}), path), SPECIES, path)
        changes = {k: v for k, v in over.items() if k != "boundary"}
        boundary = _resolve_boundary(over.get("boundary", s.boundary), grid.ndim, f"{path}.boundary")
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
    raw_params = as_table(raw.get("model", {}).get("params", {}), "model.params")
    params = {}
    for k, v in raw_params.items():
        full = f"model.params.{k}"
        if k not in defaults:
            hint = did_you_mean(k, defaults)
            raise ConfigError(full, f"unknown parameter '{full}' for model '{model.name}'; {hint}"
                              f"known parameters: {', '.join(sorted(defaults))}")
        if is_dose_key(k):  # "50 ug/m2", "200 mg", ... -> ng for this patient
            v = dose_amounts_ng(v, full, data["patient"])
        if not PARAM_TYPE.test(v):
            raise ConfigError(full, f"{full} must be a number or list of numbers, got {short(v)} ({type_name(v)})")
        if not finite(v):
            raise ConfigError(full, f"{full} must be finite, got {short(v)}")
        arr = np.asarray(v, dtype=float)
        shape = np.shape(defaults[k])
        if arr.shape != shape and (arr.ndim or not k.startswith("D_")):
            want = "a number" if not shape else f"a list of {shape[0]} numbers"
            raise ConfigError(full, f"{full} must be {want} like the model's default (shape {shape}), "
                              f"got {short(v)}")
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
    raw_initial = as_table(raw.get("initial", {}), "initial")
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
            resolved.append(_resolve_initial(as_table(part, ppath), ppath, grid, base_dir))
            _check_initial_part(resolved[-1], ppath, grid, model.species[model.index(name)])
        data["initial"][name] = resolved
    # optional sections, each resolved by its own module (which imports this one's schema)
    if "sweep" in raw:
        from .sweep import resolve_sweep

        data["sweep"] = resolve_sweep(as_table(raw["sweep"], "sweep"), defaults, model, data["initial"])
    if "fit" in raw:
        from .fit import resolve_fit

        data["fit"] = resolve_fit(as_table(raw["fit"], "fit"), defaults)
    if "optimize" in raw:
        from .optimize import resolve_optimize

        data["optimize"] = resolve_optimize(as_table(raw["optimize"], "optimize"), defaults)
    if "sensitivity" in raw:
        from ..sensitivity import SensitivityError, resolve_table

        try:
            data["sensitivity"] = resolve_table(as_table(raw["sensitivity"], "sensitivity"), defaults,
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
    stepper = SCHEMES[scheme]
    k = max(stepper.history, 1) if stepper.implicit else 0  # IMEX Euler holds no history
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
    schedules = dict(map(schedule_keys, schedule_prefixes(defaults)))  # times key -> amounts key
    for k in params:
        if k not in schedules:
            continue
        times = np.atleast_1d(np.asarray(params[k], float))
        amounts = np.atleast_1d(np.asarray(params.get(schedules[k], defaults[schedules[k]]), float))
        late = times[(amounts != 0) & (times > t_end)] if amounts.shape == times.shape else times[times > t_end]
        if late.size:
            warnings.warn(ConfigWarning(
                f"model.params.{k}: {late.size} dose(s) at t > time.t_end = {fmt(t_end)} h "
                f"(first at {fmt(float(late.min()))} h) are never given"), stacklevel=4)


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
                          f"non-negative field), got {fmt(part[vkey])}")
    extent = " x ".join(f"[0, {fmt(e)}]" for e in grid.extent)
    if kind in ("disk", "gaussian"):
        reach = part["radius"] if kind == "disk" else 5 * part["width"]
        d = _initial.nearest_cell_distance(grid, part["center"])
        if d > reach:
            what = (f"radius {fmt(part['radius'])} µm" if kind == "disk"
                    else f"width {fmt(part['width'])} µm")
            raise ConfigError(f"{path}.center", f"{path}.center {part['center']} µm ({kind}, {what}) lies "
                              f"outside the domain {extent} µm: it covers no cell; lengths are in µm "
                              "(check grid.spacing and grid.shape, or move the center)")
    elif kind == "clusters" and part["n"] > 0:
        centers = _initial.cluster_centers(grid, part["n"], part["seed"])
        if not any(_initial.nearest_cell_distance(grid, c) <= part["radius"] for c in centers):
            raise ConfigError(f"{path}.radius", f"{path}.radius ({fmt(part['radius'])} µm) is too small "
                              f"for cells of {' x '.join(fmt(h) for h in grid.spacing)} µm: no cluster "
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
    out = {"type": kind, **resolve_keys({k: v for k, v in part.items() if k != "type"},
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
