"""Figures from result files: field snapshots, observable time series, profiles, animations.

Everything here reads a result file through :class:`tmepde.io.Result` and returns
matplotlib figures (the Agg backend is used, so no display is needed). Physical axes are in
µm, colour bars carry the field's units, 3D fields are shown as a mid slice and a maximum
projection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import Result  # noqa: E402


def _time_indices(result: Result, times: Sequence[float] | None, default: int = 3) -> list[int]:
    t = result.time
    if times is None:
        return sorted(set(np.linspace(0, len(t) - 1, min(default, len(t))).round().astype(int).tolist()))
    return [int(np.argmin(np.abs(t - float(x)))) for x in times]


def _image(field: np.ndarray, grid) -> tuple[np.ndarray, list[float], str]:
    """A 2D picture of a 1D/2D/3D field and its extent (µm)."""
    if field.ndim == 2:
        return field.T, [0, grid.extent[0], 0, grid.extent[1]], ""
    if field.ndim == 3:
        return field[:, :, field.shape[2] // 2].T, [0, grid.extent[0], 0, grid.extent[1]], " (mid z slice)"
    raise ValueError("images need a 2D or 3D field")


def field_snapshots(result: Result, fields: Sequence[str] | None = None,
                    times: Sequence[float] | None = None):
    """Grid of panels: rows = save times, columns = fields. 1D fields are drawn as curves;
    3D fields as their mid-z slice plus a maximum projection column."""
    fields = list(fields or result.species)
    idx = _time_indices(result, times)
    grid = result.grid
    extra = grid.ndim == 3
    ncols = len(fields) * (2 if extra else 1)
    fig, axes = plt.subplots(len(idx), ncols, figsize=(3.2 * ncols, 2.8 * len(idx)), squeeze=False)
    for r, i in enumerate(idx):
        for c, name in enumerate(fields):
            data = result.field(name, i)
            units = result.units(name)
            ax = axes[r, c * (2 if extra else 1)]
            if grid.ndim == 1:
                ax.plot(grid.axis_centers(0), data)
                ax.set_xlabel("r (µm)" if grid.geometry == "spherical" else "x (µm)")
                ax.set_ylabel(units)
            else:
                img, extent, note = _image(data, grid)
                im = ax.imshow(img, origin="lower", extent=extent, cmap="viridis",
                               vmin=float(np.min(data)), vmax=float(np.max(data)))
                fig.colorbar(im, ax=ax, label=units)
                ax.set_xlabel("x (µm)")
                ax.set_ylabel("y (µm)")
                if extra:
                    ax2 = axes[r, c * 2 + 1]
                    proj = data.max(axis=2).T
                    im2 = ax2.imshow(proj, origin="lower", extent=extent, cmap="magma")
                    fig.colorbar(im2, ax=ax2, label=units)
                    ax2.set_title(f"{name} max projection", fontsize=8)
                note = note
            ax.set_title(f"{name}, t = {result.time[i]:.4g} h" + ("" if grid.ndim == 1 else note), fontsize=8)
    fig.tight_layout()
    return fig


def dose_times(result: Result) -> np.ndarray:
    """Dose event times (h) stored by runs with therapies (root attr ``dose_times_h``)."""
    return np.asarray(result.attrs.get("dose_times_h", []), dtype=float)


def observables(result: Result, names: Sequence[str] | None = None):
    """Observable time series, one panel each, with dose events as dashed lines."""
    obs = result.observables
    names = list(names or sorted(obs))
    n = len(names)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    events = dose_times(result)
    for k, name in enumerate(names):
        ax = axes.flat[k]
        ax.plot(result.time, obs[name], lw=1.5)
        for t in events:
            ax.axvline(t, color="0.5", ls="--", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("time (h)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def profile(result: Result, name: str, times: Sequence[float] | None = None, axis: int = 0):
    """Line profile through the domain centre along ``axis`` (radial for spherical grids)."""
    grid = result.grid
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i in _time_indices(result, times, default=5):
        data = result.field(name, i)
        index = [s // 2 for s in data.shape]
        index[axis] = slice(None)
        ax.plot(grid.axis_centers(axis), data[tuple(index)], label=f"t = {result.time[i]:.4g} h")
    ax.set_xlabel(("r" if grid.geometry == "spherical" else "xyz"[axis]) + " (µm)")
    ax.set_ylabel(f"{name} ({result.units(name)})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def animate(result: Result, name: str, out: str | Path, fps: int = 8):
    """GIF (pillow) or MP4 (ffmpeg, when present and ``out`` ends in .mp4) of one field."""
    from matplotlib import animation

    grid = result.grid
    series = result.series(name)
    vmin, vmax = float(series.min()), float(series.max())
    fig, ax = plt.subplots(figsize=(4.5, 3.8))
    if grid.ndim == 1:
        (line,) = ax.plot(grid.axis_centers(0), series[0])
        ax.set_ylim(vmin, vmax if vmax > vmin else vmin + 1)
        ax.set_xlabel("x (µm)")

        def draw(i):
            line.set_ydata(series[i])
            ax.set_title(f"{name}, t = {result.time[i]:.4g} h")
            return (line,)
    else:
        img, extent, _ = _image(series[0], grid)
        im = ax.imshow(img, origin="lower", extent=extent, vmin=vmin, vmax=vmax, cmap="viridis")
        fig.colorbar(im, ax=ax, label=result.units(name))
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")

        def draw(i):
            im.set_data(_image(series[i], grid)[0])
            ax.set_title(f"{name}, t = {result.time[i]:.4g} h")
            return (im,)

    anim = animation.FuncAnimation(fig, draw, frames=len(series), blit=False)
    out = Path(out)
    if out.suffix == ".mp4" and animation.writers.is_available("ffmpeg"):
        writer = animation.FFMpegWriter(fps=fps)
    else:
        if out.suffix == ".mp4":
            out = out.with_suffix(".gif")
        writer = animation.PillowWriter(fps=fps)
    anim.save(out, writer=writer)
    plt.close(fig)
    return out


def save_all(result: Result, out_dir: str | Path, fields: Sequence[str] | None = None,
             times: Sequence[float] | None = None) -> list[Path]:
    """Write the standard set of figures for a result file; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = result.path.stem
    paths = []
    for label, fig in (("fields", field_snapshots(result, fields, times)), ("observables", observables(result))):
        p = out_dir / f"{stem}_{label}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    for name in fields or result.species[:1]:
        fig = profile(result, name, times)
        p = out_dir / f"{stem}_profile_{name}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


# -- sweep files (tmepde sweep): cohorts and regimens ----------------------------------------
RECIST_COLOURS = {"CR": "#1a9850", "PR": "#91cf60", "SD": "#fee08b", "PD": "#d73027", "NE": "0.6"}


def _arm_colours(names):
    cmap = plt.get_cmap("tab10")
    return {a: cmap(i % 10) for i, a in enumerate(names)}


def spaghetti(sweep, observable: str = "burden", relative: bool = True, members=None):
    """One line per member of ``observable`` over time, coloured by arm; ``relative`` divides
    each curve by its baseline (save 0). ``sweep``: a :class:`tmepde.io.SweepResult`."""
    m = sweep.members
    idx = np.flatnonzero(m["done"]) if members is None else np.asarray(members)
    y = sweep.observable(observable, idx)
    if relative:
        with np.errstate(divide="ignore", invalid="ignore"):
            y = y / y[:, :1]
    colours = _arm_colours(sweep.arm_names)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    alpha = max(0.15, min(0.9, 8 / max(1, len(idx))))
    for row, i in zip(y, idx):
        ax.plot(sweep.time, row, color=colours[m["arm"][i]], lw=0.9, alpha=alpha)
    for a in sweep.arm_names:
        ax.plot([], [], color=colours[a], label=a)
    ax.set_xlabel("time (h)")
    ax.set_ylabel(f"{observable} / baseline" if relative else observable)
    ax.set_title(f"{observable}, {len(idx)} members", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def waterfall(sweep):
    """Best response per member (% diameter-equivalent change from baseline), sorted,
    bars coloured by RECIST class, with the PR and PD thresholds as dashed lines."""
    s = sweep.summary
    if not s:
        raise KeyError(f"{str(sweep.path)!r} has no response summary (no tumor burden: set sweep.burden)")
    done = sweep.members["done"]
    change, best = s["best_change"][done], s["best"][done]
    order = np.argsort(np.where(np.isfinite(change), change, np.inf))[::-1]
    fig, ax = plt.subplots(figsize=(max(4, min(12, 0.12 * len(order) + 3)), 3.6))
    heights = np.nan_to_num(change[order], nan=0.0)
    ax.bar(np.arange(len(order)), heights, width=0.85,
           color=[RECIST_COLOURS[c] for c in best[order]])
    ax.axhline(float(s.get("pd_change", 20.0)), color="0.3", ls="--", lw=0.8)
    ax.axhline(float(s.get("pr_change", -30.0)), color="0.3", ls="--", lw=0.8)
    ax.axhline(0, color="k", lw=0.6)
    from matplotlib.patches import Patch

    handles = [Patch(color=RECIST_COLOURS[c], label=f"{c} ({int((best == c).sum())})")
               for c in ("CR", "PR", "SD", "PD", "NE") if (best == c).any()]
    ax.set_xticks([])
    ax.set_xlabel("members (sorted)")
    ax.set_ylabel("best change from baseline (%)")
    ax.legend(handles=handles, fontsize=7, ncol=5)
    fig.tight_layout()
    return fig


def response_rates(sweep, rate: str = "ORR"):
    """Response rate per arm (``ORR``, ``DCR`` or ``ORR_horizon``) with Wilson 95 % intervals."""
    s = sweep.summary
    if not s:
        raise KeyError(f"{str(sweep.path)!r} has no response summary (no tumor burden: set sweep.burden)")
    arms = s["arms"]
    names = list(arms["arm"])
    r, lo, hi = (100 * np.asarray(arms[k], float) for k in (rate, f"{rate}_lo", f"{rate}_hi"))
    colours = _arm_colours(names)
    fig, ax = plt.subplots(figsize=(max(3.5, 1.1 * len(names) + 1.5), 3.4))
    x = np.arange(len(names))
    ax.bar(x, r, color=[colours[a] for a in names], yerr=[r - lo, hi - r], capsize=4)
    for xi, n, ri in zip(x, arms["n"], r):
        ax.text(xi, 2, f"n={n}", ha="center", fontsize=7)
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"{rate.replace('_', ' at ')} (%), 95 % CI")
    fig.tight_layout()
    return fig


def save_sweep_all(sweep, out_dir: str | Path, observables: Sequence[str] | None = None) -> list[Path]:
    """Spaghetti plot(s), waterfall and response rates of a sweep file; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = sweep.path.stem
    names = list(observables or (["burden"] if "burden" in sweep.observables else
                                 [f"total_{sweep.species[0]}"]))
    figs = [(f"spaghetti_{n}", spaghetti(sweep, n)) for n in names]
    if sweep.summary:
        figs += [("waterfall", waterfall(sweep)), ("response_rates", response_rates(sweep))]
    paths = []
    for label, fig in figs:
        p = out_dir / f"{stem}_{label}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths
