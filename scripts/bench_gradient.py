"""Peak memory and time of a reverse-mode gradient vs the forward run (TME model).

Scalar: tumor burden (Σ tumor + stem × cell volume) at the end plus its time average over the
saves. Gradient: jax.grad w.r.t. every parameter (reaction rates, D_*, dose times/amounts).
Memory: XLA's compiled memory analysis (temp bytes = the workspace the program needs beyond
its inputs/outputs; for the gradient this holds the checkpointed carries) and the process's
peak RSS. Time: best of ``--repeat`` runs after compilation.

    python scripts/bench_gradient.py                       # default.toml at 64² (CPU-sized)
    python scripts/bench_gradient.py --shape 256 256       # the full default scenario (GPU)
Writes results/bench_gradient.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp

import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_model  # noqa: E402
from tmepde.config import load_config  # noqa: E402
from tmepde.runner import build  # noqa: E402


def bench(cfg, repeat: int) -> dict:
    s = build(cfg)
    sim, model = s.simulator, cfg.model
    vol = jnp.asarray(cfg.grid.cell_volumes(), sim.dtype)
    it, ist = model.index("tumor"), model.index("stem")
    y0 = jnp.asarray(s.y0)

    def loss(p):
        ys = sim.run(p, y0, s.n_saves)
        b = jnp.sum((ys[:, it] + ys[:, ist]) * vol, axis=tuple(range(1, ys.ndim - 1)))
        return b[-1] + jnp.mean(b)

    out = {"grid": list(cfg.grid.shape), "t_end_h": cfg.data["time"]["t_end"], "dt_h": sim.dt,
           "steps": int(round(cfg.data["time"]["t_end"] / sim.dt)), "saves": s.n_saves,
           "dtype": str(sim.dtype), "n_params": len(s.params)}
    for name, fn in (("forward", loss), ("gradient", jax.grad(loss))):
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(s.params).compile()
        out[f"{name}_compile_s"] = time.perf_counter() - t0
        ma = compiled.memory_analysis()
        out[f"{name}_temp_bytes"] = int(getattr(ma, "temp_size_in_bytes", 0)) if ma is not None else None
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(s.params))
            times.append(time.perf_counter() - t0)
        out[f"{name}_s"] = min(times)
        out[f"{name}_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["time_ratio"] = out["gradient_s"] / out["forward_s"]
    if out["forward_temp_bytes"]:
        out["temp_ratio"] = out["gradient_temp_bytes"] / out["forward_temp_bytes"]
    state = int(np.prod(cfg.grid.shape)) * len(model.names) * np.dtype(sim.dtype).itemsize
    out["state_bytes"] = state
    out["gradient_temp_in_states"] = out["gradient_temp_bytes"] / state if out["gradient_temp_bytes"] else None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/default.toml")
    ap.add_argument("--shape", type=int, nargs="+", default=[64, 64], help="grid shape (default 64 64 on CPU)")
    ap.add_argument("--longer", type=float, default=3.0, help="factor of the longer scenario's t_end")
    ap.add_argument("--t-end", type=float, default=None, help="t_end (h) of the base scenario (default: config)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default="results/bench_gradient")
    args = ap.parse_args()
    base = load_config(args.config)
    ext = [e for e in base.grid.extent]
    spacing = [e / n for e, n in zip(ext, args.shape)]
    t_end = args.t_end or base.data["time"]["t_end"]
    over = [f"grid.shape={list(args.shape)}", f"grid.spacing={spacing}", f"time.t_end={t_end}"]
    rows = []
    for label, factor in (("default", 1.0), (f"{args.longer:g}x longer", args.longer)):
        te = t_end * factor
        se = base.data["time"]["save_every"]
        te = round(te / se) * se
        cfg = base.replace(*over, f"time.t_end={te}")
        print(f"{label}: grid {args.shape}, t_end {te:g} h ...", flush=True)
        r = bench(cfg, args.repeat)
        r["scenario"] = label
        print(json.dumps(r, indent=1), flush=True)
        rows.append(r)
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "jax": jax.__version__,
               "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
               "python": platform.python_version()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"machine": machine, "runs": rows}, indent=1))
    lines = ["# Gradient vs forward: time and memory (scripts/bench_gradient.py)", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, JAX {machine['jax']} ({machine['backend']}). "
             f"Config {args.config} with grid {args.shape} (same extent). Scalar: final + time-averaged "
             "tumor burden; gradient w.r.t. every parameter. Memory: XLA compiled temp bytes (workspace "
             "beyond inputs/outputs) and process peak RSS (cumulative, so later rows include earlier ones). "
             "The machine was shared with other jobs: times are upper bounds.", "",
             "| scenario | steps | saves | forward (s) | gradient (s) | time ratio | forward temp (MB) | "
             "gradient temp (MB) | memory ratio | gradient temp / state | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['steps']} | {r['saves']} | {r['forward_s']:.2f} | {r['gradient_s']:.2f} | "
                     f"{r['time_ratio']:.2f} | {r['forward_temp_bytes'] / 1e6:.1f} | {r['gradient_temp_bytes'] / 1e6:.1f} | "
                     f"{r.get('temp_ratio', float('nan')):.2f} | {r['gradient_temp_in_states']:.0f} | "
                     f"{r['gradient_peak_rss_mb']:.0f} |")
    if len(rows) == 2:
        g = rows[1]["gradient_temp_bytes"] / rows[0]["gradient_temp_bytes"]
        lines += ["", f"Longer run: {rows[1]['steps'] / rows[0]['steps']:.1f}× the steps and "
                  f"{rows[1]['saves'] / rows[0]['saves']:.1f}× the saves; gradient temp memory grows "
                  f"{g:.2f}× (checkpointing: memory ∝ saves + 2√(steps per save) carries, not steps)."]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
