"""Same-process A/B of the default scenario's step: CPU time per step of solver variants.

The default scenario (configs/default.toml: 256² × 20 µm, 23 fields, float32, sbdf2, dt 0.5 h)
is advanced to ``--hours`` (a state with cells, vessels and cytokines in place), then each
variant advances one save interval (24 steps) from that same carry, ``--reps`` times,
interleaved, timed by ``time.process_time`` (CPU seconds of this process, all threads: on a
shared machine wall time measures the neighbours). Variants are attributes of the
discretisation:

* ``transforms, mean-coefficient CG``: every constant-D species by transforms, CG
  preconditioned by the spectral solve at the mean coefficients (the engine before);
* ``transforms, balanced CG``: the scaled spectral preconditioner;
* ``stencil + balanced CG`` (the default): slowly diffusing species by Chebyshev steps.

Also prints each variant's largest difference to the first, per species (relative to the
species' maximum), after the 24 steps.

    python scripts/bench_default_step.py --hours 240 --reps 5 --out results/bench_engine_default_step
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_model  # noqa: E402
from tmepde.config import load_config  # noqa: E402
from tmepde.discretization import Discretization  # noqa: E402
from tmepde.runner import build  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "transforms, mean-coefficient CG": dict(kappa=0.0, cg_preconditioner="mean"),
    "transforms, balanced CG": dict(kappa=0.0),
    "stencil + balanced CG (default)": dict(),
}


def _build(cfg, kappa=None, **attrs):
    default = Discretization.STENCIL_KAPPA
    try:
        if kappa is not None:
            Discretization.STENCIL_KAPPA = kappa
        s = build(cfg)
    finally:
        Discretization.STENCIL_KAPPA = default
    for k, v in attrs.items():
        setattr(s.simulator.disc, k, v)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.toml"))
    ap.add_argument("--hours", type=float, default=240.0, help="state to start from (h)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=None, help="PREFIX: writes PREFIX.{md,json}")
    args = ap.parse_args()
    cfg = load_config(args.config)
    base = _build(cfg)
    sim = base.simulator
    n_saves = int(round(args.hours / sim.save_every))
    c0 = time.process_time()
    carry, _ = sim.advance(sim.init(base.y0, base.params), base.params, n_saves)
    carry = jax.block_until_ready(carry)
    print(f"state at {n_saves * sim.save_every:g} h: {time.process_time() - c0:.1f} CPU-s", flush=True)
    runs, out = {}, {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
                     "cpu": cpu_model(), "cores": os.cpu_count(), "jax": jax.__version__,
                     "state_hours": n_saves * sim.save_every, "steps_per_rep": sim.steps_per_save,
                     "variants": {}}
    for name, attrs in VARIANTS.items():
        s = _build(cfg, **attrs)
        c0 = time.process_time()
        ys = jax.block_until_ready(s.simulator.advance(carry, s.params, 1)[1])
        groups = [(g.kind, [cfg.model.names[i] for i in g.index]) for g in s.simulator.disc.groups]
        out["variants"][name] = {"compile_and_first_cpu_s": time.process_time() - c0, "groups": groups}
        runs[name] = (s, np.asarray(ys[0]))
        print(name, groups, flush=True)
    ref = runs[next(iter(VARIANTS))][1]
    scale = np.maximum(np.max(np.abs(ref), axis=(1, 2)), 1e-30)
    for name, (s, y) in runs.items():
        out["variants"][name]["max_rel_diff"] = dict(zip(cfg.model.names, (np.max(np.abs(y - ref), axis=(1, 2)) / scale).tolist()))
    out["load_before"] = os.getloadavg()
    cpu = {name: [] for name in VARIANTS}
    for _ in range(args.reps):
        for name, (s, _) in runs.items():
            c0 = time.process_time()
            jax.block_until_ready(s.simulator.advance(carry, s.params, 1))
            cpu[name].append((time.process_time() - c0) / s.simulator.steps_per_save * 1e3)
    out["load_after"] = os.getloadavg()
    first = float(np.median(cpu[next(iter(VARIANTS))]))
    for name in VARIANTS:
        v = out["variants"][name]
        v["cpu_ms_per_step"] = cpu[name]
        v["median_cpu_ms_per_step"] = float(np.median(cpu[name]))
        v["ratio_to_first"] = v["median_cpu_ms_per_step"] / first
        print(f"{name:36s} CPU-ms/step {np.round(cpu[name], 1).tolist()} median {v['median_cpu_ms_per_step']:.1f} "
              f"({v['ratio_to_first']:.3f}x); max rel diff {max(v['max_rel_diff'].values()):.1e}", flush=True)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(out, indent=1))
        lines = ["# Default scenario step: same-process A/B (scripts/bench_default_step.py)", "",
                 f"Command: `{out['command']}`. Machine: {out['cpu']}, {out['cores']} cores, jax {out['jax']}; "
                 f"load {out['load_before'][0]:.1f} before, {out['load_after'][0]:.1f} after (shared: CPU time, "
                 f"variants interleaved). From the state at {out['state_hours']:g} h, {args.reps} × "
                 f"{out['steps_per_rep']} steps each.", "",
                 "| variant | CPU-ms/step (median) | × first | CPU-ms/step (each rep) | largest rel. diff to first |",
                 "|---|---|---|---|---|"]
        for name, v in out["variants"].items():
            lines.append(f"| {name} | {v['median_cpu_ms_per_step']:.1f} | {v['ratio_to_first']:.3f} | "
                         f"{', '.join(f'{x:.1f}' for x in v['cpu_ms_per_step'])} | {max(v['max_rel_diff'].values()):.1e} |")
        Path(args.out + ".md").write_text("\n".join(lines) + "\n")
        print("wrote", args.out + ".{md,json}")


if __name__ == "__main__":
    main()
