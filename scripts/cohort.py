"""A virtual cohort of N patients under one regimen of the default TME scenario.

    python scripts/cohort.py -n 8 --shape 32 --t-end 96 --device cpu      # CPU, small (~1 min)
    python scripts/cohort.py -n 1024 --regimen ifng_pd1 --device gpu      # GPU, full 256² grid

Patients differ by log-normal draws of the parameters in --cv (median = the config's value);
the whole cohort runs as one vmapped, chunked, device-sharded batch (tmepde.sweep.run_sweep)
and lands in one HDF5 file with a RECIST-like summary next to it (<out>_summary.{csv,md}).
--shape N coarsens the 256² grid to N² voxels keeping the 5.12 mm section (spacing 5120/N µm).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(p)
    p.add_argument("--regimen", choices=sorted(REGIMENS), default="ifng_pd1")
    p.add_argument("-o", "--output", help="HDF5 file (default: cohort_<regimen>.h5)")
    args = p.parse_args(argv)
    select_device(args.device)
    run(args, [{"name": args.regimen, "set": REGIMENS[args.regimen]}], f"cohort_{args.regimen}.h5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
