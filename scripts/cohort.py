"""A virtual cohort of N patients under one regimen of the default TME scenario.

    python scripts/cohort.py -n 8 --shape 32 --t-end 96 --device cpu      # CPU, small (~1 min)
    python scripts/cohort.py -n 1024 --regimen ifng_pd1 --device gpu      # GPU, full 256² grid

Patients differ by log-normal draws of the parameters in --cv (median = the config's value);
the whole cohort runs as one vmapped, chunked, device-sharded batch (tmepde.sweep.run_sweep)
and lands in one HDF5 file with a RECIST-like summary next to it (<out>_summary.{csv,md}).
--shape N coarsens the 256² grid to N² voxels keeping the 5.12 mm section (spacing 5120/N µm).

B7 in space (responders and non-responders under the config's own treatment):

    python scripts/cohort.py --b7 -n 32 --shape 64 --device cpu   # -> results/cohort_b7.{md,json,png}

Patients differ by log-normal factors on growth, CD8 recruitment, killing, PD-L1 inducibility
and the baseline CD8/NK density (tmepde.behaviours.PATIENT_CV; --cv overrides); best response
RECIST-like (diameter-equivalent change ≤ −30 % = PR, responder = CR or PR); the factors that
separate the classes by rank correlation, standardised mean difference and ridge logistic
regression (tmepde.behaviours.separation).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package, when run from anywhere
N_SLOTS = 12  # dose slots per agent in configs/default.toml (model.options.n_doses)
IFNG = 8.65e4  # ng per IFN-γ-1b s.c. dose (50 µg/m² × 1.73 m²)
PD1 = 2.0e8    # ng per pembrolizumab 200 mg i.v. dose
IFNG_TIMES = [56.0 * i for i in range(N_SLOTS)]  # 3x/week
PD1_TIMES = [0.0, 504.0] + [0.0] * (N_SLOTS - 2)  # q3w
ZERO = [0.0] * N_SLOTS


def _doses(ifng=None, pd1=None) -> dict:
    """Parameter overrides of an IFN-γ / anti-PD-1 schedule (amounts per slot, ng)."""
    return {"sys_ifng_times": IFNG_TIMES, "sys_ifng_amounts": ifng or ZERO,
            "sys_pd1_times": PD1_TIMES, "sys_pd1_amounts": pd1 or ZERO}


PULSED = [IFNG if not (336.0 <= t < 504.0) else 0.0 for t in IFNG_TIMES]  # 2 weeks on, 1 off
REGIMENS = {
    "control": _doses(),
    "ifng_3x_week": _doses(ifng=[IFNG] * N_SLOTS),
    "pd1_q3w": _doses(pd1=[PD1, PD1] + [0.0] * (N_SLOTS - 2)),
    "ifng_pd1": _doses(ifng=[IFNG] * N_SLOTS, pd1=[PD1, PD1] + [0.0] * (N_SLOTS - 2)),
    "ifng_pulsed_pd1": _doses(ifng=PULSED, pd1=[PD1, PD1] + [0.0] * (N_SLOTS - 2)),
}
DEFAULT_CV = {"growth_tumor": 0.3, "kill_cd8": 0.3, "rec_cd8": 0.3, "uptake_ifng": 0.2}


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=str(ROOT / "configs" / "default.toml"))
    p.add_argument("-n", type=int, default=8, help="virtual patients (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cv", action="append", default=[], metavar="PARAM=CV",
                   help=f"log-normal coefficient of variation (repeatable; default {DEFAULT_CV})")
    p.add_argument("--shape", type=int, help="N: N² voxels over the same 5.12 mm section (default: config)")
    p.add_argument("--t-end", type=float, help="horizon in h (default: config, 720)")
    p.add_argument("--dtype", choices=("float32", "float64"), help="default: config (float32)")
    p.add_argument("--chunk", type=int, help="members per compiled call (default: automatic)")
    p.add_argument("--save-fields", action="store_true", help="also store every member's fields")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="JAX platform (set before JAX starts; auto = GPU when present)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")


def select_device(device: str) -> None:
    if device != "auto":
        os.environ["JAX_PLATFORMS"] = {"cpu": "cpu", "gpu": "cuda"}[device]


def build_config(args, arms: list[dict]):
    """The config file + [sweep] (cohort and arms) + the script's overrides, resolved."""
    from tmepde.config import apply_override, resolve

    path = Path(args.config)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    cv = dict(DEFAULT_CV)
    for item in args.cv:
        k, _, v = item.partition("=")
        cv[k.strip()] = float(v)
    raw["sweep"] = {"save_fields": bool(args.save_fields),
                    "cohort": {"n": args.n, "seed": args.seed, "cv": cv}, "arms": arms}
    if args.chunk:
        raw["sweep"]["chunk"] = args.chunk
    sets = list(args.overrides)
    if args.shape:
        extent = [n * h for n, h in zip(raw["grid"]["shape"], _spacings(raw["grid"]))]
        sets += [f"grid.shape={[args.shape] * len(extent)}",
                 f"grid.spacing={[e / args.shape for e in extent]}"]
    if args.t_end:
        sets.append(f"time.t_end={args.t_end}")
    if args.dtype:
        sets.append(f'solver.dtype="{args.dtype}"')
    for s in sets:
        apply_override(raw, s)
    return resolve(raw, path.parent)


def _spacings(grid: dict) -> list:
    h = grid.get("spacing", 10.0)
    return h if isinstance(h, list) else [h] * len(grid["shape"])


def run(args, arms, default_out: str) -> Path:
    from tmepde.sweep import run_sweep

    import jax

    cfg = build_config(args, arms)
    out = Path(args.output or default_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"devices: {jax.devices()}; grid {cfg.grid.shape}, spacing {cfg.grid.spacing} µm, "
          f"t_end {cfg.data['time']['t_end']} h, {len(arms)} arm(s) x {args.n} patients", flush=True)
    path = run_sweep(cfg, out, progress=not args.no_progress, overwrite=True)
    print(f"wrote {path}")
    print(Path(f"{path.with_suffix('')}_summary.md").read_text(encoding="utf-8"))
    return path


def run_b7(args) -> int:
    """The spatial B7 cohort under the config's treatment; writes <results>.{md,json,png}."""
    import json
    import time

    import jax

    sys.path.insert(0, str(ROOT / "scripts"))
    from _machine import cpu_model
    from tmepde import behaviours as bh
    from tmepde.config import load_config
    from tmepde.sweep import diameter_exponent

    cfg = load_config(args.config)
    extent = [n * h for n, h in zip(cfg.grid.shape, cfg.grid.spacing)]
    sets = list(args.overrides)
    if args.shape:
        sets += [f"grid.shape={[args.shape] * len(extent)}",
                 f"grid.spacing={[e / args.shape for e in extent]}"]
    if args.t_end:
        sets.append(f"time.t_end={args.t_end}")
    cfg = cfg.replace(*sets) if sets else cfg
    cv = dict(bh.PATIENT_CV)
    for item in args.cv:
        k, _, v = item.partition("=")
        cv[k.strip()] = float(v)
    factors = bh.draw_patients(args.n, cv, args.seed)
    ablations = {"defaults": {}}
    for item in args.ablate:
        name, _, body = item.partition(":")
        ablations[name] = {k.strip(): float(v) for k, _, v in
                           (kv.partition("=") for kv in filter(None, body.split(",")))}
    print(f"devices: {jax.devices()}; grid {cfg.grid.shape} × {cfg.grid.spacing} µm, "
          f"t_end {cfg.data['time']['t_end']} h, {args.n} patients × {len(ablations)} variant(s)", flush=True)
    rows, raw = {}, {}
    exponent = diameter_exponent(cfg.grid)
    for name, over in ablations.items():
        t0 = time.perf_counter()
        if args.from_raw:  # re-analyse a saved run (same -n, --seed, --cv)
            z = np.load(args.from_raw)
            times, burden, wall = z["times"], z["burden"], float(z["wall_s"])
        else:
            times, burden = bh.run_cohort(cfg, factors, over, chunk=args.chunk)
            wall = time.perf_counter() - t0
        np.savez(f"{args.results}_{name}_raw.npz", times=times, burden=burden, wall_s=wall,
                 **{f"factor_{k}": v for k, v in factors.items()})  # re-analysable without a rerun
        r = bh.best_response(burden, exponent)
        sep = bh.separation(factors, r["responder"], r["best_change"]) if 0 < r["responder"].sum() < args.n else {}
        rows[name] = {"overrides": over, "wall_s": round(wall, 1), "responders": int(r["responder"].sum()),
                      "non_responders": int((~r["responder"]).sum()),
                      "classes": {c: int(np.sum(r["best"] == c)) for c in ("CR", "PR", "SD", "PD")},
                      "best_ratio": np.round(r["best_ratio"], 4).tolist(),
                      "best_change_pct": np.round(r["best_change"], 2).tolist(),
                      "day30_ratio": np.round(burden[:, -1] / burden[:, 0], 4).tolist(),
                      "separation": sep}
        if sep and all(k in factors for k in ("kill_cd8", "rec_cd8", "growth_tumor")):
            # immune kill capacity over growth: CTL killing × recruitment / proliferation
            idx = np.log(factors["kill_cd8"] * factors["rec_cd8"] / factors["growth_tumor"])
            o = np.argsort(idx)
            acc = [np.mean((idx > t) == r["responder"]) for t in (idx[o][:-1] + idx[o][1:]) / 2]
            j = int(np.argmax(acc))
            rows[name]["index_kill_rec_over_growth"] = {
                "auc": bh.roc_auc(idx, r["responder"]), "best_threshold_ln": float((idx[o][j] + idx[o][j + 1]) / 2),
                "accuracy": float(acc[j])}
            print(f"  ln(kill·rec/growth): {rows[name]['index_kill_rec_over_growth']}")
        raw[name] = (times, burden, r)
        print(f"{name}: {rows[name]['responders']} responders / {args.n} ({wall:.0f} s); "
              f"classes {rows[name]['classes']}", flush=True)
        for k, v in sep.items():
            print(f"  {k}: rho {v['rho']:+.2f}, smd {v['smd']:+.2f}, logit {v['logit']:+.2f}, auc {v['auc']:.2f}")
    machine = f"{cpu_model()}, {jax.device_count()} × {jax.devices()[0].platform}, jax {jax.__version__}"
    out = {"command": "python scripts/cohort.py " + " ".join(sys.argv[1:]), "machine": machine,
           "load_avg": os.getloadavg(), "grid": list(cfg.grid.shape), "spacing_um": list(cfg.grid.spacing),
           "t_end_h": cfg.data["time"]["t_end"], "cv": cv, "seed": args.seed,
           "factors": {k: np.round(v, 5).tolist() for k, v in factors.items()}, "variants": rows}
    res = Path(args.results)
    res.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{res}.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
    _b7_figure(raw, factors, f"{res}.png")
    print(f"wrote {res}.json, {res}.png")
    return 0


def _b7_figure(raw, factors, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, burden, r = raw["defaults"]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for b, resp in zip(burden, r["responder"]):
        ax[0].plot(times / 24, b / b[0], color="tab:blue" if resp else "tab:red", lw=0.8)
    ax[0].axhline(0.49, ls=":", color="k")
    ax[0].set(xlabel="day", ylabel="burden / day 0", yscale="log", title="blue: responders (CR/PR)")
    order = np.argsort(r["best_change"])
    ax[1].bar(np.arange(len(order)), r["best_change"][order],
              color=np.where(r["responder"][order], "tab:blue", "tab:red"))
    ax[1].axhline(-30, ls=":", color="k")
    ax[1].set(xlabel="patient (sorted)", ylabel="best diameter-equivalent change (%)", title="waterfall")
    keys = list(factors)
    for j, k in enumerate(keys):
        x = np.log(factors[k])
        jit = (np.arange(len(x)) % 5 - 2) * 0.04
        ax[2].scatter(j + jit[r["responder"]] - 0.15, x[r["responder"]], s=10, color="tab:blue")
        ax[2].scatter(j + jit[~r["responder"]] + 0.15, x[~r["responder"]], s=10, color="tab:red")
    ax[2].set_xticks(range(len(keys)), keys, rotation=30, ha="right")
    ax[2].set(ylabel="ln(patient factor)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(p)
    p.add_argument("--regimen", choices=sorted(REGIMENS), default="ifng_pd1")
    p.add_argument("-o", "--output", help="HDF5 file (default: cohort_<regimen>.h5)")
    p.add_argument("--b7", action="store_true", help="B7 in space: responders vs non-responders "
                   "under the config's treatment (ignores --regimen)")
    p.add_argument("--ablate", action="append", default=[], metavar="NAME:key=value,...",
                   help="--b7: also run the cohort with these parameter values (repeatable)")
    p.add_argument("--results", default=str(ROOT / "results" / "cohort_b7"),
                   help="--b7: output prefix (default results/cohort_b7)")
    p.add_argument("--from-raw", help="--b7: re-analyse <results>_defaults_raw.npz instead of running")
    args = p.parse_args(argv)
    select_device(args.device)
    if args.b7:
        return run_b7(args)
    run(args, [{"name": args.regimen, "set": REGIMENS[args.regimen]}], f"cohort_{args.regimen}.h5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
