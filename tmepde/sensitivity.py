"""Global sensitivity of a run's outcome to its parameters: Sobol indices or Morris screening.

Which parameters matter for, say, the tumor burden at day 30, over the whole plausible range
of every parameter at once (not one at a time around a point)? The samples come from SALib
(Saltelli/Sobol' sequences, Morris trajectories; Herman & Usher 2017, JOSS 2:97), the runs
are one vmapped batch of the simulator (:func:`tmepde.batch.iter_batch`), and the indices
are SALib's estimators:

* ``sobol``: first-order ``S1`` (the share of the output variance explained by a parameter
  alone) and total-order ``ST`` (alone and in every interaction), with bootstrap 95 %
  confidence half-widths (Saltelli et al. 2010, Comput. Phys. Commun. 181:259). ``n`` base
  samples (a power of 2) cost ``n (d + 2)`` runs for ``d`` parameters.
* ``morris``: elementary-effect screening, ``mu_star`` (mean absolute effect, in output
  units) and ``sigma`` (non-linearity/interactions) (Campolongo et al. 2007). ``n``
  trajectories cost ``n (d + 1)`` runs.

The outcome is the total of the named species (``Σ y · cell volume``, µm^ndim · field units;
for volume-fraction cells a volume in µm³ (3D) or µm² (2D)) at one save time, or its log10
when ``log = true`` (burdens spread over orders of magnitude across a range), of the total
plus ``log_offset`` (the outcome's unit; default 0) when set: a detection limit such as one
cell's area or volume, so that runs that eradicate the tumor weigh by reaching it, not by how
many decades below one cell their arithmetic goes.

Config (``tmepde sensitivity CONFIG``)::

    [sensitivity]
    method = "sobol"        # or "morris"
    n = 64                  # base samples (sobol, power of 2) or trajectories (morris)
    seed = 0
    species = ["tumor", "stem"]   # outcome: their total ... (default: tumor, stem if present)
    time = 720.0            # ... at this save time (h; default: time.t_end)
    log = true              # analyse log10 of the outcome
    log_offset = 100.0      # ... of the outcome + 100 µm² (one cell in a 2D section)
    path = "sensitivity.h5"
    [sensitivity.params]    # parameter = [low, high] (uniform), or a table:
    growth_tumor = [0.005, 0.02]
    kill_cd8 = { relative = 0.3 }                      # default ± 30 %, uniform
    ec50_ifng = { range = [0.1, 10.0], scale = "log" } # log-uniform
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["SensitivityError", "resolve_table", "sample", "analyze", "run_sensitivity",
           "read_sensitivity", "summary_markdown", "plot_sensitivity"]

METHODS = ("sobol", "morris")
KEYS = ("method", "n", "seed", "species", "time", "log", "log_offset", "path", "params", "chunk", "levels")
FORMAT = "tmepde-sensitivity"
FORMAT_VERSION = 1


class SensitivityError(ValueError):
    """A bad ``[sensitivity]`` entry; ``key`` is the dotted config key."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def resolve_table(raw: Mapping, defaults: Mapping, species: Sequence[str], t_end: float,
                  save_every: float) -> dict:
    """Validate a raw ``[sensitivity]`` table; returns it with every default filled in.

    defaults: the model's parameters (name -> value); species: the model's species names.
    Parameter ranges are resolved to ``{range = [low, high], scale}``.
    """
    for k in raw:
        if k not in KEYS:
            raise SensitivityError(f"sensitivity.{k}", f"unknown key 'sensitivity.{k}'; "
                                   f"known keys: {', '.join(KEYS)}")
    out = {"method": raw.get("method", "sobol"), "seed": raw.get("seed", 0), "log": raw.get("log", False),
           "path": raw.get("path", "sensitivity.h5")}
    if out["method"] not in METHODS:
        raise SensitivityError("sensitivity.method", f"sensitivity.method must be one of {METHODS}, "
                               f"got {out['method']!r}")
    n_default = 64 if out["method"] == "sobol" else 16
    out["n"] = raw.get("n", n_default)
    if isinstance(out["n"], bool) or not isinstance(out["n"], int) or out["n"] < 2:
        raise SensitivityError("sensitivity.n", f"sensitivity.n must be a whole number >= 2, got {out['n']!r}")
    if out["method"] == "sobol" and out["n"] & (out["n"] - 1):
        p2 = 1 << max(1, round(math.log2(out["n"])))
        raise SensitivityError("sensitivity.n", f"sensitivity.n must be a power of 2 for Sobol' sampling "
                               f"(balance of the sequence), got {out['n']}; e.g. n = {p2}")
    if isinstance(out["seed"], bool) or not isinstance(out["seed"], int) or out["seed"] < 0:
        raise SensitivityError("sensitivity.seed", f"sensitivity.seed must be a whole number >= 0, got {out['seed']!r}")
    if not isinstance(out["log"], bool):
        raise SensitivityError("sensitivity.log", f"sensitivity.log must be true or false, got {out['log']!r}")
    offset = raw.get("log_offset", 0.0)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not offset >= 0 or not math.isfinite(offset):
        raise SensitivityError("sensitivity.log_offset", "sensitivity.log_offset must be a number >= 0 in the "
                               f"outcome's unit (e.g. log_offset = 100.0), got {offset!r}")
    if offset and not out["log"]:
        raise SensitivityError("sensitivity.log_offset", "sensitivity.log_offset applies to a log10 outcome; "
                               "set sensitivity.log = true or remove log_offset")
    out["log_offset"] = float(offset)
    if not isinstance(out["path"], str) or not out["path"].strip():
        raise SensitivityError("sensitivity.path", "sensitivity.path must be a file name, e.g. "
                               '"sensitivity.h5"')
    if "chunk" in raw:
        if isinstance(raw["chunk"], bool) or not isinstance(raw["chunk"], int) or raw["chunk"] < 1:
            raise SensitivityError("sensitivity.chunk", f"sensitivity.chunk must be a whole number >= 1, "
                                   f"got {raw['chunk']!r}")
        out["chunk"] = raw["chunk"]
    out["levels"] = raw.get("levels", 4)
    if isinstance(out["levels"], bool) or not isinstance(out["levels"], int) or out["levels"] < 2 \
            or out["levels"] % 2:
        raise SensitivityError("sensitivity.levels", f"sensitivity.levels (Morris grid) must be an even "
                               f"number >= 2, got {out['levels']!r}")

    default_species = [s for s in ("tumor", "stem") if s in species] or list(species)[:1]
    out["species"] = raw.get("species", default_species)
    if not (isinstance(out["species"], list) and out["species"]
            and all(isinstance(s, str) for s in out["species"])):
        raise SensitivityError("sensitivity.species", 'sensitivity.species must be a list of species '
                               f'names, e.g. ["tumor"], got {out["species"]!r}')
    for s in out["species"]:
        if s not in species:
            raise SensitivityError("sensitivity.species", f"sensitivity.species names unknown species "
                                   f"'{s}'; known species: {', '.join(species)}")
    out["time"] = raw.get("time", t_end)
    if not _number(out["time"]) or not 0 < out["time"] <= t_end * (1 + 1e-12):
        raise SensitivityError("sensitivity.time", f"sensitivity.time must be a save time in (0, "
                               f"time.t_end = {t_end:g}] h, got {out['time']!r}")
    ratio = out["time"] / save_every
    if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio):
        fix = max(1, round(ratio)) * save_every
        raise SensitivityError("sensitivity.time", f"sensitivity.time ({out['time']:g} h) must be a whole "
                               f"multiple of time.save_every ({save_every:g} h); e.g. time = {fix:g}")
    out["time"] = float(out["time"])

    params = raw.get("params")
    if not isinstance(params, Mapping) or not params:
        raise SensitivityError("sensitivity.params", "[sensitivity.params] must name at least one "
                               "parameter with its range, e.g. growth_tumor = [0.005, 0.02]")
    out["params"] = {name: _resolve_range(name, spec, defaults) for name, spec in params.items()}
    return out


def _resolve_range(name: str, spec, defaults: Mapping) -> dict:
    key = f"sensitivity.params.{name}"
    if name not in defaults:
        import difflib

        close = difflib.get_close_matches(name, list(defaults), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SensitivityError(key, f"unknown parameter '{name}' in [sensitivity.params]; {hint}"
                               "see `tmepde run CONFIG --print-config` for the model's parameters")
    default = np.asarray(defaults[name])
    if default.ndim:
        raise SensitivityError(key, f"{key}: '{name}' is an array parameter (shape {default.shape}); "
                               "only scalar parameters can be varied")
    default = float(default)
    scale = "linear"
    if isinstance(spec, list):
        bounds = spec
    elif isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"range", "relative", "scale"})
        if unknown or ("range" in spec) == ("relative" in spec):
            raise SensitivityError(key, f"{key} must be [low, high], {{ range = [low, high] }} or "
                                   "{ relative = 0.3 } (default ± 30 %), optionally with scale = \"log\"")
        scale = spec.get("scale", "linear")
        if scale not in ("linear", "log"):
            raise SensitivityError(f"{key}.scale", f"{key}.scale must be 'linear' or 'log', got {scale!r}")
        if "relative" in spec:
            rel = spec["relative"]
            if not _number(rel) or not 0 < rel < 1:
                raise SensitivityError(f"{key}.relative", f"{key}.relative must be a fraction in (0, 1), "
                                       f"got {rel!r}")
            bounds = [default * (1 - rel), default * (1 + rel)]
        else:
            bounds = spec["range"]
    else:
        raise SensitivityError(key, f"{key} must be [low, high] or a table, got {spec!r}")
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(_number(b) for b in bounds)):
        raise SensitivityError(key, f"{key} must be two finite numbers [low, high], got {bounds!r}")
    lo, hi = (float(b) for b in bounds)
    if not lo < hi:
        raise SensitivityError(key, f"{key}: low ({lo:g}) must be below high ({hi:g})")
    if scale == "log" and lo <= 0:
        raise SensitivityError(key, f"{key}: a log scale needs low > 0, got {lo:g}")
    return {"range": [lo, hi], "scale": scale}  # resolves to itself (Config.to_toml round trip)


def _problem(table: Mapping) -> dict:
    names = list(table["params"])
    bounds = [[0.0, 1.0]] * len(names)  # unit cube; mapped to the ranges in _to_values
    return {"num_vars": len(names), "names": names, "bounds": bounds}


def _to_values(unit: np.ndarray, table: Mapping) -> np.ndarray:
    """Unit-cube samples (N, d) -> parameter values (N, d) on each range and scale."""
    out = np.empty_like(unit)
    for j, spec in enumerate(table["params"].values()):
        lo, hi = spec["range"]
        if spec["scale"] == "log":
            out[:, j] = np.exp(np.log(lo) + unit[:, j] * (np.log(hi) - np.log(lo)))
        else:
            out[:, j] = lo + unit[:, j] * (hi - lo)
    return out


def sample(table: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """``(unit, values)``: the design in the unit cube and in parameter units, both (N, d)."""
    problem = _problem(table)
    if table["method"] == "sobol":
        from SALib.sample import sobol

        unit = sobol.sample(problem, table["n"], calc_second_order=False, seed=table["seed"])
    else:
        from SALib.sample import morris

        unit = morris.sample(problem, table["n"], num_levels=table["levels"], seed=table["seed"])
    return unit, _to_values(unit, table)


def analyze(table: Mapping, unit: np.ndarray, outcome: np.ndarray) -> dict:
    """Sensitivity indices of ``outcome`` (N,) over the design ``unit`` (N, d).

    sobol: ``S1``, ``S1_conf``, ``ST``, ``ST_conf`` (fractions of variance, 95 % half-widths).
    morris: ``mu``, ``mu_star``, ``mu_star_conf``, ``sigma`` (outcome units per unit range).
    """
    problem = _problem(table)
    y = np.asarray(outcome, np.float64)
    if table["method"] == "sobol":
        from SALib.analyze import sobol

        r = sobol.analyze(problem, y, calc_second_order=False, seed=table["seed"], print_to_console=False)
        keys = ("S1", "S1_conf", "ST", "ST_conf")
    else:
        from SALib.analyze import morris

        r = morris.analyze(problem, unit, y, num_levels=table["levels"], seed=table["seed"],
                           print_to_console=False)
        keys = ("mu", "mu_star", "mu_star_conf", "sigma")
    return {k: np.asarray(r[k], np.float64) for k in keys}


# -- running ---------------------------------------------------------------------------------
def outcomes(sim, params: Mapping, names: Sequence[str], values: np.ndarray, y0, n_saves: int,
             save_index: int, species_index: Sequence[int], cell_volumes, log: bool,
             chunk: int | None = None, progress=None, log_offset: float = 0.0) -> np.ndarray:
    """Outcome of every design point, (N,): one vmapped batch, chunked to fit memory; with
    ``log``, ``log10(total + log_offset)``."""
    import jax
    import jax.numpy as jnp

    from . import batch

    p = dict(params)
    for j, name in enumerate(names):
        p[name] = jnp.asarray(values[:, j], sim.dtype)
    volumes = jnp.asarray(cell_volumes, sim.dtype)
    idx = np.asarray(species_index)
    axes = tuple(range(1, 1 + sim.grid.ndim))

    @jax.jit
    def reduce(out):  # (b, T, S, *shape) -> (b,)
        y = out[:, save_index][:, idx]
        return jnp.sum(jnp.sum(y * volumes, axis=tuple(a + 1 for a in axes)), axis=1)

    result = np.empty(len(values))
    for members, out in batch.iter_batch(sim, p, list(names), y0, n_saves, chunk=chunk):
        result[members] = np.asarray(reduce(out), np.float64)
        if progress is not None:
            progress(members.stop - members.start)
    if log:
        with np.errstate(divide="ignore"):
            result = np.log10(result + log_offset)
    return result


def run_sensitivity(config, out_path: str | Path | None = None, *, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Run a config's ``[sensitivity]`` analysis and write its HDF5 file; returns the path."""
    from .runner import precision

    table = config.data["sensitivity"]
    out_path = Path(out_path if out_path is not None else table["path"])
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; choose another -o or pass --overwrite")
    with precision(config.dtype):  # 64-bit JAX for a float64 config, for this analysis only
        return _run_sensitivity(config, table, out_path, progress)


def _run_sensitivity(config, table, out_path: Path, progress: bool) -> Path:
    from .runner import build

    setup = build(config)
    sim = setup.simulator
    unit, values = sample(table)
    names = list(table["params"])
    save_index = int(round(table["time"] / config.data["time"]["save_every"]))
    n_saves = save_index  # no need to run past the outcome's time
    species_index = [config.model.index(s) for s in table["species"]]

    from .progress import Progress

    bar = Progress(len(values), f"tmepde sensitivity ({table['method']}, {len(names)} parameters)",
                   "run", enabled=progress)
    with bar:
        bar.compiling()
        y = outcomes(sim, setup.params, names, values, setup.y0, n_saves, save_index, species_index,
                     config.grid.cell_volumes(), table["log"], table.get("chunk"), bar.update,
                     log_offset=table.get("log_offset", 0.0))
    bad = ~np.isfinite(y)
    if bad.any():
        i = int(np.argmax(bad))
        point = ", ".join(f"{k} = {v:.4g}" for k, v in zip(names, values[i]))
        raise FloatingPointError(f"{int(bad.sum())} of {len(y)} sensitivity runs gave a non-finite "
                                 f"outcome (first: {point}); narrow [sensitivity.params]")
    indices = analyze(table, unit, y)
    _write(out_path, config, table, unit, values, y, indices)
    return out_path


def _write(path: Path, config, table, unit, values, y, indices) -> None:
    import h5py

    tmp = path.with_name(f".{path.name}.partial")
    with h5py.File(tmp, "w") as f:
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "sensitivity",
                        "method": table["method"], "time_h": table["time"], "log10": table["log"],
                        "log10_offset": table.get("log_offset", 0.0),
                        "outcome_label": "total of " + ", ".join(table["species"]) + f" at t = {table['time']:g} h",
                        "model": config.model.name, "config": config.to_toml(), "status": "complete"})
        f.create_dataset("names", data=np.array(list(table["params"]), dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("bounds", data=np.asarray([s["range"] for s in table["params"].values()]))
        f.create_dataset("scale", data=np.array([s["scale"] for s in table["params"].values()], dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("unit_samples", data=unit)
        f.create_dataset("samples", data=values)
        f.create_dataset("outcome", data=y)
        g = f.create_group("indices")
        for k, v in indices.items():
            g.create_dataset(k, data=v)
    tmp.replace(path)


def read_sensitivity(path: str | Path) -> dict:
    """The contents of a sensitivity file as plain NumPy arrays and strings."""
    import h5py

    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "sensitivity":
            raise ValueError(f"{path} is not a tmepde sensitivity file")
        out = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items() if k != "config"}
        out["names"] = [n.decode() if isinstance(n, bytes) else str(n) for n in f["names"][...]]
        for k in ("bounds", "samples", "outcome"):
            out[k] = f[k][...]
        out["indices"] = {k: f["indices"][k][...] for k in f["indices"]}
    return out


def summary_markdown(data: Mapping) -> str:
    """A table of the indices, most influential parameter first."""
    idx = data["indices"]
    outcome = data["outcome"]
    unit = "log10 " if data.get("log10") else ""
    offset = float(data.get("log10_offset", 0.0) or 0.0)
    label = data.get("outcome_label", "")
    if unit and offset:
        label = f"({label} + {offset:g})"
    lines = [f"Outcome: {unit}{label}: {len(outcome)} runs, "
             f"mean {np.mean(outcome):.4g}, s.d. {np.std(outcome):.3g}", ""]
    if data["method"] == "sobol":
        order = np.argsort(-idx["ST"])
        lines += ["| parameter | range | S1 | ST |", "|---|---|---|---|"]
        lines += [f"| {data['names'][i]} | {data['bounds'][i][0]:.3g}–{data['bounds'][i][1]:.3g} | "
                  f"{idx['S1'][i]:.3f} ± {idx['S1_conf'][i]:.3f} | {idx['ST'][i]:.3f} ± {idx['ST_conf'][i]:.3f} |"
                  for i in order]
    else:
        order = np.argsort(-idx["mu_star"])
        lines += ["| parameter | range | μ* | σ |", "|---|---|---|---|"]
        lines += [f"| {data['names'][i]} | {data['bounds'][i][0]:.3g}–{data['bounds'][i][1]:.3g} | "
                  f"{idx['mu_star'][i]:.4g} ± {idx['mu_star_conf'][i]:.3g} | {idx['sigma'][i]:.4g} |"
                  for i in order]
    return "\n".join(lines) + "\n"


def plot_sensitivity(path: str | Path, out: str | Path) -> Path:
    """Bar chart of S1/ST (Sobol') or μ*/σ (Morris), most influential first; PNG at ``out``."""
    import matplotlib.pyplot as plt

    data = read_sensitivity(path)
    idx, names = data["indices"], data["names"]
    sobol_method = data["method"] == "sobol"
    key = "ST" if sobol_method else "mu_star"
    order = np.argsort(idx[key])  # barh draws bottom-up: largest on top
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * len(names)), layout="constrained")
    ypos = np.arange(len(names))
    if sobol_method:
        ax.barh(ypos + 0.2, idx["S1"][order], 0.4, xerr=idx["S1_conf"][order], label="first order S1")
        ax.barh(ypos - 0.2, idx["ST"][order], 0.4, xerr=idx["ST_conf"][order], label="total order ST")
        ax.set_xlabel("share of output variance")
        ax.set_xlim(left=min(0.0, float(np.min(idx["S1"]))))
    else:
        ax.barh(ypos + 0.2, idx["mu_star"][order], 0.4, xerr=idx["mu_star_conf"][order], label="μ* (mean |effect|)")
        ax.barh(ypos - 0.2, idx["sigma"][order], 0.4, label="σ (interactions, non-linearity)")
        ax.set_xlabel(("log10 " if data.get("log10") else "") + "outcome per parameter range")
    ax.set_yticks(ypos, [names[i] for i in order])
    offset = float(data.get("log10_offset", 0.0) or 0.0)
    label = data.get("outcome_label", "") + (f" + {offset:g}" if data.get("log10") and offset else "")
    ax.set_title(f"{data['method']} sensitivity: {'log10 ' if data.get('log10') else ''}{label}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
