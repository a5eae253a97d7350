"""Gallery: a tumor invasion front (Fisher–KPP) and its speed 2√(D r).

The tumor-only reduction of the TME model is Fisher–KPP (tests/test_tme_reductions.py). Here
the example model ``tmepde.models.examples:fisher_kpp`` runs in 1D from a step; the front
(where u = 1/2) must travel at the minimal wave speed c* = 2√(D r) of the pulled front, with
Bramson's logarithmic delay x(t) = c t - 3/(2λ*) ln t + b, λ* = √(r/D). Check: c fitted with
that delay within 3 % of c*.

    python scripts/gallery/fisher_front.py --out results/gallery
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

D_UM2_S, R_PER_H = 0.05, 0.2


def main(out: str | Path = "results/gallery", t_end: float = 150.0) -> dict:
    import jax
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tmepde as tp
    from tmepde.models.examples import fisher_kpp

    # float64: round-off ahead of the front (~1e-8 in float32 after a transform solve) grows
    # like e^{rt}; in float64 it stays invisible for r t < ~30 (here r t = 30 at 150 h).
    jax.config.update("jax_enable_x64", True)

    grid = tp.Grid((1100,), 2.0)
    x = grid.axis_centers(0)
    u0 = (x < 40.0).astype(float)
    save = t_end / 12
    times, f = tp.simulate(fisher_kpp(motility=D_UM2_S, growth=R_PER_H), grid, {"tumor": u0},
                           t_end=t_end, dt=0.25, save_every=save, dtype="float64")
    u = np.asarray(f["tumor"])
    front = np.array([np.interp(0.5, ui[::-1], x[::-1]) for ui in u])  # u decreasing in x
    times = np.asarray(times)
    c_star = 2 * np.sqrt(D_UM2_S * 3600 * R_PER_H)
    lam = np.sqrt(R_PER_H / (D_UM2_S * 3600))
    late = times >= t_end / 3
    # least squares for (c, b) in front + 3/(2λ*) ln t = c t + b
    A = np.stack([times[late], np.ones(late.sum())], axis=1)
    speed = float(np.linalg.lstsq(A, front[late] + 1.5 / lam * np.log(times[late]), rcond=None)[0][0])
    fig, ax = plt.subplots(1, 2, figsize=(8, 3.2))
    for ti, ui in zip(times[::2], u[::2]):
        ax[0].plot(x, ui, lw=1, label=f"{ti:.0f} h")
    ax[0].set(xlabel="x (µm)", ylabel="tumor (volume fraction)", title="Fisher–KPP front")
    ax[0].legend(fontsize=6, ncol=2)
    ax[1].plot(times, front, "o-", ms=3, label="front position (u = 1/2)")
    ax[1].plot(times, front[-1] + c_star * (times - times[-1]), "--", label=f"slope 2√(Dr) = {c_star:.2f} µm/h")
    ax[1].set(xlabel="time (h)", ylabel="x (µm)", title=f"measured {speed:.2f} µm/h")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "fisher_front.png", dpi=110)
    plt.close(fig)
    return {"speed_um_per_h": speed, "c_star_um_per_h": float(c_star), "figure": str(out / "fisher_front.png")}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/gallery")
    print(main(ap.parse_args().out))
