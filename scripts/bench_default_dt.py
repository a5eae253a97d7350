"""Time-step accuracy of the default scenario: day-30 burden and fields against a fine-dt reference.

The four clinical arms of configs/default.toml (untreated, IFN-γ-1b, anti-PD-1, both: the
config's schedules with the other agent's amounts set to 0, as scripts/clinical_arms.py) are
run as one vmapped batch at each ``--dts`` step on the config's section at ``--shape``² (64²:
80 µm voxels), and compared with the run at ``--ref-dt``. Per dt and arm: the day-30 burden
(tumor + stem total) relative to the reference, the burden ratio to untreated and its change,
and the largest field error (max over cells, relative to the species' reference maximum at
that save) at day 30 and over all saves. The observed order between successive dts is
``log(e(dt₁)/e(dt₂)) / log(dt₁/dt₂)`` of the all-saves field error (SBDF2: 2).

    python scripts/bench_default_dt.py --shape 64 --out results/default_dt
    python scripts/bench_default_dt.py --compare coarse.h5 fine.h5   # two result files (e.g. 256²)

``--compare`` prints the same measures for two ``tmepde run`` result files of one scenario
(the second the reference): burden at the last save and the largest field difference.
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

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"untreated": (0.0, 0.0), "IFN-γ-1b": (1.0, 0.0), "anti-PD-1": (0.0, 1.0), "both": (1.0, 1.0)}


def run_arms(cfg, dt: float):
    """(A, T, S, *grid) saves of the four arms at step ``dt`` (h), and the CPU and wall seconds."""
    import jax
    import jax.numpy as jnp

    from tmepde.runner import build

    setup = build(cfg.replace(f"time.dt={dt!r}"))
    sim, base = setup.simulator, setup.params
    members = []
    for f_ifng, f_pd1 in ARMS.values():
        p = dict(base)
        p["sys_ifng_amounts"] = base["sys_ifng_amounts"] * f_ifng
        p["sys_pd1_amounts"] = base["sys_pd1_amounts"] * f_pd1
        members.append(p)
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *members)
    c0, t0 = time.process_time(), time.perf_counter()
    ys = np.asarray(jax.jit(jax.vmap(lambda p: sim.run(p, setup.y0, setup.n_saves)))(stacked))
    return ys, time.process_time() - c0, time.perf_counter() - t0


def compare(path: str, ref_path: str) -> int:
    """Burden (tumor + stem total) and field differences of two result files, per save."""
    from tmepde.io import open_result

    with open_result(path) as r, open_result(ref_path) as q:
        names = r.species
        if list(r.time) != list(q.time) or names != q.species:
            raise SystemExit(f"--compare: {path} and {ref_path} have different saves or species")
        worst = (0.0, None, None)
        for s in names:
            a, b = r.series(s), q.series(s)
            scale = np.max(np.abs(b), axis=tuple(range(1, b.ndim)))
            e = np.max(np.abs(a - b), axis=tuple(range(1, b.ndim))) / np.where(scale > 0, scale, 1)
            e = np.where(scale > 0, e, 0)
            print(f"{s:12s} last save {e[-1]:.2e}  all saves {e.max():.2e} (t = {r.time[int(np.argmax(e))]:g} h)")
            if e[-1] > worst[0]:
                worst = (float(e[-1]), s, None)
        burden = [x.series("tumor").sum(axis=(1, 2)) + x.series("stem").sum(axis=(1, 2)) for x in (r, q)]
        print(f"burden at t = {r.time[-1]:g} h: {burden[0][-1]:.6g} vs {burden[1][-1]:.6g} "
              f"({burden[0][-1] / burden[1][-1] - 1:+.2e}); largest field difference at the last save "
              f"{worst[0]:.2e} ({worst[1]})")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.toml"))
    ap.add_argument("--shape", type=int, default=64, help="N: N² voxels over the config's section")
    ap.add_argument("--dts", default="2,1.5,1,0.5,0.25", help="comma-separated steps (h)")
    ap.add_argument("--ref-dt", type=float, default=0.125, help="reference step (h)")
    ap.add_argument("--dtype", default=None, help="float32 or float64 (default: the config's)")
    ap.add_argument("--t-end", type=float, default=None, help="h (default: the config's)")
    ap.add_argument("--out", default=None, metavar="PREFIX", help="writes PREFIX.md and PREFIX.json")
    ap.add_argument("--compare", nargs=2, metavar=("FILE", "REFERENCE"), default=None,
                    help="compare two result files instead of running")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(*args.compare)

    import jax

    from tmepde.config import load_config

    cfg = load_config(args.config)
    extent = [n * h for n, h in zip(cfg.grid.shape, cfg.grid.spacing)]
    cfg = cfg.replace(f"grid.shape={[args.shape] * len(extent)}",
                      f"grid.spacing={[e / args.shape for e in extent]}")
    if args.t_end is not None:
        cfg = cfg.replace(f"time.t_end={args.t_end!r}")
    if args.dtype is not None:
        cfg = cfg.replace(f"solver.dtype={args.dtype!r}")
        jax.config.update("jax_enable_x64", args.dtype == "float64")
    names = cfg.model.names
    dts = [float(x) for x in args.dts.split(",")]
    toml = cfg.data["model"].get("params", {})
    dose_times = {k: sorted(set(float(t) for t in toml.get(k, []))) for k in ("sys_ifng_times", "sys_pd1_times")}
    out = {"command": "python scripts/bench_default_dt.py " + " ".join(
               shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
           "grid": list(cfg.grid.shape), "spacing_um": list(cfg.grid.spacing), "ref_dt": args.ref_dt,
           "jax": jax.__version__, "cores": os.cpu_count(), "load_before": os.getloadavg(),
           "arms": list(ARMS), "runs": {}}
    ref, cpu, wall = run_arms(cfg, args.ref_dt)
    out["ref_cpu_s"], out["ref_wall_s"] = cpu, wall
    print(f"reference dt {args.ref_dt:g} h: {cpu:.0f} CPU-s, {wall:.0f} s", flush=True)
    tumor = lambda ys: ys[:, :, names.index("tumor")] + ys[:, :, names.index("stem")]
    b_ref = tumor(ref).sum(axis=(-2, -1))  # (A, T)
    scale = np.max(np.abs(ref), axis=(-2, -1))  # (A, T, S)
    ok = scale > 0
    previous = None  # (dt, saves) of the run before, for the change between neighbouring steps
    for dt in dts:
        ys, cpu, wall = run_arms(cfg, dt)
        b = tumor(ys).sum(axis=(-2, -1))
        err = np.max(np.abs(ys - ref), axis=(-2, -1)) / np.where(ok, scale, 1)  # (A, T, S)
        err = np.where(ok, err, 0)
        off_grid = {k: [t for t in v if abs(t / dt - round(t / dt)) > 1e-9] for k, v in dose_times.items()}
        r = {"cpu_s": cpu, "wall_s": wall, "steps": int(round(cfg.data["time"]["t_end"] / dt)),
             "dose_times_off_step_grid": off_grid, "arms": {}}
        if previous is not None:
            change = np.where(ok, np.max(np.abs(ys - previous[1]), axis=(-2, -1)) / np.where(ok, scale, 1), 0)
            r["change_vs_dt"] = previous[0]
            r["field_change_day30"] = float(change[:, -1].max())
            r["field_change_all_saves"] = float(change.max())
            bp = tumor(previous[1]).sum(axis=(-2, -1))
            r["ratio_change_vs_dt"] = float(np.max(np.abs((b[:, -1] / b[0, -1]) / (bp[:, -1] / bp[0, -1]) - 1)))
        previous = (dt, ys)
        for a, arm in enumerate(ARMS):
            worst = int(np.argmax(err[a, -1]))
            worst_all = int(np.argmax(err[a].max(axis=0)))
            r["arms"][arm] = {
                "burden_day30_rel_err": float(b[a, -1] / b_ref[a, -1] - 1),
                "ratio_to_untreated": float(b[a, -1] / b[0, -1]),
                "ratio_change": float((b[a, -1] / b[0, -1]) / (b_ref[a, -1] / b_ref[0, -1]) - 1),
                "field_err_day30": float(err[a, -1].max()), "worst_day30": names[worst],
                "field_err_all_saves": float(err[a].max()), "worst_all_saves": names[worst_all],
                "field_err_day30_by_species": dict(zip(names, err[a, -1].tolist())),
            }
        out["runs"][repr(dt)] = r
        print(f"dt {dt:g} h: {cpu:.0f} CPU-s; " + "; ".join(
            f"{arm} burden {v['burden_day30_rel_err']:+.2e} ratio {v['ratio_change']:+.2e} "
            f"field d30 {v['field_err_day30']:.2e} ({v['worst_day30']}) all {v['field_err_all_saves']:.2e} "
            f"({v['worst_all_saves']})" for arm, v in r["arms"].items()) + (
            f"; vs dt {r['change_vs_dt']:g}: fields d30 {r['field_change_day30']:.2e} all "
            f"{r['field_change_all_saves']:.2e}, burden ratios {r['ratio_change_vs_dt']:.2e}"
            if previous is not None and "change_vs_dt" in r else ""), flush=True)
    out["ref_ratio_to_untreated"] = {arm: float(b_ref[a, -1] / b_ref[0, -1]) for a, arm in enumerate(ARMS)}
    srt = sorted(dts)
    out["observed_order"] = {}
    for d1, d2 in zip(srt[1:], srt[:-1]):
        for key in ("field_err_all_saves", "field_err_day30"):
            e1 = max(v[key] for v in out["runs"][repr(d1)]["arms"].values())
            e2 = max(v[key] for v in out["runs"][repr(d2)]["arms"].values())
            out["observed_order"][f"{key} {d1:g}/{d2:g}"] = float(np.log(e1 / e2) / np.log(d1 / d2))
        e1 = max(abs(v["burden_day30_rel_err"]) for v in out["runs"][repr(d1)]["arms"].values())
        e2 = max(abs(v["burden_day30_rel_err"]) for v in out["runs"][repr(d2)]["arms"].values())
        out["observed_order"][f"burden {d1:g}/{d2:g}"] = float(np.log(e1 / e2) / np.log(d1 / d2))
    out["load_after"] = os.getloadavg()
    print(json.dumps(out["observed_order"], indent=1))
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
        lines = ["# Default scenario: time-step accuracy (scripts/bench_default_dt.py)", "",
                 f"Command: `{out['command']}`. Grid {out['grid']} × {out['spacing_um'][0]:g} µm, "
                 f"reference dt {args.ref_dt:g} h ({out['ref_cpu_s']:.0f} CPU-s), {cfg.dtype}, sbdf2, "
                 f"jax {out['jax']}, load {out['load_before'][0]:.1f} before, {out['load_after'][0]:.1f} after. "
                 "Burden: tumor + stem total at day 30. Field error: max over cells of |y - y_ref| / "
                 "max |y_ref| per species, the largest species (named).", "",
                 "Reference day-30 burden ratios to untreated: " + ", ".join(
                     f"{a} {v:.4f}" for a, v in out["ref_ratio_to_untreated"].items()) + ".", "",
                 "| dt (h) | steps | CPU-s (4 arms) | arm | burden rel. err | ratio to untreated (change) "
                 "| field err day 30 | field err, all saves |", "|---|---|---|---|---|---|---|---|"]
        for dt in dts:
            r = out["runs"][repr(dt)]
            for arm, v in r["arms"].items():
                lines.append(f"| {dt:g} | {r['steps']} | {r['cpu_s']:.0f} | {arm} | {v['burden_day30_rel_err']:+.2e} | "
                             f"{v['ratio_to_untreated']:.4f} ({v['ratio_change']:+.2e}) | "
                             f"{v['field_err_day30']:.2e} ({v['worst_day30']}) | "
                             f"{v['field_err_all_saves']:.2e} ({v['worst_all_saves']}) |")
        lines += ["", "Change between neighbouring steps (max over arms and species): " + "; ".join(
            f"dt {dt:g} vs {r['change_vs_dt']:g}: fields day 30 {r['field_change_day30']:.2e}, all saves "
            f"{r['field_change_all_saves']:.2e}, burden ratios {r['ratio_change_vs_dt']:.2e}"
            for dt in dts for r in [out['runs'][repr(dt)]] if 'change_vs_dt' in r) + "."]
        lines += ["", "Observed order (largest over the arms): " + ", ".join(
            f"{k} {v:.2f}" for k, v in out["observed_order"].items()) + ".", "",
                  "Dose times off the step grid: " + "; ".join(
            f"dt {dt:g}: " + (", ".join(f"{k} {v}" for k, v in out['runs'][repr(dt)]['dose_times_off_step_grid'].items() if v)
                              or "none") for dt in dts) + "."]
        Path(args.out + ".md").write_text("\n".join(lines) + "\n")
        print("wrote", args.out + ".{md,json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
