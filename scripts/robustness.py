"""Robustness of behaviours B1–B8: the share of a Latin-hypercube sample of the mechanism
strengths (each within ±30 % of its default, all varied at once) for which each behaviour holds.

    python scripts/robustness.py                      # 64 points -> results/robustness.{md,json}
    python scripts/robustness.py -n 8 --results /tmp/rob   # quick check

The criteria are those of tests/test_tme_behaviours.py, on the same harnesses
(tmepde.behaviours): B1–B4, B6–B8 on the well-mixed model (2-cell uniform grid, 14 days; all
arms of all sample points in one vmapped batch, chunked), B5 on its 1D 2 mm transect (one
vmapped batch). The varied strengths are tmepde.behaviours.MECHANISM_STRENGTHS; the PD-L1
induction switch p1_induction and the CXCR3 share of Treg recruitment p3_cxcr3 (default 1, their
maximum) are sampled in [0.7, 1].
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package, when run from anywhere
sys.path.insert(0, str(ROOT / "scripts"))
CAPPED = {"p1_induction": 1.0, "p3_cxcr3": 1.0}  # defaults already at their maximum


def lhs_sets(n: int, rel: float, seed: int) -> tuple[list[str], np.ndarray, list[dict]]:
    """``n`` Latin-hypercube points of the mechanism strengths in [1 − rel, 1 + rel] × default
    (capped where a switch cannot exceed its default). Returns names, values (n, d), sets."""
    from scipy.stats import qmc

    from tmepde.behaviours import MECHANISM_STRENGTHS
    from tmepde.models import tme

    names = list(MECHANISM_STRENGTHS)
    d = np.array([float(tme.DEFAULTS[k]) for k in names])
    lo, hi = d * (1 - rel), d * (1 + rel)
    hi = np.array([min(h, CAPPED.get(k, np.inf)) for k, h in zip(names, hi)])
    u = qmc.LatinHypercube(d=len(names), seed=seed).random(n)
    vals = lo + u * (hi - lo)
    return names, vals, [dict(zip(names, row)) for row in vals]


def _spearman(x, y) -> float:
    if np.all(y == y[0]):
        return float("nan")
    rx, ry = (np.argsort(np.argsort(v)).astype(float) for v in (x, y))
    return float(np.corrcoef(rx, ry)[0, 1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=64, help="Latin-hypercube points (default 64)")
    ap.add_argument("--rel", type=float, default=0.3, help="relative half-width (default 0.3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=512, help="members per compiled call")
    ap.add_argument("--results", default=str(ROOT / "results" / "robustness"))
    ap.add_argument("--no-b7", action="store_true",
                    help="skip the well-mixed B7 cohort (48 patients × 2 arms per point: 85 %% of the members)")
    args = ap.parse_args(argv)

    import jax

    from _machine import cpu_model
    from tmepde import behaviours as bh

    names, vals, sets = lhs_sets(args.n, args.rel, args.seed)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    wm = bh.run_wellmixed([{}] + sets, b7=not args.no_b7, chunk=args.chunk, progress=True)  # set 0: the defaults
    print(f"well-mixed batch {time.perf_counter() - t0:.0f} s", flush=True)
    t_wm = time.perf_counter() - t0
    t0 = time.perf_counter()
    b5 = bh.b5_criteria([{}] + sets)
    t_b5 = time.perf_counter() - t0
    crit = [bh.wellmixed_criteria(w) for w in wm]
    for c, b in zip(crit, b5):
        c["B5"] = b
    behaviours = sorted(crit[0])
    rows = {}
    for b in behaviours:
        ok = np.array([c[b][1] for c in crit[1:]])
        nums = {k: np.array([c[b][0][k] for c in crit[1:]], float) for k in crit[0][b][0]}
        corr = {k: _spearman(vals[:, j], ok.astype(float)) for j, k in enumerate(names)}
        top = sorted((k for k in corr if np.isfinite(corr[k])), key=lambda k: -abs(corr[k]))[:3]
        rows[b] = {"fraction": float(ok.mean()), "holds": int(ok.sum()), "n": int(len(ok)),
                   "defaults_pass": bool(crit[0][b][1]),
                   "defaults": {k: float(v) for k, v in crit[0][b][0].items()},
                   "range": {k: [float(np.min(v)), float(np.median(v)), float(np.max(v))] for k, v in nums.items()},
                   "failure_drivers": {k: round(corr[k], 3) for k in top},
                   "failed_points": np.flatnonzero(~ok).tolist()}
        print(f"{b}: {ok.mean():.3f} ({ok.sum()}/{len(ok)}); defaults {'pass' if crit[0][b][1] else 'FAIL'}; "
              f"drivers {rows[b]['failure_drivers']}", flush=True)
    machine = f"{cpu_model()}, {os.cpu_count()} cores, {jax.device_count()} × {jax.devices()[0].platform}, jax {jax.__version__}"
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    cmd = "python scripts/robustness.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = {"command": cmd.strip(), "commit": commit, "machine": machine, "load_avg_start": load0,
           "load_avg_end": os.getloadavg(), "wall_s": {"wellmixed": round(t_wm, 1), "b5": round(t_b5, 1)},
           "n": args.n, "rel": args.rel, "seed": args.seed, "parameters": names,
           "samples": np.round(vals, 6).tolist(), "behaviours": rows}
    res = Path(args.results)
    res.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{res}.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
    md = [f"# Robustness of B1–B8 to the mechanism strengths (±{args.rel:.0%}, {args.n}-point Latin hypercube)", "",
          f"Command: `{out['command']}` at commit {commit}. Machine: {machine}; load average "
          f"{load0[0]:.1f} at the start, {out['load_avg_end'][0]:.1f} at the end (2 cores shared). "
          f"Wall: well-mixed batch {t_wm:.0f} s ({(args.n + 1) * (len(bh.ARMS) + (0 if args.no_b7 else 2 * bh.B7_PATIENTS))} members), "
          f"B5 {t_b5:.0f} s, compilation included.", "",
          f"Sampled: {len(names)} strengths ({', '.join(f'`{k}`' for k in names)}), each uniform in "
          f"[{1 - args.rel:.1f}, {1 + args.rel:.1f}] × default (scipy.stats.qmc.LatinHypercube, seed "
          f"{args.seed}); " + ", ".join(f"`{k}`" for k in CAPPED if k in names)
          + " in [0.7, 1] (1 is their maximum). Criteria: those of "
          "tests/test_tme_behaviours.py (docs/model.md). **Harness: well-mixed** for B1–B4, B6–B8 "
          "(the same sample on the 2D scenario sections, coarsened: results/robustness_space.md, "
          "scripts/robustness_space.py) "
          "(2-cell uniform grid, 14 days, dt 1 h), B5 on its 1D transect (2 mm, 5 µm voxels): "
          "the 2D scenarios cost 50–560 s per scenario for one parameter set on this machine "
          "(results/scenarios.md), 64 sets of all of them did not fit.", "",
          "| behaviour | holds | fraction | defaults | measured min / median / max over the sample | "
          "strengths most associated with holding (Spearman ρ) |", "|---|---|---|---|---|---|"]
    for b, r in rows.items():
        rng = "; ".join(f"{k} {v[0]:.3g} / {v[1]:.3g} / {v[2]:.3g}" for k, v in r["range"].items())
        drv = ", ".join(f"{k} {v:+.2f}" for k, v in r["failure_drivers"].items()) or "— (holds everywhere)"
        md.append(f"| {b} | {r['holds']}/{r['n']} | {r['fraction']:.2f} | "
                  f"{'pass' if r['defaults_pass'] else 'fail'} | {rng} | {drv} |")
    md += ["", "Goal: each behaviour holds at ≥ 80 % of the points. "
           + ", ".join(f"{b} {'met' if r['fraction'] >= 0.8 else '**not met**'}" for b, r in rows.items()) + "."]
    Path(f"{res}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {res}.md, {res}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
