"""``tmepde sweep CONFIG``: run a config's [sweep] (grid, virtual cohort, arms) as one batch."""

from __future__ import annotations

import argparse
import sys

from ..cli import add_overrides, register

__all__: list[str] = []  # registers its command with tmepde.cli; nothing to import


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?",
                   help="TOML config with a [sweep] table (docs/batch.md, docs/config.md)")
    p.add_argument("-o", "--output", help="HDF5 sweep file to write (default: sweep.path of the config)")
    p.add_argument("--resume", metavar="FILE",
                   help="finish an interrupted or failed sweep FILE in place: keeps its finished "
                        "members and runs the others (the sweep is the file's stored config; no CONFIG)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing sweep file (only once the new sweep is complete; until "
                        "then it is written as <stem>.partial.h5)")
    add_overrides(p, "sweep.cohort.cv.growth_tumor=0.3")
    p.add_argument("-n", type=int, help="number of virtual patients (sets sweep.cohort.n)")
    p.add_argument("--seed", type=int, help="cohort random seed (sets sweep.cohort.seed)")
    p.add_argument("--chunk", type=int, help="members per compiled call (default: sweep.chunk, "
                   "else the most that fit in half the free device memory)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (TOML) and the member count, and exit")


def _run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..sweep import plan_sweep, run_sweep

    if args.resume is not None:
        if (args.config is not None or args.overrides or args.output or args.n is not None
                or args.seed is not None or args.chunk is not None or args.print_config):
            print("tmepde: sweep --resume FILE continues the file's own sweep: give no CONFIG, -o, "
                  "--set, -n, --seed, --chunk or --print-config", file=sys.stderr)
            return 2
        from ..io import ResultFileError

        try:
            out = run_sweep(None, resume=args.resume, progress=not args.no_progress)
        except ResultFileError as e:
            print(f"tmepde: {e}", file=sys.stderr)
            return 2
        print(f"wrote {out}")
        return _print_summary(out)
    if args.config is None:
        print("tmepde: sweep needs a CONFIG (a TOML file with [sweep]), or --resume FILE", file=sys.stderr)
        return 2
    if args.n is not None and args.n < 1:
        print(f"tmepde: -n must be >= 1 (virtual patients), got {args.n}", file=sys.stderr)
        return 2
    if args.chunk is not None and args.chunk < 1:
        print(f"tmepde: --chunk must be >= 1 (members per compiled call), got {args.chunk}", file=sys.stderr)
        return 2
    extra = ([f"sweep.cohort.n={args.n}"] if args.n is not None else []) + \
            ([f"sweep.cohort.seed={args.seed}"] if args.seed is not None else [])
    cfg = load_config(args.config, list(args.overrides) + extra)
    plan = plan_sweep(cfg)
    cohort = cfg.data["sweep"].get("cohort")
    if cohort and cohort["n"] > 1 and not cohort["cv"]:
        print(f"tmepde: note: sweep.cohort.cv is empty, so the {cohort['n']} patients are identical; "
              "vary them with e.g. --set sweep.cohort.cv.growth_tumor=0.3", file=sys.stderr)
    if args.print_config:
        sys.stdout.write(cfg.to_toml())
        print(f"# {plan.n} members: {len(plan.arm_names)} arm(s) x grid x patients")
        return 0
    out = run_sweep(cfg, args.output, progress=not args.no_progress, chunk=args.chunk,
                    overwrite=args.overwrite)
    print(f"wrote {out} ({plan.n} members)")
    return _print_summary(out)


def _print_summary(out) -> int:
    summary = out.with_suffix("")
    md = summary.parent / f"{summary.name}_summary.md"
    if md.exists():
        print(md.read_text(encoding="utf-8"))
    return 0


register("sweep", "run a config's [sweep] (parameter grid, virtual cohort, arms) as one batch; "
         "one HDF5 file + response summary", _args, _run)
