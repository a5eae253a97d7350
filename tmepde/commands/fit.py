"""``tmepde fit CONFIG``: fit the model to measured tumor volumes (the CT26 worked example).

The config is a run config (spherical grid, TME model with 3 intratumoral IL-12 slots) with a
``[fit]`` table (docs/config.md); see docs/fitting.md and :mod:`tmepde.ct26`.
"""

from __future__ import annotations

import argparse
import sys

from ..cli import register


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config with a [fit] table, e.g. configs/fit/ct26.toml")
    p.add_argument("--quick", action="store_true",
                   help="CI scale: 24 shells, shorter horizon, IMEX Euler, at most 6 Levenberg–Marquardt steps")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set fit.max_steps=10 (repeatable)")


def _run(args: argparse.Namespace) -> int:
    from ..config import load_config

    cfg = load_config(args.config, args.overrides)
    if "fit" not in cfg.data:
        print(f"tmepde: {args.config} has no [fit] table; add one (docs/config.md, e.g. "
              "configs/fit/ct26.toml)", file=sys.stderr)
        return 2
    from ..ct26 import run_fit

    out = run_fit(cfg, quick=args.quick)
    for path in out["outputs"]:
        print(f"wrote {path}")
    return 0


register("fit", "fit model parameters to measured tumor volumes (CT26 example: growth on PBS, "
         "IL-12/immune on rVSV-mIL12-mGMCSF, per-animal virtual cohort)", _args, _run)
