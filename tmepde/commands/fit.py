"""``tmepde fit CONFIG``: population fit of the model to measured tumor volumes (the CT26
worked example, :mod:`tmepde.apps.ct26`; docs/fitting.md, ``[fit]`` in docs/config.md)."""

from __future__ import annotations

import argparse
import json

from ..cli import add_overrides, load_config_with, register


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config with a [fit] table, e.g. configs/fit/ct26.toml")
    p.add_argument("--quick", action="store_true",
                   help="CI scale: 6 h steps, at most 6 outer steps, a 2-point profile likelihood")
    p.add_argument("--nuts", action="store_true",
                   help="also sample the posterior by NUTS (fit.posterior = \"nuts\"; chains, warm-up and "
                        "draws from fit.nuts_*; needs numpyro)")
    p.add_argument("-o", "--output", metavar="PREFIX",
                   help="prefix of the outputs PREFIX_fit.md/.png/.json/.h5 and PREFIX_fitted.toml "
                        "(default: fit.output of the config, in the working directory)")
    add_overrides(p, "fit.max_steps=10")


def _run(args: argparse.Namespace) -> int:
    if args.output:
        args.overrides = [*args.overrides, f"fit.output={json.dumps(args.output)}"]
    if args.nuts:
        args.overrides = [*args.overrides, 'fit.posterior="nuts"']
    cfg = load_config_with(args, "fit", "configs/fit/ct26.toml")
    from ..apps.ct26 import run_fit

    out = run_fit(cfg, quick=args.quick)
    for path in out["outputs"]:
        print(f"wrote {path}")
    return 0


register("fit", "population (mixed-effects) fit to measured tumor volumes (CT26 example: PBS and "
         "rVSV-mIL12-mGMCSF arms, per-animal random effects, IL-12 counterfactual)", _args, _run)
