"""Explicit step of tmepde against a hand-written C/OpenMP 5-point stencil, side by side.

Case: S = 12 fields x 512² float32, diffusion (D = 1..2 µm²/s) + linear decay (0.1/h),
zero-flux faces, h = 10 µm, forward Euler at half the stability limit; the same arithmetic
in every code (y + a (Σ neighbours - 4 y) - b y). Measured in one run, alternating:

* tmepde ``Simulator(scheme="euler")``, species not nonnegative (no positivity limiter);
* the same with all species nonnegative (the local limiter's gate runs every step);
* the same with ``disc.clip`` replaced by the identity (what the step costs without it);
* a minimal JAX ``lax.scan`` of the same stencil (zero-filled shifts, neighbour counts):
  what XLA:CPU makes of this arithmetic with none of the engine around it;
* scripts/stencil_reference.c built here with ``gcc -O3 -fopenmp -march=native``, 1 and 2
  OpenMP threads (skipped with one line if no C compiler is found).

Every variant is checked against the C result after the same steps. Only ratios from the
same run mean anything on a shared machine: the report gives the median of call-by-call
ratios to the unlimited step (call i of each variant ran in the same round; the order of the
variants rotates from round to round) next to the ratio of the best calls. Usage::

    nice -n 5 python scripts/bench_stencil.py                 # 200 steps per call, 2 rounds
    python scripts/bench_stencil.py --n 256 --steps 50 --rounds 1 --out /tmp/x
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

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
from tmepde import Grid, Simulator  # noqa: E402
from _machine import machine_info  # noqa: E402
from bench_engine import make_model, SPACING  # noqa: E402


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return str(os.getloadavg())


def build_reference(build_dir: str) -> str | None:
    """Compile stencil_reference.c; the executable's path, or None (printed why)."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        print("no C compiler (gcc/cc) found: skipping the C reference stencil")
        return None
    os.makedirs(build_dir, exist_ok=True)
    exe = os.path.join(build_dir, "stencil_reference")
    cmd = [cc, "-O3", "-fopenmp", "-march=native", "-o", exe, os.path.join(HERE, "stencil_reference.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        print(f"{' '.join(cmd)} failed, skipping the C reference:\n{r.stderr.strip()}")
        return None
    return exe


def minimal_jax_step(a, b, n, dtype):
    """The same Euler step in plain JAX: zero-filled shifts, minus (neighbour count) * y."""
    nb = np.full((n, n), 4.0)
    nb[0, :] -= 1
    nb[-1, :] -= 1
    nb[:, 0] -= 1
    nb[:, -1] -= 1
    nb = jnp.asarray(nb, dtype)
    a = jnp.asarray(a, dtype).reshape(-1, 1, 1)
    b = jnp.asarray(b, dtype).reshape(-1, 1, 1)
    zero = jnp.zeros((), dtype)

    def step(y):
        s = (jax.lax.pad(y[:, 1:, :], zero, ((0, 0, 0), (0, 1, 0), (0, 0, 0)))
             + jax.lax.pad(y[:, :-1, :], zero, ((0, 0, 0), (1, 0, 0), (0, 0, 0)))
             + jax.lax.pad(y[:, :, 1:], zero, ((0, 0, 0), (0, 0, 0), (0, 1, 0)))
             + jax.lax.pad(y[:, :, :-1], zero, ((0, 0, 0), (0, 0, 0), (1, 0, 0))))
        return y + a * (s - nb * y) - b * y

    return step


def step_body_ops(text: str) -> list[str]:
    """Instructions of the innermost loop body (the step) in optimised HLO text: the largest
    ``while`` body with a known trip count that contains no ``while`` itself, minus
    parameters, constants, tuples and bitcasts. Each entry: ``opcode`` or ``fusion:<op>``
    with the op the fusion is named after (``reduce_min``, ``multiply_add``, ...)."""
    import re
    bodies = {}
    name, lines = None, []
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            name, lines = line.split(" ", 1)[0].lstrip("%"), []
        elif line.startswith("}"):
            if name:
                bodies[name] = lines
            name = None
        elif name:
            lines.append(line)
    steps = []
    for lines in bodies.values():
        for line in lines:
            m = re.search(r" while\(.*body=%([\w.\-]+)", line)
            if m and "known_trip_count" in line and m.group(1) in bodies:
                body = bodies[m.group(1)]
                if not any(" while(" in b for b in body):
                    steps.append(body)
    if not steps:
        return []
    ops = []
    for line in max(steps, key=len):
        m = re.search(r"= \S+ (\w[\w\-]*)\(", line)
        if not m or m.group(1) in ("parameter", "constant", "tuple", "get-tuple-element", "bitcast"):
            continue
        op = m.group(1)
        if op == "fusion":
            meta = re.search(r'op_name="[^"]*/(\w+)"', line)
            shape = line.split("=", 1)[1].split()[0]
            if shape in ("s64[]", "s32[]"):
                continue  # loop counters
            op = f"fusion:{meta.group(1) if meta else '?'}"
        ops.append(op)
    return ops


def hlo_summary(sim, carry, params) -> dict:
    """Counts in the optimised HLO of the engine's advance: fusions, copies, conditionals,
    and the instructions of one step (the innermost loop body)."""
    try:
        text = sim._advance.lower(carry, sim._as_params(params), 1).compile().as_text()
    except Exception as e:  # diagnostics only
        return {"error": str(e).splitlines()[0]}
    return {"fusion": text.count(" fusion("), "copy": text.count(" copy("),
            "conditional": text.count(" conditional("), "while": text.count(" while("),
            "step_body": step_body_ops(text)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--species", type=int, default=12)
    ap.add_argument("--steps", type=int, default=200, help="steps per timed call")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per variant and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of all variants")
    ap.add_argument("--build-dir", default=os.path.join("build", "bench"))
    ap.add_argument("--out", default=os.path.join("results", "bench_stencil"))
    args = ap.parse_args(argv)
    n, S, steps = args.n, args.species, args.steps
    dtype = jnp.float32
    command = "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    info = machine_info()
    load_before = uptime()
    print(load_before, flush=True)

    grid = Grid((n, n), SPACING)
    y0_np = np.random.default_rng(0).random((S, n, n)).astype(np.float32)
    y0 = jnp.asarray(y0_np)
    model_off = make_model(S, nonnegative=False)
    model_on = make_model(S, nonnegative=True)
    params = model_off.default_params(dtype)
    dt = 0.5 * Simulator(model_off, grid, dt=1.0, dtype=dtype).disc.explicit_dt_limit(model_off.default_params())
    D_h = np.array([float(params[f"D_{s.name}"]) for s in model_off.species]) * 3600.0  # µm²/h
    k_h = np.array([float(params[f"decay_{s.name}"]) for s in model_off.species])  # 1/h
    a = (dt * D_h / SPACING**2).astype(np.float32)
    b = (dt * k_h).astype(np.float32)

    variants = {}  # name -> (callable that runs `steps` steps and blocks, result getter)
    sims = {}
    for name, model, elide in (("tmepde_limiter_off", model_off, False),
                               ("tmepde_limiter_on", model_on, False),
                               ("tmepde_limiter_on_clip_elided", model_on, True)):
        sim = Simulator(model, grid, dt=dt, save_every=dt * steps, scheme="euler", dtype=dtype)
        if elide:
            sim.disc.clip = lambda y: y
        carry = sim.init(y0, params)
        sims[name] = (sim, carry)
        variants[name] = (lambda sim=sim, carry=carry: jax.block_until_ready(sim.advance(carry, params, 1)),
                          lambda sim=sim, carry=carry: np.asarray(sim.advance(carry, params, 1)[1][0]))
    mstep = minimal_jax_step(a, b, n, dtype)
    mloop = jax.jit(lambda y: jax.lax.scan(lambda c, _: (mstep(c), None), y, None, length=steps)[0])
    variants["jax_minimal_scan"] = (lambda: jax.block_until_ready(mloop(y0)), lambda: np.asarray(mloop(y0)))

    compile_s = {}
    for name, (run, _) in variants.items():
        t = time.perf_counter()
        run()
        compile_s[name] = time.perf_counter() - t

    tmp = tempfile.mkdtemp(prefix="bench_stencil_")
    exe = build_reference(args.build_dir)
    c_out = None
    if exe:
        np.savetxt(os.path.join(tmp, "coef.txt"), np.stack([a, b], 1), fmt="%.9e")
        y0_np.tofile(os.path.join(tmp, "init.bin"))
        c_out = os.path.join(tmp, "out.bin")

        def c_run(threads):
            r = subprocess.run([exe, str(n), str(S), str(steps), str(threads), os.path.join(tmp, "coef.txt"),
                                os.path.join(tmp, "init.bin"), c_out], capture_output=True, text=True, check=True)
            return float(r.stdout.split("=")[1]) * 1e-3  # s per step (best of 3 inside)

    times = {name: [] for name in variants}
    if exe:
        times["c_openmp_1_thread"], times["c_openmp_2_threads"] = [], []
    names = list(variants)
    for rnd in range(args.rounds):
        # rotate the order each round, so that no variant always runs first (or right after C)
        for name in names[rnd % len(names):] + names[:rnd % len(names)]:
            run = variants[name][0]
            for _ in range(args.repeats):
                t = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - t) / steps)
            print(f"round {rnd}: {name}: {min(times[name]) * 1e3:.3f} ms/step", flush=True)
        if exe:
            for th in (1, 2):
                key = f"c_openmp_{th}_thread" + ("s" if th > 1 else "")
                times[key].append(c_run(th))
                print(f"round {rnd}: {key}: {min(times[key]) * 1e3:.3f} ms/step", flush=True)

    # Agreement with the C result after `steps` steps (every variant starts from y0).
    agree = {}
    ref = None
    if exe:
        c_run(2)
        ref = np.fromfile(c_out, np.float32).reshape(S, n, n)
    else:
        ref = variants["jax_minimal_scan"][1]()
    for name, (_, get) in variants.items():
        agree[name] = float(np.max(np.abs(get() - ref)) / np.max(np.abs(ref)))
    shutil.rmtree(tmp, ignore_errors=True)

    best = {k: min(v) for k, v in times.items()}
    # Call i of a variant and call i of the unlimited one ran in the same round, seconds apart:
    # their ratio cancels the machine's slow drifts, and the median of these ratios ignores a
    # single undisturbed (or disturbed) call, which a ratio of two bests does not.
    off = np.asarray(times["tmepde_limiter_off"])
    paired = {}
    for k in ("tmepde_limiter_on", "tmepde_limiter_on_clip_elided", "jax_minimal_scan"):
        r = np.asarray(times[k]) / off
        paired[k] = {"median": float(np.median(r)), "q25": float(np.percentile(r, 25)),
                     "q75": float(np.percentile(r, 75)), "n": int(r.size)}
    # The clip-elided program is the limiter-off program (same optimised HLO): limiter on
    # against it is a second estimate, and its ratio to limiter off shows the noise.
    r = np.asarray(times["tmepde_limiter_on"]) / np.asarray(times["tmepde_limiter_on_clip_elided"])
    paired["tmepde_limiter_on_vs_clip_elided"] = {
        "median": float(np.median(r)), "q25": float(np.percentile(r, 25)),
        "q75": float(np.percentile(r, 75)), "n": int(r.size)}
    c_best = min(best.get("c_openmp_1_thread", np.inf), best.get("c_openmp_2_threads", np.inf))
    hlo = {name: hlo_summary(*sims[name], params) for name in sims}
    load_after = uptime()
    print(load_after, flush=True)
    out = {"command": command, "machine": info, "uptime_before": load_before, "uptime_after": load_after,
           "case": f"{S} fields x {n}² float32, diffusion D = 1..2 µm²/s + decay 0.1/h, zero flux, "
                   f"h = {SPACING} µm, forward Euler, dt = {dt:.4g} h (half the limit), {steps} steps per call",
           "s_per_step_best": best, "s_per_step_all": times, "compile_and_first_call_s": compile_s,
           "max_rel_diff_vs_reference": agree, "hlo_counts": hlo,
           "ratio_c_best_over": {k: c_best / v for k, v in best.items()} if np.isfinite(c_best) else {},
           "limiter_on_over_off": best["tmepde_limiter_on"] / best["tmepde_limiter_off"],
           "paired_over_limiter_off": paired}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(out, f, indent=1)
    write_markdown(out, args.out + ".md")
    print("wrote", args.out + ".{json,md}")


LABELS = {
    "tmepde_limiter_off": "tmepde euler, limiter off (species not nonnegative)",
    "tmepde_limiter_on": "tmepde euler, limiter on (all species nonnegative)",
    "tmepde_limiter_on_clip_elided": "tmepde euler, nonnegative, clip replaced by identity",
    "jax_minimal_scan": "plain JAX lax.scan of the same stencil (no engine)",
    "c_openmp_1_thread": "C/OpenMP reference, 1 thread",
    "c_openmp_2_threads": "C/OpenMP reference, 2 threads",
}


def write_markdown(out, path):
    m = out["machine"]
    best = out["s_per_step_best"]
    ratio = out["ratio_c_best_over"]
    lines = [
        "# Explicit step: tmepde vs a hand-written C/OpenMP stencil (same run)", "",
        f"Machine: {m['cpu_model']}, {m['cpu_cores']} cores (shared), jax {m['jax']}, backend "
        f"`{m['backend']}`, Python {m['python']}.", "",
        f"Command: `{'XLA_FLAGS=' + repr(m['xla_flags']) + ' ' if m.get('xla_flags') else ''}"
        f"{out['command']}`", "",
        f"Load: before `{out['uptime_before']}`; after `{out['uptime_after']}`.", "",
        f"Case: {out['case']}. C built with `gcc -O3 -fopenmp -march=native` "
        "(scripts/stencil_reference.c). Best of all timed calls; the variants alternate, so the "
        "ratios in this table (measured side by side in one run) are the numbers to trust, not "
        "the absolute milliseconds.", "",
        "| code | ms/step (best) | ms/step (median) | C best / this | max rel. diff vs C | compile + first call (s) |",
        "|---|---|---|---|---|---|",
    ]
    for k in best:
        med = float(np.median(out["s_per_step_all"][k])) * 1e3
        r = f"{100 * ratio[k]:.0f} %" if k in ratio else "–"
        diff = out["max_rel_diff_vs_reference"].get(k)
        comp = out["compile_and_first_call_s"].get(k)
        lines.append(f"| {LABELS.get(k, k)} | {best[k] * 1e3:.3f} | {med:.3f} | {r} | "
                     + (f"{diff:.1e}" if diff is not None else "–") + " | "
                     + (f"{comp:.2f}" if comp is not None else "–") + " |")
    pr = out["paired_over_limiter_off"]
    lines += ["", "Ratios to the unlimited step, call by call (call i of each variant in the same round; "
              "median and quartiles of the n ratios):", ""]
    for k, v in pr.items():
        label = (LABELS["tmepde_limiter_on"] + ", over the clip-elided program (not limiter off)"
                 if k == "tmepde_limiter_on_vs_clip_elided" else LABELS.get(k, k))
        lines.append(f"* {label}: median **{v['median']:.2f}x** "
                     f"(quartiles {v['q25']:.2f}-{v['q75']:.2f}, n = {v['n']})")
    on = pr["tmepde_limiter_on"]["median"]
    lines += ["", f"Limiter on / off: **{on:.2f}x** median of paired calls, "
              f"{out['limiter_on_over_off']:.2f}x best / best (goal ≤ 1.3x).", ""]
    if ratio:
        lines.append(f"tmepde euler (limiter off) / C best: **{100 * ratio['tmepde_limiter_off']:.0f} %** "
                     "of the reference's speed (goal ≥ 70 %).")
    lines += ["", "Optimised HLO of the engine's `advance` (counts of fusion / copy / conditional / while "
              "instructions, whole program):", ""]
    for k, v in out["hlo_counts"].items():
        lines.append(f"* {LABELS.get(k, k)}: {v}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
