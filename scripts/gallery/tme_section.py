"""Gallery: the IFN-γ tumor microenvironment on a 2D section, from a config to figures.

Runs configs/scenarios/b3_anti_pd1_combination.toml (coarsened to 48² voxels of 50 µm and
3 days by ``--set`` overrides, so it runs in CI) with intratumoral IFN-γ + anti-PD-1, then
draws field snapshots (µm axes, unit colour bars) and the model's observables with the dose
events marked, reading everything back through the result API. Check: the stored
``tumor_burden`` observable equals ∑ (tumor + stem) × voxel area recomputed from the stored
fields, and the dose markers equal the configured dose times.

    python scripts/gallery/tme_section.py --out results/gallery
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = [
    "grid.shape=[48, 48]", "grid.spacing=50.0", "time.t_end=72.0", "time.save_every=6.0",
    "model.params.it_ifng_times=[0.0, 48.0, 96.0, 144.0]",
    "model.params.it_ifng_amounts=[50.0, 50.0, 0.0, 0.0]",
    "model.params.sys_pd1_times=[0.0, 0.0, 0.0, 0.0]",
    "model.params.sys_pd1_amounts=[2.0e8, 0.0, 0.0, 0.0]",
]


def main(out: str | Path = "results/gallery", work: str | Path | None = None) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tmepde import plot
    from tmepde.io import open_result
    from tmepde.runner import run_config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    h5 = Path(work or out) / "tme_section.h5"
    run_config(ROOT / "configs" / "scenarios" / "b3_anti_pd1_combination.toml", h5,
               progress=False, overrides=OVERRIDES, overwrite=True)
    with open_result(h5) as r:
        fig = plot.field_snapshots(r, ["tumor", "cd8", "ifng", "pdl1"], times=[0.0, 24.0, 72.0])
        fig.savefig(out / "tme_section_fields.png", dpi=90)
        plt.close(fig)
        fig = plot.observables(r, ["tumor_burden", "ifng_intratumoral", "pdl1_mean", "pdl1_sd",
                                   "infiltration_depth", "plasma_pd1"])
        fig.savefig(out / "tme_section_observables.png", dpi=90)
        plt.close(fig)
        area = float(np.prod(r.grid.spacing))
        recomputed = np.array([(r.field("tumor", i) + r.field("stem", i)).astype(float).sum() * area
                               for i in range(len(r))])
        stored = r.observable("tumor_burden")
        doses = plot.dose_times(r)
        final = {k: float(r.observable(k)[-1]) for k in
                 ("tumor_burden", "ifng_intratumoral", "pdl1_mean", "infiltration_depth")}
    return {"burden_max_rel_diff": float(np.max(np.abs(stored - recomputed) / recomputed)),
            "dose_times_h": doses.tolist(), "final": final,
            "figures": [str(out / "tme_section_fields.png"), str(out / "tme_section_observables.png")]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/gallery")
    ap.add_argument("--work", default=None, help="where the HDF5 file goes (default: --out)")
    a = ap.parse_args()
    print(main(a.out, a.work))
