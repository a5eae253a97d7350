"""Result files of ``tmepde fit`` and ``tmepde optimize`` and their figures.

Both commands write an HDF5 file next to their Markdown report, so that ``tmepde plot FILE``
redraws the figure and users can read the numbers without re-running the fit:

``tmepde-fit`` (``<output>_fit.h5``)::

    /data/<arm>/days (D,), /data/<arm>/volumes (M, D) mm³ (NaN = not measured), attrs mice
    /fit/<arm>/days (D,), /fit/<arm>/volume (D,)        population fit, mm³
    /cohort/days, /cohort/curves (M, D), /cohort/mice, /cohort/phenotype, /cohort/data_phenotype
    /stages/<stage>/names, value, std_error, identifiable
    root attrs: format, config_toml, floor_mm3, injection_days, cohort_arm

``tmepde-optimize`` (``<output>.h5``)::

    /time (T,) h; /burden/<schedule> (T,) tumor burden, attr objective
    /schedules/<schedule>/<prefix>_times, <prefix>_amounts (h, ng); attrs objective, toxicity
    /history/<optimizer> (n, 2): forward-run equivalents used, best objective so far
    root attrs: format, config_toml, agents, caps (per agent, ng), objective_name
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from ._dose_keys import schedule_keys
from .io import decode_strings, decode_text, open_h5

__all__ = ["FIT_FORMAT", "OPTIMIZE_FORMAT", "file_format", "write_fit", "fit_figure",
           "write_optimize", "optimize_figure"]

FIT_FORMAT = "tmepde-fit"
OPTIMIZE_FORMAT = "tmepde-optimize"


def _strings(values) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=h5py.string_dtype())


def file_format(path: str | Path) -> str | None:
    """The ``format`` root attribute of an HDF5 file (None without one); FileNotFoundError
    or :class:`~tmepde.io.ResultFileError` (one line) when it does not open."""
    with open_h5(Path(path)) as f:
        fmt = f.attrs.get("format")
    return None if fmt is None else decode_text(fmt)


# -- fit ------------------------------------------------------------------------------------
def write_fit(path: str | Path, *, arms: Mapping, curves: Mapping, curve_days, cohort,
              stages: Mapping, config_toml: str, floor_mm3: float, injection_days) -> Path:
    """arms: {name: object with mice, days, volumes}; curves: {arm: (D,)}; cohort: CohortFit;
    stages: {name: FitResult}."""
    path = Path(path)
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": FIT_FORMAT, "config_toml": config_toml,
                        "floor_mm3": float(floor_mm3), "injection_days": np.asarray(injection_days, float),
                        "cohort_arm": cohort.arm, "arms": _strings(arms)})
        for name, arm in arms.items():
            g = f.create_group(f"data/{name}")
            g["days"] = np.asarray(arm.days, float)
            g["volumes"] = np.asarray(arm.volumes, float)
            g.attrs["mice"] = np.asarray(arm.mice)
        for name, v in curves.items():
            g = f.create_group(f"fit/{name}")
            g["days"] = np.asarray(curve_days, float)
            g["volume"] = np.asarray(v, float)
        g = f.create_group("cohort")
        g["days"] = np.asarray(curve_days[0] + np.arange(np.shape(cohort.curves)[1]), float)
        g["curves"] = np.asarray(cohort.curves, float)
        g["mice"] = np.asarray(cohort.mice)
        g["phenotype"] = _strings(cohort.phenotype)
        g["data_phenotype"] = _strings(cohort.data_phenotype)
        for k in cohort.names:
            g[f"values/{k}"] = np.asarray(cohort.values[k], float)
            g[f"std_error/{k}"] = np.asarray(cohort.std_error[k], float)
        for stage, res in stages.items():
            g = f.create_group(f"stages/{stage}")
            g["names"] = _strings(res.names)
            g["value"] = np.array([res.values[n] for n in res.names], float)
            g["std_error"] = np.array([res.std_error[n] for n in res.names], float)
            g["identifiable"] = np.array([bool(res.identifiable[n]) for n in res.names])
    return path


def fit_figure(path: str | Path):
    """Data (points) vs population fit (thick) and per-animal fits (thin) per arm, log scale."""
    import matplotlib.pyplot as plt

    with h5py.File(path, "r") as f:
        floor = float(f.attrs["floor_mm3"])
        inj = np.asarray(f.attrs["injection_days"])
        cohort_arm = str(f.attrs["cohort_arm"])
        names = decode_strings(f.attrs["arms"]) if "arms" in f.attrs else list(f["data"])
        fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), sharey=True, squeeze=False)
        for ax, a in zip(axes[0], names):
            d = f[f"data/{a}"]
            for m, v in enumerate(d["volumes"][:]):
                ax.plot(d["days"][:], v + floor, "o", ms=3, color=f"C{m % 10}", alpha=0.8)
            if a == cohort_arm:
                c = f["cohort"]
                for j, v in enumerate(c["curves"][:]):
                    ax.plot(c["days"][:], v + floor, "-", lw=0.9, color=f"C{j % 10}", alpha=0.8)
                for day in inj:
                    ax.axvline(day, color="0.6", ls=":", lw=1)
                ax.set_title(f"{a}\nthin: per-animal fits", fontsize=9)
            else:
                ax.set_title(a, fontsize=9)
            fit_arm = a if a in f["fit"] else ("PBS" if "PBS" in f["fit"] else None)
            if fit_arm is not None:
                ax.plot(f[f"fit/{fit_arm}/days"][:], f[f"fit/{fit_arm}/volume"][:] + floor, "k-", lw=2.2,
                        label="population fit" if fit_arm == a else f"{fit_arm} fit")
                ax.legend(fontsize=7, loc="upper left")
            ax.set_yscale("log")
            ax.set_xlabel("day")
        axes[0, 0].set_ylabel(f"tumor volume + {floor:g} (mm³)")
    fig.tight_layout()
    return fig


# -- optimize -------------------------------------------------------------------------------
def write_optimize(path: str | Path, *, times, burden: Mapping, objective: Mapping, toxicity: Mapping,
                   schedules: Mapping, agents, histories: Mapping, config_toml: str,
                   objective_name: str) -> Path:
    """schedules: {name: params dict}; agents: :class:`tmepde.schedules.SlotAgent` s;
    histories: {optimizer: [(forward-run equivalents, best objective)]}."""
    path = Path(path)
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": OPTIMIZE_FORMAT, "config_toml": config_toml,
                        "agents": _strings(a.prefix for a in agents),
                        "caps": np.array([a.cap for a in agents], float),
                        "objective_name": objective_name})
        f["time"] = np.asarray(times, float)
        for name, b in burden.items():
            f[f"burden/{name}"] = np.asarray(b, float)
            f[f"burden/{name}"].attrs["objective"] = float(objective.get(name, np.nan))
        for name, p in schedules.items():
            g = f.create_group(f"schedules/{name}")
            for a in agents:
                times, amounts = schedule_keys(a.prefix)
                g[times] = np.asarray(p[a.times_key], float)
                g[amounts] = np.asarray(p[a.amounts_key], float)
            g.attrs["objective"] = float(objective.get(name, np.nan))
            tox = toxicity.get(name)
            g.attrs["toxicity"] = np.nan if tox is None else float(tox)
        for name, h in histories.items():
            f[f"history/{name}"] = np.asarray(h, float)
    return path


def optimize_figure(path: str | Path):
    """Schedule timelines (bar height = dose / cap), burden curves with objectives, and the
    best objective against simulations used for each optimizer."""
    import matplotlib.pyplot as plt

    with h5py.File(path, "r") as f:
        agents = decode_strings(f.attrs["agents"])
        caps = np.asarray(f.attrs["caps"])
        fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
        scheds = list(f["schedules"])
        for j, name in enumerate(scheds):
            g = f[f"schedules/{name}"]
            for k, (a, cap) in enumerate(zip(agents, caps)):
                times, amounts = schedule_keys(a)
                t, amt = g[times][:] / 24, g[amounts][:]
                keep = amt > 0
                ax[0].vlines(t[keep], j, j + 0.8 * amt[keep] / cap, color=f"C{j}", lw=3,
                             linestyles=["solid", "dashed", "dotted"][k % 3])
        ax[0].set_yticks(np.arange(len(scheds)) + 0.4, scheds, fontsize=8)
        ax[0].set_xlabel("day")
        ax[0].set_title("schedules (bar height = dose / cap)", fontsize=9)
        t = f["time"][:] / 24
        for j, name in enumerate(f["burden"]):
            obj = f[f"burden/{name}"].attrs.get("objective", np.nan)
            ax[1].plot(t, f[f"burden/{name}"][:], label=f"{name}: {obj:.4f}",
                       color="k" if name == "no treatment" else f"C{scheds.index(name) if name in scheds else j}")
        ax[1].set_xlabel("day")
        ax[1].set_ylabel("tumor burden (cell volume, µm^ndim)")
        ax[1].legend(fontsize=7, title=f"objective ({f.attrs['objective_name']})", title_fontsize=7)
        for name in f["history"]:
            h = f[f"history/{name}"][:]
            ax[2].plot(h[:, 0], h[:, 1], "o-" if len(h) < 100 else "-", ms=3, label=name)
        ax[2].set_xscale("log")
        ax[2].set_xlabel("simulations used (gradient: sim-equivalents)")
        ax[2].set_ylabel("best objective")
        ax[2].legend(fontsize=7)
    fig.tight_layout()
    return fig
