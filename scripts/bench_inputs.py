"""Time-only model inputs (plasma levels of the dose schedules) evaluated in every step
against tabulated once before the loop, side by side, on the well-mixed dose-schedule problem
of scripts/bench_optimize.py (TME model, 28 daily IFN-γ-1b and pembrolizumab slots, 672 steps
of 1 h, float64).

    python scripts/bench_inputs.py --repeat 5     # -> results/bench_inputs.{md,json}

Both programs are compiled in one process (forward: log burden ratio at day 28; gradient:
its value and gradient with respect to all 112 dose amounts and times), then called
alternately; CPU-seconds of this process (``time.process_time``) and wall time are recorded.
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

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_optimize as bo  # noqa: E402
from _machine import machine_info  # noqa: E402


def variant(tabulated: bool) -> dict:
    """Compiled forward and value-and-gradient programs, built with the model's inputs
    tabulated by the loop or (``tabulated=False``) evaluated by the reactions in each step."""
    model, sim, base, space, log_ratio, *_ = bo.build(0.05)
    if not tabulated:
        model.inputs = {}  # the loop's table is empty: the reactions evaluate the plasma levels
    doses = {"sys_ifng_times": jnp.asarray(bo.SLOTS), "sys_ifng_amounts": jnp.asarray(bo.IFNG_STANDARD),
             "sys_pd1_times": jnp.asarray(bo.SLOTS), "sys_pd1_amounts": jnp.asarray(bo.PD1_STANDARD)}
    out = {}
    for name, fn in (("forward", lambda d: log_ratio(d, base)),
                     ("gradient", jax.value_and_grad(lambda d: log_ratio(d, base)))):
        c0, t0 = time.process_time(), time.perf_counter()
        comp = jax.jit(fn).lower(doses).compile()
        out[name] = {"compile_s": time.perf_counter() - t0, "compile_cpu_s": time.process_time() - c0,
                     "program": comp, "value": jax.block_until_ready(comp(doses)), "doses": doses,
                     "run_s": [], "run_cpu_s": []}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="alternated rounds of timed calls")
    ap.add_argument("--out", default="results/bench_inputs")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()
    runs = {"evaluated in every step": variant(False), "tabulated before the loop": variant(True)}
    keys = [(v, p) for v in runs for p in ("forward", "gradient")]
    for r in range(args.repeat):
        for v, p in (keys if r % 2 == 0 else keys[::-1]):
            rec = runs[v][p]
            c0, t0 = time.process_time(), time.perf_counter()
            jax.block_until_ready(rec["program"](rec["doses"]))
            rec["run_s"].append(time.perf_counter() - t0)
            rec["run_cpu_s"].append(time.process_time() - c0)
    (v_old, g_old), (v_new, g_new) = (runs[v]["gradient"]["value"] for v in runs)
    diff = max(float(np.max(np.abs(np.asarray(g_new[k]) - np.asarray(g_old[k])))
                     / np.max(np.abs(np.asarray(g_old[k])))) for k in g_old)
    machine = machine_info()
    record = {"command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + list(argv or sys.argv[1:])),
              "machine": machine, "load_avg_start": load0, "load_avg_end": os.getloadavg(),
              "value": [float(v_old), float(v_new)], "max_rel_grad_diff": diff,
              "programs": {f"{v} / {p}": {k: x for k, x in runs[v][p].items()
                                          if k not in ("program", "value", "doses")} for v, p in keys}}
    Path(args.out + ".json").write_text(json.dumps(record, indent=1))
    med = lambda v, p, k="run_cpu_s": float(np.median(runs[v][p][k]))  # noqa: E731
    lines = ["# Plasma levels: evaluated in every step against tabulated before the loop", "",
             f"Command: `{record['command']}` · {machine['cpu_model']}, {machine['cpu_cores']} cores, jax {machine['jax']} · load average {load0[0]:.2f} at the start, "
             f"{record['load_avg_end'][0]:.2f} at the end.", "",
             "Problem: the well-mixed TME model of scripts/bench_optimize.py, 28 days at dt = 1 h (672 "
             "steps), daily slots of IFN-γ-1b and pembrolizumab (standard schedule), float64; forward = "
             "log burden ratio at day 28, gradient = its value and gradient with respect to the 112 dose "
             "amounts and times. One process, both variants compiled, then alternated "
             f"{args.repeat} rounds; medians.", "",
             "| plasma levels | forward compile (CPU-s) | gradient compile (CPU-s) | forward (CPU-ms) | "
             "forward (wall ms) | gradient (CPU-ms) | gradient (wall ms) | gradient / forward |",
             "|---|---|---|---|---|---|---|---|"]
    for v in runs:
        lines.append(f"| {v} | {runs[v]['forward']['compile_cpu_s']:.1f} | {runs[v]['gradient']['compile_cpu_s']:.1f} | "
                     f"{1e3 * med(v, 'forward'):.1f} | {1e3 * med(v, 'forward', 'run_s'):.1f} | "
                     f"{1e3 * med(v, 'gradient'):.1f} | {1e3 * med(v, 'gradient', 'run_s'):.1f} | "
                     f"{med(v, 'gradient') / med(v, 'forward'):.2f} |")
    a, b = list(runs)
    lines += ["", f"Tabulated / per step (CPU, medians): forward {med(b, 'forward') / med(a, 'forward'):.2f}x, "
              f"gradient {med(b, 'gradient') / med(a, 'gradient'):.2f}x. Values {record['value'][0]:.15g} / "
              f"{record['value'][1]:.15g}; gradients agree to {diff:.1e} (largest relative difference)."]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
