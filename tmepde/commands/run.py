"""``tmepde run CONFIG``: run a TOML config and write an HDF5 result (docs/hdf5.md)."""

from __future__ import annotations

import argparse
import sys

from ..cli import add_overrides, register

__all__ = ["run"]


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="TOML run configuration (reference: docs/config.md)")
    p.add_argument("-o", "--output", help="HDF5 file to write (default: output.path of the config)")
    p.add_argument("--resume", metavar="FILE",
                   help="finish an interrupted or failed result FILE in place, from its last save "
                        "(the run is the file's stored config; no CONFIG)")
    p.add_argument("--branch", metavar="FILE",
                   help="start from a save of an earlier result FILE (same grid and species) "
                        "instead of [initial], and run on to time.t_end")
    p.add_argument("--at", type=float, metavar="HOURS",
                   help="with --branch: the save time to start from (default: its last save)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing result file, only once the new run is complete (until "
                        "then, and after a failure or interrupt, it is <stem>.partial.h5 beside it)")
    add_overrides(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (TOML) and exit without running")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..runner import run_config

    if args.resume is not None:
        if args.config is not None or args.overrides or args.output:
            print("tmepde: --resume FILE continues the file's own run: give no CONFIG, -o or --set",
                  file=sys.stderr)
            return 2
        from ..io import ResultFileError

        try:
            out = run_config(None, progress=not args.no_progress, resume=args.resume)
        except ResultFileError as e:
            print(f"tmepde: {e}", file=sys.stderr)
            return 2
        print(f"wrote {out}")
        return 0
    if args.config is None:
        print("tmepde: run needs a CONFIG (a TOML file), or --resume FILE", file=sys.stderr)
        return 2
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(cfg.to_toml())
        return 0
    from ..io import check_output

    out = args.output if args.output is not None else cfg.data["output"]["path"]
    check_output(out, overwrite=args.overwrite, protect=(args.config,))  # before compiling
    from ..io import ResultFileError

    if args.at is not None and args.branch is None:
        print("tmepde: --at needs --branch FILE", file=sys.stderr)
        return 2
    try:
        out = run_config(cfg, out, progress=not args.no_progress, overwrite=args.overwrite,
                         branch=args.branch, branch_time=args.at)
    except ResultFileError as e:
        print(f"tmepde: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


register("run", "run a TOML config and write an HDF5 result", _args, run)
