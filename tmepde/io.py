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

import os
import resource
import tomllib
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import h5py
import numpy as np

from .grid import AXIS_NAMES, Grid, resolve_boundaries

if TYPE_CHECKING:  # annotations only: reading and writing files needs no JAX
    from .model import Model

__all__ = ["FORMAT", "FORMAT_VERSION", "SWEEP_FORMAT", "SWEEP_FORMAT_VERSION", "ResultWriter", "Result",
           "SweepResult", "open_result", "OutputExistsError", "ResultFileError", "ResultWriteError",
           "check_output", "partial_path", "read_restart", "verify_saves", "species_stats", "to_disk",
           "coordinate_scales", "attach_scales", "TransactionalFile", "tmepde_version", "decode_text",
           "decode_strings", "open_h5", "crc32", "fsync", "resolve_bcs"]

FORMAT = "tmepde-result"
FORMAT_VERSION = 2  # 2: grid axes stored (z, y, x); root coordinates and variables (netCDF-4); fixed-size status


def tmepde_version() -> str:
    from . import __version__

    return __version__


def species_stats(ys, cell_volumes):
    """The per-save scalars every result and sweep file stores for each species: totals
    (Σ field × cell volume, µm^ndim × field units), minima and maxima over the grid.

    ys: (..., S, *grid_shape); cell_volumes: (*grid_shape,) (:meth:`Grid.cell_volumes`).
    Returns (total, min, max), each (..., S). Array methods only, so the sweep evaluates this
    same definition on device (JAX arrays, inside its jitted reduction) as the writer does on
    the host (NumPy)."""
    axes = tuple(range(ys.ndim - np.ndim(cell_volumes), ys.ndim))
    return (ys * cell_volumes).sum(axis=axes), ys.min(axis=axes), ys.max(axis=axes)


def _observables(grid: Grid, names: Sequence[str], ys: np.ndarray) -> dict:
    """``{total_<s>, min_<s>, max_<s>: (T,) float64}`` of ``ys`` (T, S, *shape), summed in float64."""
    volumes = grid.cell_volumes()
    if np.ndim(volumes) and np.all(volumes == volumes.flat[0]):
        # Equal cells (Cartesian grids): the same numbers without a float64 copy of ``ys``
        # (the copy cost ~0.15 s per chunk of the default scenario). Minima and maxima are
        # exact in the field's dtype; the sum accumulates in float64.
        axes = tuple(range(2, ys.ndim))
        total = ys.sum(axis=axes, dtype=np.float64) * float(volumes.flat[0])
        lo, hi = ys.min(axis=axes).astype(np.float64), ys.max(axis=axes).astype(np.float64)
    else:
        total, lo, hi = species_stats(ys.astype(np.float64), volumes)
    out = {}
    for i, n in enumerate(names):
        out[f"total_{n}"] = total[:, i]
        out[f"min_{n}"] = lo[:, i]
        out[f"max_{n}"] = hi[:, i]
    return out


class OutputExistsError(ValueError):
    """The output path exists (or is the config itself) and may not be replaced."""


class ResultFileError(ValueError):
    """A file that is not a readable tmepde result: the message is one line naming the
    file and what is missing or malformed."""


class ResultWriteError(OSError):
    """Writing a result file failed (full disk, file-size limit, I/O error). The message is
    one line naming the file, what was kept and the cause."""


HEADROOM = 1 << 20  # bytes kept free for HDF5 metadata (chunk index, heaps, status) per write
STATUS_SIZE = 256  # bytes of the fixed-size status attribute (rewritten in place)


def check_output(path: str | Path, *, overwrite: bool = False, protect=()) -> Path:
    """Refuse to write ``path`` when it is one of ``protect`` (e.g. the config file), or
    exists and ``overwrite`` is false, or exists and is not a tmepde result or sweep file.
    Raises :class:`OutputExistsError` with a one-line message; returns ``Path(path)``."""
    path = Path(path)
    for q in protect:
        if q is not None and Path(q).exists() and path.exists() and path.resolve() == Path(q).resolve():
            raise OutputExistsError(f"output {str(path)!r} is the config file itself; choose another "
                                    "output path (-o)")
    if not path.exists():
        return path
    try:
        with h5py.File(path, "r") as f:
            fmt, status = f.attrs.get("format"), decode_text(f.attrs.get("status", "?"))
    except OSError:
        fmt, status = None, None
    if fmt not in (FORMAT, SWEEP_FORMAT):
        raise OutputExistsError(f"output {str(path)!r} exists and is not a tmepde result file; "
                                "refusing to replace it (choose another output path)")
    if not overwrite:
        raise OutputExistsError(f"output {str(path)!r} exists (status {status.split(':')[0]!r}); pass --overwrite "
                                "to replace it, or choose another output path")
    return path


def partial_path(path: str | Path) -> Path:
    """Where a run replacing ``path`` writes until it completes: ``<stem>.partial<suffix>``
    next to it (``cohort.h5`` -> ``cohort.partial.h5``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def decode_text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _status_value(status: str) -> np.bytes_:
    b = status.encode("utf-8")[:STATUS_SIZE]
    return np.array(b, dtype=f"S{STATUS_SIZE}")


def fsync(path: Path) -> None:
    """Force the file's pages to the device, so a full disk with delayed allocation reports
    now (EDQUOT/ENOSPC), not after the run said it finished."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def to_disk(a, lead: int):
    """Grid axes of ``a`` after its ``lead`` leading axes reversed: (…, x, y, z) in memory
    ↔ (…, z, y, x) on disk (format 2, the CF/netCDF and XDMF axis order: x varies fastest).
    Its own inverse."""
    a = np.asarray(a)
    return a.transpose(*range(lead), *range(a.ndim - 1, lead - 1, -1))


def crc32(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).tobytes())


class TransactionalFile:
    """Shared by the result and sweep writers: the temporary-name/move-into-place logic,
    the status attribute and the failure/interrupt paths."""

    def _seal(self, target: Path, status: str, problem: str | None = None) -> Path:
        """Last step of ``finish`` once the data were re-read (``problem``: what differed, or
        None): write ``status``, fsync, read it back, move the file into place. On any problem
        the status becomes ``failed: ...`` where it can still be set, and the error is raised."""
        if problem is None:
            try:
                with h5py.File(target, "r+") as f:
                    f.attrs.modify("status", _status_value(status))
                fsync(target)
                with h5py.File(target, "r") as f:
                    if decode_text(f.attrs["status"]) != status:
                        problem = "the status attribute did not read back"
            except Exception as e:
                problem = f"{type(e).__name__}: {' '.join(str(e).split())}"
        if problem is not None:
            err = self._fail("verifying the finished file", RuntimeError(problem))
            try:
                with h5py.File(target, "r+") as f:
                    f.attrs.modify("status", _status_value(f"failed: {err}"))
            except Exception:
                pass
            raise err
        self._move_into_place()
        return self.path

    path: Path
    _file: h5py.File

    def _open(self, path, overwrite: bool, protect) -> h5py.File:
        self.path = check_output(path, overwrite=overwrite, protect=protect)
        # An existing result is replaced only by a new one that ends complete: until then the
        # new file is written as <stem>.partial<suffix> next to it (attribute ``replaces``) and
        # the old one stays intact; a new run that fails or is interrupted stays there.
        self._tmp = partial_path(self.path) if self.path.exists() else None
        if self._tmp is not None:
            check_output(self._tmp, overwrite=True, protect=protect)  # only a tmepde file
        self._error = None  # first write error; no further writes after it
        # No raw-data chunk cache: each save is compressed and written by the call that
        # writes it, so a full disk raises there (with a cache, the chunk was written when
        # h5py freed the dataset handle and the error was only printed, not raised).
        f = h5py.File(self._tmp or self.path, "w", rdcc_nbytes=0)
        if self._tmp is not None:
            f.attrs["replaces"] = self.path.name
        return f

    def _reopen(self, path) -> h5py.File:
        """Open an unfinished file in place to continue it (``--resume``); a ``.partial``
        file that was to replace another one still replaces it once complete."""
        path = Path(path)
        self._error = None
        self._file = f = h5py.File(path, "r+", rdcc_nbytes=0)
        replaces = decode_text(f.attrs.get("replaces", ""))
        if replaces and partial_path(path.with_name(replaces)).name == path.name:
            self.path, self._tmp = path.with_name(replaces), path
        else:  # not a .partial file (or renamed since): it completes where it is
            self.path, self._tmp = path, None
        return f

    @property
    def kept_beside(self) -> Path | None:
        """The ``.partial`` file of a new run that did not replace the old file (else None)."""
        return self._tmp if self._tmp is not None and self._tmp.exists() else None

    def note_kept(self, e: BaseException) -> BaseException:
        """Add to ``e``'s one-line message that the old file is unchanged and where this
        run's own output is (when an ``--overwrite`` run did not complete)."""
        kept = self.kept_beside
        if kept is not None and e.args and isinstance(e.args[0], str):
            e.args = (f"{e.args[0]}; {str(self.path)!r} is unchanged, this run's output is "
                      f"{str(kept)!r}", *e.args[1:])
        return e

    @property
    def file_path(self) -> Path:
        """Where the file is being written (a temporary name while it replaces an old one)."""
        return self._tmp or self.path

    def _write_status(self, status: str) -> None:
        a = self._file.attrs
        if "status" in a and a["status"].dtype == np.dtype(f"S{STATUS_SIZE}"):
            a.modify("status", _status_value(status))  # in place: no new file space needed
        else:
            a["status"] = _status_value(status)

    def set_status(self, status: str) -> None:
        self._write_status(status)
        self._file.flush()

    def close(self, status: str | None = None) -> bool:
        """Close the file, first setting ``status`` (e.g. ``"failed: ..."``,
        ``"interrupted: SIGINT"``); best effort after a write error. Returns whether the
        status reached the file. A ``.partial`` file replacing an old one stays beside it."""
        ok = True
        if self._file.id.valid:
            try:
                if status is not None:
                    self.set_status(status)
            except Exception:
                ok = False
            try:
                self._file.close()
            except Exception:
                ok = False
        if status is not None and ok:
            try:
                fsync(self.file_path)
            except OSError:
                ok = False
        return ok  # a temporary (.partial) file stays: only finish() replaces the old file

    def _move_into_place(self) -> None:
        """A complete ``.partial`` file replaces the old one (an atomic rename)."""
        if self._tmp is not None and self._tmp.exists():
            with h5py.File(self._tmp, "r+") as f:
                if "replaces" in f.attrs:
                    del f.attrs["replaces"]
            fsync(self._tmp)
            os.replace(self._tmp, self.path)
            self._tmp = None

    def _check_room(self, nbytes: int, what: str) -> None:
        """Fail before writing ``nbytes`` (plus room for HDF5's metadata) that would not fit
        under the file-size limit or on the disk: a write that fails half-way can leave an
        HDF5 file whose recorded end lies past its real end, which no reader opens."""
        need = int(nbytes) + HEADROOM
        target = self.file_path
        size = target.stat().st_size
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY and size + need > soft:
            raise self._fail(what, OSError(f"the file-size limit (ulimit -f) of {soft} bytes would "
                                           f"be exceeded: {size} bytes written, about {need} more needed"))
        st = os.statvfs(target.parent)
        free = st.f_bavail * st.f_frsize
        if free < need:
            raise self._fail(what, OSError(f"No space left on device: {free} bytes free, about "
                                           f"{need} needed"))

    def _fail(self, what: str, e: BaseException) -> ResultWriteError:
        errno = getattr(e, "errno", None)
        if errno:  # HDF5's own message repeats the file name and a time stamp
            cause = f"{os.strerror(errno)} (errno {errno})"
        else:
            cause = " ".join(str(e).split()) or type(e).__name__
            if len(cause) > 200:
                cause = cause[:200] + "..."
        self._error = ResultWriteError(f"writing {str(self.file_path)!r} failed ({what}): {cause}")
        return self._error

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self._file.id.valid:
            self.close(f"failed: {exc_type.__name__}: {exc}")
        self.close()


class ResultWriter(TransactionalFile):
    """Append saves to a new result file, chunk by chunk.

    Every :meth:`append` extends all datasets and flushes, so a run killed later leaves a
    file that opens and holds every save appended so far. ``status`` is ``"running"`` until
    :meth:`finish` re-reads every save and sets ``"complete"``, or :meth:`close` sets
    ``"failed: ..."`` / ``"interrupted: ..."``. A failed write (full disk, file-size limit)
    raises :class:`ResultWriteError` and shrinks the datasets back to the saves written
    before it, so the file never holds a save that was not written in full.

    path: file to create. An existing file is refused (:class:`OutputExistsError`) unless
    ``overwrite``; then the new file is written as ``<stem>.partial<suffix>`` and replaces the
    old one only when :meth:`finish` verified it complete (a failed or interrupted run stays
    there and the old file intact; see :attr:`kept_beside`). ``protect``: paths never to write
    (the config file). config_toml: resolved config text, stored verbatim. dtype: dtype of
    the field datasets. compression: gzip level 0-9 (0 = none). observables: the model's
    own :class:`~tmepde.model.Observable` summaries to store (their datasets are created here;
    their values, computed by the caller, come with every :meth:`append`). Nothing here
    evaluates a model: the writer only stores arrays.
    """

    def __init__(self, path: str | Path, grid: Grid, model: Model, *, config_toml: str = "",
                 dtype=np.float64, compression: int = 4, observables: Sequence = (), overwrite: bool = False,
                 protect=()):
        self.grid = grid
        self.names = tuple(model.names)
        self.n = 0
        self._crcs: list[tuple] = []  # per save: (time bytes crc, crc of each field)
        self._file = f = self._open(path, overwrite, protect)
        f.attrs.update({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tmepde_version": tmepde_version(),
            "model": model.name,
            "species": np.array(self.names, dtype=h5py.string_dtype()),
            "grid_shape": np.asarray(grid.shape, dtype=np.int64),
            "grid_spacing_um": np.asarray(grid.spacing, dtype=np.float64),
            "cell_volume_um3": grid.cell_volume,
            "grid_geometry": grid.geometry,
            "time_units": "h",
            "config_toml": config_toml,
        })
        self._write_status("running")
        t = f.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))
        t.attrs["units"] = "h"
        fields = f.create_group("fields")
        # Byte shuffle before gzip (HDF5's standard filter, read transparently by h5py, netCDF
        # and xarray): the exponent and high mantissa bytes of neighbouring float32 values are
        # alike, so deflate finds them. Default scenario (256², 23 fields, 61 saves, level 4):
        # compression 14.8 -> 8.0 CPU-s, the final re-read 3.2 -> 2.1, the file 29 % smaller.
        gzip = ({"compression": "gzip", "compression_opts": int(compression), "shuffle": True}
                if compression else {})
        self._fields = {}
        self._disk_shape = disk = tuple(reversed(grid.shape))  # (…, z, y, x)
        for s, bcs in zip(model.species, resolve_bcs(model, grid)):
            d = fields.create_dataset(s.name, shape=(0, *disk), maxshape=(None, *disk),
                                      dtype=np.dtype(dtype), chunks=(1, *disk), **gzip)
            self._fields[s.name] = d
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
        for o in observables:
            d = obs.create_dataset(o.name, shape=(0,), maxshape=(None,), dtype=np.float64,
                                   chunks=(1024,))
            d.attrs["units"] = o.units
            d.attrs["description"] = o.description
        self.observables = tuple(o.name for o in observables)
        self._series = [t, *obs.values()]  # every (n_saves,) dataset
        scales = coordinate_scales(f, grid)
        _netcdf_variables(f, t, scales, self._fields, obs)
        try:
            f.flush()
        except Exception as e:
            raise self._fail("creating the file", e) from e

    def append(self, times, ys, observed: Mapping | None = None) -> None:
        """Append saves: ``times`` (T,) in h, ``ys`` (T, S, *grid_shape), and ``observed``:
        ``{name: (T,)}`` values of every model observable of :attr:`observables`. Flushes.

        All or nothing: if a write fails the datasets are shrunk back to the saves before
        this call and :class:`ResultWriteError` is raised (no later append is accepted)."""
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        ys = np.asarray(ys)
        if ys.shape != (len(times), len(self.names), *self.grid.shape):
            raise ValueError(f"append: ys has shape {ys.shape}, expected "
                             f"{(len(times), len(self.names), *self.grid.shape)}")
        if self._error is not None:
            raise self._error
        if not len(times):
            return
        # Everything that can fail for reasons other than the file is computed first.
        given = dict(observed or {})
        missing = [k for k in self.observables if k not in given]
        if missing:
            raise ValueError(f"append: no values for the model observables {missing}")
        observed = _observables(self.grid, self.names, ys)
        observed.update({k: np.asarray(given[k], np.float64).reshape(len(times)) for k in self.observables})
        cast = {name: np.ascontiguousarray(to_disk(ys[:, i], 1), dtype=self._fields[name].dtype)
                for i, name in enumerate(self.names)}
        f, n0, n1 = self._file, self.n, self.n + len(times)
        where = (f"saves {n0}..{n1 - 1}, t = {times[0]:g}..{times[-1]:g} h; the {n0} saves before "
                 "them are kept")
        self._check_room(sum(v.nbytes for v in cast.values()) + 8 * len(times) * (1 + len(observed)), where)
        try:
            f["time"].resize((n1,))
            f["time"][n0:n1] = times
            for name, d in self._fields.items():
                d.resize((n1, *self._disk_shape))
                d[n0:n1] = cast[name]
            for name, values in observed.items():
                d = f["observables"][name]
                d.resize((n1,))
                d[n0:n1] = values
            f.flush()
        except Exception as e:
            err = self._fail(where, e)
            self._shrink(n0)
            raise err from e
        self._crcs += [(crc32(times[k:k + 1]), *(crc32(cast[name][k]) for name in self.names))
                       for k in range(len(times))]
        self.n = n1

    @classmethod
    def reopen(cls, path: str | Path, grid: Grid, model: Model) -> "ResultWriter":
        """Continue writing an interrupted or failed result file in place (``tmepde run
        --resume``): its saves so far are re-read once (for the final verification) and
        ``status`` is ``running`` again. :attr:`observables` are the model observables the
        file stores (each :meth:`append` then needs their values)."""
        self = cls.__new__(cls)
        self.grid, self.names = grid, tuple(model.names)
        f = self._reopen(path)
        try:
            self._fields = {name: f["fields"][name] for name in self.names}
            self._disk_shape = tuple(reversed(grid.shape))
            self.n = f["time"].shape[0]
            self._series = [f["time"], *f["observables"].values()]
            self.observables = tuple(o.name for o in model.observables if o.name in f["observables"])
            times = f["time"][:]
            self._crcs = [(crc32(times[k:k + 1]), *(crc32(d[k:k + 1]) for d in self._fields.values()))
                          for k in range(self.n)]
            self.set_status("running")
        except Exception:
            f.close()
            raise
        return self

    def set_restart(self, leaves: Sequence, save_index: int) -> None:
        """Store the time stepper's carry (state plus multistep history, see
        :meth:`tmepde.stepping.Simulator.init`) at save ``save_index`` in ``/restart``, so
        ``tmepde run --resume`` continues exactly. ``leaves``: the carry's arrays in its
        pytree order (``jax.tree.leaves(carry)``; --resume rebuilds the tree from a fresh
        init). Rewritten in place after every chunk."""
        if self._error is not None:
            raise self._error
        arrays = {f"{i:02d}": np.asarray(v) for i, v in enumerate(leaves)}
        f = self._file
        where = f"restart state at save {save_index}"
        new = "restart" not in f
        self._check_room(sum(a.nbytes for a in arrays.values()) if new else 0, where)
        try:
            g = f.require_group("restart")
            if new:
                g.attrs["save_index"] = np.int64(-1)
                g.attrs["description"] = ("time-stepper carry (state and multistep history) at "
                                          "save save_index, for tmepde run --resume")
            g.attrs.modify("save_index", np.int64(-1))  # invalid while rewritten
            for k, a in arrays.items():
                name = f"carry_{k}"  # not "y": that is a coordinate of the root
                if name not in g:
                    d = g.create_dataset(name, shape=a.shape, dtype=a.dtype)
                    for j, n in enumerate(a.shape):  # netCDF dimensions (no phony ones)
                        sc = g.create_dataset(f"{name}_dim{j}", data=np.arange(n, dtype=np.int64))
                        sc.make_scale(f"{name}_dim{j}")
                        d.dims[j].attach_scale(sc)
                g[name][...] = a
            g.attrs.modify("save_index", np.int64(save_index))
            f.flush()
        except Exception as e:
            raise self._fail(where, e) from e

    def _shrink(self, n: int) -> None:
        """Best effort after a failed write: every dataset back to ``n`` saves."""
        try:
            for d in self._series:
                d.resize((n,))
            for d in self._fields.values():
                d.resize((n, *self._disk_shape))
            self._file.flush()
        except Exception:
            pass

    def set_attrs(self, attrs: Mapping) -> None:
        """Add root attributes (e.g. dose event times) and flush."""
        try:
            self._file.attrs.update(attrs)
            self._file.flush()
        except Exception as e:
            raise self._fail("root attributes", e) from e

    def finish(self) -> Path:
        """Close the file, re-read every save and compare it with what was written (CRC-32),
        and only then set ``status = "complete"``; returns the final path. Raises
        :class:`ResultWriteError` (status ``failed: ...`` where it can still be set) when
        the file on disk differs."""
        if self._error is not None:
            raise self._error
        target = self.file_path
        try:
            self._file.flush()
            self._file.close()
            fsync(target)
            problem = verify_saves(target, self.names, self._crcs)
        except Exception as e:
            problem = f"{type(e).__name__}: {' '.join(str(e).split())}"
        return self._seal(target, "complete", problem)


def coordinate_scales(f: h5py.File, grid: Grid, time_name: str = "time") -> list:
    """Root datasets ``x``, ``y``, ``z`` (cell centres, µm) as HDF5 dimension scales, and
    ``/time`` as the time scale. At the root, netCDF-4 readers (xarray with h5netcdf,
    ``open_datatree``) resolve them from every group (a dimension is visible in the group
    that defines it and all groups below)."""
    out = []
    for a, (n, h) in enumerate(zip(grid.shape, grid.spacing)):
        name = AXIS_NAMES[a]
        ds = f.create_dataset(name, data=(np.arange(n) + 0.5) * h)
        radial = grid.geometry == "spherical"
        ds.attrs.update({"units": "µm", "axis": name.upper(),
                         "long_name": ("radius of the shell centre" if radial
                                       else f"{name} of the cell centre")})
        ds.make_scale(name)
        out.append(ds)
    t = f[time_name]
    t.attrs.update({"units": "h", "standard_name": "time", "axis": "T",
                    "long_name": "time since the start of the run"})
    t.make_scale(time_name)
    return out


def attach_scales(d, scales, first: int = 0) -> None:
    """Attach ``scales`` to the axes of ``d`` from axis ``first`` on, labelled by name."""
    for j, sc in enumerate(scales):
        d.dims[first + j].attach_scale(sc)
        d.dims[first + j].label = sc.name.rsplit("/", 1)[-1]


def _netcdf_variables(f: h5py.File, time, scales, fields: Mapping, observables) -> None:
    """Attach the dimension scales to every field (time, [z,] [y,] x) and observable
    (time), give each a ``long_name`` and hard-link it at the root, where
    ``xarray.open_dataset(path, engine="h5netcdf")`` finds it (``/fields/<s>`` and
    ``/observables/<name>`` remain the same datasets)."""
    reserved = {"time", "x", "y", "z", "fields", "observables"}
    for name, d in fields.items():
        attach_scales(d, [time, *reversed(scales)])
        d.attrs["long_name"] = name
    for name, d in observables.items():
        attach_scales(d, [time])
        d.attrs["long_name"] = str(d.attrs.get("description", name))
    for name, d in (*fields.items(), *observables.items()):
        if name in reserved or name in f:
            raise ValueError(f"species or observable name {name!r} clashes with another variable "
                             f"of the result file ({sorted(reserved | set(fields))}); rename it")
        f[name] = d


def read_restart(path: str | Path) -> tuple[list, int, str, str]:
    """(carry leaves in pytree order, number of saves, status, config_toml) of a result file
    to resume; a
    :class:`ResultFileError` when it has no restart state for its last save."""
    with open_h5(Path(path)) as f:
        if decode_text(f.attrs.get("format", "")) != FORMAT:
            raise ResultFileError(f"{str(path)!r} is not a tmepde result file; only runs resume")
        n = f["time"].shape[0] if "time" in f else 0
        status = decode_text(f.attrs.get("status", "?"))
        if status == "complete":
            raise ResultFileError(f"{str(path)!r} is complete; nothing to resume")
        g = f.get("restart")
        idx = int(g.attrs.get("save_index", -1)) if g is not None else -1
        if idx != n - 1 or n == 0:
            raise ResultFileError(f"{str(path)!r} holds no restart state for its last save (save "
                                  f"{n - 1}); it was written by an older tmepde, ended before its "
                                  "first chunk, or is damaged: run the config again")
        carry = [d[()] for k, d in sorted(g.items()) if k.startswith("carry_") and not d.is_scale]
        return carry, n, status, decode_text(f.attrs["config_toml"])


def verify_saves(path, names, crcs) -> str | None:
    """None if ``path`` holds exactly the saves whose CRC-32s are ``crcs`` (per save: time,
    then each field), else what differs first."""
    with h5py.File(path, "r", rdcc_nbytes=0) as f:
        t = f["time"]
        if t.shape[0] != len(crcs):
            return f"{t.shape[0]} saves on disk, {len(crcs)} written"
        times = t[:]
        for k, ref in enumerate(crcs):
            if crc32(times[k:k + 1]) != ref[0]:
                return f"time of save {k} differs on disk"
            for name, c in zip(names, ref[1:]):
                if crc32(f["fields"][name][k:k + 1]) != c:
                    return f"field {name!r} of save {k} (t = {times[k]:g} h) differs on disk"
    return None


def resolve_bcs(model: Model, grid: Grid):
    return tuple(resolve_boundaries(s.boundary, grid.ndim) for s in model.species)


class Result:
    """A result file opened for reading (use as a context manager, or call :meth:`close`).

    Datasets are read lazily: :meth:`field` reads one save of one species.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = open_h5(self.path)
        fmt = decode_text(self._file.attrs.get("format", ""))
        if fmt != FORMAT:
            self._file.close()
            raise ResultFileError(f"{str(self.path)!r} is not a tmepde result file (format attribute "
                                  f"{fmt or None!r}){_other_format_hint(fmt)}")
        self._check_version(FORMAT_VERSION)
        self._validate(lead=1)

    def _validate(self, lead: int) -> None:
        """Check what every reader relies on (root attributes, ``/time``, one field per
        species of shape (``lead`` axes, grid)); a :class:`ResultFileError` names the gap."""
        f, where = self._file, repr(str(self.path))
        try:
            for key in ("species", "grid_shape", "grid_spacing_um"):
                if key not in f.attrs:
                    raise ResultFileError(f"{where} lacks the root attribute {key!r}; it was not "
                                          "written by tmepde or is damaged")
            shape = np.asarray(f.attrs["grid_shape"])
            spacing = np.asarray(f.attrs["grid_spacing_um"], dtype=float)
            if (shape.ndim != 1 or not 1 <= shape.size <= 3 or shape.dtype.kind not in "iu"
                    or (shape < 1).any() or spacing.shape != shape.shape or not (spacing > 0).all()):
                raise ResultFileError(f"{where}: grid_shape {shape.tolist()} / grid_spacing_um "
                                      f"{spacing.tolist()} are not 1 to 3 positive integers / lengths")
            if "time" not in f or not isinstance(f["time"], h5py.Dataset) or f["time"].ndim != 1 \
                    or f["time"].dtype.kind not in "fiu":
                raise ResultFileError(f"{where} has no numeric 1D dataset /time")
            n = f["time"].shape[0]
            species = [decode_text(v) for v in np.atleast_1d(f.attrs["species"])]
            grid = tuple(int(k) for k in shape)
            disk = tuple(reversed(grid)) if self.format_version >= 2 else grid
            fields = f.get("fields")
            for name in species if fields is not None or lead == 1 else ():
                if fields is None or name not in fields or not isinstance(fields[name], h5py.Dataset):
                    raise ResultFileError(f"{where} has no dataset /fields/{name} (species {species})")
                d = fields[name]
                if d.dtype.kind not in "fiu" or d.shape[d.ndim - len(disk):] != disk or d.ndim != lead + len(disk):
                    raise ResultFileError(f"{where}: /fields/{name} has shape {d.shape} and dtype "
                                          f"{d.dtype}; expected numbers of shape (..., {', '.join(map(str, disk))})")
                if lead == 1 and d.shape[0] != n:
                    raise ResultFileError(f"{where}: /fields/{name} holds {d.shape[0]} saves but /time "
                                          f"{n}; the file is damaged")
        except ResultFileError:
            self._file.close()
            raise
        except (KeyError, TypeError, ValueError, OSError) as e:
            self._file.close()
            raise ResultFileError(f"{where} is malformed: {' '.join(str(e).split())}") from None

    def _check_version(self, newest: int) -> None:
        """Files of every earlier format version read; a newer one names the fix."""
        v = self._file.attrs.get("format_version", 1)
        try:
            v = int(v)
        except (TypeError, ValueError):
            v = None
        if v is None or v > newest:
            self._file.close()
            raise ResultFileError(f"{str(self.path)!r} has format_version {v!r}; this tmepde reads up to "
                             f"{newest}: upgrade tmepde (pip install -U tmepde)")
        self.format_version = v

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
        """``running``, ``complete``, ``failed: <why>`` or ``interrupted: <signal>``."""
        return decode_text(self._file.attrs["status"])

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

    def _from_disk(self, a, lead: int) -> np.ndarray:
        """Format 2 stores grid axes reversed (z, y, x); arrays here are (x, y, z)."""
        return to_disk(a, lead) if self.format_version >= 2 else a

    def field(self, name: str, index: int = -1) -> np.ndarray:
        """One save of one species as a numpy array of the grid's shape (nx[, ny[, nz]]);
        negative index counts from the end."""
        return self._from_disk(self._dataset(name)[index], 0)

    def series(self, name: str) -> np.ndarray:
        """All saves of one species, shape (n_saves, *grid_shape)."""
        return self._from_disk(self._dataset(name)[:], 1)

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
        return decode_text(self._file.attrs["config_toml"])

    def to_xarray(self):
        """An ``xarray.Dataset``: every field on (time, [z,] y, x) (CF axis order, as
        stored in format 2) with coordinates x, y, z in µm (cell centres) and time in h, every
        observable on time, each with ``units`` and ``long_name``; root attributes as
        dataset attributes. Works for every format version. Reads the arrays into memory;
        for lazy access use ``xarray.open_dataset(path, engine="h5netcdf")`` (format 2)."""
        return _to_xarray(self)

    @property
    def config(self) -> dict:
        """The resolved config tables (``tomllib`` of :attr:`config_toml`); pass the text to
        :func:`tmepde.config.loads_config` to rebuild the run."""
        return tomllib.loads(self.config_toml)


def _xr_attrs(attrs) -> dict:
    out = {}
    for k, v in attrs.items():
        if k in ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid"):
            continue
        out[k] = decode_text(v) if isinstance(v, (bytes, np.bytes_)) else v
    return out


def _to_xarray(r: "Result", lead=()):
    """Dataset of a result or sweep file, every field on (``lead``..., [z,] y, x) (CF axis
    order) with coordinates in µm and h, every observable on (``lead``...,); attributes
    ``units``/``long_name``. Reads the arrays (not lazy)."""
    import xarray as xr

    g = r.grid
    axes = AXIS_NAMES[:g.ndim]
    coords = {}
    for a, name in enumerate(axes):
        c = (np.arange(g.shape[a]) + 0.5) * g.spacing[a]
        long = ("radius of the shell centre" if g.geometry == "spherical" else f"{name} of the cell centre")
        coords[name] = xr.Variable(name, c, {"units": "µm", "axis": name.upper(), "long_name": long})
    f = r._file
    coords["time"] = xr.Variable("time", f["time"][:], {"units": "h", "standard_name": "time",
                                                        "axis": "T", "long_name": "time since the start of the run"})
    data = {}
    if "fields" in f:
        t_name = "field_time" if "field_time" in f else "time"
        if t_name == "field_time":
            coords["field_time"] = xr.Variable("field_time", f["field_time"][:],
                                               {"units": "h", "standard_name": "time",
                                                "long_name": "time of the stored field saves"})
        for name, d in f["fields"].items():
            a = _xr_attrs(d.attrs)
            a.setdefault("long_name", name)
            disk_axes = tuple(reversed(axes)) if r.format_version >= 2 else axes
            data[name] = xr.Variable((*lead, t_name, *disk_axes), d[...], a).transpose(
                *lead, t_name, *reversed(axes))
    for name, d in f["observables"].items():
        a = _xr_attrs(d.attrs)
        a.setdefault("long_name", str(a.get("description", name)))
        data[name] = xr.Variable((*lead, "time"), d[...], a)
    return xr.Dataset(data, coords=coords, attrs=_xr_attrs(f.attrs))


def open_h5(path: Path) -> h5py.File:
    """h5py.File(path, "r") with one-line errors: FileNotFoundError, or ResultFileError for a
    file that is not HDF5."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ResultFileError(f"{str(path)!r} is not an HDF5 file that opens "
                              f"({' '.join(str(e).split())[:120]})") from None


def _other_format_hint(fmt: str) -> str:
    return {"tmepde-fit": "; it is a 'tmepde fit' file: 'tmepde plot' and 'tmepde info' read it",
            "tmepde-optimize": "; it is a 'tmepde optimize' file: 'tmepde plot' and 'tmepde info' "
                               "read it"}.get(fmt, "")


def open_result(path: str | Path) -> "Result | SweepResult":
    """Open a result file for reading: a :class:`Result`, or a :class:`SweepResult` for a
    sweep file written by ``tmepde sweep``. A file that is missing raises
    FileNotFoundError; one that is not a readable result :class:`ResultFileError`."""
    with open_h5(Path(path)) as f:
        fmt = decode_text(f.attrs.get("format", ""))
    if fmt == SWEEP_FORMAT:
        return SweepResult(path)
    return Result(path)


# -- sweep files (tmepde.sweep; docs/hdf5.md "Sweep files") ------------------------------
SWEEP_FORMAT = "tmepde-sweep"
SWEEP_FORMAT_VERSION = 2  # 2: root coordinates and member/time dimensions (netCDF-4)


def decode_strings(values) -> list[str]:
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
        self._file = open_h5(self.path)
        fmt = decode_text(self._file.attrs.get("format", ""))
        if fmt != SWEEP_FORMAT:
            self._file.close()
            raise ResultFileError(f"{str(self.path)!r} is not a tmepde sweep file (format attribute {fmt!r})")
        self._check_version(SWEEP_FORMAT_VERSION)
        self._validate(lead=2)

    def to_xarray(self):
        """An ``xarray.Dataset`` with a leading ``member`` dimension: observables on
        (member, time), stored fields on (member, field_time, [z,] y, x), and the members
        table (arm, done, status, varied parameters) as member coordinates."""
        import xarray as xr

        ds = _to_xarray(self, lead=("member",))
        m = self.members
        extra = {k: ("member", m[k]) for k in ("arm", "arm_index", "grid_index", "patient", "done", "status")}
        for k, v in self.params.items():
            if v.ndim == 1:
                extra[f"param_{k}"] = ("member", v)
        return ds.assign_coords(member=np.arange(len(self)), **extra)
    def __len__(self) -> int:
        return int(self._file.attrs["n_members"])

    @property
    def n_members(self) -> int:
        return len(self)

    @property
    def arm_names(self) -> list[str]:
        return decode_strings(self._file.attrs["arms"])

    @property
    def members(self) -> dict:
        m = self._file["members"]
        out = {k: m[k][:] for k in ("index", "arm_index", "grid_index", "patient", "done")}
        out["arm"] = np.asarray(decode_strings(m["arm"][:]))
        out["status"] = np.asarray(decode_strings(m["status"][:]))
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
        return self._from_disk(self._dataset(name)[member, index], 0)

    def series(self, name: str, member: int = 0) -> np.ndarray:
        """All stored saves of one species of one member, ``(T_f, *grid_shape)``."""
        return self._from_disk(self._dataset(name)[member], 1)

    @property
    def summary(self) -> dict:
        """Per-member response: ``best``, ``horizon`` (CR/PR/SD/PD/NE), ``best_change``,
        ``horizon_change`` (%), and ``arms`` (the per-arm table as column arrays)."""
        if "summary" not in self._file:
            return {}
        g = self._file["summary"]
        out = {k: g[k][:] for k in ("best_change", "horizon_change")}
        out.update({k: np.asarray(decode_strings(g[k][:])) for k in ("best", "horizon")})
        out["arms"] = {k: (np.asarray(decode_strings(v[:])) if k == "arm" else v[:]) for k, v in g["arms"].items()}
        for k, v in g.attrs.items():
            out[k] = v
        return out
