"""HDF5 result files: a chunk-by-chunk writer and a reader. Layout: docs/hdf5.md.

The layout is a contract (plots, fits and other tools read it); change it only together with
``FORMAT_VERSION`` and docs/hdf5.md. Files never touch kernels: everything here is numpy.

    /                      attrs: format, format_version, tmepde_version, status, model,
                                  species, grid_shape, grid_spacing_um, cell_volume_um3,
                                  time_units, config_toml
    /time                  (n_saves,) float64, h
    /fields/<species>      (n_saves, *grid_shape), one save per chunk, gzip; attrs units,
                           diffusivity_um2_per_s, decay_per_h, boundary_<face>[_value]
    /observables/<name>    (n_saves,) float64; total_<species>, min_<species>, max_<species>
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np

from .grid import AXIS_NAMES, Grid, resolve_boundaries
from .model import Model

__all__ = ["FORMAT", "FORMAT_VERSION", "ResultWriter", "Result", "SweepResult", "open_result"]

FORMAT = "tmepde-result"
FORMAT_VERSION = 1


def _version() -> str:
    from . import __version__

    return __version__


def _observables(grid: Grid, names: Sequence[str], ys: np.ndarray) -> dict:
    """Per-save scalars of ``ys`` (T, S, *shape): totals (sum × cell volume), min, max."""
    axes = tuple(range(2, ys.ndim))
    volumes = grid.cell_volumes()
    total = (ys.astype(np.float64) * volumes).sum(axis=axes)
    lo, hi = ys.min(axis=axes), ys.max(axis=axes)
    out = {}
    for i, n in enumerate(names):
        out[f"total_{n}"] = total[:, i]
        out[f"min_{n}"] = lo[:, i].astype(np.float64)
        out[f"max_{n}"] = hi[:, i].astype(np.float64)
    return out


class ResultWriter:
    """Append saves to a new result file, chunk by chunk.

    Every :meth:`append` extends all datasets and flushes, so a run killed later leaves a
    file that opens and holds every save appended so far. ``status`` is ``"running"`` until
    :meth:`close` sets ``"complete"`` or ``"failed: ..."``.

    path: file to create (overwritten). config_toml: resolved config text, stored verbatim.
    dtype: dtype of the field datasets. compression: gzip level 0-9 (0 = none).
    params: the run's parameters; with them the model's own :class:`~tmepde.model.Observable`
    summaries are computed (jitted, vmapped over saves) and saved too.
    """

    def __init__(self, path: str | Path, grid: Grid, model: Model, *, config_toml: str = "",
                 dtype=np.float64, compression: int = 4, params=None):
        self.path = Path(path)
        self.grid = grid
        self.names = tuple(model.names)
        self.n = 0
        self._file = f = h5py.File(self.path, "w")
        f.attrs.update({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tmepde_version": _version(),
            "status": "running",
            "model": model.name,
            "species": np.array(self.names, dtype=h5py.string_dtype()),
            "grid_shape": np.asarray(grid.shape, dtype=np.int64),
            "grid_spacing_um": np.asarray(grid.spacing, dtype=np.float64),
            "cell_volume_um3": grid.cell_volume,
            "grid_geometry": grid.geometry,
            "time_units": "h",
            "config_toml": config_toml,
        })
        t = f.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))
        t.attrs["units"] = "h"
        fields = f.create_group("fields")
        gzip = {"compression": "gzip", "compression_opts": int(compression)} if compression else {}
        for s, bcs in zip(model.species, resolve_bcs(model, grid)):
            d = fields.create_dataset(s.name, shape=(0, *grid.shape), maxshape=(None, *grid.shape),
                                      dtype=np.dtype(dtype), chunks=(1, *grid.shape), **gzip)
            d.attrs["units"] = s.units
            if not s.variable_diffusivity:
                d.attrs["diffusivity_um2_per_s"] = float(s.diffusivity)
            d.attrs["decay_per_h"] = float(s.decay)
            for axis, pair in zip(AXIS_NAMES, bcs):
                for side, b in zip(("lo", "hi"), pair):
                    d.attrs[f"boundary_{axis}_{side}"] = b.kind
                    if b.kind == "dirichlet":
                        d.attrs[f"boundary_{axis}_{side}_value"] = b.value
        obs = f.create_group("observables")
        vol_units = "µm^3" if grid.geometry == "spherical" else (f"µm^{grid.ndim}" if grid.ndim > 1 else "µm")
        for s in model.species:
            for kind in ("total", "min", "max"):
                d = obs.create_dataset(f"{kind}_{s.name}", shape=(0,), maxshape=(None,),
                                       dtype=np.float64, chunks=(1024,))
                d.attrs["units"] = f"{vol_units}·{s.units or '1'}" if kind == "total" else (s.units or "1")
                d.attrs["description"] = {
                    "total": f"sum of {s.name} over the grid × cell volume",
                    "min": f"minimum of {s.name} over the grid", "max": f"maximum of {s.name} over the grid",
                }[kind]
        self._observe = None
        if params is not None and model.observables:
            import jax

            for o in model.observables:
                d = obs.create_dataset(o.name, shape=(0,), maxshape=(None,), dtype=np.float64,
                                       chunks=(1024,))
                d.attrs["units"] = o.units
                d.attrs["description"] = o.description
            self._observe = jax.jit(jax.vmap(lambda t, y: model.observe(t, y, params, grid)))
        f.flush()

    def append(self, times, ys) -> None:
        """Append saves: ``times`` (T,) in h, ``ys`` (T, S, *grid_shape). Flushes the file."""
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        ys = np.asarray(ys)
        if ys.shape != (len(times), len(self.names), *self.grid.shape):
            raise ValueError(f"append: ys has shape {ys.shape}, expected "
                             f"{(len(times), len(self.names), *self.grid.shape)}")
        if not len(times):
            return
        f, n0, n1 = self._file, self.n, self.n + len(times)
        f["time"].resize((n1,))
        f["time"][n0:n1] = times
        for i, name in enumerate(self.names):
            d = f["fields"][name]
            d.resize((n1, *self.grid.shape))
            d[n0:n1] = ys[:, i]
        observed = _observables(self.grid, self.names, ys)
        if self._observe is not None:
            observed.update({k: np.asarray(v, np.float64) for k, v in self._observe(times.astype(ys.dtype), ys).items()})
        for name, values in observed.items():
            d = f["observables"][name]
            d.resize((n1,))
            d[n0:n1] = values
        self.n = n1
        f.flush()

    def set_attrs(self, attrs: Mapping) -> None:
        """Add root attributes (e.g. dose event times) and flush."""
        self._file.attrs.update(attrs)
        self._file.flush()

    def set_status(self, status: str) -> None:
        self._file.attrs["status"] = status
        self._file.flush()

    def close(self, status: str | None = None) -> None:
        if self._file.id.valid:
            if status is not None:
                self.set_status(status)
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self._file.id.valid and self._file.attrs["status"] == "running":
            self.close(f"failed: {exc_type.__name__}: {exc}")
        self.close()


def resolve_bcs(model: Model, grid: Grid):
    return tuple(resolve_boundaries(s.boundary, grid.ndim) for s in model.species)


class Result:
    """A result file opened for reading (use as a context manager, or call :meth:`close`).

    Datasets are read lazily: :meth:`field` reads one save of one species.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = h5py.File(self.path, "r")
        fmt = self._file.attrs.get("format")
        if fmt != FORMAT:
            self._file.close()
            raise ValueError(f"{str(self.path)!r} is not a tmepde result file (format attribute {fmt!r})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def attrs(self) -> Mapping:
        return self._file.attrs

    @property
    def status(self) -> str:
        return str(self._file.attrs["status"])

    @property
    def species(self) -> list[str]:
        """Field names, in the model's order."""
        return [str(s) for s in self._file.attrs["species"]]

    @property
    def grid(self) -> Grid:
        return Grid(tuple(int(n) for n in self._file.attrs["grid_shape"]),
                    tuple(float(h) for h in self._file.attrs["grid_spacing_um"]),
                    geometry=str(self._file.attrs.get("grid_geometry", "cartesian")))

    @property
    def time(self) -> np.ndarray:
        """Save times in h, shape (n_saves,)."""
        return self._file["time"][:]

    def __len__(self) -> int:
        return self._file["time"].shape[0]

    def units(self, name: str) -> str:
        return str(self._dataset(name).attrs["units"])

    def _dataset(self, name: str):
        if name not in self._file["fields"]:
            raise KeyError(f"no field {name!r} in {str(self.path)!r}; fields: {self.species}")
        return self._file["fields"][name]

    def field(self, name: str, index: int = -1) -> np.ndarray:
        """One save of one species as a numpy array of the grid's shape (negative index
        counts from the end)."""
        return self._dataset(name)[index]

    def series(self, name: str) -> np.ndarray:
        """All saves of one species, shape (n_saves, *grid_shape)."""
        return self._dataset(name)[:]

    def time_index(self, time_h: float) -> int:
        """Index of the save at ``time_h`` (h); an error lists the nearest saved times."""
        t = self.time
        i = int(np.argmin(np.abs(t - float(time_h))))
        if not len(t) or abs(t[i] - float(time_h)) > 1e-9 * max(1.0, abs(float(time_h))):
            near = t[max(0, i - 2):i + 3].tolist()
            raise KeyError(f"no save at t = {time_h} h in {str(self.path)!r}; nearest saved "
                           f"times (h): {near}; saves are every {t[1] - t[0] if len(t) > 1 else 0:g} h")
        return i

    def field_at(self, name: str, time_h: float) -> np.ndarray:
        """One species at saved time ``time_h`` (h) as a numpy array of the grid's shape."""
        return self.field(name, self.time_index(time_h))

    def observable(self, name: str) -> np.ndarray:
        """One observable's time series ``(n_saves,)``; an error lists the available ones."""
        obs = self._file["observables"]
        if name not in obs:
            raise KeyError(f"no observable {name!r} in {str(self.path)!r}; available: {sorted(obs)}")
        return obs[name][:]

    def boundaries(self, name: str) -> dict:
        """``{face: kind or (kind, value)}`` of one species as stored."""
        a = self._dataset(name).attrs
        out = {}
        for k in a:
            if k.startswith("boundary_") and not k.endswith("_value"):
                face = k[len("boundary_"):]
                out[face] = (str(a[k]), float(a[k + "_value"])) if k + "_value" in a else str(a[k])
        return out

    @property
    def observables(self) -> dict:
        """``{name: (n_saves,) array}``."""
        return {k: v[:] for k, v in self._file["observables"].items()}

    @property
    def config_toml(self) -> str:
        return str(self._file.attrs["config_toml"])

    @property
    def config(self) -> dict:
        """The resolved config tables (``tomllib`` of :attr:`config_toml`); pass the text to
        :func:`tmepde.config.loads_config` to rebuild the run."""
        return tomllib.loads(self.config_toml)


def open_result(path: str | Path) -> "Result | SweepResult":
    """Open a result file for reading: a :class:`Result`, or a :class:`SweepResult` for a
    sweep file written by ``tmepde sweep``."""
    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("format")
    if fmt == SWEEP_FORMAT:
        return SweepResult(path)
    return Result(path)


# -- sweep files (tmepde.sweep; docs/hdf5.md "Sweep files") ------------------------------
SWEEP_FORMAT = "tmepde-sweep"


def _strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


class SweepResult(Result):
    """A sweep file opened for reading: every array has a leading member axis ``B``.

    ``members`` (index, arm, arm_index, grid_index, patient, done, status), ``params`` (each
    varied key, ``(B, ...)``), ``observables`` (``(B, T)``), ``summary`` (per member
    ``best``/``horizon`` class and change in %). :meth:`select` picks member indices;
    :meth:`member` gives one member's observables; :meth:`field` one member's field.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = h5py.File(self.path, "r")
        fmt = self._file.attrs.get("format")
        if fmt != SWEEP_FORMAT:
            self._file.close()
            raise ValueError(f"{str(self.path)!r} is not a tmepde sweep file (format attribute {fmt!r})")

    def __len__(self) -> int:
        return int(self._file.attrs["n_members"])

    @property
    def n_members(self) -> int:
        return len(self)

    @property
    def arm_names(self) -> list[str]:
        return _strings(self._file.attrs["arms"])

    @property
    def members(self) -> dict:
        m = self._file["members"]
        out = {k: m[k][:] for k in ("index", "arm_index", "grid_index", "patient", "done")}
        out["arm"] = np.asarray(_strings(m["arm"][:]))
        out["status"] = np.asarray(_strings(m["status"][:]))
        return out

    @property
    def params(self) -> dict:
        """``{key: (B, ...) float64}``: each member's value of every varied key."""
        return {k: v[:] for k, v in self._file["members/params"].items()}

    @property
    def observables(self) -> dict:
        """``{name: (B, T) float64}`` (NaN for members not finished)."""
        return {k: v[:] for k, v in self._file["observables"].items()}

    def observable(self, name: str, members=None) -> np.ndarray:
        """One observable, ``(B, T)`` or the selected members' rows."""
        if name not in self._file["observables"]:
            raise KeyError(f"no observable {name!r} in {str(self.path)!r}; observables: "
                           f"{sorted(self._file['observables'])}")
        d = self._file["observables"][name][:]
        return d if members is None else d[np.asarray(members)]

    def member(self, i: int) -> dict:
        """Member ``i``: its arm, parameter values and observables ``{name: (T,)}``."""
        m = self.members
        return {"arm": str(m["arm"][i]), "status": str(m["status"][i]),
                "params": {k: v[i] for k, v in self.params.items()},
                "observables": {k: v[i] for k, v in self._file["observables"].items()}}

    def select(self, arm: str | None = None, done: bool = True, **conditions) -> np.ndarray:
        """Indices of members in ``arm`` (and finished when ``done``) whose varied keys equal
        the given values, e.g. ``select("ifng_pulsed", growth_tumor=0.0125)``."""
        m = self.members
        keep = np.ones(len(self), bool)
        if arm is not None:
            if arm not in self.arm_names:
                raise KeyError(f"no arm {arm!r} in {str(self.path)!r}; arms: {self.arm_names}")
            keep &= m["arm"] == arm
        if done:
            keep &= m["done"]
        params = self.params
        for k, v in conditions.items():
            if k not in params:
                raise KeyError(f"{k!r} is not a varied key of {str(self.path)!r}; varied: {sorted(params)}")
            keep &= np.isclose(params[k], v, rtol=1e-12, atol=0).reshape(len(self), -1).all(axis=1)
        return np.flatnonzero(keep)

    @property
    def has_fields(self) -> bool:
        return "fields" in self._file

    @property
    def field_time(self) -> np.ndarray:
        """Times (h) of the stored field saves (every ``sweep.field_stride``-th save)."""
        if not self.has_fields:
            raise KeyError(f"{str(self.path)!r} stores no fields (sweep.save_fields = false)")
        return self._file["field_time"][:]

    def _dataset(self, name: str):
        if not self.has_fields:
            raise KeyError(f"{str(self.path)!r} stores no fields (sweep.save_fields = false); "
                           "rerun with --set sweep.save_fields=true")
        return super()._dataset(name)

    def field(self, name: str, member: int = 0, index: int = -1) -> np.ndarray:
        """One stored save of one species of one member (grid-shaped array)."""
        return self._dataset(name)[member, index]

    def series(self, name: str, member: int = 0) -> np.ndarray:
        """All stored saves of one species of one member, ``(T_f, *grid_shape)``."""
        return self._dataset(name)[member]

    @property
    def summary(self) -> dict:
        """Per-member response: ``best``, ``horizon`` (CR/PR/SD/PD/NE), ``best_change``,
        ``horizon_change`` (%), and ``arms`` (the per-arm table as column arrays)."""
        if "summary" not in self._file:
            return {}
        g = self._file["summary"]
        out = {k: g[k][:] for k in ("best_change", "horizon_change")}
        out.update({k: np.asarray(_strings(g[k][:])) for k in ("best", "horizon")})
        out["arms"] = {k: (np.asarray(_strings(v[:])) if k == "arm" else v[:]) for k, v in g["arms"].items()}
        for k, v in g.attrs.items():
            out[k] = v
        return out
