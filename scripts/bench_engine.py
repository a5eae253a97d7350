"""Engine throughput: explicit and implicit steps against NumPy and the memory-bandwidth roofline.

Measures, for 2D grids and 1 or many species, in float32 and float64:

(a) explicit path: ``Simulator(scheme="euler")`` on pure diffusion + decay with zero-flux
    faces, stepped by the engine's own ``lax.scan`` loop; time per step after compilation;
(b) implicit path: ``Simulator(scheme="sbdf2")`` step (spectral solve) on the same model;
(c) the same forward-Euler step in plain vectorised NumPy (``np.pad(mode="edge")`` + slices);
(d) the machine's memory bandwidth from STREAM-like triads (NumPy and jitted JAX, best
    taken), and the explicit step's achieved bandwidth as a fraction of it.

Byte model for (d): one explicit step must read the state and write the new state,
``2 * S * N * itemsize`` bytes (S species, N cells); stencil neighbours and the per-species
coefficients are assumed to come from cache. This is a lower bound on traffic, so the
fraction is an upper bound on what a perfect kernel could do better.

Timings take the best (and record the median) of several repeats because the machine may be
shared. Usage::

    python scripts/bench_engine.py                 # full: 256², 512², 1024² x 1, 12 species x f32, f64
    python scripts/bench_engine.py --quick         # 256², 512² only, fewer repeats
    python scripts/bench_engine.py --sizes 2048 --species 12 --dtypes float32   # e.g. on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tmepde  # noqa: E402
from tmepde import Grid, Model, Simulator, Species  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info  # noqa: E402,F401  (re-exported for bench_stiff.py)

SPACING = 10.0  # µm


def timed(fn, repeats: int):
    """(best, median) wall seconds of ``fn()`` (which must block until done)."""
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.min(ts)), float(np.median(ts))


# -- bandwidth -------------------------------------------------------------------------------
def triad_bandwidth(n_bytes_per_array: int, repeats: int) -> dict:
    """STREAM triad ``a = b + s c`` in NumPy and JAX; GB/s counting 3 arrays per element."""
    out = {}
    n = n_bytes_per_array // 8
    b, c = np.random.rand(n), np.random.rand(n)
    a = np.empty(n)

    def np_triad():
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)

    np_triad()
    best, _ = timed(np_triad, repeats)
    out["numpy_triad"] = 3 * 8 * n / best / 1e9  # counts STREAM's 3 arrays (2 passes really)

    def np_copy():
        np.copyto(a, b)

    best, _ = timed(np_copy, repeats)
    out["numpy_copy"] = 2 * 8 * n / best / 1e9
    for name, dt in (("f32", jnp.float32), ("f64", jnp.float64)):
        m = n_bytes_per_array // jnp.dtype(dt).itemsize
        bj = jnp.asarray(np.random.rand(m), dt)
        cj = jnp.asarray(np.random.rand(m), dt)
        f = jax.jit(lambda b, c: b + 3.0 * c)
        jax.block_until_ready(f(bj, cj))
        best, _ = timed(lambda: jax.block_until_ready(f(bj, cj)), repeats)
        out[f"jax_triad_{name}"] = 3 * n_bytes_per_array / best / 1e9
        # In a scan the output reuses the carry's buffer (no fresh allocation per call).
        steps = 10
        g = jax.jit(lambda b, c: jax.lax.scan(lambda x, _: (c + 0.999 * x, None), b, None,
                                              length=steps)[0])
        jax.block_until_ready(g(bj, cj))
        best, _ = timed(lambda: jax.block_until_ready(g(bj, cj)), repeats)
        out[f"jax_scan_triad_{name}"] = 3 * n_bytes_per_array * steps / best / 1e9
        del bj, cj
    return out


# -- the benchmark problem -------------------------------------------------------------------
def make_model(n_species: int, nonnegative: bool = False) -> Model:
    """Pure diffusion + linear decay, zero flux on every face, D 1..2 µm²/s, decay 0.1/h."""
    species = [Species(f"c{i}", diffusivity=1.0 + i / max(1, n_species), decay=0.1,
                       boundary="neumann", nonnegative=nonnegative) for i in range(n_species)]
    return Model(species, name=f"diffusion_decay_{n_species}")


def numpy_step_factory(D_per_s: np.ndarray, decay: np.ndarray, dt: float, h: float):
    """Forward-Euler step of the same semi-discrete system in vectorised NumPy."""
    D = (D_per_s * 3600.0).reshape(-1, 1, 1)
    k = decay.reshape(-1, 1, 1)
    inv_h2 = 1.0 / h**2

    def step(y):
        up = np.pad(y, ((0, 0), (1, 1), (1, 1)), mode="edge")
        lap = (up[:, 2:, 1:-1] + up[:, :-2, 1:-1] + up[:, 1:-1, 2:] + up[:, 1:-1, :-2]
               - 4 * y) * inv_h2
        return y + dt * (D * lap - k * y)

    return step


def bench_config(n: int, n_species: int, dtype_name: str, repeats: int, numpy_on: bool,
                 implicit_on: bool, work: float) -> dict:
    dtype = jnp.dtype(dtype_name)
    grid = Grid((n, n), SPACING)
    model = make_model(n_species)
    params = model.default_params(dtype)
    cells = n_species * n * n
    rng = np.random.default_rng(0)
    y0_np = rng.random((n_species, n, n)).astype(dtype_name)
    y0 = jnp.asarray(y0_np)
    rec = {"n": n, "species": n_species, "dtype": dtype_name, "cells": cells}
    bytes_step = 2 * cells * dtype.itemsize

    # (a) explicit
    probe = Simulator(model, grid, dt=1.0, scheme="sbdf2", dtype=dtype)
    dt_expl = 0.5 * probe.disc.explicit_dt_limit(model.default_params())
    steps = int(max(20, min(2000, work / cells)))
    sim = Simulator(model, grid, dt=dt_expl, save_every=dt_expl * steps, scheme="euler",
                    dtype=dtype)
    carry = sim.init(y0, params)
    t = time.perf_counter()
    jax.block_until_ready(sim.advance(carry, params, 1))
    first = time.perf_counter() - t
    best, med = timed(lambda: jax.block_until_ready(sim.advance(carry, params, 1)), repeats)
    rec["explicit"] = {"steps_timed": steps, "dt_h": dt_expl, "s_per_step": best / steps,
                       "s_per_step_median": med / steps, "compile_s": max(first - best, 0.0),
                       "cell_updates_per_s": cells / (best / steps)}
    rec["explicit"]["bytes_per_step"] = bytes_step
    rec["explicit"]["achieved_GBps"] = bytes_step / (best / steps) / 1e9

    # (a') the same, with the positivity clip elided. No species here is nonnegative, so the
    # clip is the identity, but Discretization.clip still runs its reductions and selects
    # (see docs/performance.md); this row shows the step without that overhead.
    sim_nc = Simulator(model, grid, dt=dt_expl, save_every=dt_expl * steps, scheme="euler",
                       dtype=dtype)
    sim_nc.disc.clip = lambda y: y
    carry_nc = sim_nc.init(y0, params)
    jax.block_until_ready(sim_nc.advance(carry_nc, params, 1))
    best_nc, med_nc = timed(lambda: jax.block_until_ready(sim_nc.advance(carry_nc, params, 1)),
                            repeats)
    rec["explicit_clip_elided"] = {"s_per_step": best_nc / steps,
                                   "s_per_step_median": med_nc / steps,
                                   "cell_updates_per_s": cells / (best_nc / steps),
                                   "achieved_GBps": bytes_step / (best_nc / steps) / 1e9}

    # (b) implicit: sbdf2 at a step 100x the explicit limit (any dt costs the same)
    if implicit_on:
        steps_i = int(max(4, min(500, work / 20 / cells)))
        dt_i = 100 * dt_expl
        simi = Simulator(model, grid, dt=dt_i, save_every=dt_i * steps_i, scheme="sbdf2",
                         dtype=dtype)
        t = time.perf_counter()
        carry_i = simi.init(y0, params)
        jax.block_until_ready(simi.advance(carry_i, params, 1))
        first = time.perf_counter() - t
        best_i, med_i = timed(lambda: jax.block_until_ready(simi.advance(carry_i, params, 1)),
                              repeats)
        rec["implicit_sbdf2"] = {"steps_timed": steps_i, "dt_h": dt_i,
                                 "s_per_step": best_i / steps_i,
                                 "s_per_step_median": med_i / steps_i,
                                 "compile_s": max(first - best_i, 0.0),
                                 "cell_updates_per_s": cells / (best_i / steps_i)}

    # (c) NumPy baseline, checked against the engine's step
    if numpy_on:
        D = np.array([float(params[f"D_{s.name}"]) for s in model.species])
        k = np.array([float(params[f"decay_{s.name}"]) for s in model.species])
        step = numpy_step_factory(D, k, dt_expl, SPACING)
        y1 = step(y0_np)
        one = Simulator(model, grid, dt=dt_expl, scheme="euler", dtype=dtype)
        y1_engine = np.asarray(one.advance(one.init(y0, params), params, 1)[1][0])
        err = float(np.max(np.abs(y1 - y1_engine)) / np.max(np.abs(y1)))
        reps = max(2, min(repeats, int(3e7 / cells) + 1))
        best_np, med_np = timed(lambda: step(y0_np), reps)
        rec["numpy"] = {"s_per_step": best_np, "s_per_step_median": med_np,
                        "cell_updates_per_s": cells / best_np,
                        "max_rel_diff_vs_engine_step": err}
        rec["speedup_explicit_vs_numpy"] = best_np / rec["explicit"]["s_per_step"]
    return rec


def global_mass_fixer(y):
    """The positivity limiter before the local one (for comparison): negatives to 0 and every
    species' positive part scaled to keep its total (two reductions, one more pass)."""
    axes = tuple(range(1, y.ndim))
    positive = jnp.maximum(y, 0)
    total = jnp.sum(y, axis=axes, keepdims=True)
    total_pos = jnp.sum(positive, axis=axes, keepdims=True)
    undershoot = total_pos > total
    safe_pos = jnp.where(total_pos > 0, total_pos, 1)
    scale = jnp.where(undershoot & (total > 0), total / safe_pos, 1.0)
    return positive * jnp.where(undershoot & (total <= 0), 0.0, scale)


def bench_clip(n: int, n_species: int, repeats: int, steps: int = 50) -> dict:
    """Explicit-step time (s) of nonnegative species with the clip elided / local / global."""
    dtype = jnp.float32
    grid = Grid((n, n), SPACING)
    model = make_model(n_species, nonnegative=True)
    params = model.default_params(dtype)
    dt = 0.5 * Simulator(model, grid, dt=1.0, dtype=dtype).disc.explicit_dt_limit(model.default_params())
    y0 = jnp.asarray(np.random.default_rng(0).random((n_species, n, n)), dtype)
    out = {}
    for name in ("clip_elided", "local_limiter", "global_mass_fixer"):
        sim = Simulator(model, grid, dt=dt, save_every=dt * steps, scheme="euler", dtype=dtype)
        if name == "clip_elided":
            sim.disc.clip = lambda y: y
        elif name == "global_mass_fixer":
            sim.disc.clip = global_mass_fixer
        carry = sim.init(y0, params)
        jax.block_until_ready(sim.advance(carry, params, 1))
        best, _ = timed(lambda: jax.block_until_ready(sim.advance(carry, params, 1)), repeats)
        out[f"explicit_nonnegative_{n}x{n_species}_f32_{name}_s_per_step"] = best / steps
        print(f"nonnegative {n}² x {n_species} f32, {name}: {best / steps * 1e3:.3f} ms/step", flush=True)
    base = out[f"explicit_nonnegative_{n}x{n_species}_f32_clip_elided_s_per_step"]
    for name in ("local_limiter", "global_mass_fixer"):
        out[f"ratio_{name}_vs_elided"] = out[f"explicit_nonnegative_{n}x{n_species}_f32_{name}_s_per_step"] / base
    return out


def fmt_rate(x):
    return f"{x / 1e6:,.0f} M"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--species", type=int, nargs="+", default=[1, 12])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="256² and 512² only, 3 repeats")
    ap.add_argument("--clip-only", action="store_true",
                    help="only the positivity-limiter comparison (12 x 512² float32)")
    ap.add_argument("--no-numpy", action="store_true")
    ap.add_argument("--no-implicit", action="store_true")
    ap.add_argument("--work", type=float, default=1.5e8,
                    help="cell updates per timed explicit call (sets the steps per call)")
    ap.add_argument("--triad-mib", type=int, default=256, help="bytes per triad array (MiB)")
    ap.add_argument("--out", default=os.path.join("results", "bench_engine"))
    args = ap.parse_args(argv)
    if args.clip_only:
        args.sizes, args.species, args.dtypes = [512], [12], []
    if args.quick:
        args.sizes = [s for s in args.sizes if s <= 512] or [256]
        args.repeats = min(args.repeats, 3)
        args.triad_mib = min(args.triad_mib, 128)

    info = machine_info()
    print(json.dumps(info, indent=1), flush=True)
    bw_dram = triad_bandwidth(args.triad_mib << 20, max(3, args.repeats))
    # Roofline: the best triad (a copy moves fewer bytes per element and is reported apart).
    roofline = max(v for k, v in bw_dram.items() if "triad" in k)
    print("triad (DRAM-sized arrays) GB/s:", {k: round(v, 1) for k, v in bw_dram.items()}, flush=True)

    records = []
    for dtype_name in args.dtypes:
        for n in args.sizes:
            for s in args.species:
                rec = bench_config(n, s, dtype_name, args.repeats, not args.no_numpy,
                                   not args.no_implicit, args.work)
                ex = rec["explicit"]
                ex["roofline_fraction_dram"] = ex["achieved_GBps"] / roofline
                # Same-size triad: the roofline when the state fits in the last-level cache.
                state_bytes = rec["cells"] * jnp.dtype(dtype_name).itemsize
                bw_same = triad_bandwidth(max(state_bytes, 1 << 20), max(3, args.repeats))
                rec["triad_same_size_GBps"] = max(v for k, v in bw_same.items() if "triad" in k)
                ex["roofline_fraction_same_size"] = ex["achieved_GBps"] / rec["triad_same_size_GBps"]
                nc = rec["explicit_clip_elided"]
                nc["roofline_fraction_dram"] = nc["achieved_GBps"] / roofline
                nc["roofline_fraction_same_size"] = nc["achieved_GBps"] / rec["triad_same_size_GBps"]
                if "numpy" in rec:
                    rec["speedup_clip_elided_vs_numpy"] = rec["numpy"]["s_per_step"] / nc["s_per_step"]
                records.append(rec)
                line = (f"{dtype_name} {n}² x {s:2d}: explicit {ex['s_per_step'] * 1e3:8.3f} ms/step "
                        f"{fmt_rate(ex['cell_updates_per_s'])}/s, {ex['achieved_GBps']:.1f} GB/s "
                        f"({100 * ex['roofline_fraction_dram']:.0f}% DRAM triad, "
                        f"{100 * ex['roofline_fraction_same_size']:.0f}% same-size triad), "
                        f"compile {ex['compile_s']:.2f} s")
                line += (f" | clip elided {nc['s_per_step'] * 1e3:.3f} ms/step, "
                         f"{100 * nc['roofline_fraction_dram']:.0f}% DRAM triad")
                if "implicit_sbdf2" in rec:
                    im = rec["implicit_sbdf2"]
                    line += (f" | sbdf2 {im['s_per_step'] * 1e3:.2f} ms/step, compile "
                             f"{im['compile_s']:.2f} s")
                if "numpy" in rec:
                    line += (f" | numpy {rec['numpy']['s_per_step'] * 1e3:.2f} ms/step "
                             f"(x{rec['speedup_explicit_vs_numpy']:.1f})")
                print(line, flush=True)

    # Positivity limiter overhead: the default species are nonnegative, so every explicit step
    # ends in Discretization.clip. Side by side in one run: the step with the clip elided,
    # with the local limiter (the default), and with the global mass fixer it replaced.
    extra = {}
    if 512 in args.sizes and 12 in args.species:
        extra.update(bench_clip(512, 12, args.repeats))
    out = {"command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
           "machine": info, "triad_dram_GBps": bw_dram, "roofline_GBps": roofline,
           "byte_model": "2 * species * cells * itemsize per explicit step (read + write state)",
           "model": "pure diffusion (D = 1..2 µm²/s) + decay 0.1/h, zero-flux faces, h = 10 µm, "
                    "nonnegative=False (no positivity clip), dt = half the explicit limit",
           "records": records, "extra": extra}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(out, f, indent=1)
    write_markdown(out, args.out + ".md")
    write_figure(out, args.out + ".png")
    print("wrote", args.out + ".{json,md,png}")


def write_markdown(out, path):
    m = out["machine"]
    lines = [
        "# Engine throughput (explicit / implicit step, NumPy baseline, bandwidth roofline)", "",
        f"Machine: {m['cpu_model']}, {m['cpu_cores']} cores, backend `{m['backend']}`, devices "
        f"{m['devices']}; jax {m['jax']}, numpy {m['numpy']}, Python {m['python']}; "
        f"load average at start {m['load_average_at_start']} (shared machine: best of repeats).", "",
        f"Command: `{out['command']}`", "",
        f"Model: {out['model']}.", "",
        f"Roofline: best STREAM-like triad on DRAM-sized arrays = **{out['roofline_GBps']:.1f} GB/s** "
        f"({', '.join(f'{k} {v:.1f}' for k, v in out['triad_dram_GBps'].items())}). "
        f"Byte model: {out['byte_model']}. 'same-size' is the triad on arrays as large as the state "
        "(cache-resident when the state fits in the last-level cache).", "",
        "| dtype | grid | species | explicit ms/step | explicit cell-updates/s | GB/s | % DRAM roofline "
        "| % same-size triad | clip elided: ms/step, cell-updates/s, % DRAM roofline | sbdf2 ms/step | sbdf2 cell-updates/s | NumPy ms/step | explicit / NumPy "
        "| compile explicit / sbdf2 (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["records"]:
        ex = r["explicit"]
        im = r.get("implicit_sbdf2")
        npr = r.get("numpy")
        lines.append(
            f"| {r['dtype']} | {r['n']}² | {r['species']} | {ex['s_per_step'] * 1e3:.3f} | "
            f"{ex['cell_updates_per_s']:.3g} | {ex['achieved_GBps']:.1f} | "
            f"{100 * ex['roofline_fraction_dram']:.0f}% | {100 * ex['roofline_fraction_same_size']:.0f}% | "
            f"{r['explicit_clip_elided']['s_per_step'] * 1e3:.3f}, {r['explicit_clip_elided']['cell_updates_per_s']:.3g}, "
            f"{100 * r['explicit_clip_elided']['roofline_fraction_dram']:.0f}% | "
            + (f"{im['s_per_step'] * 1e3:.2f} | {im['cell_updates_per_s']:.3g} | " if im else "– | – | ")
            + (f"{npr['s_per_step'] * 1e3:.2f} | {r['speedup_explicit_vs_numpy']:.1f}x | " if npr else "– | – | ")
            + f"{ex['compile_s']:.2f} / " + (f"{im['compile_s']:.2f} |" if im else "– |"))
    if out["extra"]:
        ex = out["extra"]
        lines += ["", "Positivity limiter (nonnegative species, explicit step, 12 × 512² float32, same run):", "",
                  "| clip | ms/step | × clip elided |", "|---|---|---|"]
        for name, label in (("clip_elided", "elided (no limiter)"), ("local_limiter", "local limiter (default)"),
                            ("global_mass_fixer", "global mass fixer (before)")):
            key = [k for k in ex if k.endswith(f"_{name}_s_per_step")]
            if key:
                ratio = ex.get(f"ratio_{name}_vs_elided", 1.0)
                lines.append(f"| {label} | {ex[key[0]] * 1e3:.3f} | {ratio:.2f} |")
        lines += ["", "The local limiter runs its body only when the state holds a negative value "
                  "(a min-reduction fused into the step gates it); the global fixer needs two "
                  "reductions and another pass over the state every step."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_figure(out, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = out["records"]
    if not recs:
        return
    labels = [f"{r['dtype'][-2:]} {r['n']}²x{r['species']}" for r in recs]
    x = np.arange(len(recs))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    w = 0.2
    ax1.bar(x - 2 * w, [r["explicit"]["cell_updates_per_s"] for r in recs], w, label="explicit (euler)")
    ax1.bar(x - w, [r["explicit_clip_elided"]["cell_updates_per_s"] for r in recs], w,
            label="explicit, no-op clip elided")
    ax1.bar(x, [r["implicit_sbdf2"]["cell_updates_per_s"] if "implicit_sbdf2" in r else 0 for r in recs],
            w, label="implicit (sbdf2)")
    ax1.bar(x + w, [r["numpy"]["cell_updates_per_s"] if "numpy" in r else 0 for r in recs], w,
            label="NumPy explicit")
    ax1.set_yscale("log")
    ax1.set_ylabel("field-cell updates / s")
    ax1.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    ax1.legend(fontsize=8)
    ax1.set_title("Throughput")
    ax2.bar(x - 0.2, [100 * r["explicit"]["roofline_fraction_dram"] for r in recs], 0.4,
            label=f"engine step vs DRAM triad ({out['roofline_GBps']:.0f} GB/s)")
    ax2.bar(x + 0.2, [100 * r["explicit_clip_elided"]["roofline_fraction_dram"] for r in recs], 0.4,
            label="no-op clip elided, vs DRAM triad")
    ax2.axhline(50, color="k", lw=0.8, ls="--")
    ax2.set_ylabel("explicit step, % of triad bandwidth")
    ax2.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    ax2.legend(fontsize=8)
    ax2.set_title("Explicit step vs bandwidth roofline")
    fig.suptitle(f"{out['machine']['cpu_model']} x{out['machine']['cpu_cores']}, jax {out['machine']['jax']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
