"""The public model API: species, their transport, and a reaction function.

A model is structure (static) plus parameters (a flat dict of arrays, traced). Everything a
user may fit, sweep or differentiate is a parameter, including the transport coefficients
that species declare: ``D_<species>`` (µm²/s), ``decay_<species>`` (1/h) and
``chi_<species>`` (µm²/s per unit of the attractant).

Units: length µm, time h (diffusivities and chemotactic sensitivities in µm²/s, as quoted in
the literature; the engine converts).

Example::

    def reactions(t, y, p):
        u, v = y["u"], y["v"]
        return {"u": p["a"] - u + u**2 * v, "v": p["b"] - u**2 * v}

    model = Model(
        species=[Species("u", diffusivity=1e-3), Species("v", diffusivity=4e-2)],
        reactions=reactions,
        params={"a": 0.1, "b": 0.9},
    )
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from ._dose_keys import NONNEGATIVE_SUFFIXES
from .grid import Grid, resolve_boundaries

SECONDS_PER_HOUR = 3600.0

ReactionFn = Callable[[object, dict, dict], Mapping[str, object]]

# Dose-schedule naming (tmepde.therapy): <name>_times (h) / <name>_amounts, infusions
# <name>_start / _stop (h) / _rate. None of these can be negative.
_NONNEGATIVE_SUFFIXES = NONNEGATIVE_SUFFIXES


class ParameterError(ValueError, KeyError):
    """A parameter dict that does not fit the model: a missing or unknown name, or a value
    that is non-finite, negative where it cannot be, or of the wrong shape. ``name`` is the
    parameter concerned. A ``ValueError`` (and a ``KeyError``, for missing/unknown names)."""

    __str__ = BaseException.__str__  # KeyError would quote the whole message

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


class ModelLoadError(ValueError):
    """``load_model`` could not build a model; ``key`` is ``"path"`` or ``"options"`` (the
    config key ``model.path`` / ``model.options`` the problem is in)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def did_you_mean(name: str, valid, prefix: str = "") -> str:
    """``"did you mean '<prefix><closest>'? "`` for the closest valid name, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1)
    return f"did you mean '{prefix}{close[0]}'? " if close else ""


def _names_list(names, limit: int = 12) -> str:
    names = sorted(names)
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@dataclasses.dataclass(frozen=True, eq=False)
class Chemotaxis:
    """Directed motion up the gradient of another species (Keller–Segel flux ``χ u ∇c``).

    toward: name of the attractant species.
    sensitivity: χ in µm²/s per unit of the attractant (parameter ``chi_<species>``).
    capacity: volume filling: flux into a cell stops as the crowding density there
        reaches this value (same units as the densities); ``None`` switches it off.
    crowding: species whose sum is the crowding density (default: the moving species).
    """

    toward: str
    sensitivity: float = 0.0
    capacity: float | None = None
    crowding: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Species:
    """One field of the model.

    name: identifier used in reactions, configs and output.
    diffusivity: µm²/s; a number, or an array of the grid's shape for heterogeneous tissue.
    decay: linear decay rate in 1/h, treated implicitly (stiff decay is stable at any dt).
    boundary: one condition for all faces or a dict by face (see ``grid.resolve_boundaries``).
    chemotaxis: optional :class:`Chemotaxis`.
    nonnegative: after each step, a negative undershoot (O(dt²), second-order schemes) is
        filled from neighbouring cells, keeping the species' total (densities,
        concentrations); see :meth:`tmepde.discretization.Discretization.clip`.
    units: printed in output files.
    """

    name: str
    diffusivity: float | np.ndarray = 0.0
    decay: float = 0.0
    boundary: object = "neumann"
    chemotaxis: Chemotaxis | None = None
    nonnegative: bool = True
    units: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"species name must be an identifier, got {self.name!r}")
        d = np.asarray(self.diffusivity, dtype=float)
        if not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValueError(
                f"species {self.name!r}: diffusivity must be finite and >= 0 µm²/s, "
                f"got {self.diffusivity!r}"
            )
        if not np.isfinite(self.decay) or self.decay < 0:
            raise ValueError(
                f"species {self.name!r}: decay must be >= 0 1/h, got {self.decay!r}; "
                "write production as a reaction term instead of a negative decay"
            )

    @property
    def variable_diffusivity(self) -> bool:
        return np.ndim(self.diffusivity) > 0


@dataclasses.dataclass(frozen=True, eq=False)
class Observable:
    """A scalar summary of the state, saved with every output time and usable in objectives.

    fn(t, y, p, grid) -> scalar: ``t`` in h, ``y`` a dict of fields (each of the grid's
    shape), ``p`` the parameter dict, ``grid`` the :class:`~tmepde.grid.Grid` (static: use
    ``grid.cell_volumes()`` and ``grid.coordinates()`` for integrals and positions). Written
    with jax.numpy, it is jitted, vmapped over saves and differentiable.
    units, description: stored with the dataset in result files.
    """

    name: str
    fn: Callable[[object, dict, dict, Grid], object]
    units: str = ""
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"observable name must be an identifier, got {self.name!r}")


#: Prefix of a tabulated input's value in a parameter dict (set by the time loop for one step;
#: never a parameter: ``@`` cannot start a config key).
INPUT_PREFIX = "@"


def input_value(name: str, fn: Callable, t, p: Mapping):
    """The time-only input ``name`` of a model (``fn(t, p)``) at time ``t`` (h): the value the
    time loop tabulated for this step when ``p`` holds one (``p[INPUT_PREFIX + name]``), else
    ``fn(t, p)``. Reactions call this instead of ``fn``: a dose schedule's plasma level, a
    sum over every dose slot with erfc and exp per slot, then costs one look-up per step
    instead of ~two dozen small kernels in the step and as many in its derivative."""
    key = INPUT_PREFIX + name
    return p[key] if key in p else fn(t, p)


class Model:
    """Species + a reaction function + default parameters.

    reactions(t, y, p) -> {species: rate}: ``t`` in h, ``y`` a dict of fields (each of the
        grid's shape), ``p`` the parameter dict; rates in field units per hour. Species
        without an entry have no reaction.
    local_decay(t, y, p) -> {species: k(x)}: optional, first-order loss rates (1/h, >= 0)
        that depend on the local state (e.g. uptake by cells). They are treated implicitly,
        like ``Species.decay``, so fast uptake does not limit the time step.
    params: default values for the reaction parameters; transport parameters are added.
    observables: optional :class:`Observable` summaries (tumor burden, mean PD-L1, ...),
        saved per output time next to the automatic ``total_/min_/max_<species>``.
    signed_params: parameters that may take either sign. Every other parameter whose
        default is > 0, and every transport and dose parameter (``D_*``, ``decay_*``,
        ``*_times``, ``*_amounts``, ``*_rate``, ``*_start``, ``*_stop``), must stay >= 0
        (:meth:`check_params`): a negative rate is a typo, not a model.
    inputs: optional ``{name: fn(t, p)}``, time-only inputs the reactions read through
        :func:`input_value` (plasma concentrations of a dose schedule): functions of time and
        parameters, never of the state. A time loop that knows the times at which its scheme
        evaluates the reactions tabulates them once per call, over all its steps in one
        vectorised evaluation, and hands each step its value (:meth:`tabulate_inputs`);
        everywhere else they are evaluated as written.
    """

    def __init__(self, species: Sequence[Species], reactions: ReactionFn | None = None,
                 params: Mapping[str, object] | None = None,
                 local_decay: ReactionFn | None = None, name: str = "model",
                 observables: Sequence[Observable] = (), signed_params: Sequence[str] = (),
                 inputs: Mapping[str, Callable] | None = None):
        species = tuple(species)
        if not species:
            raise ValueError("a model needs at least one species")
        names = [s.name for s in species]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"species names must be unique, repeated: {dupes}")
        for s in species:
            if s.chemotaxis is not None:
                for ref in (s.chemotaxis.toward, *(s.chemotaxis.crowding or ())):
                    if ref not in names:
                        raise ValueError(
                            f"species {s.name!r}: chemotaxis refers to unknown species {ref!r}; "
                            f"known species are {names}"
                        )
        self.species = species
        self.names = tuple(names)
        self.reactions = reactions
        self.local_decay = local_decay
        self.name = name
        self._params = {k: v for k, v in (params or {}).items()}
        self.signed_params = frozenset(signed_params)
        self._spec = None  # {name: (default shape, must be >= 0)}, built on first check
        self._last_checked = None  # values of the last dict that passed check_params
        self.observables = tuple(observables)
        self.inputs = dict(inputs or {})
        obs_names = [o.name for o in self.observables]
        clash = sorted({n for n in obs_names if obs_names.count(n) > 1}
                       | {n for n in obs_names if n.split("_", 1)[0] in ("total", "min", "max")
                          and n.split("_", 1)[-1] in names})
        if clash:
            raise ValueError(f"model {name!r}: observable names repeated or clashing with the "
                             f"automatic total_/min_/max_<species> ones: {clash}")

    def with_species(self, species: Sequence[Species]) -> "Model":
        """The same reactions and parameters with replaced species definitions (e.g.
        other boundary conditions or diffusivities from a config)."""
        species = tuple(species)
        if tuple(s.name for s in species) != self.names:
            raise ValueError(f"with_species must keep the species and their order {list(self.names)}, "
                             f"got {[s.name for s in species]}")
        return Model(species, self.reactions, self._params, self.local_decay, self.name,
                     self.observables, self.signed_params, self.inputs)

    def tabulate_inputs(self, times, params) -> dict:
        """The :attr:`inputs` at ``times`` (h, shape ``(n,)``) for ``params``:
        ``{INPUT_PREFIX + name: (n, ...)}``, one vectorised evaluation per input. Row ``i`` is
        what :func:`input_value` returns at ``times[i]`` (same formula, rounding aside)."""
        return {INPUT_PREFIX + name: jax.vmap(lambda t, fn=fn: fn(t, params))(times)
                for name, fn in self.inputs.items()}

    def observe(self, t, y, params, grid: Grid) -> dict:
        """The model's observables at one time: ``y`` stacked ``(S, *grid.shape)`` -> {name: scalar}."""
        fields = self.unstack(y)
        return {o.name: jnp.asarray(o.fn(t, fields, params, grid), y.dtype) for o in self.observables}

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown species {name!r}; known species are {list(self.names)}") from None

    def default_values(self) -> dict:
        """:meth:`default_params` as float64 NumPy arrays (no JAX arrays: for validation)."""
        return {k: np.asarray(v, dtype=float) for k, v in self._raw_params().items()}

    def _raw_params(self) -> dict:
        p = {}
        for s in self.species:
            if s.variable_diffusivity or s.diffusivity != 0:
                # Species declared with D = 0 are non-diffusing by structure (no transform).
                p[f"D_{s.name}"] = s.diffusivity
            p[f"decay_{s.name}"] = s.decay
            if s.chemotaxis is not None:
                p[f"chi_{s.name}"] = s.chemotaxis.sensitivity
        p.update(self._params)
        return p

    def default_params(self, dtype=None) -> dict:
        """Flat parameter dict: reaction parameters plus ``D_*``, ``decay_*``, ``chi_*``."""
        return {k: jnp.asarray(v, dtype=dtype) for k, v in self._raw_params().items()}

    def params(self, dtype=None, **overrides) -> dict:
        """Default parameters with ``overrides`` applied; unknown names and impossible values
        are a :class:`ParameterError` (see :meth:`check_params`)."""
        p = self.default_params(dtype)
        for k, v in overrides.items():
            if k not in p:
                raise self._unknown(k)
            self._check_value(k, v)
            p[k] = jnp.asarray(v, dtype=dtype)
        return p

    # -- parameter validation -----------------------------------------------------------
    def _param_spec(self) -> dict:
        if self._spec is None:
            spec = {}
            for k, v in self._raw_params().items():
                arr = np.asarray(v, dtype=float)
                transport = k.startswith(("D_", "decay_")) and k.split("_", 1)[1] in self.names
                nonneg = k not in self.signed_params and (
                    transport or k.endswith(_NONNEGATIVE_SUFFIXES)
                    or bool(arr.size and np.all(arr > 0)))
                # A diffusivity may be a number or a map of the grid's shape: no fixed shape.
                spec[k] = (None if k.startswith("D_") else arr.shape, nonneg)
            self._spec = spec
        return self._spec

    def _unknown(self, name) -> ParameterError:
        spec = self._param_spec()
        hint = did_you_mean(name, spec)
        return ParameterError(str(name), f"unknown parameter {name!r} for model {self.name!r}; {hint}"
                              f"known parameters: {_names_list(spec)}")

    def _check_value(self, name: str, value, batched: bool = False) -> None:
        """Finite, of the default's shape (after a leading batch axis when ``batched``) and
        >= 0 where required. Traced values (inside jit/vmap/grad) are not inspected."""
        if isinstance(value, jax.core.Tracer):
            return
        shape, nonneg = self._param_spec()[name]
        try:
            arr = np.asarray(value)
            if arr.dtype == object or arr.dtype.kind not in "biuf":
                raise TypeError
            arr = arr.astype(float)
        except (TypeError, ValueError):
            raise ParameterError(name, f"parameter {name!r} must be a number or an array of numbers, "
                                 f"got {value!r}") from None
        got = arr.shape[1:] if batched else arr.shape
        if shape is not None and got != shape:
            want = "a number" if not shape else f"shape {shape} (e.g. {shape[0]} dose slots)"
            raise ParameterError(name, f"parameter {name!r} must have {want} like the model's "
                                 f"default, got shape {got}")
        if not np.all(np.isfinite(arr)):
            raise ParameterError(name, f"parameter {name!r} must be finite, got {_short(arr)}")
        if nonneg and np.any(arr < 0):
            why = ("dose times, amounts and rates cannot be negative" if name.endswith(_NONNEGATIVE_SUFFIXES)
                   else "a diffusivity or decay rate cannot be negative" if name.startswith(("D_", "decay_"))
                   else "its default is positive; a model whose parameter may change sign declares "
                        "it in Model(signed_params=...)")
            raise ParameterError(name, f"parameter {name!r} must be >= 0, got {_short(arr)}: {why}")

    def check_params(self, params: Mapping, batched: Sequence[str] = ()) -> None:
        """Raise :class:`ParameterError` unless ``params`` has exactly the model's parameter
        names (missing and unknown names are named, with a did-you-mean) and every concrete
        value is finite, of its default's shape and >= 0 where a negative value is
        meaningless (see ``signed_params``). Under jit/vmap/grad only the names are checked
        (they are static); traced values are skipped. ``batched``: names whose values carry
        a leading batch axis.
        """
        if not isinstance(params, Mapping):
            raise ParameterError("", f"parameters of model {self.name!r} must be a dict "
                                 f"{{name: value}}, got {type(params).__name__}; start from "
                                 "model.default_params()")
        spec = self._param_spec()
        for k in params:
            if k not in spec:
                raise self._unknown(k)
        missing = [k for k in spec if k not in params]
        if missing:
            raise ParameterError(missing[0], f"parameter {missing[0]!r} of model {self.name!r} is "
                                 f"missing{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
                                 "start from model.default_params() or model.params(**changes), "
                                 "which set every parameter")
        values = tuple(params.values())
        key = (tuple(params), tuple(batched))
        last = self._last_checked
        if (last is not None and last[0] == key and len(last[1]) == len(values)
                and all(a is b for a, b in zip(last[1], values))
                and all(isinstance(v, jax.Array) for v in values)):
            return  # the same immutable arrays as last time (every chunk of a run)
        for k, v in params.items():
            self._check_value(k, v, k in batched)
        for k in params:  # infusions: stop after start when running
            if k.endswith("_rate") and k[:-5] + "_start" in params and k[:-5] + "_stop" in params:
                vals = [params[k[:-5] + s] for s in ("_start", "_stop")]
                if any(isinstance(v, jax.core.Tracer) for v in vals) or k in batched:
                    continue
                start, stop = (np.asarray(v, float) for v in vals)
                if np.any(stop < start):
                    raise ParameterError(k[:-5] + "_stop", f"parameter {k[:-5] + '_stop'!r} "
                                         f"({_short(stop)} h) must be >= {k[:-5] + '_start'!r} "
                                         f"({_short(start)} h)")
        if not any(isinstance(v, jax.core.Tracer) for v in values):
            self._last_checked = (key, values)

    def stack(self, fields: Mapping[str, object], grid: Grid, dtype=None):
        """Stack ``{species: array or scalar}`` into ``(n_species, *grid.shape)``.

        Missing species start at 0.
        """
        unknown = sorted(set(fields) - set(self.names))
        if unknown:
            raise KeyError(f"initial condition names unknown species {unknown}; known: {list(self.names)}")
        out = []
        for n in self.names:
            v = jnp.asarray(fields.get(n, 0.0), dtype=dtype)
            if v.ndim and v.shape != grid.shape:
                raise ValueError(
                    f"initial field {n!r} has shape {v.shape}, expected the grid shape {grid.shape}"
                )
            out.append(jnp.broadcast_to(v, grid.shape))
        return jnp.stack(out)

    def unstack(self, y) -> dict:
        """``(S, ...)`` -> ``{species: (...)}`` (for saved series ``(T, S, ...)`` use
        :meth:`fields_of`).

        One ``split`` rather than ``S`` slices: reverse mode transposes a split into one
        concatenation of the fields' cotangents, but each slice into a zero-padding to the
        whole stack, which XLA adds up in one fusion that visits every field's pad for every
        cell (default TME scenario, reactions + chemotaxis at 256², reverse mode: that fusion
        alone took 40 of 80 ms).
        """
        if isinstance(y, np.ndarray):  # host data: NumPy views, dtype kept (no float32 cast)
            return {n: y[i] for i, n in enumerate(self.names)}
        parts = jnp.split(y, len(self.names), axis=0)
        return {n: part.reshape(part.shape[1:]) for n, part in zip(self.names, parts)}

    def fields_of(self, ys) -> dict:
        """Saved series ``(T, S, *shape)`` -> ``{species: (T, *shape)}``."""
        return {n: ys[:, i] for i, n in enumerate(self.names)}

    def boundaries(self, grid: Grid):
        return tuple(resolve_boundaries(s.boundary, grid.ndim) for s in self.species)


def _short(arr) -> str:
    arr = np.asarray(arr)
    return f"{arr.item():g}" if arr.size == 1 else np.array2string(arr, threshold=6, precision=4)


def _import_module(module_name: str, search: Sequence[Path]):
    """Import ``module_name``; if it is not installed, from a ``.py`` file or package in one of
    ``search`` (the config's folder, the working directory)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        top = module_name.split(".")[0]
        if e.name is None or e.name.split(".")[0] != top:
            raise ModelLoadError("path", f"model module {module_name!r} failed to import: "
                                 f"{type(e).__name__}: {e}") from None
        for d in search:
            d = Path(d).resolve()
            if (d / f"{top}.py").is_file() or (d / top / "__init__.py").is_file():
                sys.path.insert(0, str(d))
                try:
                    return importlib.import_module(module_name)
                except ModuleNotFoundError as e2:
                    raise ModelLoadError("path", f"cannot import model module {module_name!r} from "
                                         f"{str(d)!r}: {e2}") from None
                finally:
                    sys.path.remove(str(d))
        near = sorted({f.stem for d in search if Path(d).is_dir() for f in Path(d).glob("*.py")})
        hint = did_you_mean(top, near)
        where = ", ".join(repr(str(Path(d))) for d in search)
        raise ModelLoadError("path", f"cannot import model module {module_name!r}: no installed module "
                             f"{top!r} and no {top}.py in {where or 'the working directory'}; "
                             f"{hint}put the module next to the config or use an installed one "
                             "(e.g. 'tmepde.models.examples:gray_scott')") from None
    except Exception as e:  # the user's module raised while importing
        raise ModelLoadError("path", f"model module {module_name!r} failed to import: "
                             f"{type(e).__name__}: {e}") from None


def _check_option_types(path: str, signature, options: Mapping) -> None:
    """An option must have its default's kind: a number where the default is a number, a
    string where it is a string, a boolean where it is a boolean."""
    for k, v in options.items():
        prm = signature.parameters.get(k)
        if prm is None or prm.default is prm.empty or prm.default is None:
            continue
        d = prm.default
        bad = None
        if isinstance(d, bool):
            bad = None if isinstance(v, bool) else "a boolean"
        elif isinstance(d, (int, float)):
            bad = None if not isinstance(v, (str, bool)) else ("an integer" if isinstance(d, int) else "a number")
        elif isinstance(d, str):
            bad = None if isinstance(v, str) else "a string"
        if bad:
            raise ModelLoadError("options", f"model.options.{k} must be {bad} like the default of "
                                 f"{path!r} ({d!r}), got {v!r}")


def load_model(path: str, options: Mapping | None = None, grid: Grid | None = None,
               search: Sequence[str | Path] = ()) -> Model:
    """Import a model by ``"package.module:attribute"``.

    The attribute may be a :class:`Model` or a callable returning one (a factory). A factory
    is called with ``options`` as keyword arguments, plus ``grid=grid`` when it takes a
    ``grid`` argument (models that place things in space, e.g. injection sites).
    A module that is not installed is looked for in ``search`` (folders, e.g. the config's)
    and then the working directory. Every failure is a :class:`ModelLoadError` (a
    ``ValueError``) that says whether ``model.path`` or ``model.options`` is wrong.
    """
    import inspect

    if not isinstance(path, str) or ":" not in path:
        raise ModelLoadError("path",
                             f"model path {path!r} must look like 'package.module:attribute' "
                             "(e.g. 'tmepde.models.gray_scott:model')")
    module_name, attr = path.split(":", 1)
    if not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".")):
        raise ModelLoadError("path", f"model path {path!r} must look like 'package.module:attribute' "
                             "with Python names (e.g. 'mymodel:model' for mymodel.py next to the config)")
    dirs = [Path(d) for d in search] + [Path.cwd()]
    module = _import_module(module_name, list(dict.fromkeys(dirs)))
    try:
        obj = getattr(module, attr)
    except AttributeError:
        candidates = [n for n in dir(module) if not n.startswith("_")
                      and (isinstance(getattr(module, n), Model) or inspect.isfunction(getattr(module, n)))]
        hint = did_you_mean(attr, candidates, f"{module_name}:")
        raise ModelLoadError("path", f"module {module_name!r} has no attribute {attr!r}; {hint}"
                             f"it defines: {_names_list(candidates)}") from None
    options = dict(options or {})
    if isinstance(obj, Model):
        if options:
            raise ModelLoadError("options", f"{path!r} is a Model, not a factory, so it takes no "
                                 f"options (got {sorted(options)})")
        return obj
    if not callable(obj):
        raise ModelLoadError("path", f"{path!r} is {type(obj).__name__}, expected a tmepde.Model or a factory")
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        raise ModelLoadError("path", f"{path!r} is not a Model factory (no signature)") from None
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = sorted(k for k in options if k not in signature.parameters and not accepts_any)
    known = [k for k in signature.parameters if k != "grid"]
    if unknown:
        hint = did_you_mean(unknown[0], known, "model.options.")
        raise ModelLoadError("options", f"model factory {path!r} has no options {unknown}; {hint}"
                             f"its options are {known}")
    _check_option_types(path, signature, options)
    if grid is not None and "grid" in signature.parameters and "grid" not in options:
        options["grid"] = grid
    try:
        model = obj(**options)
    except Exception as e:  # the factory rejected its options (or has a bug): one line
        given = {k: v for k, v in options.items() if k != "grid"}
        raise ModelLoadError("options", f"model factory {path!r} failed with options {given}: "
                             f"{type(e).__name__}: {e}") from None
    if not isinstance(model, Model):
        raise ModelLoadError("path", f"{path!r} gave {type(model).__name__}, expected a tmepde.Model")
    return model
