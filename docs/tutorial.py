"""Tutorial: from a model to a fitted, optimised and plotted result in one script.

    python docs/tutorial.py                 # ~1-2 min on a laptop CPU; writes into ./tutorial_out
    python docs/tutorial.py --small         # what CI runs (a coarser grid)

It uses only the public API a user has (``tmepde``, ``tmepde.fit``, ``tmepde.schedules``,
``tmepde.therapy``, ``tmepde.plot``) on a model written here, so every step shows what you
would write for your own model:

1. a tumor that grows logistically and spreads, and a drug given as s.c. doses (one-
   compartment PK, closed form) that kills it — a two-line reaction function;
2. a run written to HDF5 (the same file ``tmepde run`` writes) and plotted;
3. a fit of the growth and kill rates to noisy tumor-volume data (Levenberg–Marquardt with
   exact Jacobians through the whole simulation), with standard errors;
4. a dose schedule optimised by gradient (daily amounts and times, a budget on the total),
   against the standard schedule;
5. figures of all of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import jax

jax.config.update("jax_enable_x64", True)  # accuracy for the finite-difference-free fit
import jax.numpy as jnp  # noqa: E402

import tmepde as tp  # noqa: E402
from tmepde import therapy  # noqa: E402
from tmepde.fit import FitParameter, fit  # noqa: E402
from tmepde.io import ResultWriter  # noqa: E402
from tmepde.schedules import ScheduleSpace, SlotAgent, minimize_lbfgs  # noqa: E402

DAYS = 14
N_SLOTS = DAYS  # one dose slot a day


# -- 1. the model ------------------------------------------------------------------------
def reactions(t, y, p):
    """Logistic growth (1/h) minus kill by the drug's plasma level (Emax, ng/mL)."""
    c = therapy.pk_concentration(t, p["drug_times"], p["drug_amounts"], ke=p["drug_ke"],
                                 volume_ml=p["drug_volume"], ka=p["drug_ka"])
    u = y["tumor"]
    return {"tumor": p["growth"] * u * (1 - u) - p["kill"] * c / (c + p["ec50"]) * u}


def make_model() -> tp.Model:
    return tp.Model(
        [tp.Species("tumor", diffusivity=0.01, units="volume fraction")], reactions,
        {"growth": 0.02, "kill": 0.05, "ec50": 5.0,            # 1/h, 1/h, ng/mL
         "drug_ke": np.log(2) / 12.0, "drug_ka": 0.5, "drug_volume": 5e3,  # 1/h, 1/h, mL
         "drug_times": np.zeros(N_SLOTS), "drug_amounts": np.zeros(N_SLOTS)},  # h, ng
        name="tumor_drug")


STANDARD = {"drug_times": 24.0 * np.arange(N_SLOTS) + 9.0,
            "drug_amounts": np.where(np.arange(N_SLOTS) % 7 < 5, 5e4, 0.0)}  # weekdays, 50 µg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="coarse grid (CI)")
    ap.add_argument("--out", default="tutorial_out")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    n = 16 if args.small else 48
    grid = tp.Grid((n, n), 1200.0 / n)                      # a 1.2 mm square section
    model = make_model()
    sim = tp.Simulator(model, grid, dt=1.0, save_every=24.0, dtype=jnp.float64)
    x, y = np.meshgrid(*(grid.axis_centers(a) for a in range(2)), indexing="ij")
    y0 = model.stack({"tumor": 0.3 * np.exp(-((x - 600) ** 2 + (y - 600) ** 2) / (2 * 200.0**2))}, grid)
    volume = grid.cell_volumes() * 20.0  # µm³ per voxel of a 20 µm thick section

    def tumor_volume(params):  # mm³ at every save (day 0..DAYS)
        ys = sim.run(params, y0, DAYS)
        return jnp.sum(ys[:, 0] * volume, axis=(1, 2)) * 1e-9

    # -- 2. a run, written as tmepde writes it, and plotted --------------------------------
    truth = dict(model.params(jnp.float64, **STANDARD))
    ys = np.asarray(sim.run(truth, y0, DAYS))
    with ResultWriter(out / "standard.h5", grid, model, overwrite=True) as w:
        w.append(np.asarray(sim.save_times(DAYS)), ys)
        w.set_attrs({"dose_times_h_drug": STANDARD["drug_times"][STANDARD["drug_amounts"] > 0]})
        w.close("complete")

    # -- 3. fit growth and kill to noisy volumes (5 % log-normal noise, seed 0) ------------
    data = np.asarray(tumor_volume(truth)) * np.exp(0.05 * np.random.default_rng(0).standard_normal(DAYS + 1))
    start = dict(truth, growth=jnp.asarray(0.01), kill=jnp.asarray(0.1))
    result = fit(lambda p: (jnp.log(tumor_volume(p)) - jnp.log(data)) / 0.05, start,
                 [FitParameter("growth", 0.01), FitParameter("kill", 0.1)], max_steps=30)
    print(result.summary())
    fitted = dict(truth, **{k: jnp.asarray(v) for k, v in result.values.items()})

    # -- 4. optimise the schedule: daily amount (≤ 100 µg) and time (± 6 h), total ≤ standard
    space = ScheduleSpace((SlotAgent("drug", tuple(STANDARD["drug_times"]), cap=1e5, window=6.0,
                                     budget=float(STANDARD["drug_amounts"].sum())),))

    def objective(doses):
        v = tumor_volume(dict(fitted, **doses))
        return jnp.log(v[-1] / v[0])

    J = space.penalized(objective, mu=1e3)
    # Empty slots start at 1 % of the cap: at exactly 0 the sigmoid is flat and they could not open.
    z0 = jnp.asarray(space.encode({"drug": np.maximum(STANDARD["drug_amounts"], 1e3)}))
    best = minimize_lbfgs(J, z0, max_steps=30 if args.small else 60)
    doses = {k: np.asarray(v) for k, v in space.decode(jnp.asarray(best.z)).items()}
    standard_value = float(J(z0))
    print(f"log volume ratio at day {DAYS}: standard {standard_value:.4f}, optimised {best.value:.4f} "
          f"({best.wall_s:.1f} s after {best.compile_s:.1f} s compile); total dose "
          f"{doses['drug_amounts'].sum():.4g} ng (budget {STANDARD['drug_amounts'].sum():.4g})")

    # -- 5. figures ----------------------------------------------------------------------------
    import matplotlib.pyplot as plt

    from tmepde import plot
    from tmepde.io import open_result

    with open_result(out / "standard.h5") as r:
        paths = plot.save_all(r, out)
    days = np.arange(DAYS + 1)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    a1.semilogy(days, data, "ko", label="data (synthetic)")
    a1.semilogy(days, np.asarray(tumor_volume(fitted)), "C0-", label="fit, standard schedule")
    a1.semilogy(days, np.asarray(tumor_volume(dict(fitted, **doses))), "C3-", label="fit, optimised schedule")
    a1.set_xlabel("day")
    a1.set_ylabel("tumor volume (mm³)")
    a1.legend(fontsize=7)
    a2.bar(STANDARD["drug_times"] / 24 - 0.2, STANDARD["drug_amounts"] / 1e3, 0.4, label="standard")
    a2.bar(doses["drug_times"] / 24 + 0.2, doses["drug_amounts"] / 1e3, 0.4, color="C3", label="optimised")
    a2.set_xlabel("day")
    a2.set_ylabel("dose (µg)")
    a2.legend(fontsize=7)
    summary = out / "tutorial_summary.png"
    fig.savefig(summary, dpi=110)
    plt.close(fig)
    print("wrote", ", ".join(str(p) for p in paths + [summary]))
    np.savez(out / "tutorial_numbers.npz", growth=result.values["growth"], kill=result.values["kill"],
             growth_se=result.std_error["growth"], kill_se=result.std_error["kill"],
             standard=standard_value, optimised=best.value, total=doses["drug_amounts"].sum())
    return 0


if __name__ == "__main__":
    sys.exit(main())
