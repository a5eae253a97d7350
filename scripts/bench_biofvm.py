"""tmepde against BioFVM's diffusion-decay solver on BioFVM's own problem, side by side.

BioFVM (Ghaffarizadeh, Friedman & Macklin, Bioinformatics 32:1256, 2016; the solver inside
PhysiCell) integrates ``du_s/dt = D_s lap(u_s) - lambda_s u_s`` with zero-flux faces by
locally one-dimensional implicit Euler sweeps (first order in time, any dt stable). Problem,
after its substrate-scaling example (examples/performance_test_substrates.cpp, whose
ranges are 7.5e4-1.25e5 µm²/min and 0.05-0.15 /min): 10 substrates, substrate 0 with
D = 1e5 µm²/min and decay 0.1 /min (oxygen), substrates 1-9 evenly spaced in D 8.1e4-1.25e5
µm²/min and decay 0.061-0.15 /min (the values are in the results JSON), on 512² voxels of 20 µm, 1 h, from Gaussian blobs
(σ = 100-300 µm) on a background. Both codes use the same cell-centred 5-point spatial
operator, so the reference is the exact-in-time solution of that semi-discrete system (a
cosine transform: the Neumann Laplacian's eigenvectors, numpy float64), and every error
below is pure time-integration error: max over substrates of max|u - u_ref| / max|u_ref|
at t = 1 h.

Measured in one run: BioFVM's per-step cost and the error of a 1-h run for several step
counts (2 OpenMP threads, plus one short 1-thread run), and the same for tmepde's IMEX
schemes (sbdf1 = IMEX Euler, sbdf2) and exponential integrators (etd1, etdrk2; float64 like
BioFVM). The exponential integrators are exact in time on this linear constant-coefficient
problem (their error is round-off at any step count): the comparison that counts for them
is the per-step cost, and the variant below.

Variant (``--variant-n``, tmepde only: the BioFVM driver runs the plain problem): the same
substrates plus linear uptake by a disc of cells, ``-u_s χ(x) c_s`` (χ a smoothed disc of
radius 0.3 of the domain at its centre, u_s = 0.05-0.1 /min, the size of the decay rates: BioFVM's uptake by cells, as a
field). Space-varying decay is not diagonal in any transform, so no scheme is exact: the IMEX
schemes solve it by preconditioned CG, the ETD schemes put the midpoint decay in the
exponential and the remainder in the explicit part. Reference: etdrk2 at many steps,
cross-checked against sbdf3 (their distance is printed and stored). Time to accuracy at
1e-1, 1e-2, 1e-3 is interpolated log-log between measured runs, or extrapolated from the
last two runs (fitted order, measured time per step) where a target lies beyond them;
extrapolated entries are marked.

BioFVM is built here from a source checkout named on the command line (no third-party
source ships with tmepde)::

    nice -n 5 python scripts/bench_biofvm.py --biofvm-src /path/to/BioFVM
    (a checkout of github.com/MathCancer/BioFVM, or PhysiCell's BioFVM/ folder)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
N = 512
DX = 20.0  # µm
S = 10
T_MIN = 60.0  # 1 h
TARGETS = (1e-1, 1e-2, 1e-3)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return str(os.getloadavg())


def problem():
    """(D µm²/min (S,), decay 1/min (S,), y0 (S, N, N) float64)."""
    D = np.linspace(7.5e4, 1.25e5, S)
    lam = np.linspace(0.05, 0.15, S)
    D[0], lam[0] = 1e5, 0.1
    rng = np.random.default_rng(1)
    x = (np.arange(N) + 0.5) * DX
    y0 = np.empty((S, N, N))
    for s in range(S):
        f = np.full((N, N), 0.1)
        for _ in range(3):
            cx, cy = rng.uniform(0.3, 0.7, 2) * N * DX
            sig = rng.uniform(100.0, 300.0)
            f += np.exp(-((x[None, :] - cx) ** 2 + (x[:, None] - cy) ** 2) / (2 * sig**2))
        y0[s] = f
    return D, lam, y0


def exact(D, lam, y0, t):
    """Exact solution at t (min) of the semi-discrete zero-flux 5-point system."""
    k = np.arange(N)
    i = np.arange(N)
    V = np.cos(np.pi * np.outer(i + 0.5, k) / N) * np.sqrt(2.0 / N)
    V[:, 0] = np.sqrt(1.0 / N)
    ev = 4.0 * np.sin(np.pi * k / (2 * N)) ** 2 / DX**2  # eigenvalues of -lap, 1/µm²
    out = np.empty_like(y0)
    for s in range(S):
        z = V.T @ y0[s] @ V
        z *= np.exp(-(D[s] * (ev[:, None] + ev[None, :]) + lam[s]) * t)
        out[s] = V @ z @ V.T
    return out


def uptake_map(n):
    """χ(x): 1 inside a disc of radius 0.3 L at the centre, 0 outside, a 3-voxel tanh rim."""
    x = (np.arange(n) + 0.5) / n
    r = np.sqrt((x[None, :] - 0.5) ** 2 + (x[:, None] - 0.5) ** 2)
    return 0.5 * (1 - np.tanh((r - 0.3) * n / 3.0))


def error(u, ref):
    return float(max(np.max(np.abs(u[s] - ref[s])) / np.max(np.abs(ref[s])) for s in range(S)))


def build_biofvm(src: str, build_dir: str) -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise SystemExit("bench_biofvm: no C++ compiler (g++/c++) found; install one or skip this benchmark")
    names = ["vector", "matlab", "utilities", "mesh", "microenvironment", "solvers", "basic_agent",
             "agent_container", "MultiCellDS"]
    sources = [os.path.join(src, f"BioFVM_{n}.cpp") for n in names] + [os.path.join(src, "pugixml.cpp")]
    missing = [p for p in sources if not os.path.exists(p)]
    if missing:
        raise SystemExit(f"--biofvm-src {src}: not a BioFVM source folder (missing {missing[0]})")
    os.makedirs(build_dir, exist_ok=True)
    exe = os.path.join(build_dir, "biofvm_driver")
    driver = os.path.join(HERE, "biofvm_driver.cpp")
    newest = max(os.path.getmtime(p) for p in sources + [driver])
    if os.path.exists(exe) and os.path.getmtime(exe) > newest:
        return exe
    cmd = [cxx, "-O3", "-march=native", "-fopenmp", "-std=c++11", "-w", f"-I{src}", driver, *sources, "-o", exe]
    print(" ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"bench_biofvm: building BioFVM from --biofvm-src {src} failed: {tail}")
    return exe


def run_biofvm(exe, tmp, steps, threads):
    dt = T_MIN / steps
    out = os.path.join(tmp, "out.bin")
    r = subprocess.run([exe, str(N), str(DX), str(S), repr(dt), str(steps), str(threads),
                        os.path.join(tmp, "params.txt"), os.path.join(tmp, "init.bin"), out],
                       capture_output=True, text=True, check=True)
    line = [l for l in r.stdout.splitlines() if l.startswith("first_step_s=")][-1]
    vals = dict(kv.split("=") for kv in line.split())
    u = np.fromfile(out, np.float64).reshape(S, N, N)
    return {"steps": steps, "dt_min": dt, "wall_s": float(vals["first_step_s"]) + float(vals["steps_s"]),
            "ms_per_step": float(vals["ms_per_step"]), "first_step_s": float(vals["first_step_s"])}, u


def tmepde_runner(D, lam, y0, uptake=None):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    sys.path.insert(0, os.path.join(HERE, ".."))
    from tmepde import Grid, Model, Simulator, Species

    n = y0.shape[-1]
    species = [Species(f"s{i}", diffusivity=float(D[i]) / 60.0, decay=float(lam[i]) * 60.0,
                       boundary="neumann") for i in range(S)]  # µm²/s, 1/h
    if uptake is None:
        model = Model(species, name="biofvm_problem")
    else:  # uptake: (S,) 1/min; local decay u_s χ(x) in 1/h
        chi = uptake_map(n)
        rates = {f"s{i}": float(uptake[i]) * 60.0 * chi for i in range(S)}
        model = Model(species, local_decay=lambda t, y, p: rates, name="biofvm_uptake")
    grid = Grid((n, n), DX)
    params = model.default_params(jnp.float64)
    y0j = jnp.asarray(y0)

    def run(scheme, steps, repeats, start_window):
        dt_h = (T_MIN / 60.0) / steps
        sim = Simulator(model, grid, dt=dt_h, save_every=1.0, scheme=scheme, dtype=jnp.float64,
                        start_window=start_window)

        def once():
            t = time.perf_counter()
            carry = jax.block_until_ready(sim.init(y0j, params))
            t1 = time.perf_counter()
            u = jax.block_until_ready(sim.advance(carry, params, 1)[1][0])
            return u, t1 - t, time.perf_counter() - t1

        t = time.perf_counter()
        u, _, _ = once()
        first = time.perf_counter() - t
        best = (math.inf, math.inf, math.inf)
        for _ in range(repeats):
            _, ti, ta = once()
            best = min(best, (ti + ta, ti, ta))
        return {"steps": steps, "dt_min": T_MIN / steps, "wall_s": best[0], "init_s": best[1],
                "compile_s": max(first - best[0], 0.0),
                "ms_per_step": 1e3 * best[2] / steps, "compile_and_first_s": first}, np.asarray(u)

    return run


def time_to(records, target):
    """(seconds, extrapolated?) to reach `target` error, log-log in (error, wall)."""
    recs = sorted(records, key=lambda r: r["steps"])
    for a, b in zip(recs, recs[1:]):
        if (a["error"] - target) * (b["error"] - target) <= 0 and a["error"] != b["error"]:
            w = math.log(target / a["error"]) / math.log(b["error"] / a["error"])
            return math.exp(math.log(a["wall_s"]) + w * math.log(b["wall_s"] / a["wall_s"])), False
    if recs[0]["error"] <= target:
        return recs[0]["wall_s"], False  # the coarsest run already meets it
    a, b = recs[-2], recs[-1]
    order = math.log(a["error"] / b["error"]) / math.log(b["steps"] / a["steps"])
    if order <= 0.2:
        return math.inf, True
    steps = b["steps"] * (b["error"] / target) ** (1.0 / order)
    return steps * b["wall_s"] / b["steps"], True


def run_variant(args, D, lam):
    """tmepde's schemes on the uptake variant at ``args.variant_n``² (see the docstring)."""
    global N
    n_keep, N = N, args.variant_n
    try:
        _, _, y0 = problem()  # same blobs, on the variant's grid
    finally:
        N = n_keep
    uptake = np.linspace(0.05, 0.1, S)
    run = tmepde_runner(D, lam, y0, uptake)
    (rs, rn), (cs, cn) = [(p.split(":")[0], int(p.split(":")[1])) for p in args.variant_reference.split(",")]
    _, ref = run(rs, rn, 0, args.start_window)
    _, check = run(cs, cn, 0, args.start_window)
    ref_check = error(check, ref)
    print(f"variant {args.variant_n}²: reference {rs} {rn} steps vs {cs} {cn} steps: {ref_check:.2e}", flush=True)
    recs = {}
    for spec in args.variant_schemes:
        scheme, _, counts = spec.partition(":")
        recs[scheme] = []
        for steps in [int(c) for c in counts.split(",")]:
            rec, u = run(scheme, steps, args.repeats, args.start_window)
            rec["error"] = error(u, ref)
            recs[scheme].append(rec)
            print(f"variant tmepde {scheme} {steps:5d} steps: {rec['ms_per_step']:.2f} ms/step, "
                  f"{rec['wall_s']:.3f} s, error {rec['error']:.2e}", flush=True)
    tta = {f"tmepde {s_}": {f"{t:g}": time_to(r, t) for t in TARGETS} for s_, r in recs.items()}
    return {"n": args.variant_n, "uptake_per_min": uptake.tolist(), "reference": f"{rs} {rn} steps",
            "cross_check": f"{cs} {cn} steps", "reference_vs_cross_check": ref_check, "tmepde": recs,
            "time_to_accuracy_s": tta}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--biofvm-src", help="BioFVM source folder (BioFVM_*.cpp, pugixml.cpp)")
    ap.add_argument("--biofvm-steps", type=int, nargs="+", default=[15, 30, 60, 120, 240])
    ap.add_argument("--schemes", nargs="+", default=["sbdf1:30,60", "sbdf2:20,40,80", "etd1:1,30",
                                                       "etdrk2:1,30"],
                    help="tmepde scheme:steps,steps,... (steps per 1-h run)")
    ap.add_argument("--start-window", type=float, default=0.05,
                    help="tmepde graded start (h); the default 1 h would cover the whole run")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--variant-n", type=int, default=256,
                    help="voxels per side of the uptake variant (tmepde only); 0 skips it")
    ap.add_argument("--variant-schemes", nargs="+",
                    default=["sbdf1:30,60", "sbdf2:20,40,80,160", "etd1:15,30,60,120",
                             "etdrk2:5,10,20,40"])
    ap.add_argument("--variant-reference", default="etdrk2:480,sbdf3:240",
                    help="reference scheme:steps and cross-check scheme:steps of the variant")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build-dir", default=os.path.join("build", "bench"))
    ap.add_argument("--out", default=os.path.join("results", "bench_biofvm"))
    args = ap.parse_args(argv)
    if not args.biofvm_src:
        print("bench_biofvm: skipped (pass --biofvm-src DIR, a BioFVM source checkout)")
        return 0
    command = "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    load_before = uptime()
    print(load_before, flush=True)
    exe = build_biofvm(os.path.abspath(args.biofvm_src), args.build_dir)
    D, lam, y0 = problem()
    ref = exact(D, lam, y0, T_MIN)
    tmp = tempfile.mkdtemp(prefix="bench_biofvm_")
    np.savetxt(os.path.join(tmp, "params.txt"), np.stack([D, lam], 1), fmt="%.17g")
    y0.tofile(os.path.join(tmp, "init.bin"))

    biofvm = []
    for steps in args.biofvm_steps:
        rec, u = run_biofvm(exe, tmp, steps, args.threads)
        rec["error"] = error(u, ref)
        biofvm.append(rec)
        print(f"BioFVM LOD {steps:5d} steps: {rec['ms_per_step']:.2f} ms/step, {rec['wall_s']:.2f} s, "
              f"error {rec['error']:.2e}", flush=True)
    one, _ = run_biofvm(exe, tmp, 20, 1)
    print(f"BioFVM 1 thread: {one['ms_per_step']:.2f} ms/step", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    from _machine import machine_info

    info = machine_info()
    run = tmepde_runner(D, lam, y0)
    tm = {}
    for spec in args.schemes:
        scheme, _, counts = spec.partition(":")
        tm[scheme] = []
        for steps in [int(c) for c in counts.split(",")] if counts else [20, 40, 80]:
            rec, u = run(scheme, steps, args.repeats, args.start_window)
            rec["error"] = error(u, ref)
            tm[scheme].append(rec)
            print(f"tmepde {scheme} {steps:5d} steps: {rec['ms_per_step']:.2f} ms/step, {rec['wall_s']:.3f} s, "
                  f"error {rec['error']:.2e} (init {rec['init_s']:.2f} s, compile+first {rec['compile_and_first_s']:.1f} s)", flush=True)
    variant = run_variant(args, D, lam) if args.variant_n else None
    load_after = uptime()
    print(load_after, flush=True)

    tta = {"BioFVM LOD": {f"{t:g}": time_to(biofvm, t) for t in TARGETS}}
    for scheme, recs in tm.items():
        tta[f"tmepde {scheme}"] = {f"{t:g}": time_to(recs, t) for t in TARGETS}
    out = {"command": command, "machine": info, "uptime_before": load_before, "uptime_after": load_after,
           "problem": {"n": N, "dx_um": DX, "substrates": S, "t_min": T_MIN, "D_um2_per_min": D.tolist(),
                       "decay_per_min": lam.tolist()},
           "threads": args.threads, "biofvm": biofvm, "biofvm_1_thread": one, "tmepde": tm,
           "start_window_h": args.start_window, "time_to_accuracy_s": tta, "variant": variant}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(out, f, indent=1)
    write_markdown(out, args.out + ".md")
    print("wrote", args.out + ".{json,md}")
    return 0


def write_markdown(out, path):
    m = out["machine"]
    p = out["problem"]
    b = out["biofvm"]
    lines = [
        "# tmepde vs BioFVM: diffusion + decay, 10 substrates, 512² x 20 µm, 1 h (same run)", "",
        f"Machine: {m['cpu_model']}, {m['cpu_cores']} cores (shared), jax {m['jax']} `{m['backend']}`; "
        f"BioFVM built with `g++ -O3 -march=native -fopenmp` from the given source, {out['threads']} "
        "OpenMP threads (scripts/biofvm_driver.cpp).", "",
        f"Command: `{out['command']}`", "",
        f"Load: before `{out['uptime_before']}`; after `{out['uptime_after']}`.", "",
        f"Problem: D = {p['D_um2_per_min'][0]:.3g} µm²/min (substrate 0) and "
        f"{min(p['D_um2_per_min']):.3g}–{max(p['D_um2_per_min']):.3g}; decay "
        f"{min(p['decay_per_min']):.2g}–{max(p['decay_per_min']):.2g} /min; zero-flux faces; Gaussian "
        "blobs on a background. Error: max over substrates of max|u − u_ref| / max|u_ref| at 1 h against "
        "the exact-in-time solution of the shared 5-point semi-discrete system (cosine transform), "
        "so it is time-integration error only. Both codes float64. tmepde: compiled once per dt "
        f"(compile not in the times), graded start {out['start_window_h']} h. Only the ratios of this "
        "run should be compared; absolute times move with the machine's load.", "",
        "## Per step", "",
        "| code | ms/step |", "|---|---|",
        f"| BioFVM LOD 2D, {out['threads']} threads (median over runs) | "
        f"{np.median([r['ms_per_step'] for r in b]):.2f} |",
        f"| BioFVM LOD 2D, 1 thread | {out['biofvm_1_thread']['ms_per_step']:.2f} |",
    ]
    for scheme, recs in out["tmepde"].items():
        r = max(recs, key=lambda q: q["steps"])  # a 1-step run is mostly call overhead
        lines.append(f"| tmepde {scheme} ({r['steps']}-step run) | {r['ms_per_step']:.2f} |")
    lines += ["", "## Runs (1 h each; wall includes BioFVM's first step with its factorisation and "
              "tmepde's `init`, which runs the graded start of the BDF schemes)", "",
              "| code | steps | dt (min) | wall (s) | of which setup / init (s) | error |", "|---|---|---|---|---|---|"]
    for r in b:
        lines.append(f"| BioFVM | {r['steps']} | {r['dt_min']:.3g} | {r['wall_s']:.3f} | {r['first_step_s']:.3f} | {r['error']:.2e} |")
    for scheme, recs in out["tmepde"].items():
        for r in recs:
            lines.append(f"| tmepde {scheme} | {r['steps']} | {r['dt_min']:.3g} | {r['wall_s']:.3f} | {r['init_s']:.3f} | {r['error']:.2e} |")
    lines += ["", "## Time to accuracy (s; * = extrapolated beyond the measured runs with the fitted order "
              "and the measured time per step)", "",
              "| code | " + " | ".join(f"error {t:g}" for t in TARGETS) + " |",
              "|---" * (len(TARGETS) + 1) + "|"]
    tta = out["time_to_accuracy_s"]
    for code, row in tta.items():
        cells = []
        for t in TARGETS:
            s, ext = row[f"{t:g}"]
            cells.append("–" if not math.isfinite(s) else f"{s:.3g}{'*' if ext else ''}")
        lines.append(f"| {code} | " + " | ".join(cells) + " |")
    best = {}
    for t in TARGETS:
        k = f"{t:g}"
        cands = [(row[k][0], code) for code, row in tta.items() if code.startswith("tmepde") and math.isfinite(row[k][0])]
        if cands and math.isfinite(tta["BioFVM LOD"][k][0]):
            s, code = min(cands)
            best[k] = f"{tta['BioFVM LOD'][k][0] / s:.3g}x ({code})"
    lines += ["", "BioFVM time / best tmepde time at matched error: "
              + ", ".join(f"{k}: {v}" for k, v in best.items()) + ". etd1 and etdrk2 integrate this "
              "linear constant-coefficient problem exactly (error = round-off at any dt), so their "
              "time to any accuracy is one step; the per-step table is the like-for-like cost."]
    v = out.get("variant")
    if v:
        lines += ["", f"## Variant: space-varying uptake by cells ({v['n']}², tmepde only)", "",
                  f"Uptake u_s χ(x), u_s = {min(v['uptake_per_min']):.2g}–{max(v['uptake_per_min']):.2g} "
                  "/min inside a disc of radius 0.3 L (scripts/bench_biofvm.py: uptake_map), on top of the "
                  f"same diffusion and decay. No scheme is exact here. Reference: {v['reference']}; "
                  f"its distance to {v['cross_check']}: {v['reference_vs_cross_check']:.1e}. The BioFVM "
                  "driver runs only the plain problem.", "",
                  "| scheme | steps | ms/step | wall (s) | compile (s) | error |", "|---|---|---|---|---|---|"]
        for scheme, recs in v["tmepde"].items():
            for r in recs:
                lines.append(f"| tmepde {scheme} | {r['steps']} | {r['ms_per_step']:.2f} | {r['wall_s']:.3f} | "
                             f"{r.get('compile_s', float('nan')):.1f} | {r['error']:.2e} |")
        lines += ["", "| scheme | " + " | ".join(f"time to {t:g} (s)" for t in TARGETS) + " |",
                  "|---" * (len(TARGETS) + 1) + "|"]
        for code, row in v["time_to_accuracy_s"].items():
            cells = []
            for t in TARGETS:
                s_, ext = row[f"{t:g}"]
                cells.append("–" if not math.isfinite(s_) else f"{s_:.3g}{'*' if ext else ''}")
            lines.append(f"| {code} | " + " | ".join(cells) + " |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    raise SystemExit(main())
