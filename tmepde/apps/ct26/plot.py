"""Figure of the CT26 population fit: visual predictive check per arm, individual fits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import FLOOR_MM3, IL12_ARM, PBS_ARM


def plot_fit(out: dict, path: Path) -> Path:
    """Top: VPC per arm (data 5/50/95 % per day vs the model's 90 % prediction band and
    median at the fit; hatched: the posterior predictive 90 % band over NUTS draws, when sampled). Bottom: each IL-12 animal's data, fit, and fit without IL-12 (counterfactual)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = out["setup"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    for ax, arm in zip(axes[0], (PBS_ARM, IL12_ARM)):
        v = out["vpc"][arm]
        q = np.exp(v["sim_q"])
        ax.fill_between(v["days"], q[0], q[2], color="C0", alpha=0.2, label="model 90 % prediction band")
        ax.plot(v["days"], q[1], "C0-", label="model median")
        if out.get("post_bands"):
            b = np.exp(out["post_bands"][arm])
            ax.fill_between(v["days"], b[0], b[2], facecolor="none", edgecolor="C3", hatch="///", lw=0,
                            alpha=0.6, label="posterior predictive 90 % (NUTS)")
            ax.plot(v["days"], b[1], "C3-", lw=1, label="posterior predictive median")
        ax.plot(v["days"], np.exp(v["pop"]), "C0--", lw=1, label="typical animal (η = 0)")
        dq = np.exp(v["data_q"])
        ax.plot(v["data_days"], dq[1], "ko-", ms=4, label="data median")
        ax.plot(v["data_days"], dq[0], "k:", v["data_days"], dq[2], "k:", lw=1)
        ax.plot([], [], "k:", label="data 5 / 95 %")
        for d, n in zip(v["data_days"], v["n_measured"]):
            ax.annotate(str(n), (d, dq[2][list(v["data_days"]).index(d)]), fontsize=6,
                        textcoords="offset points", xytext=(0, 3), ha="center")
        ax.set_yscale("log")
        ax.set_title(f"{arm}\nvisual predictive check (numbers: mice measured)", fontsize=10)
        ax.set_xlabel("day")
        ax.set_ylabel(f"volume + {FLOOR_MM3:g} mm³")
        ax.legend(fontsize=7, loc="upper left")
    days = s.day0 + np.arange(s.data.y.shape[1])
    for ax, arm, key in ((axes[1, 0], PBS_ARM, None), (axes[1, 1], IL12_ARM, "no_il12")):
        for i in [i for i, a in enumerate(s.arm_of) if a == arm]:
            c = f"C{s.mouse_of[i] % 10}"
            m = s.data.observed[i] > 0
            ax.plot(days[m], np.exp(s.data.y[i][m]), "o", color=c, ms=3)
            ax.plot(days, np.exp(out["ipred"][i]), "-", color=c, lw=1)
            if key:
                ax.plot(days, np.exp(out[key][i]), ":", color=c, lw=1)
            cm = s.data.censored[i] > 0
            ax.plot(days[cm], np.exp(s.data.censor[i][cm]), "^", color=c, ms=6, mfc="none")
            lm = s.data.censored[i] < 0      # zero readings: below the limit of quantification
            ax.plot(days[lm], np.exp(s.data.censor[i][lm]), "v", color=c, ms=6, mfc="none")
        ax.set_yscale("log")
        ax.set_xlabel("day")
        ax.set_ylabel(f"volume + {FLOOR_MM3:g} mm³")
        ax.set_title(f"{arm}\nindividual fits" + (" (dotted: same animal without IL-12)" if key else "")
                     + "; △ right-, ▽ left-censored", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
