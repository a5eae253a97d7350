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
import importlib
from typing import Callable, Mapping, Sequence

import numpy as np
import jax.numpy as jnp

from .grid import Grid, resolve_boundaries

SECONDS_PER_HOUR = 3600.0

ReactionFn = Callable[[object, dict, dict], Mapping[str, object]]


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
    nonnegative: clip round-off negatives to 0 after each step (densities, concentrations).
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
    """

    def __init__(self, species: Sequence[Species], reactions: ReactionFn | None = None,
                 params: Mapping[str, object] | None = None,
                 local_decay: ReactionFn | None = None, name: str = "model",
                 observables: Sequence[Observable] = ()):
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
        self.observables = tuple(observables)
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
                     self.observables)

    def observe(self, t, y, params, grid: Grid) -> dict:
        """The model's observables at one time: ``y`` stacked ``(S, *grid.shape)`` -> {name: scalar}."""
        fields = {n: y[i] for i, n in enumerate(self.names)}
        return {o.name: jnp.asarray(o.fn(t, fields, params, grid), y.dtype) for o in self.observables}

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown species {name!r}; known species are {list(self.names)}") from None

    def default_params(self, dtype=None) -> dict:
        """Flat parameter dict: reaction parameters plus ``D_*``, ``decay_*``, ``chi_*``."""
        p = {}
        for s in self.species:
            if s.variable_diffusivity or s.diffusivity != 0:
                # Species declared with D = 0 are non-diffusing by structure (no transform).
                p[f"D_{s.name}"] = s.diffusivity
            p[f"decay_{s.name}"] = s.decay
            if s.chemotaxis is not None:
                p[f"chi_{s.name}"] = s.chemotaxis.sensitivity
        p.update(self._params)
        return {k: jnp.asarray(v, dtype=dtype) for k, v in p.items()}

    def params(self, dtype=None, **overrides) -> dict:
        """Default parameters with ``overrides`` applied; unknown names are an error."""
        p = self.default_params(dtype)
        for k, v in overrides.items():
            if k not in p:
                raise KeyError(f"unknown parameter {k!r} for model {self.name!r}; known: {sorted(p)}")
            p[k] = jnp.asarray(v, dtype=dtype)
        return p

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
        """``(S, ...)`` -> ``{species: (...)}``; works on saved series ``(T, S, ...)`` too via
        ``y[:, i]`` (use :meth:`fields_of`)."""
        return {n: y[i] for i, n in enumerate(self.names)}

    def fields_of(self, ys) -> dict:
        """Saved series ``(T, S, *shape)`` -> ``{species: (T, *shape)}``."""
        return {n: ys[:, i] for i, n in enumerate(self.names)}

    def boundaries(self, grid: Grid):
        return tuple(resolve_boundaries(s.boundary, grid.ndim) for s in self.species)


def load_model(path: str, options: Mapping | None = None, grid: Grid | None = None) -> Model:
    """Import a model by ``"package.module:attribute"``.

    The attribute may be a :class:`Model` or a callable returning one (a factory). A factory
    is called with ``options`` as keyword arguments, plus ``grid=grid`` when it takes a
    ``grid`` argument (models that place things in space, e.g. injection sites).
    """
    import inspect

    if ":" not in path:
        raise ValueError(
            f"model path {path!r} must look like 'package.module:attribute' "
            "(e.g. 'tmepde.models.gray_scott:model')"
        )
    module_name, attr = path.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import model module {module_name!r}: {e}") from e
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    options = dict(options or {})
    if isinstance(obj, Model):
        if options:
            raise ValueError(f"{path!r} is a Model, not a factory, so it takes no options "
                             f"(got {sorted(options)})")
        return obj
    if not callable(obj):
        raise ValueError(f"{path!r} is {type(obj).__name__}, expected a tmepde.Model or a factory")
    signature = inspect.signature(obj)
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = sorted(k for k in options if k not in signature.parameters and not accepts_any)
    if unknown:
        known = [k for k in signature.parameters if k != "grid"]
        raise ValueError(f"model factory {path!r} has no options {unknown}; its options are {known}")
    if grid is not None and "grid" in signature.parameters and "grid" not in options:
        options["grid"] = grid
    model = obj(**options)
    if not isinstance(model, Model):
        raise ValueError(f"{path!r} gave {type(model).__name__}, expected a tmepde.Model")
    return model
