"""Run the behaviour scenarios of configs/scenarios/ as sweeps and tabulate B1–B8 in space.

The unit tests check B1–B8 on the well-mixed model (tests/test_tme_behaviours.py); this
script runs the same treatments on 2D tumor sections (96² voxels of 25 µm, 14 days), all arms
of a scenario in one vmapped batch, and writes the criteria as measured to
results/scenarios.{md,json} with the wall time of each sweep and the machine.

    python scripts/run_scenarios.py                 # all (≈ 10-15 min on 2 CPU cores)
    python scripts/run_scenarios.py b2 b5 --out-dir /tmp/scen
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
from _machine import cpu_model  # noqa: E402


def _obs(res, arm, name, k=-1):
    i = res.arm_names.index(arm)
    sel = np.flatnonzero(np.asarray(res.members["arm_index"]) == i)
    return res.observables[name][sel][:, k]


def _mean_over_time(res, arm, name):
    i = res.arm_names.index(arm)
    sel = np.flatnonzero(np.asarray(res.members["arm_index"]) == i)
    return res.observables[name][sel].mean(axis=1)


def burden(res, arm, k=-1):
    return _obs(res, arm, "total_tumor", k) + _obs(res, arm, "total_stem", k)


def criteria(name, res):
    """(criterion text, measured text, passed) for scenario ``name``."""
    b = lambda arm: float(burden(res, arm)[0])
    m = lambda arm, s: float(_mean_over_time(res, arm, f"total_{s}")[0])
    if name.startswith("b1"):
        r = b("ifng_pulsed") / b("control")
        return "burden(IFN-γ pulses) ≤ 0.95 × control", f"{r:.3f}", r <= 0.95
    if name.startswith("b2"):
        ratios = {s: m("ifng_continuous", s) / m("ifng_pulsed", s) for s in ("pdl1", "cd8_ex", "treg", "mdsc")}
        rb = b("ifng_continuous") / b("ifng_pulsed")
        r_off = b("ifng_continuous_p1_p4_off") / b("ifng_pulsed_p1_p4_off")
        r_a1 = b("ifng_continuous_a1_apoptosis_off") / b("ifng_pulsed_a1_apoptosis_off")
        ok = all(v >= 1.10 for v in ratios.values()) and rb >= 1.10 and r_a1 >= 1.10 and r_off <= 1.02
        return ("continuous / pulsed: PD-L1, exhausted, Treg, MDSC ≥ 1.10, burden ≥ 1.10; "
                "burden ≥ 1.10 with A1 apoptosis off, ≤ 1.02 with P1–P4 off",
                ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
                + f"; burden {rb:.3f}, A1 off {r_a1:.3f}, P1–P4 off {r_off:.3f}", ok)
    if name.startswith("b3"):
        ri = m("anti_pd1", "ifng") / m("control", "ifng")
        rb = b("anti_pd1") / b("control")
        combo = b("ifng_plus_anti_pd1") < min(b("anti_pd1"), b("ifng_pulsed"))
        return ("anti-PD-1: IFN-γ ≥ 1.5×, burden ≤ 0.9×; combination beats both",
                f"IFN-γ {ri:.2f}×, burden {rb:.3f}×, combo/anti-PD-1 {b('ifng_plus_anti_pd1') / b('anti_pd1'):.3f}",
                ri >= 1.5 and rb <= 0.9 and combo)
    if name.startswith("b4"):
        rp = m("ifng_plus_blocker", "pdl1") / m("ifng_pulsed", "pdl1")
        rb = b("ifng_plus_blocker") / b("ifng_pulsed")
        return "blocker + IFN-γ vs IFN-γ: PD-L1 ≤ 0.8×, burden ≤ 0.9×", f"PD-L1 {rp:.3f}×, burden {rb:.3f}×", rp <= 0.8 and rb <= 0.9
    if name.startswith("b5"):
        x = (np.arange(res.grid.shape[0]) + 0.5) * res.grid.spacing[0]
        u = res.field("ifng", res.arm_names.index("dense_tissue")).mean(axis=1)
        sel = (x > 20) & (x < 150) & (u > 1e-6)
        lam = -1 / np.polyfit(x[sel], np.log(u[sel]), 1)[0]
        pd = res.field("pdl1", res.arm_names.index("sparse_tissue")).mean(axis=1)
        reach = float(np.interp(0.5, pd[::-1], x[::-1]))
        return ("sparse: PD-L1 half-induced ≥ 800 µm away; dense: decay length ≤ 40 µm",
                f"sparse reach {reach:.0f} µm, dense λ {lam:.0f} µm (log-linear fit 20–150 µm)",
                reach >= 800 and lam <= 40)
    if name.startswith("b6"):
        frac = lambda arm: float((_obs(res, arm, "total_stem") / burden(res, arm))[0])
        rh = b("high_continuous") / b("control")
        return ("low dose: stem fraction ≥ 1.5× control; high dose: burden ≤ 0.2×",
                f"stem {frac('low_continuous'):.3f} vs {frac('control'):.3f}; high {rh:.3f}×",
                frac("low_continuous") >= 1.5 * frac("control") and rh <= 0.2)
    if name.startswith("b7"):
        ratios = burden(res, "anti_pd1") / burden(res, "control")
        nr, nn = int(np.sum(ratios <= 0.5)), int(np.sum(ratios >= 0.8))
        return ("16 patients: ≥ 2 responders (≤ 0.5 of own control) and ≥ 2 non-responders (≥ 0.8)",
                f"{nr} responders, {nn} non-responders; ratios {np.round(np.sort(ratios), 2).tolist()}",
                nr >= 2 and nn >= 2)
    if name.startswith("b8"):
        e_on = np.log(b("control") / b("anti_pd1"))
        e_off = np.log(b("control_p3_off") / b("anti_pd1_p3_off"))
        e_res = np.log(b("control") / b("anti_pd1_plus_tgfb_blockade"))
        return ("efficacy ln(ctrl/treated): P3-on ≤ 0.9 × P3-off; + TGF-β blockade ≥ P3-off",
                f"on {e_on:.3f}, off {e_off:.3f}, rescued {e_res:.3f}", e_on <= 0.9 * e_off and e_res >= e_off)
    raise KeyError(name)


def _write(args, machine, commit, load0, only, rows) -> None:
    md = ["# Behaviours B1–B8 on 2D tumor sections (configs/scenarios, `tmepde sweep`)", "",
          f"Machine: {machine}; load average {load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at "
          f"the end (2 cores shared). Command: `python scripts/run_scenarios.py"
          f"{' ' + ' '.join(only) if only else ''}` at commit {commit} (the commit column says when each "
          "row was measured). Grid 96² × 25 µm (B5: 200 × 8 × 10 µm), 14 days, dt 0.5 h, float32, all "
          "arms of a scenario in one vmapped batch; wall time includes compilation.", "",
          "| scenario | members | wall (s) | criterion | measured | pass | commit |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['scenario']} | {r['members']} | {r['wall_s']} | {r['criterion']} | {r['measured']} | "
           f"{'yes' if r['passed'] else 'no'} | {r.get('commit', 'earlier')} |" for r in rows.values()]
    Path(args.results + ".md").write_text("\n".join(md) + "\n")
    Path(args.results + ".json").write_text(json.dumps(
        {"machine": machine, "commit": commit, "load_avg_start": load0, "load_avg_end": os.getloadavg(),
         "rows": list(rows.values())}, indent=1, ensure_ascii=False))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", help="scenario name prefixes (default: all b*)")
    ap.add_argument("--out-dir", default="/tmp/tmepde_scenarios")
    ap.add_argument("--results", default=str(ROOT / "results" / "scenarios"))
    args = ap.parse_args(argv)

    import jax

    from tmepde.io import open_result
    from tmepde.sweep import run_sweep

    load0 = os.getloadavg()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = f"{cpu_model()}, {jax.device_count()} × {jax.devices()[0].platform}, jax {jax.__version__}"
    prev = Path(args.results + ".json")
    # rows of scenarios not run this time are kept from the previous file, with their commit
    kept = {r["scenario"]: {**r, "commit": r.get("commit", "earlier")}
            for r in (json.loads(prev.read_text())["rows"] if prev.exists() else [])}
    configs = sorted((ROOT / "configs" / "scenarios").glob("b*.toml"))
    rows = {c.stem: kept[c.stem] for c in configs if c.stem in kept}  # replaced as each one runs
    for cfg in configs:
        name = cfg.stem
        if args.only and not any(name.startswith(p) for p in args.only):
            continue
        t0 = time.perf_counter()
        path = run_sweep(cfg, out_dir / f"{name}_sweep.h5", progress=False, overwrite=True)
        wall = time.perf_counter() - t0
        with open_result(path) as res:
            crit, measured, ok = criteria(name, res)
            n = res.n_members
        rows[name] = {"scenario": name, "members": n, "wall_s": round(wall, 1), "criterion": crit,
                      "measured": measured, "passed": bool(ok), "commit": commit}
        print(f"{name}: {measured} -> {'pass' if ok else 'FAIL'} ({wall:.0f} s)", flush=True)
        _write(args, machine, commit, load0, args.only, rows)  # after each scenario: partial runs keep their rows
    _write(args, machine, commit, load0, args.only, rows)
    print(f"wrote {args.results}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
