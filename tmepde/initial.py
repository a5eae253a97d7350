"""Initial-condition generators: pure numpy functions of a :class:`~tmepde.grid.Grid`.

Each returns a float64 array of shape ``grid.shape`` in the field's units. Positions and
lengths are in µm, measured from the grid's low corner (cell ``i`` has its centre at
``(i + 1/2) * h``). A shape covers the cells whose *centres* lie inside it, so totals
converge to the analytic value at first order in ``h / radius``.

The config's ``[initial.<species>]`` tables map onto these functions one to one
(``type = "disk"`` → :func:`disk`, ...); see docs/config.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .grid import Grid

__all__ = ["uniform", "gaussian", "disk", "clusters", "from_file", "domain_center",
           "nearest_cell_distance", "cluster_centers"]


_HUGE = 1e100  # µm: lengths beyond any domain are cut here, so their squares stay finite


def domain_center(grid: Grid) -> list[float]:
    """Centre of the domain in µm, one entry per axis."""
    return [n * h / 2 for n, h in zip(grid.shape, grid.spacing)]


def _center(grid: Grid, center: Sequence[float] | None) -> np.ndarray:
    c = np.asarray(domain_center(grid) if center is None else center, dtype=float)
    if c.shape != (grid.ndim,):
        raise ValueError(f"center must have {grid.ndim} entries (µm, one per axis), got {center!r}")
    return c


def nearest_cell_distance(grid: Grid, center: Sequence[float]) -> float:
    """Distance (µm) from ``center`` to the nearest cell centre, without building the grid:
    the nearest cell centre is the nearest one along each axis independently (O(ndim))."""
    diffs = []
    for c, n, h in zip(center, grid.shape, grid.spacing):
        i = min(max(math.floor(c / h), 0), n - 1)  # the cell containing c, clamped to the grid
        diffs.append(c - (i + 0.5) * h)
    return math.hypot(*diffs)  # no overflow for huge offsets


def cluster_centers(grid: Grid, n: int, seed: int = 0) -> np.ndarray:
    """The ``(n, ndim)`` centres (µm) :func:`clusters` draws for ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, size=(int(n), grid.ndim)) * np.asarray(grid.extent)


def _dist2(grid: Grid, center: np.ndarray) -> np.ndarray:
    """Squared distance (µm²) of every cell centre from ``center``, shape ``grid.shape``."""
    return sum((x - c) ** 2 for x, c in zip(grid.coordinates(), center))


def uniform(grid: Grid, value: float) -> np.ndarray:
    """The same value in every cell."""
    return np.full(grid.shape, float(value))


def gaussian(grid: Grid, center: Sequence[float] | None = None, width: float = 50.0,
             amplitude: float = 1.0) -> np.ndarray:
    """``amplitude * exp(-|x - center|² / (2 width²))``; width is the standard deviation (µm).

    Integral over the whole space: ``amplitude * (2π width²)^(ndim/2)``.
    """
    if not width > 0:
        raise ValueError(f"width must be > 0 µm, got {width!r}")
    w = min(float(width), _HUGE)
    return float(amplitude) * np.exp(-_dist2(grid, _center(grid, center)) / (2 * w**2))


def disk(grid: Grid, center: Sequence[float] | None = None, radius: float = 100.0,
         value: float = 1.0) -> np.ndarray:
    """``value`` inside a disk (2D) / ball (3D) / interval (1D) of ``radius`` µm, 0 outside."""
    if not radius > 0:
        raise ValueError(f"radius must be > 0 µm, got {radius!r}")
    inside = _dist2(grid, _center(grid, center)) <= min(float(radius), _HUGE) ** 2
    return np.where(inside, float(value), 0.0)


def clusters(grid: Grid, n: int, radius: float, value: float = 1.0, seed: int = 0) -> np.ndarray:
    """``n`` disks/balls of ``radius`` µm with centres drawn uniformly in the domain.

    Overlaps are not added up: every covered cell holds ``value``. The same ``seed`` gives
    the same field (numpy ``default_rng``).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0 µm, got {radius!r}")
    centers = cluster_centers(grid, n, seed)
    covered = np.zeros(grid.shape, dtype=bool)
    for c in centers:
        covered |= _dist2(grid, c) <= min(float(radius), _HUGE) ** 2
    return np.where(covered, float(value), 0.0)


def from_file(grid: Grid, path: str | Path, scale: float = 1.0) -> np.ndarray:
    """Array from a ``.npy`` file, times ``scale``; its shape must equal ``grid.shape``."""
    arr = np.load(Path(path), allow_pickle=False)
    if arr.shape != grid.shape:
        raise ValueError(f"array in {str(path)!r} has shape {arr.shape}, expected the grid shape {grid.shape}")
    return float(scale) * np.asarray(arr, dtype=float)
