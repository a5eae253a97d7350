"""The clinical scenario's four arms (configs/default.toml) and parameter ablations of them.

    python scripts/clinical_arms.py --shape 64                       # 64² × 80 µm, four arms
    python scripts/clinical_arms.py --shape 32 --variant "P1off:p1_induction=0" \\
        --variant "perm1000:perm_ifng=1000"                          # each variant: four arms

Arms: untreated, IFN-γ-1b alone, anti-PD-1 alone, both (the config's schedules with the other
agent's amounts set to 0); variants override parameters in all four arms. All members run as
one vmapped batch. Prints, per variant and arm, the day-30 burden relative to day 0 and to the
variant's untreated arm, the tumor-weighted IFN-γ (mean over the saves after day 0 / peak,
ng/mL), the IFN-γ that IFN-γ-1b adds as a fraction of its mean plasma level, and the time-mean
PD-L1, exhausted CD8, Treg and MDSC totals relative to untreated. Numbers: docs/model.md.
--shape must keep the config's immune clusters (radius 40 µm) on cell centres: N ≥ 64 for the
5.12 mm section (the config check says so in one line otherwise).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"untreated": (0.0, 0.0), "IFN-γ-1b": (1.0, 0.0), "anti-PD-1": (0.0, 1.0), "both": (1.0, 1.0)}


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, body = text.partition(":")
    over = {}
    for item in filter(None, body.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"--variant {text!r}: expected NAME:key=value,..., got item {item!r}")
        over[key.strip()] = float(value)
    return name, over


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.toml"))
    ap.add_argument("--shape", type=int, default=64, help="N: N² voxels over the config's section")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:key=value,...")
    ap.add_argument("--out", default=None, metavar="PREFIX",
                    help="also write PREFIX.md and PREFIX.json (e.g. results/clinical_arms)")
    ap.add_argument("--arms", default=",".join(ARMS),
                    help="comma-separated subset of the arms (untreated first: the reference)")
    args = ap.parse_args(argv)
    arms = {a: ARMS[a] for a in args.arms.split(",") if a in ARMS}
    if list(arms)[:1] != ["untreated"] or len(arms) != len(args.arms.split(",")):
        raise SystemExit(f"--arms {args.arms!r}: a comma-separated subset of {', '.join(ARMS)}, "
                         "starting with untreated")

    import jax
    import jax.numpy as jnp

    from tmepde.config import load_config
    from tmepde.runner import build

    cfg = load_config(args.config)
    extent = [n * h for n, h in zip(cfg.grid.shape, cfg.grid.spacing)]
    cfg = cfg.replace(f"grid.shape={[args.shape] * len(extent)}",
                      f"grid.spacing={[e / args.shape for e in extent]}")
    setup = build(cfg)
    model, sim, base = cfg.model, setup.simulator, setup.params
    variants = [("defaults", {})] + [parse_variant(v) for v in args.variant]
    members = []
    for _, over in variants:
        for f_ifng, f_pd1 in arms.values():
            p = dict(base)
            p.update({k: jnp.asarray(v, sim.dtype) for k, v in over.items()})
            p["sys_ifng_amounts"] = base["sys_ifng_amounts"] * f_ifng
            p["sys_pd1_amounts"] = base["sys_pd1_amounts"] * f_pd1
            members.append(p)
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *members)
    t0 = time.perf_counter()
    ys = np.asarray(jax.jit(jax.vmap(lambda p: sim.run(p, setup.y0, setup.n_saves)))(stacked))
    wall = time.perf_counter() - t0
    ys = ys.reshape(len(variants), len(arms), ys.shape[1], ys.shape[2], -1)  # (V, A, T, S, cells)
    field = lambda s: ys[:, :, :, model.index(s)]
    tumor = field("tumor") + field("stem")
    burden = tumor.sum(-1)
    weight = tumor / np.maximum(tumor.sum(-1, keepdims=True), 1e-30)
    ifng = (field("ifng") * weight).sum(-1)
    pdl1 = (field("pdl1") * weight).sum(-1)
    # mean plasma IFN-γ over the run from the model's own PK (trapezoid on a fine grid)
    from tmepde import therapy

    t = np.linspace(0.0, float(setup.n_saves * cfg.data["time"]["save_every"]), 20001)
    c = np.asarray(therapy.pk_concentration(
        t, base["sys_ifng_times"], base["sys_ifng_amounts"], ke=base["pk_ifng_ke"],
        volume_ml=base["pk_ifng_V"], ka=base["pk_ifng_ka"], bioavailability=base["pk_ifng_F"],
        width=base["dose_width_h"]))
    plasma_mean = float(np.trapezoid(c, t) / t[-1])
    head = (f"grid {cfg.grid.shape} × {cfg.grid.spacing} µm, {setup.n_saves} saves, "
            f"{len(members)} members, {wall:.0f} s; IFN-γ-1b mean plasma {plasma_mean:.4f} ng/mL")
    cols = ("variant", "arm", "burden/day0", "/untreated", "IFN-γ mean/peak", "added/plasma", "PD-L1",
            "ex, Treg, MDSC / untreated")
    rows = []
    for v, (name, over) in enumerate(variants):
        for a, arm in enumerate(arms):
            def tot(s):  # time-mean total relative to untreated; None when untreated has none
                ref = field(s)[v, 0, 1:].sum(-1).mean()
                return float(field(s)[v, a, 1:].sum(-1).mean() / ref) if ref > 0 else None
            rows.append({
                "variant": name, "overrides": over, "arm": arm,
                "burden_vs_day0": float(burden[v, a, -1] / burden[v, a, 0]),
                "burden_vs_untreated": float(burden[v, a, -1] / burden[v, 0, -1]),
                "ifng_mean": float(ifng[v, a, 1:].mean()), "ifng_peak": float(ifng[v, a].max()),
                "ifng_added_over_plasma": float((ifng[v, a, 1:].mean() - ifng[v, 0, 1:].mean()) / plasma_mean),
                "pdl1_mean": float(pdl1[v, a, 1:].mean()),
                "cd8_ex_vs_untreated": tot("cd8_ex"), "treg_vs_untreated": tot("treg"),
                "mdsc_vs_untreated": tot("mdsc")})
    lines = [" | ".join(cols), "|".join(["---"] * len(cols))]
    for r in rows:
        lines.append(f"{r['variant']} | {r['arm']} | {r['burden_vs_day0']:.3f} | {r['burden_vs_untreated']:.3f} | "
                     f"{r['ifng_mean']:.3f}/{r['ifng_peak']:.3f} | {r['ifng_added_over_plasma']:.3f} | "
                     f"{r['pdl1_mean']:.3f} | " + ", ".join(
                         "–" if r[k] is None else f"{r[k]:.2f}"
                         for k in ("cd8_ex_vs_untreated", "treg_vs_untreated", "mdsc_vs_untreated")))
    print(head)
    print("\n".join(lines))
    if args.out:
        import json
        import platform

        command = "python scripts/clinical_arms.py " + " ".join(argv if argv is not None else sys.argv[1:])
        prefix = Path(args.out)
        prefix.with_suffix(".json").write_text(json.dumps(
            {"command": command, "grid": list(cfg.grid.shape), "spacing_um": list(cfg.grid.spacing),
             "wall_s": wall, "plasma_ifng_mean_ng_ml": plasma_mean, "machine": platform.processor()
             or platform.machine(), "rows": rows}, indent=1, ensure_ascii=False) + "\n")
        prefix.with_suffix(".md").write_text(
            "# Clinical scenario arms (configs/default.toml), day-30 burden\n\n"
            f"Command: `{command}`. {head}. Burden at day 30 relative to day 0 and to the "
            "variant's untreated arm; tumor-weighted IFN-γ (ng/mL) mean over the saves after day 0 / "
            "peak; IFN-γ added by IFN-γ-1b over its mean plasma level; time-mean PD-L1; "
            "exhausted CD8, Treg, MDSC totals (time means) relative to untreated. "
            "Model and reading: docs/model.md.\n\n" + "\n".join("| " + ln + " |" for ln in lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
