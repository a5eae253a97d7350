"""``tmepde fit CONFIG``: fit the model to measured tumor volumes (the CT26 worked example).

The config is a run config (spherical grid, TME model with 3 intratumoral IL-12 slots) with a
``[fit]`` table (docs/config.md); see docs/fitting.md and :mod:`tmepde.ct26`.
"""

from __future__ import annotations

import argparse

from ..cli import add_overrides, load_config_with, register


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config with a [fit] table, e.g. configs/fit/ct26.toml")
    p.add_argument("--quick", action="store_true",
                   help="CI scale: 24 shells, shorter horizon, IMEX Euler, at most 6 Levenberg–Marquardt steps")
    add_overrides(p, "fit.max_steps=10")


def _run(args: argparse.Namespace) -> int:
    cfg = load_config_with(args, "fit", "configs/fit/ct26.toml")
    from ..ct26 import run_fit

    out = run_fit(cfg, quick=args.quick)
    for path in out["outputs"]:
        print(f"wrote {path}")
    return 0


register("fit", "fit model parameters to measured tumor volumes (CT26 example: growth on PBS, "
         "IL-12/immune on rVSV-mIL12-mGMCSF, per-animal virtual cohort)", _args, _run)
