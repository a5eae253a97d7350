"""``tmepde plot FILE``: field snapshots, observables and profiles of a result file (PNG)."""

from __future__ import annotations

import argparse
import sys

from ..cli import no_saves, reading_result, register

__all__ = ["run"]


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("result", help="HDF5 result file")
    p.add_argument("--fields", nargs="+", help="species to show (default: all)")
    p.add_argument("--times", nargs="+", type=float, help="save times in h (nearest saves; default: 3 spread)")
    p.add_argument("-o", "--out-dir", default="figures", help="folder for the PNG files (default: figures)")


@reading_result
def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..io import SweepResult, open_result
    from ..plot import save_all, save_sweep_all
    from .. import summaries

    fmt = summaries.file_format(args.result)
    if fmt in (summaries.FIT_FORMAT, summaries.OPTIMIZE_FORMAT):  # fit / optimize files
        import matplotlib.pyplot as plt

        fig = (summaries.fit_figure if fmt == summaries.FIT_FORMAT else summaries.optimize_figure)(args.result)
        out = Path(args.out_dir) / (Path(args.result).stem + ".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        print(f"wrote {out}")
        return 0

    with open_result(args.result) as r:
        if no_saves(r, args.result):
            return 1
        if isinstance(r, SweepResult):  # --fields name observables for the spaghetti plots
            unknown = sorted(set(args.fields or []) - set(r.observables))
            if unknown:
                print(f"tmepde: no observables {unknown} in {args.result}; observables: "
                      f"{sorted(r.observables)}", file=sys.stderr)
                return 2
            for p in save_sweep_all(r, args.out_dir, args.fields):
                print(f"wrote {p}")
            return 0
        unknown = sorted(set(args.fields or []) - set(r.species))
        if unknown:
            print(f"tmepde: no fields {unknown} in {args.result}; fields: {r.species}", file=sys.stderr)
            return 2
        for p in save_all(r, args.out_dir, args.fields, args.times):
            print(f"wrote {p}")
    return 0


register("plot", "field snapshots, observables and profiles of a result file (PNG)", _args, run)
