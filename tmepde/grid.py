"""Uniform Cartesian, cell-centred grids and per-face boundary conditions.

Geometry is static (hashable, never traced): shapes and spacings decide array shapes and
the choice of transform, so they must be Python values when a run is compiled.

Conventions
-----------
* Lengths in µm. Cell ``i`` along an axis has its centre at ``(i + 1/2) * h``; the domain
  along that axis is ``[0, n * h]`` and boundary faces sit at ``0`` and ``n * h``.
* Arrays of one field have shape ``grid.shape``; a stacked state has ``(n_species, *shape)``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

if TYPE_CHECKING:  # shape annotations only (jaxtyping); nothing is checked at run time
    from jaxtyping import Float

BCKind = Literal["neumann", "dirichlet", "periodic"]
_BC_KINDS = ("neumann", "dirichlet", "periodic")
# Accepted spellings for users coming from other tools.
_BC_ALIASES = {
    "zero_flux": "neumann",
    "zero-flux": "neumann",
    "noflux": "neumann",
    "no_flux": "neumann",
    "neumann": "neumann",
    "dirichlet": "dirichlet",
    "fixed": "dirichlet",
    "periodic": "periodic",
}
AXIS_NAMES = ("x", "y", "z")


@dataclasses.dataclass(frozen=True)
class Boundary:
    """Condition on one face.

    kind: ``"neumann"`` (zero flux), ``"dirichlet"`` (fixed value) or ``"periodic"``.
    value: the fixed value for Dirichlet faces, in the field's units; ignored otherwise.
    """

    kind: BCKind = "neumann"
    value: float = 0.0

    def __post_init__(self):
        kind = _BC_ALIASES.get(str(self.kind).lower())
        if kind is None:
            raise ValueError(
                f"boundary kind must be one of {_BC_KINDS} (or 'zero_flux'), got {self.kind!r}"
            )
        object.__setattr__(self, "kind", kind)
        try:
            if isinstance(self.value, (bool, str, bytes)):
                raise TypeError
            value = float(self.value)
        except (TypeError, ValueError):
            raise ValueError(f"boundary value must be a number, got {self.value!r}") from None
        if not np.isfinite(value):
            raise ValueError(f"boundary value must be finite (a Dirichlet value in the field's units), "
                             f"got {self.value!r}")
        object.__setattr__(self, "value", value)


def parse_boundary(spec) -> Boundary:
    """``Boundary`` from a Boundary, a kind string, a ``(kind, value)`` pair or a number.

    A bare number means a Dirichlet face with that value.
    """
    if isinstance(spec, Boundary):
        return spec
    if isinstance(spec, str):
        return Boundary(spec)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Boundary("dirichlet", float(spec))
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return Boundary(spec[0], spec[1])
    if isinstance(spec, dict):
        return Boundary(spec.get("kind", "neumann"), spec.get("value", 0.0))
    raise ValueError(
        f"cannot read a boundary condition from {spec!r}; use 'neumann', 'periodic', "
        "('dirichlet', value) or a number (Dirichlet value)"
    )


AxisBC = tuple[Boundary, Boundary]


def resolve_boundaries(spec, ndim: int) -> tuple[AxisBC, ...]:
    """Per-axis ``(low face, high face)`` conditions from a compact specification.

    ``spec`` may be a single condition for every face, or a dict keyed by face name
    (``"x_lo"``, ``"x_hi"``, ``"y_lo"``, ..., or an axis name ``"x"`` for both faces of that
    axis, or ``"default"``).
    """
    faces = {f"{a}_{s}": None for a in AXIS_NAMES[:ndim] for s in ("lo", "hi")}
    if isinstance(spec, dict):
        default = parse_boundary(spec.get("default", "neumann"))
        for key, value in spec.items():
            if key == "default":
                continue
            if key in AXIS_NAMES[:ndim]:
                faces[f"{key}_lo"] = faces[f"{key}_hi"] = parse_boundary(value)
            elif key in faces:
                faces[key] = parse_boundary(value)
            else:
                raise ValueError(
                    f"unknown boundary face {key!r} for a {ndim}D grid; "
                    f"use one of {sorted(faces)} or an axis name {list(AXIS_NAMES[:ndim])}"
                )
        faces = {k: (v if v is not None else default) for k, v in faces.items()}
    else:
        bc = parse_boundary(spec if spec is not None else "neumann")
        faces = {k: bc for k in faces}
    out = []
    for a in AXIS_NAMES[:ndim]:
        lo, hi = faces[f"{a}_lo"], faces[f"{a}_hi"]
        if (lo.kind == "periodic") != (hi.kind == "periodic"):
            raise ValueError(
                f"axis {a!r}: periodic must be set on both faces ({a}_lo and {a}_hi), "
                f"got {lo.kind!r} and {hi.kind!r}"
            )
        out.append((lo, hi))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Grid:
    """A uniform cell-centred grid in 1, 2 or 3 dimensions.

    shape: cells per axis, e.g. ``(256, 256)``.
    spacing: cell size per axis in µm (a single number is used for every axis).
    geometry: ``"cartesian"`` or ``"spherical"`` (1D radial shells around a centre: a
        spherically symmetric 3D problem; see :mod:`tmepde.radial`).
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    geometry: str = "cartesian"

    def __init__(self, shape: Sequence[int] | int, spacing: Sequence[float] | float = 1.0,
                 geometry: str = "cartesian"):
        if isinstance(shape, (int, np.integer)):
            shape = (int(shape),)
        shape = tuple(shape)
        if not 1 <= len(shape) <= 3:
            raise ValueError(f"grid.shape must have 1, 2 or 3 entries, got {shape!r}")
        for n in shape:
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 2:
                raise ValueError(
                    f"grid.shape entries must be integers >= 2 (cells per axis), got {shape!r}"
                )
        if isinstance(spacing, (int, float, np.floating, np.integer)):
            spacing = (float(spacing),) * len(shape)
        spacing = tuple(float(h) for h in spacing)
        if len(spacing) != len(shape):
            raise ValueError(
                f"grid.spacing has {len(spacing)} entries but grid.shape has {len(shape)}; "
                "give one spacing per axis or a single number"
            )
        for h in spacing:
            if not np.isfinite(h) or h <= 0:
                raise ValueError(f"grid.spacing must be > 0 µm, got {spacing!r}")
        if not all(np.isfinite(float(n) * h) for n, h in zip(shape, spacing)):
            raise ValueError(f"grid.shape × grid.spacing overflows (domain of {shape!r} cells of "
                             f"{spacing!r} µm); use a realistic grid")
        if geometry not in ("cartesian", "spherical"):
            raise ValueError(f"grid.geometry must be 'cartesian' or 'spherical', got {geometry!r}")
        if geometry == "spherical" and len(shape) != 1:
            raise ValueError(
                f"grid.geometry 'spherical' is a 1D radial grid; grid.shape must have one entry, got {shape!r}")
        object.__setattr__(self, "shape", tuple(int(n) for n in shape))
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "geometry", geometry)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def cell_volume(self) -> float:
        """µm^ndim of a Cartesian cell (for spherical grids use :meth:`cell_volumes`)."""
        return float(np.prod(self.spacing))

    def cell_volumes(self) -> Float[np.ndarray, "*shape"]:
        """Measure of every cell, shape ``self.shape``: µm^ndim (Cartesian) or µm³ (shells)."""
        if self.geometry == "spherical":
            r = np.arange(self.shape[0] + 1) * self.spacing[0]
            return 4 * np.pi / 3 * (r[1:] ** 3 - r[:-1] ** 3)
        return np.full(self.shape, self.cell_volume)

    @property
    def extent(self) -> tuple[float, ...]:
        """Domain length per axis in µm."""
        return tuple(n * h for n, h in zip(self.shape, self.spacing))

    def axis_centers(self, axis: int) -> Float[np.ndarray, " n"]:
        """Cell-centre coordinates along ``axis`` in µm, shape ``(shape[axis],)``."""
        n, h = self.shape[axis], self.spacing[axis]
        return (np.arange(n) + 0.5) * h

    def coordinates(self) -> tuple[Float[np.ndarray, "*shape"], ...]:
        """Cell-centre coordinate arrays (µm), each of shape ``self.shape`` (ij indexing)."""
        return tuple(np.meshgrid(*[self.axis_centers(a) for a in range(self.ndim)], indexing="ij"))
