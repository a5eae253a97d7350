"""Figures from result files: field snapshots, observable time series, profiles, animations.

Everything here reads a result file through :class:`tmepde.io.Result` and returns
matplotlib figures (no display is needed). Physical axes are in
µm, colour bars carry the field's units, 3D fields are shown as a mid slice and a maximum
projection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

# No matplotlib.use(): pyplot picks a non-interactive backend by itself where there is no
# display, and a user's choice (a notebook's inline backend, MPLBACKEND) stays theirs.
import matplotlib.pyplot as plt
import numpy as np

from .io import Result

MAX_TIMES = 4  # snapshot columns
MAX_ROWS = 6  # fields per snapshot page
PANEL_IN = 2.3  # inches per snapshot panel
# Groups of fields, in drawing order; a field's group is its ``kind`` attribute where the
# model set one, else read from its units (see :func:`field_kind`).
KIND_ORDER = ("cells", "cytokines", "drugs", "states", "fields")
KIND_TITLES = {"cells": "cells (volume fraction)", "cytokines": "cytokines and chemokines",
               "drugs": "drugs and depots", "states": "cell states and tissue", "fields": "fields"}


def _time_indices(result: Result, times: Sequence[float] | None, default: int = MAX_TIMES) -> list[int]:
    t = result.time
    if times is None:
        return sorted(set(np.linspace(0, len(t) - 1, min(default, len(t))).round().astype(int).tolist()))
    return [int(np.argmin(np.abs(t - float(x)))) for x in times]


def units_label(units: str, ndim: int) -> str:
    """Readable units: ``µm^ndim`` becomes µm² / µm³ for the grid's dimension."""
    units = str(units or "1")
    sup = {1: "", 2: "²", 3: "³"}.get(ndim, f"^{ndim}")
    return units.replace("µm^ndim", f"µm{sup}").replace("µm^3", "µm³").replace("µm^2", "µm²")


def field_kind(name: str, units: str, attrs=None) -> str:
    """The group a field is drawn in: its ``kind`` attribute, else from its units (cells for
    volume fractions, cytokines for concentrations, states for dimensionless fields)."""
    kind = (attrs or {}).get("kind")
    if kind:
        return str(kind.decode() if isinstance(kind, bytes) else kind)
    u = str(units or "").lower()
    if "volume fraction" in u or "cells" in u:
        return "cells"
    if "/ml" in u or "/l" in u or "mol" in u:
        return "cytokines"
    if u in ("", "1", "-", "dimensionless"):
        return "states"
    return "fields"


def field_groups(result: Result, fields: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``{kind: [field, ...]}`` in :data:`KIND_ORDER`, fields in the file's order."""
    groups: dict[str, list[str]] = {}
    for name in fields or result.species:
        attrs = result._dataset(name).attrs if hasattr(result, "_dataset") else {}
        groups.setdefault(field_kind(name, result.units(name), attrs), []).append(name)
    return {k: groups[k] for k in sorted(groups, key=lambda k: (KIND_ORDER + (k,)).index(k))}


def colour_range(series: np.ndarray) -> tuple[float, float, str]:
    """``(vmin, vmax, cmap)`` shared by every time of one field.

    Zero is always in the range, so a uniform zero field is drawn as the colour of zero and
    a 0.7 % ripple on a plateau stays one colour (it does not fill the colour map). Fields of
    one sign use a sequential map from 0; signed fields a diverging map centred on 0.
    """
    finite = series[np.isfinite(series)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 0.0
    if lo >= 0:
        return 0.0, (hi if hi > 0 else 1.0), "viridis"
    if hi <= 0:
        return (lo if lo < 0 else -1.0), 0.0, "viridis"
    m = max(-lo, hi)
    return -m, m, "RdBu_r"


def _image(field: np.ndarray, grid) -> tuple[np.ndarray, list[float], str]:
    """A 2D picture of a 2D/3D field (x to the right, y up) and its extent (µm)."""
    if field.ndim == 2:
        return field.T, [0, grid.extent[0], 0, grid.extent[1]], ""
    if field.ndim == 3:
        return field[:, :, field.shape[2] // 2].T, [0, grid.extent[0], 0, grid.extent[1]], " (mid z slice)"
    raise ValueError("images need a 2D or 3D field")


def field_snapshots(result: Result, fields: Sequence[str] | None = None,
                    times: Sequence[float] | None = None, title: str | None = None):
    """Rows = fields, columns = save times (at most :data:`MAX_TIMES` by default).

    Each field has one colour range over all times shown (:func:`colour_range`) and one
    colour bar at the row's end; 1D fields are curves on one shared y range; 3D fields show
    the mid-z slice (the maximum projection is :func:`projections`).
    """
    fields = list(fields or result.species)
    idx = _time_indices(result, times)
    grid = result.grid
    ncols = len(idx)
    fig, axes = plt.subplots(len(fields), ncols, figsize=(PANEL_IN * ncols + 1.2, PANEL_IN * 0.9 * len(fields) + 0.6),
                             squeeze=False, layout="constrained")
    for r, name in enumerate(fields):
        data = [result.field(name, i) for i in idx]
        vmin, vmax, cmap = colour_range(np.stack(data))
        label = f"{name} ({units_label(result.units(name), grid.ndim)})"
        for c, (i, field) in enumerate(zip(idx, data)):
            ax = axes[r, c]
            if grid.ndim == 1:
                ax.plot(grid.axis_centers(0), field)
                ax.set_ylim(vmin, vmax)
                ax.set_xlabel("r (µm)" if grid.geometry == "spherical" else "x (µm)", fontsize=7)
                if c == 0:
                    ax.set_ylabel(label, fontsize=7)
            else:
                img, extent, note = _image(field, grid)
                im = ax.imshow(img, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax)
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(name, fontsize=8)
                if c == ncols - 1:
                    cb = fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.9, pad=0.01)
                    cb.set_label(units_label(result.units(name), grid.ndim), fontsize=7)
                    cb.ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(f"t = {result.time[i]:.4g} h", fontsize=8)
    if grid.ndim > 1:
        ext = " × ".join(f"{e:g}" for e in grid.extent[:2])
        note = " (mid z slices)" if grid.ndim == 3 else ""
        fig.suptitle(f"{title + ': ' if title else ''}{ext} µm section{note}", fontsize=9)
    return fig


def projections(result: Result, fields: Sequence[str] | None = None, time: float | None = None):
    """3D fields: maximum projections along z at one time (default: the last save)."""
    grid = result.grid
    if grid.ndim != 3:
        raise ValueError("projections need a 3D result")
    fields = list(fields or result.species)
    i = _time_indices(result, None if time is None else [time])[-1]
    cols = min(4, len(fields))
    rows = -(-len(fields) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_IN * 1.25 * cols, PANEL_IN * rows),
                             squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, fields):
        proj = result.field(name, i).max(axis=2)
        vmin, vmax, cmap = colour_range(proj)
        im = ax.imshow(proj.T, origin="lower", extent=[0, grid.extent[0], 0, grid.extent[1]],
                       cmap=cmap, vmin=vmin, vmax=vmax)
        fig.colorbar(im, ax=ax, label=units_label(result.units(name), 3), shrink=0.85)
        ax.set_title(f"{name}, max over z", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(fields):]:
        ax.axis("off")
    fig.suptitle(f"t = {result.time[i]:.4g} h", fontsize=9)
    return fig


def dose_times(result: Result) -> np.ndarray:
    """Dose event times (h) stored by runs with therapies (root attr ``dose_times_h``)."""
    return np.asarray(result.attrs.get("dose_times_h", []), dtype=float)


def dose_events(result: Result) -> dict[str, np.ndarray]:
    """``{agent: times (h)}`` from the per-agent attributes ``dose_times_h_<agent>`` (falls
    back to one unnamed series ``doses`` for files that store only ``dose_times_h``)."""
    prefix = "dose_times_h_"
    events = {k[len(prefix):]: np.atleast_1d(np.asarray(v, float)) for k, v in result.attrs.items()
              if k.startswith(prefix)}
    if not events and len(dose_times(result)):
        events = {"doses": dose_times(result)}
    return {k: v for k, v in sorted(events.items()) if v.size}


def _mark_doses(ax, events: Mapping, colours: Mapping) -> None:
    for agent, times in events.items():
        for t in times:
            ax.axvline(t, color=colours[agent], ls="--", lw=0.7, alpha=0.8)


def _dose_legend(fig, events: Mapping, colours: Mapping) -> None:
    if not events:
        return
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[a], ls="--", lw=1, label=f"{a} dose ({len(t)})")
               for a, t in events.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=7,
               frameon=False)


GENERIC_PREFIXES = ("total_", "min_", "max_")


def model_observable_names(result: Result) -> list[str]:
    """The model's own observables (burden, PD-L1, ...): everything but the per-species
    ``total_``/``min_``/``max_`` summaries every file has."""
    return [n for n in result.observables if not n.startswith(GENERIC_PREFIXES)]


def observables(result: Result, names: Sequence[str] | None = None, cols: int = 4):
    """Observable time series, one panel each with units on the y axis; dose events as
    dashed lines coloured per agent with a legend. Default: the model's observables, else
    the species totals."""
    obs = result.observables
    names = list(names or model_observable_names(result) or
                 [f"total_{s}" for s in result.species if f"total_{s}" in obs])
    n = len(names)
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.3 * rows + 0.5), squeeze=False,
                             layout="constrained")
    events = dose_events(result)
    colours = {a: plt.get_cmap("Set1")(i % 9) for i, a in enumerate(events)}
    ndim = result.grid.ndim
    for k, name in enumerate(names):
        ax = axes.flat[k]
        ax.plot(result.time, obs[name], lw=1.5, color="k")
        _mark_doses(ax, events, colours)
        ax.set_title(name, fontsize=8)
        ax.set_ylabel(units_label(_observable_units(result, name), ndim), fontsize=7)
        ax.tick_params(labelsize=7)
        if k >= n - cols:
            ax.set_xlabel("time (h)", fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    _dose_legend(fig, events, colours)
    return fig


def _observable_units(result: Result, name: str) -> str:
    try:
        return str(result._file[f"observables/{name}"].attrs.get("units", "1"))
    except (KeyError, AttributeError):
        return "1"


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
             times: Sequence[float] | None = None, dpi: int = 110) -> list[Path]:
    """Write the standard figures of a result file; returns the paths.

    ``<stem>_fields_<kind>[_<page>].png`` per group of fields (:func:`field_groups`, at most
    :data:`MAX_ROWS` fields a page),
    ``<stem>_projections.png`` for 3D runs, ``<stem>_observables.png`` (the model's
    observables, else the species totals), ``<stem>_totals.png`` (every species' total, when
    the model has observables of its own) and ``<stem>_profile_<field>.png``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = result.path.stem
    figures = []
    groups = field_groups(result, fields)
    for kind, names in groups.items():
        label = "fields" if len(groups) == 1 else f"fields_{kind}"
        pages = [names[i:i + MAX_ROWS] for i in range(0, len(names), MAX_ROWS)]
        for k, page in enumerate(pages):  # a tall group is split so each page stays readable
            figures.append((label + (f"_{k + 1}" if len(pages) > 1 else ""),
                            field_snapshots(result, page, times, title=KIND_TITLES.get(kind, kind))))
    if result.grid.ndim == 3:
        figures.append(("projections", projections(result, fields)))
    figures.append(("observables", observables(result)))
    if model_observable_names(result):
        totals = [f"total_{s}" for s in (fields or result.species) if f"total_{s}" in result.observables]
        if totals:
            figures.append(("totals", observables(result, totals)))
    for name in fields or result.species[:1]:
        figures.append((f"profile_{name}", profile(result, name, times)))
    paths = []
    for label, fig in figures:
        p = out_dir / f"{stem}_{label}.png"
        fig.savefig(p, dpi=dpi)
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
    each curve by its baseline (save 0) when every baseline is positive, else (an observable
    that starts at 0) the curves are drawn as they are. ``sweep``: a :class:`tmepde.io.SweepResult`."""
    m = sweep.members
    idx = np.flatnonzero(m["done"]) if members is None else np.asarray(members)
    y = sweep.observable(observable, idx)
    relative = relative and y.size > 0 and bool(np.all(np.isfinite(y[:, 0]) & (y[:, 0] > 0)))
    if relative:
        y = y / y[:, :1]
    colours = _arm_colours(sweep.arm_names)
    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    alpha = max(0.15, min(0.9, 8 / max(1, len(idx))))
    for row, i in zip(y, idx):
        ax.plot(sweep.time, row, color=colours[m["arm"][i]], lw=0.9, alpha=alpha)
    for a in sweep.arm_names:
        ax.plot([], [], color=colours[a], label=a)
    ax.set_xlabel("time (h)")
    units = units_label(_observable_units(sweep, observable), sweep.grid.ndim)
    ax.set_ylabel(f"{observable} / baseline" if relative else f"{observable} ({units})")
    ax.set_title(f"{observable}, {len(idx)} members", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def waterfall(sweep):
    """Best response per member (% diameter-equivalent change from baseline), sorted, bars
    coloured by arm; RECIST thresholds (PR, PD) as dashed lines and each arm's counts of
    CR/PR/SD/PD in the legend."""
    s = sweep.summary
    if not s:
        raise KeyError(f"{str(sweep.path)!r} has no response summary (no tumor burden: set sweep.burden)")
    done = sweep.members["done"]
    arms = np.asarray(sweep.members["arm"])[done]
    change, best = s["best_change"][done], s["best"][done]
    order = np.argsort(np.where(np.isfinite(change), change, np.inf))[::-1]
    colours = _arm_colours(sweep.arm_names)
    fig, ax = plt.subplots(figsize=(max(4, min(12, 0.12 * len(order) + 3)), 3.6), layout="constrained")
    heights = np.nan_to_num(change[order], nan=0.0)
    ax.bar(np.arange(len(order)), heights, width=0.85, color=[colours[a] for a in arms[order]])
    pd_line, pr_line = float(s.get("pd_change", 20.0)), float(s.get("pr_change", -30.0))
    ax.axhline(pd_line, color="0.3", ls="--", lw=0.8)
    ax.axhline(pr_line, color="0.3", ls="--", lw=0.8)
    ax.text(len(order) - 0.5, pd_line, " PD", va="center", fontsize=7)
    ax.text(len(order) - 0.5, pr_line, " PR", va="center", fontsize=7)
    ax.axhline(0, color="k", lw=0.6)
    from matplotlib.patches import Patch

    handles = []
    for a in sweep.arm_names:
        mine = best[arms == a]
        counts = ", ".join(f"{c} {int((mine == c).sum())}" for c in ("CR", "PR", "SD", "PD", "NE")
                           if (mine == c).any())
        handles.append(Patch(color=colours[a], label=f"{a} (n={len(mine)}: {counts})"))
    ax.set_xticks([])
    ax.set_xlabel("members (sorted by best change)")
    ax.set_ylabel("best change from baseline (%)")
    ax.legend(handles=handles, fontsize=7, loc="lower left")
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
