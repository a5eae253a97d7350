"""Several dose regimens of the default TME scenario on the same virtual cohort.

    python scripts/compare_regimens.py -n 4 --shape 32 --t-end 96 --device cpu       # CPU, small
    python scripts/compare_regimens.py -n 512 --device gpu                           # GPU
    python scripts/compare_regimens.py --regimens control ifng_pd1 ifng_pulsed_pd1

Every regimen is an arm of one sweep (tmepde.sweep): patient i has the same parameter draws
in every arm, so differences between arms are the regimen's. Writes one HDF5 file, the
response table (<out>_summary.{csv,md}) and the figures (spaghetti, waterfall, response
rates) into --figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cohort  # noqa: E402  (scripts/cohort.py: regimens and shared flags)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cohort.common_args(p)
    p.add_argument("--regimens", nargs="+", choices=sorted(cohort.REGIMENS),
                   default=["control", "ifng_3x_week", "pd1_q3w", "ifng_pd1"])
    p.add_argument("-o", "--output", help="HDF5 file (default: compare_regimens.h5)")
    p.add_argument("--figures", default="figures", help="folder for the PNGs (default: figures)")
    args = p.parse_args(argv)
    cohort.select_device(args.device)
    arms = [{"name": r, "set": cohort.REGIMENS[r]} for r in args.regimens]
    path = cohort.run(args, arms, "compare_regimens.h5")

    from tmepde.io import open_result
    from tmepde.plot import save_sweep_all

    with open_result(path) as r:
        for f in save_sweep_all(r, args.figures):
            print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
