"""Time to accuracy on a stiff reaction-diffusion problem: tmepde vs SciPy BDF.

Problem (2D, 64 x 64 cells of 20 µm, zero-flux faces, 48 h by default):

* ``cytokine`` c: D = 100 µm²/s, decay 0.1/h, supplied by vessels ``P V(x) (1 - c)`` and
  consumed by cells ``q n c`` (both first-order losses are treated implicitly by tmepde as
  local decay; the supply ``P V`` as an explicit reaction);
* ``factor`` f: D = 1 µm²/s, decay 0.5/h, secreted by hypoxic cells ``r n K / (K + c)``;
* ``cells`` n: D = 0.01 µm²/s, logistic growth fed by c, ``g n (1 - n) c / (K + c)``,
  death ``d n K / (K + c)``;
* vessels V(x): a vertical line at x = 200 µm and two discs (fixed map, not a state).

The diffusion of c makes the system stiff: its explicit limit is h²/(4D) ≈ 1 s, against days
of simulated time.

Reference: tmepde rk4 (4th order, explicit) at 1.2x the forward-Euler limit (rk4's own limit
is ~1.39x), float64; cross-checked against the tightest SciPy run (that distance is plotted as
rk4's error). Error: relative L2 at the final time, the
maximum over the three fields. Timed: tmepde sbdf2 / sbdf1 / rk4 at several dt (wall time of
a warm ``Simulator.run``; compile time recorded separately) and SciPy ``solve_ivp(BDF)`` with
the Jacobian sparsity pattern (``jac_sparsity``) at several rtol, on the identical
semi-discrete system (same 5-point stencil and zero-flux ghost cells, checked at t = 0).

Usage::

    python scripts/bench_stiff.py            # full
    python scripts/bench_stiff.py --quick    # 24 h, fewer points (about 3 min)
    python scripts/bench_stiff.py --order-study   # sbdf2 order diagnosis at 32², 24 h (~4 min)
    python scripts/bench_stiff.py --plan etdrk2:0:0.5,0.25 sbdf2:1:1,0.5 --rtols 1e-3 1e-4

Compilation is reported three ways, never mixed: ``compile`` (cold: this process compiles
every program, as on a user's first run), ``cached compile`` (a second process that finds
the persistent compilation cache filled by the first, :mod:`tmepde.compile_cache`: what a
user pays on every later run of the same configuration; its first call minus its own warm
call, so tracing is included and the run is not), and the warm run itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy
import scipy.sparse as sp
from scipy.integrate import solve_ivp

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tmepde import Grid, Model, Simulator, Species  # noqa: E402
from bench_engine import machine_info  # noqa: E402

N = 64
H = 20.0  # µm
PARAMS = {"P": 20.0, "q": 5.0, "r": 1.0, "K": 0.1, "g": 0.05, "d": 0.02}
D_PER_S = {"cytokine": 100.0, "factor": 1.0, "cells": 0.01}
DECAY = {"cytokine": 0.1, "factor": 0.5, "cells": 0.0}


def vessel_map() -> np.ndarray:
    x, y = Grid((N, N), H).coordinates()
    v = (np.abs(x - 200.0) < H / 2 + 1e-9).astype(float)
    for cx, cy, r in ((900.0, 300.0, 60.0), (800.0, 1000.0, 50.0)):
        v = np.maximum(v, ((x - cx) ** 2 + (y - cy) ** 2 <= r * r).astype(float))
    return v


VESSELS = vessel_map()


def _reactions(t, y, p):
    c, n = y["cytokine"], y["cells"]
    hyp = p["K"] / (p["K"] + c)
    V = p["vessels"]
    return {
        "cytokine": p["P"] * V,
        "factor": p["r"] * n * hyp,
        "cells": p["g"] * n * (1 - n) * c / (p["K"] + c) - p["d"] * n * hyp,
    }


def _local_decay(t, y, p):
    return {"cytokine": p["P"] * p["vessels"] + p["q"] * y["cells"]}


def make_model(nonnegative: bool = True) -> Model:
    species = [Species(name, diffusivity=D_PER_S[name], decay=DECAY[name], nonnegative=nonnegative)
               for name in ("cytokine", "factor", "cells")]
    return Model(species, _reactions, dict(PARAMS, vessels=VESSELS), local_decay=_local_decay,
                 name="stiff_tme")


def initial_state() -> np.ndarray:
    x, y = Grid((N, N), H).coordinates()
    r2 = (x - 700.0) ** 2 + (y - 640.0) ** 2
    cells = 0.05 + 0.6 * np.exp(-r2 / (2 * 200.0 ** 2))
    return np.stack([np.full((N, N), 0.5), np.zeros((N, N)), cells])


# -- SciPy: the same semi-discrete system -----------------------------------------------------
def scipy_rhs_and_sparsity():
    D = np.array([D_PER_S[k] * 3600.0 for k in ("cytokine", "factor", "cells")]).reshape(3, 1, 1)
    k = np.array([DECAY[k] for k in ("cytokine", "factor", "cells")]).reshape(3, 1, 1)
    p = PARAMS
    V = VESSELS
    inv_h2 = 1 / H**2

    def rhs(t, yflat):
        y = yflat.reshape(3, N, N)
        up = np.pad(y, ((0, 0), (1, 1), (1, 1)), mode="edge")
        lap = (up[:, 2:, 1:-1] + up[:, :-2, 1:-1] + up[:, 1:-1, 2:] + up[:, 1:-1, :-2] - 4 * y) * inv_h2
        out = D * lap - k * y
        c, n = y[0], y[2]
        hyp = p["K"] / (p["K"] + c)
        out[0] += p["P"] * V * (1 - c) - p["q"] * n * c
        out[1] += p["r"] * n * hyp
        out[2] += p["g"] * n * (1 - n) * c / (p["K"] + c) - p["d"] * n * hyp
        return out.ravel()

    # Pattern: 5-point stencil within each field + all fields coupled in the same cell.
    one_d = sp.diags([1, 1, 1], [-1, 0, 1], shape=(N, N))
    lap_pattern = (sp.kron(one_d, sp.eye(N)) + sp.kron(sp.eye(N), one_d)) != 0
    coupling = sp.kron(np.ones((3, 3)), sp.eye(N * N))
    pattern = (sp.kron(sp.eye(3), lap_pattern) + coupling) != 0
    return rhs, sp.csc_matrix(pattern.astype(float))


def family_name(r) -> str | None:
    """Matched-error family of a run: IMEX BDF by (scheme, start window), ETD by scheme;
    None for the first-order sbdf1/etd1 and the reference."""
    solver = r["solver"]
    if "start_window_h" not in r or solver in ("tmepde sbdf1", "tmepde etd1"):
        return None
    if solver.startswith("tmepde etd"):
        return solver[7:]
    return f"{solver[7:]} W={r['start_window_h']:g} h"


def cached_child(plan, cache: str, t_end: float, mode: str = "xla") -> list[dict]:
    """In a fresh process: per ``(scheme, W, dt)`` the first call and a warm call.

    ``mode`` "xla": ``Simulator.run`` with the persistent compilation cache ``cache`` (filled
    by the parent; tracing and lowering still run). "store": ``Simulator.program`` with the
    program store ``cache``, timed from the simulator's construction (fingerprint, load or
    compile, first run). Returns ``[{scheme, start_window_h, dt_h, first_s, warm_s, loaded}]``."""
    from tmepde.compile_cache import enable_compilation_cache

    if mode == "xla":
        enable_compilation_cache(cache, 0.0)
    model = make_model()
    grid = Grid((N, N), H)
    params = model.default_params(jnp.float64)
    y0 = jnp.asarray(initial_state())
    rows = []
    for scheme, window, dt in plan:
        t = time.perf_counter()
        sim = Simulator(model, grid, dt=dt, save_every=t_end, scheme=scheme, dtype=jnp.float64,
                        start_window=window)
        if mode == "xla":
            t = time.perf_counter()
            run, loaded = (lambda p, y: sim.run(p, y, 1)), False
        else:
            run, loaded = sim.program(params, y0, 1, store=cache)
        jax.block_until_ready(run(params, y0))
        first = time.perf_counter() - t
        t = time.perf_counter()
        jax.block_until_ready(run(params, y0))
        rows.append({"scheme": scheme, "start_window_h": window, "dt_h": dt, "first_s": first,
                     "warm_s": time.perf_counter() - t, "loaded": loaded})
    return rows


def rel_err(y, ref) -> float:
    return float(max(np.linalg.norm(y[i] - ref[i]) / np.linalg.norm(ref[i]) for i in range(3)))


def run_tmepde(scheme, dt, t_end, repeats, start_window=1.0):
    model = make_model()
    grid = Grid((N, N), H)
    sim = Simulator(model, grid, dt=dt, save_every=t_end, scheme=scheme, dtype=jnp.float64,
                    start_window=start_window)
    params = model.default_params(jnp.float64)
    y0 = jnp.asarray(initial_state())
    t = time.perf_counter()
    out = np.asarray(jax.block_until_ready(sim.run(params, y0, 1)))
    first = time.perf_counter() - t
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = np.asarray(jax.block_until_ready(sim.run(params, y0, 1)))
        ts.append(time.perf_counter() - t)
    best = float(min(ts))
    return out[-1], best, max(first - best, 0.0)


def order_study(n=32, t_end=24.0, skip=1.0, dts=(1.0, 0.5, 0.25, 0.125, 0.0625)):
    """Observed order of sbdf2 on this problem, and why it is below 2.

    Variants: from the initial state (as benchmarked); with the positivity limiter off
    (species not nonnegative); from the state at ``skip`` hours (rk4), i.e. past the initial
    layer. References: rk4 at 0.6x the forward-Euler limit from the same start.
    Returns rows ``{variant, dt_h, error, per_field}``; prints the table.
    """
    global N, VESSELS
    N = n
    VESSELS = vessel_map()
    grid = Grid((N, N), H)
    y0 = jnp.asarray(initial_state())

    def run(model, scheme, dt, y, T, **kw):
        sim = Simulator(model, grid, dt=dt, save_every=T, scheme=scheme, dtype=jnp.float64, **kw)
        return np.asarray(sim.run(model.default_params(jnp.float64), y, 1))[-1]

    model = make_model()
    limit = Simulator(model, grid, dt=1.0).disc.explicit_dt_limit(model.default_params())
    rk4 = lambda y, T: run(model, "rk4", T / np.ceil(T / (0.6 * limit)), y, T)  # noqa: E731
    y_skip = jnp.asarray(rk4(y0, skip))
    refs = {"initial state": (y0, rk4(y0, t_end)), f"state at {skip:g} h": (y_skip, rk4(y_skip, t_end))}
    variants = [("from initial state (default start_window = 1 h)", make_model(), "initial state", {}),
                ("same, start_window = 0 (graded start over one step only)", make_model(), "initial state",
                 {"start_window": 0.0}),
                ("same, limiter off", make_model(nonnegative=False), "initial state", {}),
                (f"from state at {skip:g} h (past the layer)", make_model(), f"state at {skip:g} h", {})]
    rows = []
    for name, m, start, kw in variants:
        y_start, ref = refs[start]
        for dt in dts:
            y = run(m, "sbdf2", dt, y_start, t_end, **kw)
            per = [float(np.linalg.norm(y[i] - ref[i]) / np.linalg.norm(ref[i])) for i in range(3)]
            rows.append({"variant": name, "dt_h": dt, "error": max(per), "per_field": per})
            print(f"{name}: dt={dt:g} err {max(per):.3e} (c {per[0]:.2e}, f {per[1]:.2e}, n {per[2]:.2e})",
                  flush=True)
        errs = np.array([r["error"] for r in rows[-len(dts):]])
        print(f"  successive orders: {np.round(np.log2(errs[:-1] / errs[1:]), 2).tolist()}", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--t-end", type=float, default=48.0, help="simulated hours")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join("results", "bench_stiff"))
    ap.add_argument("--n", type=int, default=64, help="cells per side (default 64)")
    ap.add_argument("--reference", choices=("rk4", "sbdf4"), default="rk4",
                    help="reference solution: rk4 at 1.2x the Euler limit (default), or sbdf4 with "
                         "W = 12 h at dt = 1/16 h (for large grids, where rk4 takes too long)")
    ap.add_argument("--order-study", action="store_true",
                    help="only the sbdf2 order diagnosis (32², 24 h); prints a table")
    ap.add_argument("--plan", nargs="+", metavar="SCHEME:W:DT,DT",
                    help="tmepde runs instead of the default plan: scheme, start window (h), steps (h)")
    ap.add_argument("--rtols", type=float, nargs="+", help="SciPy BDF rtols (default 1e-3 .. 1e-7)")
    ap.add_argument("--no-cache-column", action="store_true",
                    help="skip the second process that measures compilation with a filled cache")
    ap.add_argument("--cached-child", help=argparse.SUPPRESS)  # internal: JSON plan, cache dir
    args = ap.parse_args(argv)
    if args.cached_child:
        global N, VESSELS
        spec = json.loads(args.cached_child)
        N = spec["n"]
        VESSELS = vessel_map()
        rows = cached_child([tuple(p) for p in spec["plan"]], spec["cache"], spec["t_end"],
                            spec.get("mode", "xla"))
        print("CACHED_CHILD " + json.dumps(rows), flush=True)
        return
    if args.order_study:
        # Added to the existing results/bench_stiff.{json,md}, whose benchmark table it keeps.
        info = machine_info()
        print(json.dumps(info, indent=1), flush=True)
        study = {"command": "python scripts/bench_stiff.py --order-study", "grid": [32, 32], "t_end_h": 24.0,
                 "load_average_at_start": info["load_average_at_start"], "rows": order_study()}
        with open(args.out + ".json") as f:
            out = json.load(f)
        out["order_study"] = study
        with open(args.out + ".json", "w") as f:
            json.dump(out, f, indent=1)
        write_markdown(out, args.out + ".md")
        print("updated", args.out + ".{json,md}")
        return
    N = args.n
    VESSELS = vessel_map()
    t_end = 24.0 if args.quick else args.t_end
    cache = None
    if not args.no_cache_column:
        # Every program this process compiles is stored, so that a second process finds it.
        from tmepde.compile_cache import enable_compilation_cache

        cache = tempfile.mkdtemp(prefix="bench_stiff_cache_")
        enable_compilation_cache(cache, 0.0)
    info = machine_info()
    print(json.dumps(info, indent=1), flush=True)

    # Check that the SciPy right-hand side is the engine's semi-discrete system.
    model = make_model()
    sim = Simulator(model, Grid((N, N), H), dt=1.0, dtype=jnp.float64)
    params = sim._as_params(model.default_params(jnp.float64))
    y0 = initial_state()
    disc = sim.disc
    yj = jnp.asarray(y0)
    f_engine = np.asarray(disc.stiff(0.0, yj, params, disc.local_decay(0.0, yj, params))
                          + disc.nonstiff(0.0, yj, params))
    rhs, pattern = scipy_rhs_and_sparsity()
    f_scipy = rhs(0.0, y0.ravel()).reshape(3, N, N)
    rhs_check = float(np.max(np.abs(f_engine - f_scipy)) / np.max(np.abs(f_scipy)))
    print(f"RHS engine vs SciPy: max rel diff {rhs_check:.2e}", flush=True)

    # Reference: rk4 inside its stability limit (about 1.39x the forward-Euler limit here),
    # or sbdf4 far below the benchmarked steps (64²: 1.1e-9 from rk4 at dt = 1/8 h).
    limit = disc.explicit_dt_limit(model.default_params())  # forward-Euler limit, h
    ref_scheme = args.reference
    dt_ref = t_end / np.ceil(t_end / (1.2 * limit)) if ref_scheme == "rk4" else 1 / 16
    ref, ref_time, ref_compile = run_tmepde(ref_scheme, dt_ref, t_end, 1, 12.0)
    print(f"reference {ref_scheme} dt = {dt_ref:.3g} h ({t_end / dt_ref:.0f} steps): {ref_time:.1f} s", flush=True)

    # (scheme, start window W in h) -> dts. W = 1 h is the default; the longer graded starts
    # cover this problem's initial transient (the cells answer the cytokine's relaxation over
    # ~10 h; see the W study in the markdown).
    if args.quick:
        plan = {("sbdf2", 1.0): [1.0, 0.25, 0.0625], ("sbdf4", 12.0): [2.0, 1.0, 0.5]}
    else:
        plan = {("sbdf2", 1.0): [2.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125],
                ("sbdf3", 1.0): [1.0, 0.5, 0.25, 0.125, 0.0625],
                ("sbdf4", 1.0): [1.0, 0.5, 0.25, 0.125, 0.0625],
                ("sbdf3", 12.0): [2.0, 1.0, 0.5, 0.25],
                ("sbdf4", 4.0): [1.0, 0.5, 0.25, 0.125],
                ("sbdf4", 12.0): [2.0, 1.0, 0.5, 0.25, 0.125],
                ("sbdf1", 1.0): [1.0, 0.25, 0.0625],
                ("etd1", 0.0): [0.5, 0.125, 0.03125],
                ("etdrk2", 0.0): [1.0, 0.5, 0.25, 0.125, 0.0625]}
    if args.plan:
        plan = {}
        for item in args.plan:
            try:
                scheme, window, dts = item.split(":")
                plan[(scheme, float(window))] = [float(d) for d in dts.split(",")]
            except ValueError:
                raise SystemExit(f"--plan {item!r}: expected SCHEME:W:DT,DT,... e.g. etdrk2:0:0.5,0.25")
    runs = []
    for (scheme, window), dts in plan.items():
        for dt in dts:
            y, wall, compile_s = run_tmepde(scheme, dt, t_end, args.repeats, window)
            e = rel_err(y, ref)
            runs.append({"solver": f"tmepde {scheme}", "start_window_h": window, "dt_h": dt, "wall_s": wall,
                         "compile_s": compile_s, "error": e})
            print(f"tmepde {scheme} W={window:g} h dt={dt:g} h: err {e:.2e}, {wall * 1e3:.1f} ms "
                  f"(+ compile {compile_s:.2f} s)", flush=True)
    if cache is not None:
        child_plan = [(r["solver"][7:], r["start_window_h"], r["dt_h"]) for r in runs]
        store = os.path.join(cache, "programs")

        def child(mode, folder):
            spec = json.dumps({"n": N, "plan": child_plan, "cache": folder, "t_end": t_end, "mode": mode})
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--cached-child", spec],
                                  capture_output=True, text=True)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("CACHED_CHILD ")]
            if proc.returncode or not line:
                raise SystemExit(f"bench_stiff: the {mode} child process failed: {proc.stderr.strip()[-400:]}")
            return json.loads(line[-1][len("CACHED_CHILD "):]), time.perf_counter() - t

        rows, child_s = child("xla", cache)
        for r, c in zip(runs, rows):
            r["cached_compile_s"] = max(c["first_s"] - c["warm_s"], 0.0)
            r["cached_warm_s"] = c["warm_s"]
            print(f"  cached: tmepde {c['scheme']} W={c['start_window_h']:g} dt={c['dt_h']:g}: "
                  f"first call {c['first_s']:.2f} s, warm {c['warm_s'] * 1e3:.1f} ms", flush=True)
        print(f"second process (import, {len(runs)} programs from the cache, runs): {child_s:.1f} s", flush=True)
        child("store", store)  # a first process compiles and stores each program
        rows, child_s = child("store", store)
        for r, c in zip(runs, rows):
            if not c["loaded"]:
                raise SystemExit(f"bench_stiff: the program store missed {c['scheme']} dt={c['dt_h']:g}")
            r["stored_compile_s"] = max(c["first_s"] - c["warm_s"], 0.0)
            r["stored_warm_s"] = c["warm_s"]
            print(f"  stored: tmepde {c['scheme']} W={c['start_window_h']:g} dt={c['dt_h']:g}: "
                  f"set-up + load + first run {c['first_s']:.3f} s, warm {c['warm_s'] * 1e3:.1f} ms", flush=True)
        print(f"third process (import, {len(runs)} programs from the store, runs): {child_s:.1f} s", flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    # rk4 (explicit, stability-limited): the reference run itself; its error is measured
    # against the tightest SciPy run below.
    rk4_run = {"solver": f"tmepde {ref_scheme}", "dt_h": float(dt_ref), "wall_s": ref_time,
               "compile_s": ref_compile, "error": float("nan")}
    runs.append(rk4_run)

    rtols = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7] if not args.quick else [1e-3, 1e-4]
    if args.rtols:
        rtols = args.rtols
    scipy_best = None
    for rtol in rtols:
        t = time.perf_counter()
        sol = solve_ivp(rhs, (0.0, t_end), y0.ravel(), method="BDF", rtol=rtol, atol=rtol * 1e-3,
                        jac_sparsity=pattern, t_eval=[t_end])
        wall = time.perf_counter() - t
        y = sol.y[:, -1].reshape(3, N, N)
        e = rel_err(y, ref)
        scipy_best = y
        runs.append({"solver": "scipy BDF", "rtol": rtol, "atol": rtol * 1e-3, "wall_s": wall,
                     "error": e, "nfev": int(sol.nfev), "njev": int(sol.njev), "nlu": int(sol.nlu),
                     "status": int(sol.status)})
        print(f"scipy BDF rtol={rtol:g}: err {e:.2e}, {wall:.2f} s (nfev {sol.nfev}, njev {sol.njev})",
              flush=True)
    ref_vs_scipy = rel_err(scipy_best, ref)
    rk4_run["error"] = ref_vs_scipy
    rk4_run["note"] = "reference; error vs tightest SciPy run"

    # Speed ratio at matched error: per (scheme, W) family, log(time) interpolated in
    # log(error); only inside each family's measured error range (no extrapolation).
    families = {}
    for r in runs:
        if family_name(r):
            families.setdefault(family_name(r), []).append(r)
    matched = []
    for r in runs:
        if r["solver"] != "scipy BDF":
            continue
        row = {"rtol": r["rtol"], "error": r["error"], "scipy_s": r["wall_s"], "tmepde_s": {}}
        for name, fam in families.items():
            fam = sorted(fam, key=lambda q: q["error"])
            le = np.log([q["error"] for q in fam])
            lt = np.log([q["wall_s"] for q in fam])
            if le.min() <= np.log(r["error"]) <= le.max():
                row["tmepde_s"][name] = float(np.exp(np.interp(np.log(r["error"]), le, lt)))
        if row["tmepde_s"]:
            best = min(row["tmepde_s"], key=row["tmepde_s"].get)
            row["best"] = best
            row["speedup"] = r["wall_s"] / row["tmepde_s"][best]
            row["speedup_sbdf2_default"] = (r["wall_s"] / row["tmepde_s"]["sbdf2 W=1 h"]
                                            if "sbdf2 W=1 h" in row["tmepde_s"] else None)
        matched.append(row)
    for m in matched:
        if "best" in m:
            print(f"matched error {m['error']:.2e}: scipy {m['scipy_s']:.2f} s, best {m['best']} "
                  f"{m['tmepde_s'][m['best']] * 1e3:.1f} ms -> x{m['speedup']:.0f}", flush=True)

    out = {"command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
           "machine": info, "scipy": scipy.__version__, "t_end_h": t_end, "grid": [N, N], "spacing_um": H,
           "params": PARAMS, "D_um2_per_s": D_PER_S, "decay_per_h": DECAY,
           "rhs_engine_vs_scipy_max_rel_diff": rhs_check, "reference": f"tmepde {ref_scheme} dt={dt_ref:.4g} h" + (", W = 12 h" if ref_scheme == "sbdf4" else ""),
           "reference_time_s": ref_time, "reference_vs_tightest_scipy": ref_vs_scipy,
           "explicit_euler_limit_h": limit, "runs": runs, "matched": matched}
    if os.path.exists(args.out + ".json"):  # keep the order study (see --order-study)
        with open(args.out + ".json") as f:
            previous = json.load(f)
        if "order_study" in previous:
            out["order_study"] = previous["order_study"]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(out, f, indent=1)
    write_markdown(out, args.out + ".md")
    write_figure(out, args.out + ".png")
    print("wrote", args.out + ".{json,md,png}")


def matched_with_compile(out, key="compile_s"):
    """Per SciPy run: each tmepde family's first-call time (``key``: cold ``compile_s`` or
    ``cached_compile_s``, plus the warm run) interpolated log-log at SciPy's error, as for
    the warm times (only inside the family's measured error range).
    Returns ``[{rtol, error, scipy_s, with_compile: {family: s}}]``."""
    families = {}
    for r in out["runs"]:
        if family_name(r) and key in r:
            families.setdefault(family_name(r), []).append(r)
    rows = []
    for r in out["runs"]:
        if r["solver"] != "scipy BDF":
            continue
        row = {"rtol": r["rtol"], "error": r["error"], "scipy_s": r["wall_s"], "with_compile": {}}
        for name, fam in families.items():
            fam = sorted(fam, key=lambda q: q["error"])
            le = np.log([q["error"] for q in fam])
            lt = np.log([q["wall_s"] + q[key] for q in fam])
            if le.min() <= np.log(r["error"]) <= le.max():
                row["with_compile"][name] = float(np.exp(np.interp(np.log(r["error"]), le, lt)))
        rows.append(row)
    return rows


def write_markdown(out, path):
    m = out["machine"]
    L = ["# Time to accuracy: stiff reaction-diffusion (tmepde vs SciPy BDF)", "",
         f"Machine: {m['cpu_model']}, {m['cpu_cores']} cores, backend `{m['backend']}` {m['devices']}; "
         f"jax {m['jax']}, numpy {m['numpy']}, scipy {out['scipy']}; load average at start "
         f"{m['load_average_at_start']} (shared machine).", "",
         f"Command: `{out['command']}`", "",
         f"Problem: 3 fields on {out['grid'][0]}x{out['grid'][1]} cells of {out['spacing_um']:g} µm, "
         f"{out['t_end_h']:g} h, D = {out['D_um2_per_s']} µm²/s, decay {out['decay_per_h']} 1/h, "
         f"params {out['params']}; vessel line + 2 discs. Explicit (forward Euler) limit "
         f"{out['explicit_euler_limit_h'] * 3600:.2f} s. float64 throughout.", "",
         f"Reference: {out['reference']} ({out['reference_time_s']:.1f} s); its distance to the "
         f"tightest SciPy run: {out['reference_vs_tightest_scipy']:.1e}. Engine and SciPy right-hand "
         f"sides agree to {out['rhs_engine_vs_scipy_max_rel_diff']:.1e} (relative) at t = 0.", "",
         "Error = max over fields of the relative L2 error at the final time. tmepde wall time is a "
         "warm `Simulator.run` (compile time listed apart).", "",
         "Compile columns: cold = this process compiles (a user's first run); cached = a second "
         "process that finds the persistent compilation cache filled (every later run; tracing "
         "included); stored = a third process that loads the whole compiled run from the "
         "program store (`Simulator.program(..., store=)`: no tracing; the simulator's set-up, "
         "fingerprint and load counted), – where not measured.", "",
         "| solver | dt (h) / rtol | error | wall (s) | compile, cold (s) | compile, cached (s) | "
         "set-up + load, stored (s) | notes |",
         "|---|---|---|---|---|---|---|---|"]
    for r in out["runs"]:
        if r["solver"] == "scipy BDF":
            L.append(f"| scipy BDF (jac_sparsity) | rtol {r['rtol']:g}, atol {r['atol']:g} | {r['error']:.2e} | "
                     f"{r['wall_s']:.3f} | – | – | – | nfev {r['nfev']}, njev {r['njev']}, nlu {r['nlu']} |")
        else:
            note = r.get("note", "")
            window = f", W {r['start_window_h']:g} h" if "start_window_h" in r else ""
            cached = f"{r['cached_compile_s']:.2f}" if "cached_compile_s" in r else "–"
            stored = f"{r['stored_compile_s']:.3f}" if "stored_compile_s" in r else "–"
            L.append(f"| {r['solver']}{window} | {r['dt_h']:.4g} | {r['error']:.2e} | {r['wall_s']:.4f} | "
                     f"{r['compile_s']:.2f} | {cached} | {stored} | {note} |")
    names = list(dict.fromkeys(n for mm in out["matched"] for n in mm["tmepde_s"]))
    L += ["", "Speed at matched error: each tmepde family's (scheme, start window W) wall time "
          "interpolated log-log at each SciPy error (– where the error is outside the family's "
          "measured range):", "",
          "| SciPy rtol | error | SciPy (s) | " + " | ".join(f"{n} (s)" for n in names)
          + " | speed-up, sbdf2 default | speed-up, best |", "|---" * (len(names) + 5) + "|"]
    for mm in out["matched"]:
        cells = [f"{mm['tmepde_s'][n]:.4f}" if n in mm["tmepde_s"] else "–" for n in names]
        d2 = f"{mm['speedup_sbdf2_default']:.0f}x" if mm.get("speedup_sbdf2_default") else "–"
        best = f"**{mm['speedup']:.0f}x** ({mm['best']})" if "best" in mm else "–"
        L.append(f"| {mm['rtol']:g} | {mm['error']:.2e} | {mm['scipy_s']:.3f} | " + " | ".join(cells)
                 + f" | {d2} | {best} |")
    for key, title in (("compile_s", "Counted with cold compilation (what a user who runs one solve waits "
                                      "for the first time): each tmepde run's first call (the cold `compile` "
                                      "column plus `wall`)"),
                       ("cached_compile_s", "Counted with cached compilation (every later run of the same "
                                            "configuration: a second process that loads the programs from the "
                                            "persistent cache; the cached `compile` column plus `wall`)"),
                       ("stored_compile_s", "Counted with a stored program (every later run of the same "
                                            "configuration through `Simulator.program(..., store=)`: set-up, "
                                            "fingerprint, load and the first run, measured in that process)")):
        rows = matched_with_compile(out, key)
        if not any(mm["with_compile"] for mm in rows):
            continue
        L += ["", title + " interpolated the same way, against the same SciPy time (SciPy compiles "
              "nothing). Same runs as above:", "",
              "| SciPy rtol | error | SciPy (s) | sbdf2 default, compile + run (s) | speed-up, "
              "sbdf2 default | best family, compile + run (s) | speed-up, best |",
              "|---|---|---|---|---|---|---|"]
        for mm in rows:
            d2 = mm["with_compile"].get("sbdf2 W=1 h")
            best = min(mm["with_compile"], key=mm["with_compile"].get) if mm["with_compile"] else None
            L.append(f"| {mm['rtol']:g} | {mm['error']:.2e} | {mm['scipy_s']:.3f} | "
                     + (f"{d2:.2f} | {mm['scipy_s'] / d2:.2f}x | " if d2 else "– | – | ")
                     + (f"{mm['with_compile'][best]:.2f} ({best}) | **{mm['scipy_s'] / mm['with_compile'][best]:.2f}x** |"
                        if best else "– | – |"))
    study = out.get("order_study")
    if study:
        dts = sorted({r["dt_h"] for r in study["rows"]}, reverse=True)
        names = list(dict.fromkeys(r["variant"] for r in study["rows"]))
        L += ["", f"## sbdf2's observed order and the initial layer (`{study['command']}`)", "",
              f"Same problem on {study['grid'][0]}x{study['grid'][1]} cells, {study['t_end_h']:g} h; error "
              "vs rk4 (0.6x the Euler limit) from the same start, max over fields (the field is named); "
              f"load average {tuple(round(x, 2) for x in study['load_average_at_start'])}.", "",
              "| dt (h) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        field = "cfn"
        for dt in dts:
            cells = []
            for nm in names:
                r = next(r for r in study["rows"] if r["variant"] == nm and r["dt_h"] == dt)
                cells.append(f"{r['error']:.2e} ({field[int(np.argmax(r['per_field']))]})")
            L.append(f"| {dt:g} | " + " | ".join(cells) + " |")
        orders = []
        for nm in names:
            e = np.array([next(r["error"] for r in study["rows"] if r["variant"] == nm and r["dt_h"] == dt)
                          for dt in dts])
            orders.append(", ".join(f"{o:.2f}" for o in np.log2(e[:-1] / e[1:])))
        L.append("| successive orders | " + " | ".join(orders) + " |")
        L += ["", "c = cytokine, f = factor, n = cells. The positivity limiter never acts (identical "
              "errors with it off). Before the graded start (commit d236417 and earlier: uniform steps "
              "from the initial state, Richardson first step) the first column read 5.85e-04, 2.59e-04, "
              "1.18e-04, 5.08e-05, 1.92e-05 (orders 1.18, 1.13, 1.22, 1.40): the initial layer; see "
              "docs/numerics.md."]
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def write_figure(out, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    markers = {"tmepde sbdf2": "o-", "tmepde sbdf3": "v-", "tmepde sbdf4": "P-", "tmepde sbdf1": "s-",
               "tmepde etd1": "<:", "tmepde etdrk2": ">:",
               "tmepde rk4": "^", "scipy BDF": "D-"}
    keys = list(dict.fromkeys((r["solver"], r.get("start_window_h")) for r in out["runs"]))
    for solver, window in keys:
        rs = [r for r in out["runs"] if r["solver"] == solver and r.get("start_window_h") == window
              and np.isfinite(r["error"])]
        if rs:
            rs.sort(key=lambda r: r["wall_s"])
            label = (solver if window is None or solver in ("tmepde sbdf1", "tmepde etd1", "tmepde etdrk2")
                     else f"{solver}, W = {window:g} h")
            style = markers.get(solver, "x-")
            if window is not None and window > 1:
                style = style.replace("-", "--")
            ax.loglog([r["wall_s"] for r in rs], [r["error"] for r in rs], style, label=label)
    ax.set_xlabel("wall time (s, after compile)")
    ax.set_ylabel("relative L2 error at final time (max over fields)")
    ax.set_title(f"Stiff RD, {out['grid'][0]}² x 3 fields, {out['t_end_h']:g} h "
                 f"({out['machine']['cpu_model']})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
