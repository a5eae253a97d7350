"""``tmepde sensitivity CONFIG``: Sobol' indices or Morris screening of a config's outcome."""

from __future__ import annotations

import argparse
import sys

from ..cli import add_overrides, load_config_with, register

__all__: list[str] = []  # registers its command with tmepde.cli; nothing to import

EXAMPLE = "[sensitivity.params] growth_tumor = [0.005, 0.02]"


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config with a [sensitivity] table (docs/config.md)")
    p.add_argument("-o", "--output", help="HDF5 file to write (default: sensitivity.path of the config)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    add_overrides(p, "sensitivity.n=128")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plot", action="store_true", help="do not draw <output>.png")


def _run(args: argparse.Namespace) -> int:
    from ..sensitivity import plot_sensitivity, read_sensitivity, run_sensitivity, sample, summary_markdown

    cfg = load_config_with(args, "sensitivity", EXAMPLE)
    table = cfg.data["sensitivity"]
    n_runs = len(sample(table)[0])
    print(f"tmepde sensitivity: {table['method']}, {len(table['params'])} parameters, {n_runs} runs "
          "(one batch; compiling first)", file=sys.stderr, flush=True)
    try:
        out = run_sensitivity(cfg, args.output, progress=not args.no_progress, overwrite=args.overwrite)
    except FileExistsError as e:
        print(f"tmepde: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"tmepde: sensitivity failed: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    if not args.no_plot:
        print(f"wrote {plot_sensitivity(out, out.with_suffix('.png'))}")
    print(summary_markdown(read_sensitivity(out)))
    return 0


register("sensitivity", "global sensitivity (Sobol' indices or Morris screening, SALib) of a config's "
         "outcome over the [sensitivity] parameter ranges, run as one batch", _args, _run)
