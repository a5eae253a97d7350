"""Robustness of behaviours B1–B8 in space: the share of a Latin-hypercube sample of the
mechanism strengths (each within ±30 % of its default, all varied at once) for which each
behaviour holds on its 2D scenario section (configs/scenarios).

    python scripts/robustness_space.py                      # 64 points -> results/robustness_space.{md,json}
    python scripts/robustness_space.py -n 4 --results /tmp/rob_space   # quick check

Each scenario runs as one sweep (one vmapped batch, chunked to fit memory): every arm of the
scenario crossed with every sample point, the defaults first. An arm's own settings (the
ablations: a mechanism switched off) take precedence over the sampled value of the same key.
The criteria are those of scripts/run_scenarios.py on the same configs (docs/model.md).
The sample is the one of scripts/robustness.py (the well-mixed harness; same seed, same
strengths), so the two reports describe the same parameter points.

The scenario configs run at 96² voxels of 25 µm; a 64-point sample of all of them at that
resolution is ~5 h of this 2-core machine, so the sections are coarsened (``--cells``,
default 32², the same 2.4 mm section: 75 µm voxels) and the time step kept at the config's.
Row "defaults" of the report is the same coarse section at the default strengths, next to
results/scenarios.md (96²) as the check that the coarsening keeps each behaviour.
B5 runs on its own transect config (200 × 8 voxels of 10 µm) unchanged.
"""

from __future__ import annotations

import argparse
import copy
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

SCENARIOS = ("b1_acute_ifng", "b2_pulsed_vs_continuous", "b3_anti_pd1_combination",
             "b4_pdl1_induction_blocker", "b5_bystander_reach", "b6_stemness_vs_apoptosis",
             "b7_virtual_patients", "b8_tgfb_blockade")
NATIVE = ("b5_bystander_reach",)  # quasi-1D transects: already cheap, run as configured
# Arms a criterion does not read (scripts/run_scenarios.py) are left out of the sample.
UNUSED_ARMS = {"b2_pulsed_vs_continuous": ("ifng_pulsed_a1_apoptosis_p1_nk_off",
                                           "ifng_continuous_a1_apoptosis_p1_nk_off")}


def sampled_config(config, sets, unused=()):
    """``config`` with its sweep arms crossed with the parameter ``sets`` (list of dicts):
    arm ``f"{arm}@{j}"`` for set ``j``; the arm's own settings win over the set's."""
    from tmepde.config.run import resolve

    raw = copy.deepcopy(config.data)
    arms = [a for a in raw["sweep"]["arms"] if a["name"] not in unused]
    raw["sweep"]["arms"] = [{"name": f"{a['name']}@{j}", "set": {**{k: float(v) for k, v in s.items()}, **a["set"]}}
                            for j, s in enumerate(sets) for a in arms]
    return resolve(raw, config.base_dir), [a["name"] for a in arms]


class PointView:
    """The members of one sample point of a sampled sweep, shaped like a sweep result of the
    scenario itself (what scripts/run_scenarios.py ``criteria`` reads)."""

    def __init__(self, res, arms, j):
        names = res.arm_names
        self._arm_number = [names.index(f"{a}@{j}") for a in arms]
        idx = np.asarray(res.members["arm_index"])
        self._sel = np.flatnonzero(np.isin(idx, self._arm_number))
        local = {g: i for i, g in enumerate(self._arm_number)}
        self.arm_names = list(arms)
        self.members = {"arm_index": np.array([local[int(i)] for i in idx[self._sel]])}
        self.observables = {k: v[self._sel] for k, v in res.observables.items()}
        self.status = [res.members["status"][i] for i in self._sel]
        self.grid = res.grid
        self._res = res

    def field(self, name, member=0, index=-1):
        return self._res.field(name, int(self._sel[member]), index)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=64, help="Latin-hypercube points (default 64)")
    ap.add_argument("--rel", type=float, default=0.3, help="relative half-width (default 0.3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cells", type=int, default=32,
                    help="cells per axis of the coarsened 2D sections (default 32: 75 µm voxels)")
    ap.add_argument("--chunk", type=int, default=None, help="members per compiled call (default: automatic)")
    ap.add_argument("--only", nargs="*", default=None, help="scenario name prefixes (default: all)")
    ap.add_argument("--out-dir", default="/tmp/tmepde_robustness_space")
    ap.add_argument("--results", default=str(ROOT / "results" / "robustness_space"))
    args = ap.parse_args(argv)

    import jax

    from _machine import cpu_model
    from robustness import CAPPED, _spearman, lhs_sets
    from run_scenarios import criteria
    from tmepde.config import load_config
    from tmepde.io import open_result
    from tmepde.sweep import run_sweep

    names, vals, sets = lhs_sets(args.n, args.rel, args.seed)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    machine = (f"{cpu_model()}, {os.cpu_count()} cores, {jax.device_count()} × "
               f"{jax.devices()[0].platform}, jax {jax.__version__}")
    res_path = Path(args.results)
    prev = Path(f"{res_path}.json")
    rows = json.loads(prev.read_text())["behaviours"] if (args.only and prev.exists()) else {}
    for name in SCENARIOS:
        if args.only and not any(name.startswith(p) for p in args.only):
            continue
        base = load_config(ROOT / "configs" / "scenarios" / f"{name}.toml")
        if name not in NATIVE:
            n0, h0 = base.grid.shape[0], base.grid.spacing[0]
            base = base.replace(f"grid.shape=[{args.cells},{args.cells}]",
                                f"grid.spacing={n0 * h0 / args.cells}")
        cfg, arms = sampled_config(base, [{}] + sets, UNUSED_ARMS.get(name, ()))
        t0 = time.perf_counter()
        path = run_sweep(cfg, out_dir / f"{name}_sampled.h5", progress=True, chunk=args.chunk,
                         overwrite=True)
        wall = time.perf_counter() - t0
        with open_result(path) as res:
            n_members = res.n_members
            views = [PointView(res, arms, j) for j in range(args.n + 1)]
            results = [criteria(name, v) for v in views]
            failed = [j for j, v in enumerate(views) if any(s != "complete" for s in v.status)]
        ok = np.array([bool(r[2]) for r in results[1:]])
        corr = {k: _spearman(vals[:, i], ok.astype(float)) for i, k in enumerate(names)}
        top = sorted((k for k in corr if np.isfinite(corr[k])), key=lambda k: -abs(corr[k]))[:3]
        label = "B" + name[1]
        rows[label] = {"scenario": name, "fraction": float(ok.mean()), "holds": int(ok.sum()),
                       "n": int(len(ok)), "criterion": results[0][0], "defaults": results[0][1],
                       "defaults_pass": bool(results[0][2]), "members": n_members,
                       "grid": list(cfg.grid.shape), "spacing_um": float(cfg.grid.spacing[0]),
                       "wall_s": round(wall, 1), "failure_drivers": {k: round(corr[k], 3) for k in top},
                       "failed_points": np.flatnonzero(~ok).tolist(),
                       "points_with_failed_members": [j - 1 for j in failed if j > 0],
                       "measured": [r[1] for r in results[1:]]}
        print(f"{label}: {ok.mean():.3f} ({ok.sum()}/{len(ok)}); defaults {results[0][1]} "
              f"({'pass' if results[0][2] else 'FAIL'}); {wall:.0f} s", flush=True)
        _write(args, argv, res_path, commit, machine, load0, names, vals, rows, CAPPED)
    _write(args, argv, res_path, commit, machine, load0, names, vals, rows, CAPPED)
    print(f"wrote {res_path}.md, {res_path}.json")
    return 0


def _write(args, argv, res_path, commit, machine, load0, names, vals, rows, capped) -> None:
    cmd = "python scripts/robustness_space.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = {"command": cmd.strip(), "commit": commit, "machine": machine, "load_avg_start": load0,
           "load_avg_end": os.getloadavg(), "n": args.n, "rel": args.rel, "seed": args.seed,
           "cells": args.cells, "parameters": names, "samples": np.round(vals, 6).tolist(),
           "behaviours": dict(sorted(rows.items()))}
    res_path.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{res_path}.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
    md = [f"# Robustness of B1–B8 in space (±{args.rel:.0%}, {args.n}-point Latin hypercube, 2D sections)", "",
          f"Command: `{out['command']}` at commit {commit}. Machine: {machine}; load average "
          f"{load0[0]:.1f} at the start, {out['load_avg_end'][0]:.1f} at the end (2 cores shared). "
          "Wall times include compilation.", "",
          f"Sampled: the {len(names)} strengths and the sample of results/robustness.md (the well-mixed "
          f"harness; scipy.stats.qmc.LatinHypercube, seed {args.seed}), each in "
          f"[{1 - args.rel:.1f}, {1 + args.rel:.1f}] × default; "
          + ", ".join(f"`{k}`" for k in capped if k in names) + " in [0.7, 1]. "
          "**Harness: the scenario configs in space** (configs/scenarios, 14 days, float32, the "
          "config's dt), every arm crossed with every point in one sweep; the 2.4 mm sections "
          f"coarsened to {args.cells}² voxels (96² in the configs; B5's 2 mm transect as configured). "
          "Criteria: scripts/run_scenarios.py. An arm's ablation settings win over the sampled value.", "",
          "| behaviour | holds | fraction | section | members | wall (s) | defaults on this section | "
          "strengths most associated with holding (Spearman ρ) |", "|---|---|---|---|---|---|---|---|"]
    for b, r in sorted(rows.items()):
        drv = ", ".join(f"{k} {v:+.2f}" for k, v in r["failure_drivers"].items()) or "— (holds everywhere)"
        md.append(f"| {b} | {r['holds']}/{r['n']} | {r['fraction']:.2f} | {r['grid'][0]}×{r['grid'][1]} × "
                  f"{r['spacing_um']:g} µm | {r['members']} | {r['wall_s']} | {r['defaults']} "
                  f"({'pass' if r['defaults_pass'] else 'fail'}) | {drv} |")
    md += ["", "Goal: each behaviour holds at ≥ 80 % of the points. "
           + ", ".join(f"{b} {'met' if r['fraction'] >= 0.8 else '**not met**'}" for b, r in sorted(rows.items())) + "."]
    for b, r in sorted(rows.items()):
        if r["points_with_failed_members"]:
            md.append(f"- {b}: members that did not complete (status in the sweep file) at points "
                      f"{r['points_with_failed_members']}")
        if r["failed_points"]:
            md.append(f"- {b}: fails at points {r['failed_points']} (0-based, rows of `samples` in the json)")
    Path(f"{res_path}.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    sys.exit(main())
