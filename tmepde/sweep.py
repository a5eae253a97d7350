"""Sweeps and virtual cohorts from a config's ``[sweep]`` table: one compiled batch, one file.

A sweep's members are every combination of *arm* × *grid point* × *virtual patient*
(arm-major, patient fastest). Each member's model parameters (and optionally initial
conditions) are the config's, then the arm's ``set``, then the grid point's values, then the
patient's log-normal factors. All members run through :func:`tmepde.batch.iter_batch`
(``jax.vmap`` of one :class:`~tmepde.stepping.Simulator`, chunked to fit device memory and
sharded over every device), and each finished chunk is written to one HDF5 file with a
leading member axis (layout: docs/hdf5.md, "sweep files") and flushed.

The cohort summary classifies each member's tumor burden curve RECIST-like
(:func:`classify`) and tabulates response rates per arm with Wilson 95 % intervals
(:func:`response_table`).

    from tmepde.sweep import run_sweep
    path = run_sweep("cohort.toml", "cohort.h5")   # a config with [sweep]; then open_result(path)
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import signal
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np

from .config import Config, ConfigError, load_config
from .io import (SWEEP_FORMAT, SWEEP_FORMAT_VERSION, TransactionalFile, attach_scales, check_output,
                 coordinate_scales, crc32, decode_text, fsync, species_stats, to_disk)

__all__ = ["SWEEP_FORMAT", "Plan", "plan_sweep", "run_sweep", "classify", "wilson",
           "response_table", "table_csv", "table_markdown", "diameter_exponent", "CLASSES"]

CLASSES = ("CR", "PR", "SD", "PD", "NE")  # best first; NE = not evaluable
Z95 = 1.959963984540054  # standard normal 97.5 % quantile


# -- members ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """Every member of a sweep, before anything runs.

    values: ``{key: (B, ...) array}`` for every varied key (model parameters and
    ``initial.<species>.<key>``), float64. arm_index, grid_index, patient: ``(B,)`` ints.
    """

    arm_names: list
    arm_index: np.ndarray
    grid_index: np.ndarray
    patient: np.ndarray
    values: dict
    param_keys: list   # varied model parameters
    initial_keys: list  # varied initial-condition keys

    @property
    def n(self) -> int:
        return len(self.arm_index)


def _sweep_table(config: Config) -> dict:
    if "sweep" not in config.data:
        raise ConfigError("sweep", "the config has no [sweep] table; add one, e.g. [sweep.cohort] "
                          "n = 100, cv = { growth_tumor = 0.3 } (see docs/batch.md), or pass -n N")
    return config.data["sweep"]


def _initial_value(config: Config, key: str):
    _, species, name = key.split(".")
    return config.data["initial"][species][0][name]


def plan_sweep(config: Config) -> Plan:
    """Members of ``config``'s ``[sweep]`` table (validated already by the config schema)."""
    sw = _sweep_table(config)
    from .runner import precision

    with precision(config.dtype):
        base = {k: np.asarray(v, np.float64) for k, v in config.params(config.dtype).items()}
    arms = sw.get("arms") or [{"name": "base", "set": {}}]
    grid = sw.get("grid", {})
    cohort = sw.get("cohort", {"n": 1, "seed": 0, "cv": {}})
    keys = list(dict.fromkeys([k for a in arms for k in a["set"]] + list(grid) + sorted(cohort["cv"])))
    param_keys = [k for k in keys if not k.startswith("initial.")]
    initial_keys = [k for k in keys if k.startswith("initial.")]

    combos = list(itertools.product(*grid.values())) or [()]
    n_pat = cohort["n"]
    factors = {}
    if cohort["cv"]:
        from .batch import sample_lognormal  # the same draws as the Python API

        ones = {k: np.ones(np.shape(base[k])) for k in cohort["cv"]}
        drawn, _ = sample_lognormal(ones, cohort["cv"], n_pat, cohort["seed"])
        factors = {k: np.asarray(drawn[k], np.float64) for k in cohort["cv"]}

    n = len(arms) * len(combos) * n_pat
    a_idx, g_idx, p_idx = (x.reshape(-1) for x in np.meshgrid(
        np.arange(len(arms)), np.arange(len(combos)), np.arange(n_pat), indexing="ij"))
    values = {}
    for k in keys:
        default = base[k] if k in base else np.asarray(_initial_value(config, k), np.float64)
        per_arm = np.stack([np.asarray(a["set"].get(k, default), np.float64) for a in arms])
        out = per_arm[a_idx]
        if k in grid:
            g = list(grid).index(k)
            per_combo = np.stack([np.asarray(c[g], np.float64) for c in combos])
            out = per_combo[g_idx]
        if k in factors:
            out = out * factors[k][p_idx]
        values[k] = out
    assert all(v.shape[0] == n for v in values.values())
    return Plan([a["name"] for a in arms], a_idx, g_idx, p_idx, values, param_keys, initial_keys)


class _InitialStates:
    """Initial state of each member, built once per distinct initial-condition combination."""

    def __init__(self, config: Config, plan: Plan, dtype):
        self.config, self.plan, self.dtype = config, plan, dtype
        self.cache = {}

    def __call__(self, indices) -> np.ndarray:
        return np.stack([self.state(int(i)) for i in indices])

    def state(self, i: int) -> np.ndarray:
        keys = self.plan.initial_keys
        combo = tuple(self.plan.values[k][i].item() for k in keys)
        if combo not in self.cache:
            from .config import resolve

            raw = copy.deepcopy(self.config.data)
            for k, v in zip(keys, combo):
                _, species, name = k.split(".")
                spec = _initial_spec(self.config, k)
                raw["initial"][species][0][name] = int(round(v)) if spec.type.name == "integer" else float(v)
            self.cache[combo] = resolve(raw, self.config.base_dir).initial_state().astype(self.dtype)
        return self.cache[combo]


def _initial_spec(config: Config, key: str):
    from .config import INITIAL

    _, species, name = key.split(".")
    return INITIAL[config.data["initial"][species][0]["type"]][name]


# -- response classification -----------------------------------------------------------
def diameter_exponent(grid) -> float:
    """Exponent turning a burden (area in 2D, volume in 3D) into a diameter-equivalent:
    1/2 in 2D, 1/3 in 3D and for spherical (radial) grids, 1 for a 1D transect."""
    if grid.geometry == "spherical":
        return 1.0 / 3.0
    return 1.0 / grid.ndim


def classify(burden, exponent: float, *, cr_fraction: float = 1e-3, detection: float | None = None,
             pr_change: float = -30.0, pd_change: float = 20.0) -> dict:
    """RECIST-like response of burden curves ``(B, T)`` (save 0 = baseline).

    change(t) = 100 × ((b(t)/b(0))^exponent − 1) %, a diameter-equivalent change. At each
    save t >= 1: CR if b(t) < cr_fraction × b(0) (or < ``detection``), PR if change <=
    ``pr_change``, PD if change >= ``pd_change``, SD otherwise. *Best* response is the best
    class over t >= 1 (best change = its minimum); *horizon* response is the class at the last
    save. Members with a non-finite curve or no baseline burden are NE (not evaluable).

    Returns ``change (B, T)``, ``best_change``, ``horizon_change`` (B,) in % and ``best``,
    ``horizon`` (B,) class names.
    """
    b = np.asarray(burden, np.float64)
    if b.ndim != 2 or b.shape[1] < 2:
        raise ValueError(f"classify: burden must have shape (members, saves >= 2), got {b.shape}")
    b0 = b[:, :1]
    ok = np.isfinite(b).all(axis=1) & (b0[:, 0] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok[:, None], b / np.where(b0 > 0, b0, 1.0), np.nan)
        change = 100.0 * (np.maximum(ratio, 0.0) ** exponent - 1.0)
    cr = ratio < cr_fraction
    if detection is not None:
        cr |= b < detection
    rank = np.where(cr, 0, np.where(change <= pr_change, 1, np.where(change >= pd_change, 3, 2)))
    rank = np.where(ok[:, None], rank, 4)[:, 1:]
    best_rank = rank.min(axis=1)
    names = np.asarray(CLASSES)
    return {
        "change": change,
        "best_change": np.where(ok, np.nanmin(np.where(ok[:, None], change, 0.0)[:, 1:], axis=1), np.nan),
        "horizon_change": change[:, -1],
        "best": names[best_rank],
        "horizon": names[rank[:, -1]],
    }


def wilson(k, n, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (95 % by default); (nan, nan) for n = 0."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def response_table(arm_names: Sequence[str], arm_index, best, horizon) -> list[dict]:
    """Per-arm counts of the best response and rates with Wilson 95 % intervals.

    ORR = (CR + PR)/n, DCR = (CR + PR + SD)/n (best response); ORR_horizon at the last save.
    NE members count in n (intention to treat).
    """
    arm_index, best, horizon = np.asarray(arm_index), np.asarray(best), np.asarray(horizon)
    rows = []
    for a, name in enumerate(arm_names):
        sel = arm_index == a
        n = int(sel.sum())
        row = {"arm": name, "n": n}
        for c in CLASSES:
            row[c] = int((best[sel] == c).sum())
        for label, k in (("ORR", row["CR"] + row["PR"]), ("DCR", row["CR"] + row["PR"] + row["SD"]),
                         ("ORR_horizon", int(np.isin(horizon[sel], ("CR", "PR")).sum()))):
            lo, hi = wilson(k, n)
            row[label], row[f"{label}_lo"], row[f"{label}_hi"] = (k / n if n else math.nan), lo, hi
        rows.append(row)
    return rows


TABLE_COLUMNS = ("arm", "n", *CLASSES, "ORR", "ORR_lo", "ORR_hi", "DCR", "DCR_lo", "DCR_hi",
                 "ORR_horizon", "ORR_horizon_lo", "ORR_horizon_hi")


def table_csv(rows: Sequence[Mapping]) -> str:
    lines = [",".join(TABLE_COLUMNS)]
    for r in rows:
        lines.append(",".join(str(r[c]) if not isinstance(r[c], float) else f"{r[c]:.6g}"
                              for c in TABLE_COLUMNS))
    return "\n".join(lines) + "\n"


def table_markdown(rows: Sequence[Mapping], note: str = "") -> str:
    def pct(r, k):
        return f"{100 * r[k]:.0f} % [{100 * r[k + '_lo']:.0f}, {100 * r[k + '_hi']:.0f}]"

    out = ["| arm | n | CR | PR | SD | PD | NE | ORR (best) [95 % CI] | DCR (best) [95 % CI] "
           "| ORR at horizon [95 % CI] |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['arm']} | {r['n']} | " + " | ".join(str(r[c]) for c in CLASSES)
                   + f" | {pct(r, 'ORR')} | {pct(r, 'DCR')} | {pct(r, 'ORR_horizon')} |")
    return "\n".join(out) + ("\n\n" + note if note else "") + "\n"


# -- the file ---------------------------------------------------------------------------
class SweepWriter(TransactionalFile):
    """Sweep file with a leading member axis; :meth:`write` fills members chunk by chunk and
    flushes, so an interrupted sweep keeps every finished chunk (``members/done``).

    Like :class:`~tmepde.io.ResultWriter`: an existing file is refused unless ``overwrite``
    (then replaced only when this one is complete; until then and after a failure it is
    ``<stem>.partial.h5``), a failed write raises
    :class:`~tmepde.io.ResultWriteError` and leaves the chunk's members ``done = False`` with
    NaN observables, and :meth:`finish` re-reads everything written before ``complete``."""

    def __init__(self, path, config: Config, plan: Plan, times, *, dtype, save_fields: bool,
                 field_stride: int, burden_species: Sequence[str], model_observables=(),
                 overwrite: bool = False, protect=(), chunk: int | None = None):
        from .io import FORMAT_VERSION, tmepde_version

        grid, model, n, T = config.grid, config.model, plan.n, len(times)
        self.names = tuple(model.names)
        self.stride = field_stride
        self.save_fields = save_fields
        self.burden_species = list(burden_species)
        self._written = []  # (dataset path, member slice, crc32) of every write, for finish()
        self._file = f = self._open(path, overwrite, protect)
        string = h5py.string_dtype()
        f.attrs.update({
            "format": SWEEP_FORMAT, "format_version": SWEEP_FORMAT_VERSION,
            "result_format_version": FORMAT_VERSION, "tmepde_version": tmepde_version(),
            "model": model.name,
            "species": np.array(self.names, dtype=string),
            "grid_shape": np.asarray(grid.shape, dtype=np.int64),
            "grid_spacing_um": np.asarray(grid.spacing, dtype=np.float64),
            "cell_volume_um3": grid.cell_volume, "grid_geometry": grid.geometry,
            "time_units": "h", "config_toml": config.to_toml(), "n_members": n,
            "arms": np.array(plan.arm_names, dtype=string),
            "burden_species": np.array(self.burden_species, dtype=string),
        })
        if chunk:  # members per compiled call: --resume runs the same chunks
            f.attrs["chunk"] = np.int64(chunk)
        self._write_status("running")
        f.create_dataset("time", data=np.asarray(times, np.float64)).attrs["units"] = "h"
        scales = coordinate_scales(f, grid)
        member = f.create_dataset("member", data=np.arange(n, dtype=np.int64))
        member.attrs["long_name"] = "sweep member (arm-major, patient fastest)"
        member.make_scale("member")
        arm = f.create_dataset("arm_number", data=np.arange(len(plan.arm_names), dtype=np.int64))
        arm.attrs["long_name"] = "arm index (names: root attribute arms, summary/arms/arm)"
        arm.make_scale("arm_number")
        m = f.create_group("members")
        m.create_dataset("index", data=np.arange(n, dtype=np.int64))
        m.create_dataset("arm", data=np.array([plan.arm_names[a] for a in plan.arm_index], dtype=object),
                         dtype=string)
        m.create_dataset("arm_index", data=plan.arm_index.astype(np.int64))
        m.create_dataset("grid_index", data=plan.grid_index.astype(np.int64))
        m.create_dataset("patient", data=plan.patient.astype(np.int64))
        m.create_dataset("done", data=np.zeros(n, bool))
        m.create_dataset("status", data=np.array(["pending"] * n, dtype=object), dtype=string)
        pg = m.create_group("params")
        for k, v in plan.values.items():
            pg.create_dataset(k, data=v)
        obs = f.create_group("observables")
        chunk_b = max(1, min(n, 4096 // max(1, T)))
        vol_units = "µm^3" if grid.geometry == "spherical" else (f"µm^{grid.ndim}" if grid.ndim > 1 else "µm")
        for s in model.species:
            for kind in ("total", "min", "max"):
                d = obs.create_dataset(f"{kind}_{s.name}", shape=(n, T), dtype=np.float64,
                                       chunks=(chunk_b, T), fillvalue=np.nan)
                d.attrs["units"] = f"{vol_units}·{s.units or '1'}" if kind == "total" else (s.units or "1")
        for o in model_observables:
            d = obs.create_dataset(o.name, shape=(n, T), dtype=np.float64, chunks=(chunk_b, T),
                                   fillvalue=np.nan)
            d.attrs["units"] = o.units
            d.attrs["description"] = o.description
        if self.burden_species:
            d = obs.create_dataset("burden", shape=(n, T), dtype=np.float64, chunks=(chunk_b, T),
                                   fillvalue=np.nan)
            d.attrs["units"] = vol_units
            d.attrs["description"] = "tumor burden: sum of total_<s> over " + ", ".join(self.burden_species)
        if save_fields:
            ft = np.asarray(times, np.float64)[::field_stride]
            f.create_dataset("field_time", data=ft).attrs["units"] = "h"
            fg = f.create_group("fields")
            level = int(config.data["output"]["compression"])
            gzip = {"compression": "gzip", "compression_opts": level} if level else {}
            for s in model.species:
                disk = tuple(reversed(grid.shape))  # (…, z, y, x) as in result files
                d = fg.create_dataset(s.name, shape=(n, len(ft), *disk), dtype=np.dtype(dtype),
                                      chunks=(1, 1, *disk), **gzip)
                d.attrs["units"] = s.units
                d.attrs["long_name"] = s.name
        _attach_sweep_dims(f, member, scales)
        try:
            f.flush()
        except Exception as e:
            raise self._fail("creating the file", e) from e

    @classmethod
    def reopen(cls, path, names: Sequence[str], *, save_fields: bool, field_stride: int,
               burden_species: Sequence[str]) -> "SweepWriter":
        """Continue an interrupted or failed sweep file in place (``tmepde sweep --resume``):
        the finished members' data are re-read once (CRC-32, for :meth:`finish`) and
        ``status`` is ``running`` again."""
        self = cls.__new__(cls)
        self.names, self.stride, self.save_fields = tuple(names), field_stride, save_fields
        self.burden_species = list(burden_species)
        f = self._reopen(path)
        try:
            self._written = []
            keys = [f"observables/{k}" for k in f["observables"]]
            keys += [f"fields/{k}" for k in f["fields"]] if "fields" in f else []
            for a, b in _runs(f["members/done"][:]):
                sl = slice(a, b)
                self._written += [(k, sl, crc32(f[k][sl])) for k in keys + ["members/done"]]
            self.set_status("running")
        except Exception:
            f.close()
            raise
        return self

    def write(self, members: slice, totals, mins, maxs, finite, fields=None, model_obs=None,
              collapsed=None) -> None:
        """Chunk of members: observables ``(b, T, S)``, finite ``(b, T, S)`` bools,
        fields ``(b, T_f, S, *shape)`` or None, the model's observables ``{name: (b, T)}``,
        ``collapsed``: (b,) messages of members whose field collapsed (see
        :func:`collapse_messages`; empty string: none) or None.
        The members' ``done`` flags are set only after their data reached the file."""
        if self._error is not None:
            raise self._error
        f = self._file
        data = {f"observables/{k}": np.asarray(v, np.float64) for k, v in (model_obs or {}).items()}
        for i, name in enumerate(self.names):
            data[f"observables/total_{name}"] = np.asarray(totals[:, :, i], np.float64)
            data[f"observables/min_{name}"] = np.asarray(mins[:, :, i], np.float64)
            data[f"observables/max_{name}"] = np.asarray(maxs[:, :, i], np.float64)
        if self.burden_species:
            idx = [self.names.index(s) for s in self.burden_species]
            data["observables/burden"] = np.asarray(totals[:, :, idx].sum(axis=2), np.float64)
        if fields is not None:
            for i, name in enumerate(self.names):
                data[f"fields/{name}"] = np.ascontiguousarray(to_disk(fields[:, :, i], 2),
                                                              dtype=f["fields"][name].dtype)
        self._check_room(sum(v.nbytes for v in data.values()),
                         f"members {members.start}..{members.stop - 1}; members written before them are kept")
        try:
            for k, v in data.items():
                f[k][members] = v
            f.flush()
        except Exception as e:
            err = self._fail(f"members {members.start}..{members.stop - 1}; members written "
                             "before them are kept", e)
            try:  # no half-written members: back to NaN, done stays False
                for k in data:
                    if k.startswith("observables/"):
                        f[k][members] = np.nan
                f.flush()
            except Exception:
                pass
            raise err from e
        self._written += [(k, members, crc32(v)) for k, v in data.items()]
        status = []
        for j, ok in enumerate(finite):
            if ok.all() and collapsed is not None and collapsed[j]:
                status.append(f"failed: {collapsed[j]}")
            elif ok.all():
                status.append("complete")
            else:
                t_bad = int(np.argmin(ok.all(axis=1)))
                s_bad = self.names[int(np.argmin(ok[t_bad]))]
                status.append(f"failed: field {s_bad!r} became non-finite at save {t_bad}")
        try:
            f["members"]["status"][members] = np.array(status, dtype=object)
            f["members"]["done"][members] = True
            f.flush()
        except Exception as e:
            raise self._fail(f"member flags {members.start}..{members.stop - 1}", e) from e
        self._written.append(("members/done", members, crc32(np.ones(members.stop - members.start, bool))))

    def finish(self, status: str = "complete") -> Path:
        """Close, re-read every chunk written (CRC-32), write the response summary, and only
        then set ``status``; returns the final path. :class:`~tmepde.io.ResultWriteError`
        (status ``failed: ...`` where it can be set) if the file differs."""
        if self._error is not None:
            raise self._error
        target = self.file_path
        problem = None
        try:
            self._file.flush()
            self._file.close()
            fsync(target)
            with h5py.File(target, "r", rdcc_nbytes=0) as f:
                for k, sl, c in self._written:
                    if crc32(f[k][sl]) != c:
                        problem = f"{k} of members {sl.start}..{sl.stop - 1} differs on disk"
                        break
            if problem is None:
                summarize(target, tables=self.path)
        except Exception as e:
            problem = f"{type(e).__name__}: {' '.join(str(e).split())}"
        return self._seal(target, status, problem)



def collapse_messages(maxs, names, nonnegative, times) -> np.ndarray:
    """Per member, how a non-negative field collapsed (:func:`tmepde.runner.collapse_mask`,
    the rule of a single run): the clipping of negatives hid an unstable step.
    maxs: (b, T, S) per-save maxima; returns (b,) messages ('' where none)."""
    from .runner import collapse_mask

    bad = collapse_mask(maxs, nonnegative)
    out = np.full(maxs.shape[0], "", dtype=object)
    for j in np.flatnonzero(bad.any(axis=(1, 2))):
        k = int(np.argmax(bad[j].any(axis=1)))
        species = names[int(np.argmax(bad[j, k]))]
        out[j] = (f"field {species!r} collapsed to exactly 0 everywhere by t = {float(times[k + 1]):g} h "
                  "(the clipping of negatives hid an unstable step; try a smaller time.dt)")
    return out


def _attach_sweep_dims(f: h5py.File, member, scales) -> None:
    """netCDF-4 dimensions of a sweep file: ``member`` on every per-member dataset,
    ``time`` on the observables, ``field_time`` and x, y, z on the fields (all scales at the
    root, so ``xarray.open_datatree(path, engine="h5netcdf")`` resolves them)."""
    time = f["time"]
    for d in f["members"].values():
        if isinstance(d, h5py.Dataset):
            d.dims[0].attach_scale(member)
    pg = f["members/params"]
    for key, d in list(pg.items()):
        d.dims[0].attach_scale(member)
        for j, n in enumerate(d.shape[1:]):  # a vector-valued parameter: its own axis
            sc = pg.create_dataset(f"{key}_axis{j + 1}", data=np.arange(n, dtype=np.int64))
            sc.make_scale(f"{key}_axis{j + 1}")
            d.dims[j + 1].attach_scale(sc)
    for d in f["observables"].values():
        attach_scales(d, [member, time])
        d.attrs["long_name"] = str(d.attrs.get("description", d.name.rsplit("/", 1)[-1]))
    if "fields" in f:
        ft = f["field_time"]
        ft.attrs.update({"standard_name": "time", "long_name": "time of the stored field saves"})
        ft.make_scale("field_time")
        for d in f["fields"].values():
            attach_scales(d, [member, ft, *reversed(scales)])


def _write_summary(f: h5py.File, result: dict, rows: list, exponent: float, thresholds: dict,
                   csv: str, markdown: str) -> None:
    """``/summary``: per-member classes and changes, the per-arm table, thresholds."""
    g = f.require_group("summary")
    string = h5py.string_dtype()
    member = f["member"] if "member" in f else None
    for k in ("best_change", "horizon_change"):
        d = g.create_dataset(k, data=result[k])
        d.attrs["units"] = "%"
        if member is not None:
            d.dims[0].attach_scale(member)
    for k in ("best", "horizon"):
        d = g.create_dataset(k, data=result[k].astype(object), dtype=string)
        if member is not None:
            d.dims[0].attach_scale(member)
    arms = g.create_group("arms")
    for c in TABLE_COLUMNS:
        vals = [r[c] for r in rows]
        d = arms.create_dataset(c, data=np.array(vals, dtype=object) if c == "arm" else np.asarray(vals),
                                **({"dtype": string} if c == "arm" else {}))
        if "arm_number" in f and f["arm_number"].shape == d.shape:
            d.dims[0].attach_scale(f["arm_number"])
    g.attrs.update({"diameter_exponent": exponent, "csv": csv, "markdown": markdown,
                    **{k: v for k, v in thresholds.items() if v is not None}})


def _burden_species(config: Config) -> list:
    sw = config.data["sweep"]
    if "burden" in sw:
        return list(sw["burden"])
    return [s for s in ("tumor", "stem") if s in config.model.names]


def summarize(path, tables=None) -> list[dict] | None:
    """(Re)compute the response summary of a sweep file from its burden observable; writes
    ``/summary`` and ``<stem>_summary.{csv,md}`` next to ``tables`` (default: the file).
    Returns the table rows (None when the sweep has no burden).

    Reads only arrays and the stored config's ``[sweep]`` thresholds (as TOML data): it
    never imports or calls the model the file names."""
    import tomllib

    from .grid import Grid

    with h5py.File(path, "r") as f:
        if "burden" not in f["observables"]:
            return None
        burden = f["observables/burden"][:]
        arm_index = f["members/arm_index"][:]
        done = f["members/done"][:]
        arm_names = _text_list(f.attrs["arms"])
        burden_species = _text_list(f.attrs.get("burden_species", []))
        grid = Grid(tuple(int(n) for n in f.attrs["grid_shape"]),
                    tuple(float(h) for h in f.attrs["grid_spacing_um"]),
                    geometry=decode_text(f.attrs.get("grid_geometry", "cartesian")))
        sw = tomllib.loads(decode_text(f.attrs["config_toml"])).get("sweep", {})
    sw = {"cr_fraction": 1e-3, "pr_change": -30.0, "pd_change": 20.0, **sw}
    exponent = diameter_exponent(grid)
    thresholds = {k: sw.get(k) for k in ("cr_fraction", "detection", "pr_change", "pd_change")}
    res = classify(burden, exponent, **thresholds)
    res["best"][~done] = "NE"
    res["horizon"][~done] = "NE"
    rows = response_table(arm_names, arm_index, res["best"], res["horizon"])
    note = (f"Burden = total of {', '.join(burden_species)}; change = diameter-equivalent "
            f"(burden^{exponent:.3g}) vs baseline; CR < {sw['cr_fraction']:g} × baseline"
            + (f" or < {sw['detection']:g}" if sw.get("detection") is not None else "")
            + f", PR <= {sw['pr_change']:g} %, PD >= +{sw['pd_change']:g} %. "
            "Best = best class over all saves after baseline. Rates with Wilson 95 % intervals.")
    csv, md = table_csv(rows), table_markdown(rows, note)
    path = Path(path)
    with h5py.File(path, "r+") as f:
        if "summary" in f:
            del f["summary"]
        _write_summary(f, res, rows, exponent, thresholds, csv, md)
    stem = Path(tables if tables is not None else path).with_suffix("")
    Path(f"{stem}_summary.csv").write_text(csv, encoding="utf-8")
    Path(f"{stem}_summary.md").write_text(md, encoding="utf-8")
    return rows


def _text_list(values) -> list[str]:
    return [decode_text(v) for v in np.atleast_1d(values)]


def _runs(mask) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of consecutive True entries of a 1-D bool mask."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _read_unfinished(path) -> tuple[str, np.ndarray, list, dict, int | None]:
    """(config_toml, done (B,), member statuses, stored varied values, chunk) of a sweep file
    to resume; a :class:`~tmepde.io.ResultFileError` for anything else."""
    from .io import ResultFileError, open_h5

    with open_h5(Path(path)) as f:
        where = repr(str(path))
        if decode_text(f.attrs.get("format", "")) != SWEEP_FORMAT:
            raise ResultFileError(f"{where} is not a tmepde sweep file; resume a run with "
                                  "tmepde run --resume")
        if decode_text(f.attrs.get("status", "?")).startswith("complete"):
            raise ResultFileError(f"{where} is complete; nothing to resume")
        try:
            done = f["members/done"][:].astype(bool)
            status = [decode_text(v) for v in f["members/status"][:]]
            values = {k: d[:] for k, d in f["members/params"].items() if not d.is_scale}
            chunk = int(f.attrs["chunk"]) if "chunk" in f.attrs else None
            return decode_text(f.attrs["config_toml"]), done, status, values, chunk
        except KeyError as e:
            raise ResultFileError(f"{where} lacks {e}; it is damaged or was written by an older "
                                  "tmepde: run the sweep again") from None


# -- running ----------------------------------------------------------------------------
def run_sweep(config: Config | str | Path, out_path: str | Path | None = None, *,
              progress: bool = True, overrides: Sequence[str] = (), n: int | None = None,
              seed: int | None = None, chunk: int | None = None, devices=None,
              overwrite: bool = False, resume: str | Path | None = None) -> Path:
    """Run every member of a config's ``[sweep]`` and write the sweep file; returns its path.

    config: a :class:`Config` or TOML file (``overrides`` are ``dotted.key=value``).
    n, seed: override ``sweep.cohort.n`` / ``sweep.cohort.seed``. chunk: members per compiled
    call (default ``sweep.chunk``, else automatic). devices: JAX devices to shard over
    (default all). Also writes ``<stem>_summary.{csv,md}`` when the sweep has a burden.
    overwrite: replace an existing sweep file (else :class:`~tmepde.io.OutputExistsError`);
    the new sweep is written as ``<stem>.partial.h5`` and replaces the old file only once
    complete (an interrupted or failed one stays there, the old file untouched).
    resume: an interrupted or failed sweep file to finish in place instead (``config``,
    ``out_path``, ``overrides``, ``n``, ``seed`` and ``chunk`` are then ignored: the sweep is
    the file's stored config, in the file's chunks). Finished members (``members/done``)
    are kept as they are; only the others run, so the finished file equals an uninterrupted
    sweep (same device and dtype).

    SIGINT/SIGTERM stop after the chunk being written (:class:`~tmepde.runner.RunInterrupted`,
    ``status = "interrupted: SIGINT"``); a failed write raises
    :class:`~tmepde.io.ResultWriteError`; ``complete`` only after every chunk was re-read.
    """
    overrides = list(overrides)
    done = stored_status = None
    if resume is not None:
        from .config import loads_config

        text, done, stored_status, stored_values, chunk = _read_unfinished(resume)
        config, overrides, n, seed = loads_config(text, source=str(resume)), [], None, None
        out_path = Path(resume)
    if n is not None:
        overrides.append(f"sweep.cohort.n={int(n)}")
    if seed is not None:
        overrides.append(f"sweep.cohort.seed={int(seed)}")
    config_path = None
    if not isinstance(config, Config):
        config_path = config
        config = load_config(config, overrides)
    elif overrides:
        config = config.replace(*overrides)
    sw = _sweep_table(config)
    out_path = Path(out_path if out_path is not None else sw["path"])
    if resume is None:
        check_output(out_path, overwrite=overwrite, protect=(config_path,))

    from .runner import precision

    with precision(config.dtype):  # 64-bit JAX for a float64 sweep, for this sweep only
        return _run_members(config, out_path, config_path, sw, progress=progress, chunk=chunk,
                            devices=devices, overwrite=overwrite, resume=resume, done=done,
                            stored_status=stored_status, stored_values=stored_values if resume is not None else None)


def _run_members(config: Config, out_path: Path, config_path, sw: Mapping, *, progress, chunk, devices,
                 overwrite, resume, done, stored_status, stored_values) -> Path:
    """The body of :func:`run_sweep` once its config is resolved: plan, compute, write."""
    import jax
    import jax.numpy as jnp

    from . import batch
    from .runner import RunInterrupted, StopOnSignals, build

    setup = build(config)
    sim = setup.simulator
    plan = plan_sweep(config)
    if resume is not None:
        from .io import ResultFileError

        if len(done) != plan.n or set(stored_values) != set(plan.values) or not all(
                np.array_equal(stored_values[k], v) for k, v in plan.values.items()):
            raise ResultFileError(f"{str(out_path)!r}: its members differ from its stored config's "
                                  "[sweep] (another tmepde version?); run the sweep again")
    else:
        done = np.zeros(plan.n, bool)
    params = dict(setup.params)
    for k in plan.param_keys:
        params[k] = jnp.asarray(plan.values[k], sim.dtype)
    y0 = _InitialStates(config, plan, setup.y0.dtype) if plan.initial_keys else setup.y0
    if not np.isfinite(setup.y0).all():
        raise ConfigError("initial", "the initial state is not finite (NaN or inf); check [initial]")
    times = np.asarray(sim.save_times(setup.n_saves), np.float64)
    chunk = chunk or sw.get("chunk") or batch.auto_chunk(sim, setup.n_saves, plan.n)
    stride = sw["field_stride"]
    volumes = jnp.asarray(config.grid.cell_volumes(), sim.dtype)

    @jax.jit
    def reduce(out):  # (b, T, S, *shape) -> per-save totals, min, max, finite: (b, T, S)
        axes = tuple(range(3, out.ndim))
        return (*species_stats(out, volumes), jnp.isfinite(out).all(axis=axes))

    model_obs = tuple(getattr(config.model, "observables", ()))
    observe = None
    if model_obs:  # the model's own summaries (tumor burden, PD-L1, ...), per member and save
        t_j = jnp.asarray(times, sim.dtype)
        p_axes = {k: (0 if k in plan.param_keys else None) for k in params}

        def member_obs(p, ys):
            p = {k: jnp.asarray(v, sim.dtype) for k, v in p.items()}
            return jax.vmap(lambda t, y: config.model.observe(t, y, p, config.grid))(t_j, ys)

        observe = jax.jit(jax.vmap(member_obs, in_axes=(p_axes, 0)))

    from .progress import Progress

    # Several hosts (after jax.distributed.initialize()): every process runs its shards,
    # gathers the chunk's results, and process 0 alone writes the file.
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        def host(x):
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    else:
        host = np.asarray
    lead = jax.process_index() == 0
    def unfinished():  # (member slice, states) of every member not done, in the original chunks
        for a, b in _runs(~done):
            sub = {k: (v[a:b] if k in plan.param_keys else v) for k, v in params.items()}
            y_sub = (lambda idx, a=a: y0(np.asarray(idx) + a)) if callable(y0) else y0
            for members, out in batch.iter_batch(sim, sub, plan.param_keys, y_sub, setup.n_saves,
                                                 chunk=chunk, devices=devices, n=b - a):
                yield slice(a + members.start, a + members.stop), out

    with StopOnSignals() as stop:
        if not lead:
            writer = None
        elif resume is None:
            writer = SweepWriter(out_path, config, plan, times, dtype=sim.dtype,
                                 save_fields=sw["save_fields"], field_stride=stride,
                                 burden_species=_burden_species(config), model_observables=model_obs,
                                 overwrite=overwrite, protect=(config_path,), chunk=chunk)
        else:
            writer = SweepWriter.reopen(out_path, config.model.names, save_fields=sw["save_fields"],
                                        field_stride=stride, burden_species=_burden_species(config))
        n_done = int(done.sum())
        n_failed = sum(st.startswith("failed") for st in stored_status or ())
        bar = Progress(plan.n, f"tmepde sweep {config.model.name}", "member", initial=n_done,
                       enabled=progress and lead)
        bar.compiling()  # the first batch compiles the vmapped program
        try:
            for members, out in unfinished():
                tot, lo, hi, fin = (host(x) for x in reduce(out))
                fields = host(out[:, ::stride]) if sw["save_fields"] else None
                extra = None
                if observe is not None:
                    p_chunk = {k: (v[members] if k in plan.param_keys else v) for k, v in params.items()}
                    extra = {k: host(v).astype(np.float64) for k, v in observe(p_chunk, out).items()}
                collapsed = collapse_messages(hi, config.model.names,
                                              [s.nonnegative for s in config.model.species], times)
                if lead:
                    writer.write(members, tot.astype(np.float64), lo.astype(np.float64),
                                 hi.astype(np.float64), fin, fields, extra, collapsed)
                n_failed += int((~fin.all(axis=(1, 2)) | (collapsed != "")).sum())
                n_done += members.stop - members.start
                bar.update(members.stop - members.start)
                if stop.signum is not None:
                    break
            if stop.signum is not None:
                raise KeyboardInterrupt
        except BaseException as e:
            bar.close()
            if isinstance(e, KeyboardInterrupt):
                signum = stop.signum or signal.SIGINT
                where = writer.file_path if lead else out_path
                if lead:
                    writer.close(f"interrupted: {signal.Signals(signum).name}")
                err = RunInterrupted(signum, where)
                err.args = (f"interrupted by {signal.Signals(signum).name}; {n_done} of {plan.n} "
                            f"members are finished in {str(where)!r} (members/done; status "
                            f"'interrupted'; tmepde sweep --resume {where} runs the rest)" if n_done else
                            f"interrupted by {signal.Signals(signum).name}; no member finished",)
                raise (writer.note_kept(err) if lead else err) from None
            if lead:
                writer.close(f"failed: {type(e).__name__}: {e}")
                writer.note_kept(e)
            raise
        bar.close()
        if not lead:
            return out_path
        try:
            out_path = writer.finish("complete" if not n_failed else
                                     f"complete: {n_failed} of {plan.n} members became non-finite "
                                     "or collapsed (members/status)")
        except Exception as e:
            raise writer.note_kept(e) from None
    if n_failed:
        import warnings

        warnings.warn(f"{n_failed} of {plan.n} sweep members became non-finite (NaN or inf) or collapsed; "
                      f"see members/status in {str(out_path)!r}. Try a smaller time.dt", stacklevel=2)
    return out_path
