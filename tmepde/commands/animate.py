"""``tmepde animate FILE FIELD``: a GIF or MP4 of one field over time."""

from __future__ import annotations

import argparse
import sys

from ..cli import no_saves, reading_result, register

__all__ = ["run"]


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("result", help="HDF5 result file")
    p.add_argument("field", help="species to animate")
    p.add_argument("-o", "--output", help="GIF or MP4 file (default: <result>_<field>.gif)")
    p.add_argument("--fps", type=int, default=8)


@reading_result
def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..io import open_result
    from ..plot import animate

    with open_result(args.result) as r:
        if no_saves(r, args.result):
            return 1
        if args.field not in r.species:
            print(f"tmepde: no field {args.field!r} in {args.result}; fields: {r.species}", file=sys.stderr)
            return 2
        out = args.output or str(Path(args.result).with_suffix("")) + f"_{args.field}.gif"
        print(f"wrote {animate(r, args.field, out, fps=args.fps)}")
    return 0


register("animate", "GIF/MP4 of one field over time", _args, run)
