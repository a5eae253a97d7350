"""Batch throughput: simulations per hour of the default TME scenario as the batch grows,
against the same members run one after another in a loop (same process, same compiled
single-run program), plus memory per member and the largest batch that fits.

    python scripts/bench_batch.py --shape 32 --t-end 48 --device cpu          # CPU, ~3 min
    python scripts/bench_batch.py --batch-sizes 1 8 64 256 --device gpu       # GPU, full grid

Members are virtual patients (log-normal growth_tumor, kill_cd8, rec_cd8; cv 0.3). Memory:
``compiled.memory_analysis()`` of the vmapped program at each batch size (arguments +
outputs + XLA temporaries); per-member bytes are the least-squares slope over batch sizes,
the intercept is the fixed part; the largest batch is (memory − fixed) / per member.
Writes results/bench_batch.{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402
ROOT = Path(__file__).resolve().parents[1]


def memory_bytes(compiled) -> dict:
    m = compiled.memory_analysis()
    if m is None:
        return {}
    out = {k: int(getattr(m, k, 0) or 0) for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                                   "temp_size_in_bytes", "alias_size_in_bytes",
                                                   "generated_code_size_in_bytes")}
    out["total"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"]
                    + out["temp_size_in_bytes"] - out["alias_size_in_bytes"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "default.toml"))
    p.add_argument("--shape", type=int, default=32, help="N² voxels over the same 5.12 mm section (default 32; 256 = full)")
    p.add_argument("--t-end", type=float, default=48.0, help="horizon in h (default 48; config: 720)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--memory-gb", type=float, help="memory for the largest-batch estimate "
                   "(default: the device's free memory; physical RAM on CPU)")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per batch size (best is kept)")
    p.add_argument("--out", default=str(ROOT / "results" / "bench_batch"))
    args = p.parse_args(argv)
    if args.device != "auto":
        os.environ["JAX_PLATFORMS"] = {"cpu": "cpu", "gpu": "cuda"}[args.device]

    import jax
    import jax.numpy as jnp
    import numpy as np

    import cohort
    from tmepde import batch
    from tmepde.runner import build

    ns = argparse.Namespace(config=args.config, n=1, seed=0, cv=[], shape=args.shape, t_end=args.t_end,
                            dtype=args.dtype, chunk=None, save_fields=False, overrides=[])
    cfg = cohort.build_config(ns, [{"name": "ifng_pd1", "set": cohort.REGIMENS["ifng_pd1"]}])
    setup = build(cfg)
    sim, n_saves, y0 = setup.simulator, setup.n_saves, jnp.asarray(setup.y0)
    bmax = max(args.batch_sizes)
    params, keys = batch.sample_lognormal(setup.params, {"growth_tumor": 0.3, "kill_cd8": 0.3, "rec_cd8": 0.3},
                                          n=bmax, seed=0)
    params = {k: jnp.asarray(v, sim.dtype) for k, v in params.items()}
    member = lambda i: {k: (v[i] if k in keys else v) for k, v in params.items()}  # noqa: E731
    steps = n_saves * sim.steps_per_save
    device = jax.devices()[0]
    print(f"{device.device_kind} x{len(jax.devices())}; grid {cfg.grid.shape}, {len(cfg.model.names)} fields, "
          f"{steps} steps, {n_saves + 1} saves, {args.dtype}", flush=True)

    # loop: one compiled single run, members one after another
    single = jax.jit(lambda p, y: sim.run(p, y, n_saves))
    t0 = time.perf_counter()
    compiled_single = single.lower(member(0), y0).compile()
    compile_single = time.perf_counter() - t0
    compiled_single(member(0), y0).block_until_ready()  # warm
    loop_outs = []
    t0 = time.perf_counter()
    for i in range(bmax):
        loop_outs.append(compiled_single(member(i), y0))
        loop_outs[-1].block_until_ready()
    loop_s = (time.perf_counter() - t0) / bmax
    print(f"loop: {loop_s:.3f} s/member ({3600 / loop_s:.0f} sims/h), compile {compile_single:.1f} s", flush=True)

    rows = []
    for b in args.batch_sizes:
        pb = {k: (v[:b] if k in keys else v) for k, v in params.items()}
        in_axes = ({k: (0 if k in keys else None) for k in pb}, None)
        fn = jax.jit(jax.vmap(lambda p, y: sim.run(p, y, n_saves), in_axes=in_axes))
        t0 = time.perf_counter()
        compiled = fn.lower(pb, y0).compile()
        compile_s = time.perf_counter() - t0
        out = compiled(pb, y0)
        out.block_until_ready()  # warm
        # batch and loop over the same b members, alternated, so both see the same machine load
        best, loop_b = float("inf"), float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = compiled(pb, y0)
            out.block_until_ready()
            best = min(best, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i in range(b):
                compiled_single(member(i), y0).block_until_ready()
            loop_b = min(loop_b, time.perf_counter() - t0)
        diff = max(float(jnp.max(jnp.abs(out[i] - loop_outs[i]))) for i in range(b))
        mem = memory_bytes(compiled)
        row = {"batch": b, "seconds": best, "sims_per_hour": 3600 * b / best, "loop_seconds": loop_b,
               "loop_sims_per_hour": 3600 * b / loop_b, "speedup_vs_loop": loop_b / best,
               "compile_s": compile_s, "max_abs_diff_vs_loop": diff, "memory": mem}
        rows.append(row)
        print(f"batch {b:4d}: {best:7.3f} s, {row['sims_per_hour']:8.0f} sims/h; loop {loop_b:7.3f} s, "
              f"{row['loop_sims_per_hour']:8.0f} sims/h; x{row['speedup_vs_loop']:.2f} vs loop, "
              f"compile {compile_s:.1f} s, mem {mem.get('total', 0) / 2**20:.1f} MiB, |batch-loop| {diff:.2e}",
              flush=True)

    sizes = np.array([r["batch"] for r in rows], float)
    totals = np.array([r["memory"].get("total", 0) for r in rows], float)
    if len(sizes) > 1 and totals.any():
        per_member, fixed = np.polyfit(sizes, totals, 1)
    else:
        per_member, fixed = totals[0] / sizes[0], 0.0
    avail = args.memory_gb * 2**30 if args.memory_gb else batch._device_memory_bytes(device)
    largest = int((avail - max(fixed, 0.0)) // per_member) if per_member > 0 else None
    memory = {"per_member_bytes": float(per_member), "fixed_bytes": float(fixed),
              "model_estimate_per_member_bytes": batch.member_bytes(sim, n_saves),
              "state_bytes": len(cfg.model.names) * cfg.grid.size * sim.dtype.itemsize,
              "available_bytes": float(avail), "largest_batch": largest,
              "auto_chunk": batch.auto_chunk(sim, n_saves, 10**9)}
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(), "jax": jax.__version__,
               "device": f"{device.platform}: {device.device_kind}", "n_devices": len(jax.devices()),
               "load_average": os.getloadavg()}
    scenario = {"config": str(Path(args.config).relative_to(ROOT)) if Path(args.config).is_relative_to(ROOT) else args.config,
                "grid": list(cfg.grid.shape), "spacing_um": list(cfg.grid.spacing), "fields": len(cfg.model.names),
                "t_end_h": cfg.data["time"]["t_end"], "dt_h": sim.dt, "steps": steps, "saves": n_saves + 1,
                "dtype": args.dtype, "regimen": "ifng_pd1"}
    result = {"machine": machine, "scenario": scenario, "loop_seconds_per_member": loop_s,
              "loop_compile_s": compile_single, "batches": rows, "memory": memory}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")

    mib = 2**20
    lines = [
        "# Batch throughput (`scripts/bench_batch.py`)", "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['device']} x{machine['n_devices']}, "
        f"JAX {machine['jax']}, Python {machine['python']}.",
        f"Scenario: {scenario['config']} (IFN-γ + anti-PD-1), grid {'×'.join(map(str, scenario['grid']))} "
        f"at {scenario['spacing_um'][0]:g} µm, {scenario['fields']} fields, {scenario['t_end_h']:g} h "
        f"({steps} steps of {sim.dt:g} h, {n_saves + 1} saves), {args.dtype}; members are virtual patients "
        "(log-normal growth_tumor, kill_cd8, rec_cd8, cv 0.3).",
        f"Command: `python scripts/bench_batch.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
        f"Loop (one compiled single run, members one after another), first pass over {bmax} members: "
        f"{loop_s:.3f} s per member = {3600 / loop_s:.0f} simulations/hour (compile {compile_single:.1f} s, "
        "not counted).", "",
        "Each batch size is timed alternately with a loop over the same members (so both see the "
        "same machine load):", "",
        "| batch | batch time (s) | batch sims/hour | loop time (s) | loop sims/hour | batch vs loop "
        "| compile (s) | memory (MiB) | max abs diff vs loop |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['seconds']:.3f} | {r['sims_per_hour']:.0f} | {r['loop_seconds']:.3f} "
                     f"| {r['loop_sims_per_hour']:.0f} | ×{r['speedup_vs_loop']:.2f} "
                     f"| {r['compile_s']:.1f} | {r['memory'].get('total', 0) / mib:.1f} | {r['max_abs_diff_vs_loop']:.1e} |")
    lines += [
        "", "Memory (XLA `memory_analysis()` of the compiled vmapped program: arguments + outputs + "
        "temporaries − aliased):", "",
        f"* per member: **{per_member / mib:.2f} MiB** (slope over batch sizes; fixed part "
        f"{fixed / mib:.2f} MiB); one state is {memory['state_bytes'] / mib:.3f} MiB, the saved output "
        f"{(n_saves + 1) * memory['state_bytes'] / mib:.2f} MiB; `batch.member_bytes` estimates "
        f"{memory['model_estimate_per_member_bytes'] / mib:.2f} MiB.",
        f"* largest batch in {avail / 2**30:.1f} GiB: **{largest}** members "
        f"(`batch.auto_chunk` would use {memory['auto_chunk']} per chunk, half the free memory).",
        "",
        "Timings are the best of --repeat runs after a warm-up call; compile time is listed apart. "
        "The machine's cores are shared with other work (load average recorded in the JSON), so expect "
        "noise of tens of per cent.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
