"""Compile and run cost of the gradient against the forward run, side by side in one process,
for the time loop's checkpoint variants.

    python scripts/bench_gradient_layout.py                 # both scenarios, both variants
    python scripts/bench_gradient_layout.py --scenarios gs16

Scenarios: ``gs16`` Gray–Scott on 16² (float64, dt 0.1, 24 steps per save, 4 saves; scalar: Σ of
the squared final state), ``default64`` configs/default.toml at 64² × 80 µm, float32, day-7
tumor burden Σ (tumor + stem) × cell volume. Gradient: ``jax.grad`` w.r.t. every parameter.
Variants: ``barrier`` every ``jax.checkpoint`` of the loop and of the graded start with
``prevent_cse=True`` (JAX's default: an optimisation barrier around each recomputation),
``no barrier`` as shipped (``prevent_cse=False``). Per program: compile CPU-s (process time,
all threads), optimised HLO lines, XLA temp bytes, run CPU-s and wall-s (best of ``--repeat``).
Variants are measured alternately per scenario so that load drifts hit both.
Appends a section to results/bench_gradient.md (``--out``; earlier sections are kept).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tmepde as tp  # noqa: E402
from _machine import cpu_model  # noqa: E402
from tmepde.config import load_config  # noqa: E402
from tmepde.models.examples import gray_scott  # noqa: E402
from bench_gradient import final_burden  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_checkpoint = jax.checkpoint


def _barrier_checkpoint(fun=None, *, prevent_cse=True, **kw):
    """``jax.checkpoint`` with JAX's default ``prevent_cse=True`` whatever the caller asks."""
    return _checkpoint(fun, prevent_cse=True, **kw)


VARIANTS = {"barrier": _barrier_checkpoint, "no barrier": _checkpoint}


def gs16():
    grid = tp.Grid((16, 16), 10.0)
    model = gray_scott()
    sim = tp.Simulator(model, grid, dt=0.1, save_every=2.4, dtype=jnp.float64)
    rng = np.random.default_rng(0)
    y0 = jnp.asarray(np.stack([1 - 0.3 * rng.random(grid.shape), 0.3 * rng.random(grid.shape)]))

    def loss(p):
        return jnp.sum(sim.run(p, y0, 4)[-1] ** 2)

    return loss, model.default_params(jnp.float64), "16², dt 0.1 h, 4 saves of 24 steps"


def default64():
    cfg = load_config(str(ROOT / "configs" / "default.toml"),
                      ["grid.shape=[64,64]", "grid.spacing=80.0", "time.t_end=168.0", "solver.dtype=float32"])
    burden, s = final_burden(cfg)
    sim = s.simulator

    return burden, s.params, (f"64² × 80 µm, dt {sim.dt:g} h, {s.n_saves} saves of "
                              f"{sim.steps_per_save} steps")


SCENARIOS = {"gs16": gs16, "default64": default64}


def measure(fn, params, repeat):
    lowered = jax.jit(fn).lower(params)
    c0 = time.process_time()
    compiled = lowered.compile()
    out = {"compile_cpu_s": time.process_time() - c0, "hlo_lines": compiled.as_text().count("\n"),
           "temp_mb": compiled.memory_analysis().temp_size_in_bytes / 1e6}
    jax.block_until_ready(compiled(params))
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(compiled(params))
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    out.update(run_cpu_s=min(cpu), run_wall_s=min(wall))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_gradient.md"))
    args = ap.parse_args()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    load0 = os.getloadavg()[0]
    rows = []
    for scen in args.scenarios:
        for variant, ck in VARIANTS.items():
            jax.checkpoint = ck  # the loop and the start look it up when they are traced
            try:
                fn, params, desc = SCENARIOS[scen]()
                r = {"scenario": scen, "variant": variant, "desc": desc}
                for kind, f in (("forward", fn), ("gradient", jax.grad(fn))):
                    r[kind] = measure(f, params, args.repeat)
                    print(scen, variant, kind, r[kind], flush=True)
            finally:
                jax.checkpoint = _checkpoint
            rows.append(r)
    load1 = os.getloadavg()[0]
    lines = ["", f"## Checkpoint barriers: gradient vs forward, side by side ({time.strftime('%Y-%m-%d')})", "",
             f"Command: `nice -n 10 python scripts/bench_gradient_layout.py --repeat {args.repeat}` at commit "
             f"{commit}; {cpu_model()}, {os.cpu_count()} cores, JAX {jax.__version__} "
             f"(cpu); load {load0:.1f} before, {load1:.1f} after. "
             + "; ".join(dict.fromkeys(f"{r['scenario']}: {r['desc']}" for r in rows))
             + ". CPU-s are process time (all threads); runs best of "
             f"{args.repeat}. `barrier`: `prevent_cse=True` on every checkpoint of the loop and the "
             "start (as before); `no barrier`: `prevent_cse=False` (as shipped).", "",
             "| scenario | variant | forward compile (CPU-s) | gradient compile (CPU-s) | compile ratio | "
             "HLO lines fwd / grad | forward run (CPU-s / wall-s) | gradient run (CPU-s / wall-s) | "
             "run ratio (CPU / wall) | temp MB fwd / grad |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, g = r["forward"], r["gradient"]
        lines.append(
            f"| {r['scenario']} | {r['variant']} | {f['compile_cpu_s']:.1f} | {g['compile_cpu_s']:.1f} | "
            f"{g['compile_cpu_s'] / f['compile_cpu_s']:.2f} | {f['hlo_lines']} / {g['hlo_lines']} | "
            f"{f['run_cpu_s']:.3g} / {f['run_wall_s']:.3g} | {g['run_cpu_s']:.3g} / {g['run_wall_s']:.3g} | "
            f"{g['run_cpu_s'] / f['run_cpu_s']:.2f} / {g['run_wall_s'] / f['run_wall_s']:.2f} | "
            f"{f['temp_mb']:.2f} / {g['temp_mb']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "a") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
